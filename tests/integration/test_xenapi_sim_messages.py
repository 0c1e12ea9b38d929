"""The lab XenAPI simulator's class-specific messages beyond the generated field calls, driven through the official
SDK (`XenAPI` from PyPI): task.cancel / task.destroy on the tasks Async calls create; VBD and VIF plug / unplug,
CD insert / eject; event.from, event.register / next / unregister; VM.clone / VM.destroy. The lab runs on a
ManualClock, so a slow call's task, or an event call waiting for a change, stays pending until the test moves the
clock (support.xenapi.drive).
"""
from __future__ import annotations

import hashlib
import re
import threading
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from stackops_lab.clock import ManualClock
from support.wait import wait_for
from support.xenapi import FAST, advance_until, blocking, drive, failure, login

from stackops_lab.xenapi import XenHostSpec, XenLab
from stackops_lab.xenapi.faults import faults_of

NULL = "OpaqueRef:NULL"


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


def test_a_task_waiting_for_another_pool_operation_is_cancelled_and_a_finished_one_stays(
        lab: XenLab, session: XenAPI.Session) -> None:
    api = session.xenapi
    pool = api.pool.get_all()[0]
    held = faults_of(lab).hold_pool_operation("xen1", "cert_refresh", seconds=10.0)
    task = api.Async.pool.enable_ha([], {"timeout": "180"})
    wait_for(lambda: api.task.get_allowed_operations(task) == ["cancel"], timeout=30, what="enable_ha waiting")
    assert task in api.task.get_all_records() and api.task.get_status(task) == "pending"
    api.task.cancel(task)
    assert list(api.task.get_current_operations(task).values()) == ["cancel"]
    drive(lab, lambda: api.task.get_status(task) != "pending", what="the cancelled task")
    record = api.task.get_record(task)
    assert (record["status"], record["error_info"], record["progress"]) == ("cancelled", [], 1.0)
    assert record["allowed_operations"] == [] and record["result"] == ""
    assert api.pool.get_ha_enabled(pool) is False and api.pool.get_current_operations(pool) == {held: "cert_refresh"}
    # a finished task: cancel changes nothing (xapi raises no error), destroy removes it
    done = api.Async.host.get_servertime(api.host.get_all()[0])
    drive(lab, lambda: api.task.get_status(done) == "success", what="the servertime task")
    assert api.task.get_allowed_operations(done) == []
    api.task.cancel(done)
    assert api.task.get_status(done) == "success"
    api.task.destroy(done)
    api.task.destroy(task)
    assert failure(api.task.get_record, done) == ["HANDLE_INVALID", "task", done]
    assert failure(api.task.cancel, done) == ["HANDLE_INVALID", "task", done]
    advance_until(lab, lambda: api.pool.get_current_operations(pool) == {}, "the held operation released", limit=20)


def test_a_slow_calls_own_work_is_not_cancelled(lab: XenLab, session: XenAPI.Session) -> None:
    api = session.xenapi
    task = api.Async.pool.enable_ha([], {"timeout": "180"})
    api.task.cancel(task)
    drive(lab, lambda: api.task.get_status(task) != "pending", what="the enable_ha task")
    assert api.task.get_status(task) == "success" and api.pool.get_ha_enabled(api.pool.get_all()[0]) is True
    blocking(lab, api.pool.disable_ha)
    api.task.destroy(task)


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


def event_from(session: XenAPI.Session, classes: list[str], token: str, timeout: float) -> dict[str, Any]:
    return getattr(session.xenapi.event, "from")(classes, token, timeout)


class Waiting:
    """An event call running in a thread: on the ManualClock it waits until a change or until the test moves the
    clock past its timeout."""

    def __init__(self, lab: XenLab, call: Any, *args: Any) -> None:
        self.outcome: dict[str, Any] = {}
        before = len(lab.waiting_calls())
        self.thread = threading.Thread(target=self.run, args=(call, *args), daemon=True)
        self.thread.start()
        wait_for(lambda: len(lab.waiting_calls()) > before or not self.thread.is_alive(), timeout=30,
                 what="the event call waiting")

    def run(self, call: Any, *args: Any) -> None:
        try:
            self.outcome["value"] = call(*args)
        except BaseException as error:
            self.outcome["error"] = error

    def result(self) -> Any:
        self.thread.join(30)
        assert not self.thread.is_alive(), "the event call did not return"
        if "error" in self.outcome:
            raise self.outcome["error"]
        return self.outcome["value"]


