"""Host maintenance in the lab XenAPI simulator, through the official SDK (calls_maintenance.py, calls_host.py):
host.disable(auto_enable) / enable, the evacuation plan (assert_can_evacuate, get_vms_which_prevent_evacuation) and
its errors, host.evacuate and VM.pool_migrate moving VMs with their memory, host.reboot / shutdown acting after
they return (evacuate, hard-stop what is left, down, back and re-enabled by xapi). Every lab runs on a ManualClock:
the test moves the lab's time. Migrations are instant (vm_migrate=0) except where a test looks at their time."""
from __future__ import annotations

import dataclasses
import http.client
import re
import urllib.parse

import XenAPI
import pytest

from support.wait import wait_for
from support.xenapi import FAST, advance_until, blocking, drive, events, failure, login

from stackops_lab.clock import ManualClock
from stackops_lab.xenapi import XenHostSpec, XenLab
from stackops_lab.xenapi.faults import faults_of
from stackops_lab.xenapi.update_file import UpdateFile

GiB = 1024 ** 3
INSTANT = dataclasses.replace(FAST, vm_migrate=0.0)
TIMED = dataclasses.replace(FAST, vm_migrate=0.5)


def pool_lab(count: int = 3, vms: int = 2, timings: object = INSTANT, **spec: object) -> XenLab:
    names = [f"xen{i + 1}" for i in range(count)]
    return XenLab(hosts=[XenHostSpec(n, **spec) for n in names], pools=[names],  # type: ignore[arg-type]
                  timings=timings, clock=ManualClock(), vms_per_host=vms)  # type: ignore[arg-type]


def host(session: XenAPI.Session, name: str) -> str:
    return session.xenapi.host.get_by_name_label(name)[0]


def guests_on(session: XenAPI.Session, ref: str) -> list[str]:
    return sorted(session.xenapi.VM.get_name_label(vm) for vm in session.xenapi.host.get_resident_VMs(ref)
                  if not session.xenapi.VM.get_is_control_domain(vm))


def free(session: XenAPI.Session, ref: str) -> int:
    return int(session.xenapi.host_metrics.get_memory_free(session.xenapi.host.get_metrics(ref)))


def vm(session: XenAPI.Session, name: str) -> str:
    return session.xenapi.VM.get_by_name_label(name)[0]


def vm_size(session: XenAPI.Session, ref: str) -> int:
    record = session.xenapi.VM.get_record(ref)
    return int(record["memory_dynamic_max"]) + int(record["memory_overhead"])


def upload(lab: XenLab, session: XenAPI.Session, content: bytes) -> str:
    """PUT an update file into a new VDI (/import_raw_vdi): the VDI ref from the task's result."""
    x = session.xenapi
    task = x.task.create("import update", "")
    query = {"session_id": session._session, "sr_id": x.pool.get_default_SR(x.pool.get_all()[0]), "task_id": task}
    connection = http.client.HTTPConnection(urllib.parse.urlsplit(lab.url("xen1")).netloc, timeout=30)
    connection.request("PUT", "/import_raw_vdi?" + urllib.parse.urlencode(query), body=content)
    assert connection.getresponse().status == 200
    connection.close()
    match = re.search(r"OpaqueRef:[^<]+", x.task.get_result(task))
    assert match, x.task.get_result(task)
    return match.group(0)


def enable_ha(session: XenAPI.Session) -> None:
    nfs = next(ref for ref, sr in session.xenapi.SR.get_all_records().items() if sr["shared"])
    session.xenapi.pool.enable_ha([nfs], {"timeout": "20"})


