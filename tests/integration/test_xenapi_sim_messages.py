"""The lab XenAPI simulator's class-specific messages beyond the generated field calls, driven through the official
SDK (`XenAPI` from PyPI): task.cancel / task.destroy on the tasks Async calls create. The lab runs on a
ManualClock, so a slow call's task stays pending until the test moves the clock (support.xenapi.drive).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from stackops_lab.clock import ManualClock
from support.xenapi import FAST, blocking, drive, failure, login

from stackops_lab.xenapi import XenHostSpec, XenLab


@pytest.fixture(scope="module")
def lab() -> Iterator[XenLab]:
    """xen1 (master) + xen2 in a pool with NFS, two running guests each."""
    with XenLab(hosts=[XenHostSpec("xen1"), XenHostSpec("xen2")], pools=[["xen1", "xen2"]], password="s3cret",
                timings=FAST, clock=ManualClock()) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def session(lab: XenLab) -> Iterator[XenAPI.Session]:
    session = login(lab, "xen1")
    yield session
    session.xenapi.session.logout()


def test_a_pending_task_is_cancelled_where_its_call_waits_and_a_finished_one_stays(lab: XenLab,
                                                                                  session: XenAPI.Session) -> None:
    api = session.xenapi
    pool = api.pool.get_all()[0]
    task = api.Async.pool.enable_ha([], {"timeout": "180"})
    record = api.task.get_record(task)
    assert (record["status"], record["allowed_operations"]) == ("pending", ["cancel"])
    assert task in api.task.get_all_records()
    api.task.cancel(task)
    assert list(api.task.get_current_operations(task).values()) == ["cancel"]
    drive(lab, lambda: api.task.get_status(task) != "pending", what="the cancelled task")
    record = api.task.get_record(task)
    assert (record["status"], record["error_info"], record["progress"]) == ("cancelled", ["TASK_CANCELLED", task], 1.0)
    assert record["allowed_operations"] == []
    assert api.pool.get_ha_enabled(pool) is False and api.pool.get_current_operations(pool) == {}
    # a finished task: cancel changes nothing (xapi raises no error), destroy removes it
    done = api.Async.host.get_servertime(api.host.get_all()[0])
    drive(lab, lambda: api.task.get_status(done) == "success", what="the servertime task")
    api.task.cancel(done)
    assert api.task.get_status(done) == "success"
    api.task.destroy(done)
    api.task.destroy(task)
    assert failure(api.task.get_record, done) == ["HANDLE_INVALID", "task", done]
    assert failure(api.task.cancel, done) == ["HANDLE_INVALID", "task", done]


def test_destroying_a_pending_task_removes_it_once_it_finishes(lab: XenLab, session: XenAPI.Session) -> None:
    api = session.xenapi
    task = api.Async.pool.enable_ha([], {"timeout": "180"})
    api.task.destroy(task)
    assert api.task.get_status(task) == "pending"
    drive(lab, lambda: task not in api.task.get_all(), what="the destroyed task gone")
    assert api.pool.get_ha_enabled(api.pool.get_all()[0]) is True
    blocking(lab, api.pool.disable_ha)
    created = api.task.create("backup", "a client's own task")
    assert (api.task.get_status(created), api.task.get_name_label(created)) == ("pending", "backup")
    api.task.destroy(created)


def devices(api: Any, name: str) -> tuple[str, str, str, str]:
    """A guest's VM ref, disk VBD, CD drive and VIF."""
    vm = api.VM.get_by_name_label(name)[0]
    vbds = {api.VBD.get_type(vbd): vbd for vbd in api.VM.get_VBDs(vm)}
    return vm, vbds["Disk"], vbds["CD"], api.VM.get_VIFs(vm)[0]