def test_event_from_reports_adds_mods_and_dels_since_a_token(lab: XenLab, session: XenAPI.Session) -> None:
    api = session.xenapi
    everything = event_from(session, ["*"], "", 0.0)
    vms = api.VM.get_all_records()
    adds = {event["ref"]: event for event in everything["events"] if event["class"] == "vm"}
    assert set(adds) == set(vms) and {event["operation"] for event in everything["events"]} == {"add"}
    vm = next(ref for ref, record in vms.items() if record["name_label"] == "xen1-vm1")
    assert adds[vm]["snapshot"] == api.VM.get_record(vm) and adds[vm]["timestamp"] == "0.0"
    counts = everything["valid_ref_counts"]
    assert counts["vm"] == len(vms) and counts["vbd"] == len(api.VBD.get_all()) and counts["session"] >= 1
    assert all(type(count) is int for count in counts.values()) and "message" not in counts
    assert re.fullmatch(r"\d{20},\d{20}", everything["token"])
    token = everything["token"]
    nothing = event_from(session, ["*"], token, 0.0)
    assert (nothing["events"], nothing["token"]) == ([], token)
    # a change: a mod with the record as it is now, for the class and for the object subscribed to
    api.VM.set_name_description(vm, "renamed by a client")
    changed = event_from(session, ["VM"], token, 0.0)
    assert [(e["class"], e["operation"], e["ref"]) for e in changed["events"]] == [("vm", "mod", vm)]
    assert changed["events"][0]["snapshot"]["name_description"] == "renamed by a client"
    assert int(changed["events"][0]["id"]) == int(changed["token"].split(",")[0]) > int(token.split(",")[0])
    assert event_from(session, [f"vm/{vm}"], token, 0.0)["events"] == changed["events"]
    assert event_from(session, ["vm/OpaqueRef:other", "host"], token, 0.0)["events"] == []
    # an object created and one deleted since the token; one created and deleted in between gives nothing
    token = changed["token"]
    task = api.task.create("first", "")
    gone = api.task.create("second", "")
    mid = event_from(session, ["task"], token, 0.0)
    assert {(e["operation"], e["ref"]) for e in mid["events"]} >= {("add", task), ("add", gone)}
    api.task.set_status(gone, "success")
    api.task.destroy(gone)
    ended = event_from(session, ["task"], mid["token"], 0.0)
    assert [(e["operation"], e["ref"], "snapshot" in e) for e in ended["events"]] == [("del", gone, False)]
    assert [e["ref"] for e in event_from(session, ["task"], token, 0.0)["events"]] == [task]
    api.task.set_status(task, "success")
    api.task.destroy(task)
    assert failure(getattr(api.event, "from"), ["*"], "garbage", 0.0) == ["EVENT_FROM_TOKEN_PARSE_FAILURE", "garbage"]