def test_evacuate_moves_every_vm_to_the_other_enabled_hosts_with_its_memory() -> None:
    with pool_lab() as lab:
        session = login(lab, "xen1")
        xen1, xen2, xen3 = (host(session, n) for n in ("xen1", "xen2", "xen3"))
        before = {ref: free(session, ref) for ref in (xen1, xen2, xen3)}
        sizes = {name: vm_size(session, vm(session, name)) for name in ("xen1-vm1", "xen1-vm2")}
        assert int(session.xenapi.host.compute_free_memory(xen1)) == before[xen1]
        session.xenapi.host.assert_can_evacuate(xen1)
        assert session.xenapi.host.get_vms_which_prevent_evacuation(xen1) == {}
        session.xenapi.host.evacuate(xen1)
        assert guests_on(session, xen1) == []
        assert session.xenapi.host.get_enabled(xen1) is True  # evacuate does not disable
        moved = {name: session.xenapi.VM.get_record(vm(session, name)) for name in sizes}
        assert {session.xenapi.host.get_name_label(r["resident_on"]) for r in moved.values()} == {"xen2", "xen3"}
        assert all(r["power_state"] == "Running" and "pool_migrate" in r["allowed_operations"] for r in moved.values())
        assert free(session, xen1) == before[xen1] + sum(sizes.values())
        assert free(session, xen2) + free(session, xen3) == before[xen2] + before[xen3] - sum(sizes.values())
        metrics = session.xenapi.VM_metrics.get_record(moved["xen1-vm1"]["metrics"])
        assert metrics["state"] == ["running"] and int(metrics["memory_actual"]) > 0
        counts = lab.vm_counts()
        assert counts["xen1-vm1"] == counts["xen1-vm2"] == {"migrations": 1, "stops": 0}
        assert counts["xen2-vm1"] == {"migrations": 0, "stops": 0}
        assert [e["reason"] for e in events(lab, "vm.migrated")] == ["host.evacuate"] * 2


def test_evacuation_plan_errors_are_raised_before_any_vm_moves() -> None:
    with pool_lab(2) as lab:
        session = login(lab, "xen1")
        xen1, xen2 = host(session, "xen1"), host(session, "xen2")
        session.xenapi.host.disable(xen2)
        vms = sorted(vm(session, n) for n in ("xen1-vm1", "xen1-vm2"))
        assert session.xenapi.host.get_vms_which_prevent_evacuation(xen1) == {
            ref: ["NO_HOSTS_AVAILABLE", ref] for ref in vms}
        (message,) = failure(session.xenapi.host.assert_can_evacuate, xen1)[1:]
        assert sorted(message.split("|")) == [f"NO_HOSTS_AVAILABLE,{ref}" for ref in vms]
        assert failure(session.xenapi.host.evacuate, xen1)[0] == "NO_HOSTS_AVAILABLE"
        assert guests_on(session, xen1) == ["xen1-vm1", "xen1-vm2"]
        session.xenapi.host.enable(xen2)
        net = next(ref for ref, n in session.xenapi.network.get_all_records().items() if n["bridge"] == "xenbr1")
        pif = next(ref for ref in session.xenapi.network.get_PIFs(net) if session.xenapi.PIF.get_host(ref) == xen2)
        assert failure(session.xenapi.host.evacuate, xen1, net, "0") == ["INTERFACE_HAS_NO_IP", pif]
        assert guests_on(session, xen1) == ["xen1-vm1", "xen1-vm2"]
        assert all(c["migrations"] == 0 for c in lab.vm_counts().values())
        lab.kill("xen2")
        advance_until(lab, lambda: not session.xenapi.host_metrics.get_live(session.xenapi.host.get_metrics(xen2)),
                      what="xen2 not live")
        assert failure(session.xenapi.host.assert_can_evacuate, xen1) == [
            "CANNOT_EVACUATE_HOST", "|".join(["HOST_NOT_LIVE"] * 2)]