def test_vbd_plug_unplug_insert_eject_follow_xapis_table(lab: XenLab, session: XenAPI.Session) -> None:
    api = session.xenapi
    vm, disk, cd, _ = devices(api, "xen1-vm1")
    assert api.VM.get_power_state(vm) == "Running" and api.VBD.get_currently_attached(disk) is True
    assert set(api.VBD.get_allowed_operations(disk)) == {"attach", "unplug", "unplug_force", "pause", "unpause"}
    assert failure(api.VBD.plug, disk) == ["DEVICE_ALREADY_ATTACHED", disk]
    assert failure(api.VBD.insert, disk, api.VBD.get_VDI(disk)) == ["VBD_NOT_REMOVABLE_MEDIA", disk]
    assert failure(api.VBD.eject, disk) == ["VBD_NOT_REMOVABLE_MEDIA", disk]
    api.VBD.unplug(disk)
    assert api.VBD.get_currently_attached(disk) is False
    assert "plug" in api.VBD.get_allowed_operations(disk) and "unplug" not in api.VBD.get_allowed_operations(disk)
    assert failure(api.VBD.unplug, disk) == ["DEVICE_ALREADY_DETACHED", disk]
    assert failure(api.VBD.unplug_force, disk) == ["DEVICE_ALREADY_DETACHED", disk]
    api.VBD.plug(disk)
    api.VBD.unplug_force(disk)
    assert api.VBD.get_currently_attached(disk) is False
    api.VBD.plug(disk)
    api.VBD.set_unpluggable(disk, False)
    assert failure(api.VBD.unplug, disk) == ["VBD_NOT_UNPLUGGABLE", disk]
    api.VBD.set_unpluggable(disk, True)
    # an HVM guest's CD drive: inserted and ejected, never hot-plugged
    assert api.VBD.get_empty(cd) is True and api.VBD.get_VDI(cd) == "OpaqueRef:NULL"
    assert failure(api.VBD.eject, cd) == ["VBD_IS_EMPTY", cd]
    assert failure(api.VBD.plug, cd) == ["OPERATION_NOT_ALLOWED",
                                         "HVM CDROMs cannot be hotplugged/unplugged, only inserted or ejected"]
    other, other_disk, _, _ = devices(api, "xen2-vm2")
    api.VM.hard_shutdown(other)
    iso = api.VBD.get_VDI(other_disk)
    assert failure(api.VBD.insert, cd, "OpaqueRef:nope") == ["HANDLE_INVALID", "VDI", "OpaqueRef:nope"]
    api.VBD.insert(cd, iso)
    assert (api.VBD.get_empty(cd), api.VBD.get_VDI(cd)) == (False, iso)
    assert cd in api.VDI.get_VBDs(iso) and "eject" in api.VBD.get_allowed_operations(cd)
    assert failure(api.VBD.insert, cd, iso) == ["VBD_NOT_EMPTY", cd]
    api.VBD.eject(cd)
    assert (api.VBD.get_empty(cd), api.VBD.get_VDI(cd)) == (True, "OpaqueRef:NULL")
    # a halted VM: no plugging, but its CD drive takes a disk
    _, _, other_cd, _ = devices(api, "xen2-vm2")
    assert failure(api.VBD.plug, other_disk) == ["VM_BAD_POWER_STATE", other, "running", "halted"]
    assert failure(api.VBD.unplug, other_disk) == ["VM_BAD_POWER_STATE", other, "running", "halted"]
    assert api.VBD.get_allowed_operations(other_disk) == ["attach"]
    api.VBD.insert(other_cd, iso)
    api.VBD.eject(other_cd)
    # an unplug does not outlive the domain
    api.VBD.unplug(disk)
    api.VM.hard_shutdown(vm)
    api.VM.start(vm, False, False)
    assert api.VBD.get_currently_attached(disk) is True
    api.VM.start(other, False, False)


def test_vif_plug_unplug(session: XenAPI.Session) -> None:
    api = session.xenapi
    vm, _, _, vif = devices(api, "xen1-vm2")
    assert api.VIF.get_currently_attached(vif) is True
    assert api.VIF.get_allowed_operations(vif) == ["attach", "unplug"]
    assert failure(api.VIF.plug, vif) == ["DEVICE_ALREADY_ATTACHED", vif]
    api.VIF.unplug(vif)
    assert api.VIF.get_currently_attached(vif) is False and api.VIF.get_allowed_operations(vif) == ["attach", "plug"]
    assert failure(api.VIF.unplug, vif) == ["DEVICE_ALREADY_DETACHED", vif]
    assert failure(api.VIF.unplug_force, vif) == ["DEVICE_ALREADY_DETACHED", vif]
    api.VIF.plug(vif)
    api.VIF.unplug_force(vif)
    api.VIF.plug(vif)
    assert api.VIF.get_currently_attached(vif) is True
    api.VM.hard_shutdown(vm)
    assert failure(api.VIF.plug, vif) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert api.VIF.get_allowed_operations(vif) == ["attach"]
    api.VM.start(vm, False, False)