def test_event_from_waits_for_a_change_bounded_by_its_timeout(lab: XenLab, session: XenAPI.Session) -> None:
    api = session.xenapi
    vm = api.VM.get_by_name_label("xen1-vm2")[0]
    waiter = login(lab, "xen1")  # the waiting call has a connection of its own
    token = event_from(waiter, ["vm"], "", 0.0)["token"]
    start = lab.clock.monotonic()
    waiting = Waiting(lab, event_from, waiter, ["vm"], token, 60.0)
    api.host.get_servertime(api.host.get_all()[0])  # a read is no change
    api.task.set_status(api.task.create("unrelated", ""), "success")  # nor is a class not subscribed to
    assert waiting.thread.is_alive()
    api.VM.set_name_description(vm, "woken")
    answer = waiting.result()
    assert [(e["operation"], e["ref"]) for e in answer["events"]] == [("mod", vm)]
    assert lab.clock.monotonic() == start  # woken by the change, not by the clock
    # nothing happens: it answers nothing once its timeout has passed on the lab's clock, the token unchanged
    waiting = Waiting(lab, event_from, waiter, ["vm"], answer["token"], 5.0)
    drive(lab, lambda: not waiting.thread.is_alive(), what="the event call's timeout")
    assert waiting.result()["events"] == [] and waiting.result()["token"] == answer["token"]
    assert lab.clock.monotonic() - start >= 5.0
    # the session logged out (from another connection) while the call waits (raw XML-RPC: the SDK would log in
    # again and retry)
    raw = getattr(xmlrpc.client.ServerProxy(lab.url("xen1")).event, "from")
    waiting = Waiting(lab, raw, waiter._session, ["vm"], answer["token"], 60.0)
    assert xmlrpc.client.ServerProxy(lab.url("xen1")).session.logout(waiter._session)["Status"] == "Success"
    assert waiting.result() == {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", waiter._session]}


def test_event_register_next_unregister(lab: XenLab, session: XenAPI.Session) -> None:
    api = session.xenapi
    client = login(lab, "xen1")
    digest = hashlib.md5(client._session.encode()).hexdigest()
    assert failure(client.xenapi.event.next) == ["SESSION_NOT_REGISTERED", f"trackid={digest}"]
    client.xenapi.event.register(["vm"])
    vm = api.VM.get_by_name_label("xen2-vm1")[0]
    api.VM.set_name_description(vm, "seen by event.next")
    events = client.xenapi.event.next()
    assert [(e["class"], e["operation"], e["ref"]) for e in events] == [("vm", "mod", vm)]
    assert events[0]["snapshot"]["name_description"] == "seen by event.next"
    before = int(client.xenapi.event.get_current_id())
    token = client.xenapi.event.inject("VM", vm)
    assert int(token.split(",")[0]) == before and int(client.xenapi.event.get_current_id()) == before + 1
    assert failure(client.xenapi.event.inject, "VM", "OpaqueRef:nope") == ["HANDLE_INVALID", "VM", "OpaqueRef:nope"]
    assert [e["operation"] for e in event_from(session, ["vm"], token, 0.0)["events"]] == ["mod"]
    client.xenapi.event.unregister(["vm"])
    client.xenapi.session.logout()


def test_vm_clone_and_destroy_of_a_halted_vm(lab: XenLab, session: XenAPI.Session) -> None:
    api = session.xenapi
    vm = api.VM.get_by_name_label("xen2-vm2")[0]
    assert api.VM.get_power_state(vm) == "Running"
    assert failure(api.VM.clone, vm, "copy") == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    assert failure(api.VM.destroy, vm) == ["VM_BAD_POWER_STATE", vm, "halted, suspended", "running"]
    api.VM.hard_shutdown(vm)
    new = api.VM.clone(vm, "copy")
    record, original = api.VM.get_record(new), api.VM.get_record(vm)
    assert (record["name_label"], record["power_state"], record["resident_on"]) == ("copy", "Halted", NULL)
    assert (record["memory_static_max"], record["VCPUs_max"]) == (original["memory_static_max"],
                                                                  original["VCPUs_max"])
    assert record["uuid"] != original["uuid"] and record["parent"] == NULL and record["consoles"] == []
    assert record["metrics"] not in (NULL, original["metrics"]) and "start" in record["allowed_operations"]
    disks = {api.VBD.get_type(vbd): api.VBD.get_VDI(vbd) for vbd in record["VBDs"]}
    old_disks = {api.VBD.get_type(vbd): api.VBD.get_VDI(vbd) for vbd in original["VBDs"]}
    assert disks["Disk"] != old_disks["Disk"] and disks["CD"] == NULL
    assert api.VDI.get_SR(disks["Disk"]) == api.VDI.get_SR(old_disks["Disk"])
    assert api.VIF.get_MAC(record["VIFs"][0]) != api.VIF.get_MAC(original["VIFs"][0])
    assert api.VIF.get_network(record["VIFs"][0]) == api.VIF.get_network(original["VIFs"][0])
    api.VM.add_to_blocked_operations(new, "destroy", "kept by the tests")
    assert failure(api.VM.destroy, new) == ["OPERATION_BLOCKED", new, "kept by the tests"]
    api.VM.remove_from_blocked_operations(new, "destroy")
    api.VM.destroy(new)
    assert failure(api.VM.get_record, new) == ["HANDLE_INVALID", "VM", new]
    assert not any(api.VBD.get_VM(vbd) == new for vbd in api.VBD.get_all())
    assert not any(api.VIF.get_VM(vif) == new for vif in api.VIF.get_all())
    assert api.VDI.get_VBDs(disks["Disk"]) == []  # the disk stays, as with xapi
    # a default template is not destroyed
    api.VM.add_to_other_config(vm, "default_template", "true")
    api.VM.set_is_a_template(vm, True)
    assert failure(api.VM.destroy, vm) == ["VM_IS_TEMPLATE", vm, "destroy"]
    assert failure(api.VM.start, vm, False, False) == ["VM_IS_TEMPLATE", vm]
    api.VM.set_is_a_template(vm, False)
    api.VM.remove_from_other_config(vm, "default_template")
    api.VM.start(vm, False, False)


def test_vm_reboots_and_assert_operation_valid(lab: XenLab, session: XenAPI.Session) -> None:
    api = session.xenapi
    vm, disk, _, _ = devices(api, "xen1-vm1")
    api.VBD.unplug(disk)
    domid = int(api.VM.get_domid(vm))
    api.VM.clean_reboot(vm)
    assert api.VM.get_power_state(vm) == "Running" and int(api.VM.get_domid(vm)) != domid
    assert api.VBD.get_currently_attached(disk) is True
    api.VM.hard_reboot(vm)
    api.VM.assert_operation_valid(vm, "clean_shutdown")
    assert failure(api.VM.assert_operation_valid, vm, "start") == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    assert failure(api.VM.assert_operation_valid, vm, "fly") == ["FIELD_TYPE_ERROR", "op"]
    api.VM.hard_shutdown(vm)
    assert failure(api.VM.clean_reboot, vm) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert failure(api.VM.hard_reboot, vm) == ["VM_BAD_POWER_STATE", vm, "paused, running", "halted"]
    api.VM.start(vm, False, False)
    task = api.task.create("client", "")
    api.task.set_progress(task, 0.5)
    api.task.set_result(task, "<value>ok</value>")
    api.task.set_error_info(task, ["SOME_ERROR", "x"])
    assert (api.task.get_progress(task), api.task.get_result(task), api.task.get_error_info(task)) == (
        0.5, "<value>ok</value>", ["SOME_ERROR", "x"])
    api.task.set_status(task, "failure")
    api.task.destroy(task)


def test_vbd_and_vif_destroy_need_them_detached(session: XenAPI.Session) -> None:
    api = session.xenapi
    vm, disk, cd, vif = devices(api, "xen2-vm1")
    vdi = api.VBD.get_VDI(disk)
    assert failure(api.VBD.destroy, disk) == [
        "OPERATION_NOT_ALLOWED", f"VBD '{api.VBD.get_uuid(disk)}' still attached to '{api.VM.get_uuid(vm)}'"]
    assert failure(api.VIF.destroy, vif) == ["OPERATION_NOT_ALLOWED", "VIF currently attached to a running VM"]
    api.VBD.destroy(cd)  # an empty CD drive is not attached
    api.VBD.unplug(disk)
    api.VBD.destroy(disk)
    api.VIF.unplug(vif)
    api.VIF.destroy(vif)
    assert api.VM.get_VBDs(vm) == [] and api.VM.get_VIFs(vm) == []
    assert api.VDI.get_VBDs(vdi) == [] and failure(api.VBD.get_record, disk) == ["HANDLE_INVALID", "VBD", disk]