def test_a_vm_that_fits_nowhere_prevents_evacuation() -> None:
    with pool_lab(2, vms=2, memory=8 * GiB) as lab:  # xen, dom0 and two 2 GiB VMs leave 895 MiB free
        session = login(lab, "xen1")
        xen1, xen2 = host(session, "xen1"), host(session, "xen2")
        vms = [vm(session, n) for n in ("xen1-vm1", "xen1-vm2")]
        available = free(session, xen2)
        assert available == 8 * GiB - 1120 * 2 ** 20 - 3 * (2 * GiB + 11 * 2 ** 20) < vm_size(session, vms[0])
        assert session.xenapi.host.get_vms_which_prevent_evacuation(xen1) == {
            ref: ["HOST_NOT_ENOUGH_FREE_MEMORY", ref] for ref in vms}
        assert failure(session.xenapi.host.evacuate, xen1)[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
        assert failure(session.xenapi.VM.pool_migrate, vms[0], xen2, {}) == [
            "HOST_NOT_ENOUGH_FREE_MEMORY", str(vm_size(session, vms[0])), str(available)]
        assert guests_on(session, xen1) == ["xen1-vm1", "xen1-vm2"]


def test_pool_migrate_checks_the_vm_and_its_destination() -> None:
    with pool_lab(2, vms=1) as lab:
        session = login(lab, "xen1")
        xen1, xen2 = host(session, "xen1"), host(session, "xen2")
        one = vm(session, "xen1-vm1")
        session.xenapi.host.disable(xen2)
        assert failure(session.xenapi.VM.pool_migrate, one, xen2, {"live": "true"}) == ["HOST_DISABLED", xen2]
        session.xenapi.host.enable(xen2)
        session.xenapi.VM.pool_migrate(one, xen2, {"live": "true"})
        assert session.xenapi.VM.get_resident_on(one) == xen2
        session.xenapi.VM.pool_migrate(one, xen2, {})  # a localhost migration
        session.xenapi.VM.hard_shutdown(one)
        assert failure(session.xenapi.VM.pool_migrate, one, xen1, {}) == ["VM_BAD_POWER_STATE", one, "running",
                                                                         "halted"]
        assert lab.vm_counts()["xen1-vm1"] == {"migrations": 2, "stops": 1}


def test_with_ha_unprotected_vms_prevent_evacuation_and_the_plan_is_kept() -> None:
    with pool_lab(3, vm_capacity=2) as lab:
        session = login(lab, "xen1")
        blocking(lab, enable_ha, session)
        xen1 = host(session, "xen1")
        unprotected = vm(session, "xen1-vm2")  # every other VM has ha_restart_priority "restart"
        assert session.xenapi.host.get_vms_which_prevent_evacuation(xen1) == {
            unprotected: ["HOST_EVACUATE_VM_NOT_HA_PROTECTED", unprotected]}
        assert failure(session.xenapi.host.evacuate, xen1) == ["HOST_EVACUATE_VM_NOT_HA_PROTECTED", unprotected]
        pool = session.xenapi.pool.get_all()[0]
        session.xenapi.pool.set_ha_host_failures_to_tolerate(pool, "1")
        assert failure(session.xenapi.host.evacuate, xen1) == ["HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN"]
        assert failure(session.xenapi.host.disable, xen1) == ["HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN"]
        assert guests_on(session, xen1) == ["xen1-vm1", "xen1-vm2"]


def test_reboot_of_an_enabled_host_is_refused() -> None:
    with pool_lab(2) as lab:
        session = login(lab, "xen1")
        xen2 = host(session, "xen2")
        assert failure(session.xenapi.host.reboot, xen2) == ["HOST_NOT_DISABLED"]
        assert failure(session.xenapi.host.shutdown, xen2) == ["HOST_NOT_DISABLED"]
        lab.scheduler.advance(FAST.shutdown_delay + FAST.tick)
        assert lab.status("xen2")["power"] == "up" and not events(lab, "host.reboot")


def test_reboot_of_a_disabled_host_evacuates_it_first_and_xapi_enables_it_again() -> None:
    with pool_lab(3) as lab:
        session = login(lab, "xen1")
        xen2 = host(session, "xen2")
        session.xenapi.host.disable(xen2)
        session.xenapi.host.reboot(xen2)
        assert lab.status("xen2")["power"] == "up" and guests_on(session, xen2) == ["xen2-vm1", "xen2-vm2"]
        advance_until(lab, lambda: events(lab, "host.reboot"), what="xen2 goes down")
        assert lab.status("xen2")["power"] == "down"
        with pytest.raises(ConnectionRefusedError):
            XenAPI.Session(lab.url("xen2")).xenapi.login_with_password("root", lab.password)
        assert guests_on(session, xen2) == []
        assert failure(session.xenapi.host.enable, xen2)[0] in ("HOST_OFFLINE", "HOST_DISABLED_UNTIL_REBOOT")
        (down,) = events(lab, "host.reboot")
        advance_until(lab, lambda: session.xenapi.host.get_enabled(xen2), what="xen2 back and enabled")
        (booted,) = events(lab, "host.booted")
        assert booted["t"] - down["t"] >= FAST.reboot_down + FAST.host_boot - 1e-6
        assert lab.status("xen2")["serving"] is True
        counts = lab.vm_counts()
        assert all(c["stops"] == 0 for c in counts.values())
        assert counts["xen2-vm1"]["migrations"] == counts["xen2-vm2"]["migrations"] == 1
        assert [e["reason"] for e in events(lab, "vm.migrated")] == ["host.reboot"] * 2


def test_reboot_clears_an_applied_updates_reboot_need_and_auto_enable_false_keeps_the_host_disabled() -> None:
    with pool_lab(2) as lab:
        session = login(lab, "xen1")
        xen2 = host(session, "xen2")
        update = UpdateFile("XS82E200", version="1.0", after_apply_guidance=["restartHost"])
        ref = session.xenapi.pool_update.introduce(upload(lab, session, update.to_bytes()))
        session.xenapi.pool_update.apply(ref, xen2)
        assert session.xenapi.host.get_updates_requiring_reboot(xen2) == [ref]
        session.xenapi.host.disable(xen2, False)
        session.xenapi.host.reboot(xen2)
        advance_until(lab, lambda: events(lab, "host.booted"), what="xen2 rebooted")
        advance_until(lab, lambda: lab.status("xen2")["serving"], what="xen2 serving")
        assert session.xenapi.host.get_updates_requiring_reboot(xen2) == []
        assert session.xenapi.host.get_enabled(xen2) is False  # auto_enable=false survives the reboot
        session.xenapi.host.enable(xen2)
        assert session.xenapi.host.get_enabled(xen2) is True


def test_shutdown_hard_stops_what_cannot_leave_and_the_host_stays_down() -> None:
    with pool_lab(2, vms=1) as lab:
        session = login(lab, "xen1")
        xen1, xen2 = host(session, "xen1"), host(session, "xen2")
        session.xenapi.host.disable(xen2)
        session.xenapi.host.disable(xen1)  # nowhere to go: host.evacuate fails, every VM is stopped
        session.xenapi.host.shutdown(xen2)
        advance_until(lab, lambda: events(lab, "host.shutdown"), what="xen2 shut down")
        assert lab.vm_counts()["xen2-vm1"] == {"migrations": 0, "stops": 1}
        assert session.xenapi.VM.get_power_state(vm(session, "xen2-vm1")) == "Halted"
        lab.scheduler.advance(FAST.reboot_down + FAST.host_boot + 1.0)
        assert lab.status("xen2")["power"] == "down"
        lab.revive("xen2")
        advance_until(lab, lambda: lab.status("xen2")["serving"], what="xen2 back")
        session.xenapi.host.enable(xen1)
        assert failure(session.xenapi.host.reboot, xen2)[0] == "HOST_NOT_DISABLED"  # xapi enabled it at boot


def test_reboot_with_ha_excludes_the_host_and_needs_the_statefile() -> None:
    with pool_lab(3) as lab:
        session = login(lab, "xen1")
        blocking(lab, enable_ha, session)
        xen3 = host(session, "xen3")
        for name in ("xen3-vm2",):  # an unprotected VM cannot be evacuated with HA on
            session.xenapi.VM.set_ha_restart_priority(vm(session, name), "restart")
        session.xenapi.host.disable(xen3)
        faults_of(lab).statefile_inaccessible.add("xen3")
        assert failure(session.xenapi.host.reboot, xen3) == ["HA_LOST_STATEFILE"]
        faults_of(lab).statefile_inaccessible.discard("xen3")
        session.xenapi.host.reboot(xen3)
        advance_until(lab, lambda: events(lab, "host.reboot"), what="xen3 goes down")
        assert events(lab, "ha.host_excluded") == [{**events(lab, "ha.host_excluded")[0], "host": "xen3"}]
        advance_until(lab, lambda: session.xenapi.host.get_enabled(xen3), what="xen3 back and enabled")
        assert not events(lab, "host.fenced") and not events(lab, "host.dead")
        assert all(c["stops"] == 0 for c in lab.vm_counts().values())
        assert lab.pool_of("xen1")["ha_armed"]["xen3"] is True


def test_evacuation_moves_vms_in_batches_each_taking_a_migration_time() -> None:
    with pool_lab(3, vms=3, timings=TIMED) as lab:
        session = login(lab, "xen1")
        xen1 = host(session, "xen1")
        task = session.xenapi.Async.host.evacuate(xen1, "OpaqueRef:NULL", "2")
        wait_for(lab.waiting_calls, timeout=30, what="the first batch under way")  # a guard, not a bound
        assert session.xenapi.host.get_current_operations(xen1) == {task: "evacuate"}
        migrating = [ref for ref in session.xenapi.host.get_resident_VMs(xen1)
                     if session.xenapi.VM.get_current_operations(ref)]
        assert len(migrating) == 2
        assert failure(session.xenapi.VM.pool_migrate, vm(session, "xen2-vm1"), xen1, {}) == [
            "OTHER_OPERATION_IN_PROGRESS", "host", xen1, "evacuate", task]
        drive(lab, lambda: session.xenapi.task.get_status(task) != "pending", what="evacuation")
        assert session.xenapi.task.get_status(task) == "success" and guests_on(session, xen1) == []
        assert session.xenapi.host.get_current_operations(xen1) == {}
        times = [e["t"] for e in events(lab, "vm.migrated")]
        assert len(times) == 3 and times[0] == times[1] and times[2] - times[0] == pytest.approx(TIMED.vm_migrate, abs=1e-3)
        (done,) = events(lab, "host.evacuated")
        assert done["batch"] == 2 and done["t"] == times[2]
        one = vm(session, "xen1-vm1")
        target = next(h for h in (host(session, "xen2"), host(session, "xen3"))
                      if h != session.xenapi.VM.get_resident_on(one))
        blocking(lab, session.xenapi.VM.pool_migrate, one, target, {})
        assert session.xenapi.VM.get_resident_on(one) == target
        assert lab.vm_counts()["xen1-vm1"] == {"migrations": 2, "stops": 0}


def test_a_reboot_goes_down_once_its_vms_have_migrated() -> None:
    with pool_lab(2, vms=2, timings=TIMED) as lab:
        session = login(lab, "xen1")
        xen2 = host(session, "xen2")
        session.xenapi.host.disable(xen2)
        session.xenapi.host.reboot(xen2)
        (shutdown_task,) = session.xenapi.host.get_current_operations(xen2)
        assert session.xenapi.host.get_current_operations(xen2) == {shutdown_task: "shutdown"}
        assert failure(session.xenapi.host.reboot, xen2) == [  # xapi files both under "shutdown"
            "OTHER_OPERATION_IN_PROGRESS", "host", xen2, "shutdown", shutdown_task]
        assert "reboot" not in session.xenapi.host.get_allowed_operations(xen2)
        lab.scheduler.advance(TIMED.shutdown_delay + TIMED.vm_migrate / 2)  # the migrations are under way
        moving = vm(session, "xen2-vm1")
        assert list(session.xenapi.VM.get_current_operations(moving).values()) == ["pool_migrate"]
        assert session.xenapi.VM.get_allowed_operations(moving) == []
        target = host(session, "xen1")
        assert failure(session.xenapi.VM.pool_migrate, moving, target, {})[:2] == ["OTHER_OPERATION_IN_PROGRESS", "VM"]
        (down,) = advance_until(lab, lambda: events(lab, "host.reboot"), what="xen2 goes down")
        (asked,) = events(lab, "host.rebooting")
        assert down["t"] - asked["t"] >= TIMED.shutdown_delay + TIMED.vm_migrate - 1e-6  # one batch of two
        assert all(e["t"] <= down["t"] for e in events(lab, "vm.migrated"))
        assert session.xenapi.VM.get_current_operations(moving) == {}
        advance_until(lab, lambda: session.xenapi.host.get_enabled(xen2), what="xen2 back and enabled")
        assert all(c["stops"] == 0 for c in lab.vm_counts().values())


def test_the_master_reboots_like_any_host_and_comes_back_master() -> None:
    with pool_lab(3) as lab:
        session = login(lab, "xen1")
        xen1 = host(session, "xen1")
        session.xenapi.host.disable(xen1)
        session.xenapi.host.evacuate(xen1)
        session.xenapi.host.reboot(xen1)
        advance_until(lab, lambda: events(lab, "host.reboot"), what="the master goes down")
        assert failure(login, lab, "xen2") == ["HOST_IS_SLAVE", lab.address("xen1")]  # supporters wait for it
        session = advance_until(lab, lambda: login(lab, "xen1"), what="the master back")
        assert session.xenapi.host.get_enabled(xen1) is True and lab.pool_of("xen2")["master"] == "xen1"
        assert guests_on(session, xen1) == [] and all(c["stops"] == 0 for c in lab.vm_counts().values())
