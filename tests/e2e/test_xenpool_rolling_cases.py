"""Rolling maintenance of a XenPool, case by case, driven in process against the lab XenAPI (and the lab CloudStack
where the case needs it): a rolling restart by `restartAfter`, HA left off when it was off, a 6.x pool patched
through pool_patch, an operator killed after every recorded step (and right after `host.reboot`), a host that cannot
be emptied, a closed maintenance window, `stackops plan` listing the roll, the webhook notices. What happened is read
from the simulators' audit logs and VM counters, never from timings."""
from __future__ import annotations

import dataclasses
import datetime
import io
import time
from pathlib import Path
from typing import Any

import pytest
import XenAPI
import yaml
from pydantic import SecretStr
from support.webhook import NoticeReceiver
from support.xenpool import CLOUDSTACK, FAST, SECRET, Driver, Killed, condition, lab, ready, roll, spec_for

from stackops.plan import plan_files
from stackops.reconcile.base import ReconcileError
from stackops.reconcile.xenpool import XenPoolReconciler
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.xenapi import XenHostSpec, XenLab
from stackops_lab.xenapi.update_file import UpdateFile, UpdateServer

NAMES = ["xen1", "xen2", "xen3", "xen4"]
THREE = ["xen1", "xen2", "xen3"]
CLUSTER = "lab-xen-pool"
TIMINGS = Timings(host_connect=0.3, host_maintenance=0.2, job=0.05, vm_migrate=0.1, ping_timeout=0.4, xen_ping=0.1)


# ---------------------------------------------------------------------------------------------------- helpers


def now_utc(offset: float = 0.0) -> str:
    """RFC 3339 with microseconds: a restartAfter between two boots a second apart is still between them."""
    moment = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset)
    return moment.isoformat().replace("+00:00", "Z")


def events(xen: XenLab, name: str, since: int = 0) -> list[str]:
    """The hosts of the xen audit records `name`, in order (from record number `since`)."""
    return [e.get("host", "") for e in xen.audit()[since:] if e["event"] == name]


def reboots(xen: XenLab, names: list[str], since: int = 0) -> dict[str, int]:
    counted = {n: 0 for n in names}
    for host in events(xen, "host.reboot", since):
        counted[host] += 1
    return counted


def stops(xen: XenLab) -> dict[str, int]:
    return {vm: c["stops"] for vm, c in xen.vm_counts().items() if c["stops"]}


def session(xen: XenLab) -> XenAPI.Session:
    found = XenAPI.Session(xen.url("xen1"))
    found.xenapi.login_with_password(xen.username, xen.password, "2.0", "test")
    return found


def xen_hosts(xen: XenLab) -> dict[str, bool]:
    """name → enabled."""
    return {h["name_label"]: h["enabled"] for h in session(xen).xenapi.host.get_all_records().values()}


def cluster_hosts(sim: CloudStackSimulator) -> dict[str, tuple[str, str]]:
    with sim.state.lock:
        return {h.name: (h.state, h.resource_state) for h in sim.state.values("host")
                if h.cluster is not None and h.cluster.name == CLUSTER}


def cluster_state(sim: CloudStackSimulator) -> str:
    with sim.state.lock:
        return next(c for c in sim.state.values("cluster") if c.name == CLUSTER).managed_state


def with_cloudstack(xen: XenLab, names: list[str], **more: Any) -> Any:
    return spec_for(xen, names, cloudstack={"connection": {"secretRef": {"name": CLOUDSTACK}}, "zone": "lab-zone-1",
                                            "pod": "lab-zone-1-pod-1", "cluster": CLUSTER}, **more)


def served(server: UpdateServer, *files: UpdateFile) -> list[dict[str, str]]:
    listed = []
    for update in files:
        url, sha256 = server.add(update)
        listed.append({"name": update.name_label, "url": url, "sha256": sha256})
    return listed


def test_a_rolling_restart_reboots_each_host_once_master_first_and_no_vm_stops() -> None:
    with lab(NAMES, [NAMES]) as xen:
        driver = Driver(xen, spec_for(xen, NAMES))
        assert ready(driver.converge(passes=10, pause=0.5))
        assert xen.pool_of("xen1")["ha_enabled"]
        before = len(xen.audit())
        driver.spec = spec_for(xen, NAMES, maintenance={"restartAfter": now_utc(), "hostTimeoutSeconds": 120})
        outcome = roll(driver)

        assert events(xen, "host.reboot", before) == NAMES, "each host once, the master (xen1) first, spec order"
        assert stops(xen) == {}, "every VM migrated away before its host rebooted"
        assert all(c["migrations"] >= 1 for c in xen.vm_counts().values()), xen.vm_counts()
        assert events(xen, "ha.disabled", before) == [""] and events(xen, "ha.enabled", before) == [""]
        pool = xen.pool_of("xen1")
        assert pool["ha_enabled"] and pool["ha_configuration"]["timeout"] == "180"
        assert xen_hosts(xen) == {n: True for n in NAMES}
        record = driver.status["maintenance"]
        assert record["phase"] == "Completed" and record["haWasEnabled"]
        assert [(h["name"], h["step"], h["reboot"]) for h in record["hosts"]] == [(n, "Done", True) for n in NAMES]
        assert driver.status["maintenanceProgress"] == "Completed"
        assert condition(outcome, "HAConfigured").status == "True"

        again = driver.run()
        assert ready(again) and again.applied == [] and again.drift == [], "every host booted after restartAfter"
        assert reboots(xen, NAMES, before) == {n: 1 for n in NAMES}

        later = len(xen.audit())
        driver.spec = spec_for(xen, NAMES, maintenance={"restartAfter": now_utc(3600)})
        waiting = driver.run()
        assert ready(waiting) and waiting.applied == [] and waiting.drift == []
        assert "has not come yet" in condition(waiting, "Ready").message
        assert waiting.requeue_after is not None and waiting.requeue_after <= 3600
        touched = [e for e in xen.audit()[later:] if e["event"] in ("host.reboot", "host.disabled", "ha.disabled")]
        assert touched == []


# ---------------------------------------------------------------------------------------------------- b. HA off


def test_ha_off_before_the_roll_stays_off_after_it() -> None:
    with lab(NAMES, [NAMES]) as xen:
        spec = spec_for(xen, NAMES, ha={"enabled": False})
        driver = Driver(xen, spec)
        assert ready(driver.converge(passes=10, pause=0.5))
        assert not xen.pool_of("xen1")["ha_enabled"]
        before = len(xen.audit())
        driver.spec = spec_for(xen, NAMES, ha={"enabled": False},
                               maintenance={"restartAfter": now_utc(), "hostTimeoutSeconds": 120})
        roll(driver)
        assert reboots(xen, NAMES, before) == {n: 1 for n in NAMES}
        ha = [e["event"] for e in xen.audit()[before:] if e["event"].startswith("ha.enable") or
              e["event"] == "ha.disabled"]
        assert ha == [], "HA was off: the roll neither disabled nor enabled it"
        assert not xen.pool_of("xen1")["ha_enabled"]
        assert driver.status["maintenance"]["haWasEnabled"] is False
        assert stops(xen) == {}


# ---------------------------------------------------------------------------------------------------- c. 6.x pool


def test_a_6x_pool_is_patched_through_pool_patch() -> None:
    hosts = [XenHostSpec(n, product_version="6.5.0", platform_version="1.9.0", api_version=(2, 4)) for n in THREE]
    with XenLab(hosts=hosts, pools=[THREE], timings=FAST, vms_per_host=1) as xen, UpdateServer() as server:
        driver = Driver(xen, spec_for(xen, THREE))
        assert ready(driver.converge(passes=10, pause=0.5))
        files = [UpdateFile("XS65ESP1", after_apply_guidance=["restartHost"]),
                 UpdateFile("XS65ESP1005", after_apply_guidance=["restartXAPI"], requires=["XS65ESP1"])]
        before = len(xen.audit())
        driver.spec = spec_for(xen, THREE, maintenance={"updates": served(server, *files), "hostTimeoutSeconds": 120})
        roll(driver)

        uploaded = [e.get("name") for e in xen.audit()[before:] if e["event"] == "pool_patch.upload"]
        assert uploaded == ["XS65ESP1", "XS65ESP1005"]
        applied = [e.get("name") for e in xen.audit()[before:] if e["event"] == "pool_patch.apply"]
        assert applied == ["XS65ESP1", "XS65ESP1005"] * 3, "each host in turn, in spec order"
        assert [e["event"] for e in xen.audit()[before:] if e["event"].startswith("pool_update.")] == []
        assert events(xen, "host.reboot", before) == THREE
        x = session(xen).xenapi
        patches = {r: p["name_label"] for r, p in x.pool_patch.get_all_records().items()}
        hosts_of = {x.host.get_name_label(r["host"]): [] for r in x.host_patch.get_all_records().values()}
        for record in x.host_patch.get_all_records().values():
            hosts_of[x.host.get_name_label(record["host"])].append(patches[record["pool_patch"]])
        assert {h: sorted(p) for h, p in hosts_of.items()} == {n: ["XS65ESP1", "XS65ESP1005"] for n in THREE}
        assert stops(xen) == {} and xen.pool_of("xen1")["ha_enabled"]
        again = driver.run()
        assert ready(again) and again.applied == [] and again.drift == []


# ---------------------------------------------------------------------------------------------------- d. crashes


class CrashingDriver(Driver):
    """Dies right after status records `step` for each host (the step written, not taken), or with `step`
    "start" right after the roll itself is first recorded; with `after_reboot`, right after host.reboot returned
    (the lab's audit has host.rebooting) and before anything else is recorded. Each death: a fresh reconciler."""

    def __init__(self, *args: Any, step: str = "", after_reboot: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.step, self.after_reboot = step, after_reboot
        self.seen: set[tuple[str, str]] = set()
        self.deaths: list[str] = []
        self.xen: XenLab | None = None
        self.rebooting = 0

    def context(self) -> Any:
        ctx = super().context()
        original = ctx.checkpoint

        async def checkpoint(fields: dict[str, Any]) -> None:
            await original(fields)
            record = fields.get("maintenance")
            if not record or not self.step or record.get("phase") != "Rolling":
                return
            if self.step == "start":
                if ("start", "") not in self.seen:
                    self.seen.add(("start", ""))
                    self.die("the roll recorded")
                return
            for host in record.get("hosts", []):
                key = (host["name"], host["step"])
                if host["step"] == self.step and key not in self.seen:
                    self.seen.add(key)
                    self.die(f"{host['name']} {host['step']} recorded")

        def event(*e: Any) -> None:
            self.events.append(e)
            if self.after_reboot and self.xen is not None:
                count = len(events(self.xen, "host.rebooting"))
                if count > self.rebooting:
                    self.rebooting = count
                    self.die(f"host.rebooting {events(self.xen, 'host.rebooting')[-1]}")

        ctx.checkpoint = checkpoint
        ctx.event = event
        return ctx

    def die(self, why: str) -> None:
        self.deaths.append(why)
        raise Killed(why)

    def run(self) -> Any:
        try:
            return super().run()
        except Killed:
            self.reconciler = XenPoolReconciler(change_timeout=30, poll_seconds=0.1)  # a new process
            return self.run()


def registered_pool(xen: XenLab, sim: CloudStackSimulator, driver: Driver) -> None:
    roll(driver)
    with sim.state.lock:
        ids = {h.name: h.uuid for h in sim.state.values("host") if h.cluster and h.cluster.name == CLUSTER}
    for name, host_id in ids.items():
        sim.add_user_vm(host_id, f"tenant-{name}", memory=512)


def assert_rolled_once_and_serving(xen: XenLab, sim: CloudStackSimulator, driver: Driver, names: list[str],
                                   since: int) -> None:
    assert reboots(xen, names, since) == {n: 1 for n in names}, xen.audit()[since:]
    assert events(xen, "host.reboot", since)[0] == "xen1", "the master first"
    kinds = [e["event"] for e in xen.audit()[since:]]
    touched = [i for i, k in enumerate(kinds) if k in ("host.disabled", "host.reboot", "pool_update.apply")]
    assert kinds.index("ha.disabled") < touched[0] and touched[-1] < len(kinds) - 1 - kinds[::-1].index("ha.enabled"), \
        "every host touched with HA off"
    assert stops(xen) == {}
    assert all(c.get("stops", 0) == 0 and c.get("restarts", 0) == 0 for c in sim.vm_counts().values())
    pool = xen.pool_of("xen1")
    assert pool["ha_enabled"] and pool["ha_configuration"]["timeout"] == "180", "HA as recorded"
    assert xen_hosts(xen) == {n: True for n in names}, "nothing left disabled"
    assert cluster_hosts(sim) == {n: ("Up", "Enabled") for n in names}
    assert cluster_state(sim) == "Managed"
    assert driver.status["maintenance"]["phase"] == "Completed"


STEPS = ["start", "Draining", "Evacuating", "Updating", "Rebooting", "Returning", "Done"]


@pytest.mark.parametrize("step", STEPS)
def test_an_operator_killed_after_any_recorded_step_finishes_the_roll(step: str) -> None:
    with lab(THREE, [THREE]) as xen, UpdateServer() as server, \
            CloudStackSimulator(fleet=Fleet(zones=1, routers=0, redundant_pairs=0), timings=TIMINGS) as sim:
        driver = CrashingDriver(xen, with_cloudstack(xen, THREE), cloudstack=sim)
        registered_pool(xen, sim, driver)
        since = len(xen.audit())
        update = UpdateFile("XS82E040", after_apply_guidance=["restartHost"])
        driver.spec = with_cloudstack(xen, THREE, maintenance={"updates": served(server, update),
                                                               "hostTimeoutSeconds": 120})
        driver.step = step
        roll(driver, passes=60)
        expected = 1 if step == "start" else len(THREE)
        assert len(driver.deaths) == expected, driver.deaths
        assert_rolled_once_and_serving(xen, sim, driver, THREE, since)
        applied = [e.get("host") for e in xen.audit()[since:] if e["event"] == "pool_update.apply"]
        assert len(applied) == len(THREE), "each host updated once"
        assert [e["managedstate"] for e in sim.audit() if e["event"] == "cluster.updated"] == ["Unmanaged", "Managed"]


def test_an_operator_killed_right_after_host_reboot_does_not_reboot_the_host_again() -> None:
    with lab(THREE, [THREE]) as xen, \
            CloudStackSimulator(fleet=Fleet(zones=1, routers=0, redundant_pairs=0), timings=TIMINGS) as sim:
        driver = CrashingDriver(xen, with_cloudstack(xen, THREE), cloudstack=sim, after_reboot=True)
        driver.xen = xen
        registered_pool(xen, sim, driver)
        since = len(xen.audit())
        driver.rebooting = len(events(xen, "host.rebooting"))
        driver.spec = with_cloudstack(xen, THREE, maintenance={"restartAfter": now_utc(), "hostTimeoutSeconds": 120})
        roll(driver, passes=60)
        assert driver.deaths == [f"host.rebooting {n}" for n in THREE], driver.deaths
        assert events(xen, "host.rebooting", since) == THREE, "host.reboot was never called twice"
        assert_rolled_once_and_serving(xen, sim, driver, THREE, since)


def test_an_operator_killed_while_a_host_is_being_evacuated_waits_for_that_evacuation(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed right after xapi started the first host.evacuate (xen1's, the master's turn; Async.host.evacuate
    answered): migrations take 3 s in this lab, so the new operator finds the evacuation under way, where xapi
    refuses assert_can_evacuate and another evacuate (OTHER_OPERATION_IN_PROGRESS). It waits, and the roll ends."""
    from stackops.drivers.xenapi import PoolSession

    original = PoolSession.task
    killed: list[str] = []

    async def task(self: PoolSession, name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "host.evacuate" and not killed:
            await self.call(f"Async.{name}", *args)
            killed.append(name)
            raise Killed("host.evacuate under way")  # the process dies: no task.destroy, nothing else
        return await original(self, name, *args, **kwargs)

    monkeypatch.setattr(PoolSession, "task", task)
    timings = dataclasses.replace(FAST, vm_migrate=3.0)
    with XenLab(hosts=[XenHostSpec(n) for n in NAMES], pools=[NAMES], timings=timings, vms_per_host=1) as xen:
        driver = CrashingDriver(xen, spec_for(xen, NAMES))
        assert ready(driver.converge(passes=10, pause=0.5))
        since = len(xen.audit())
        driver.spec = spec_for(xen, NAMES, maintenance={"restartAfter": now_utc(), "hostTimeoutSeconds": 120})
        roll(driver, passes=60)
        assert killed == ["host.evacuate"], driver.events
        evacuated = [e["vms"] for e in xen.audit()[since:] if e["event"] == "host.evacuated" and e["host"] == "xen1"]
        assert evacuated == [1, 0], "the first evacuation moved the VM; the resumed one found xen1 empty"
        assert reboots(xen, NAMES, since) == {n: 1 for n in NAMES}
        assert stops(xen) == {} and xen.pool_of("xen1")["ha_enabled"]
        assert driver.status["maintenance"]["phase"] == "Completed"


# ---------------------------------------------------------------------------------------------------- e. failure


def block_migration(xen: XenLab, host: str, blocked: bool = True) -> None:
    """`xe vm-param-set blocked-operations:pool_migrate=…` on the guest VMs of `host`: xapi refuses to move them."""
    x = session(xen).xenapi
    host_ref = next(r for r, h in x.host.get_all_records().items() if h["name_label"] == host)
    for ref, vm in x.VM.get_all_records().items():
        if vm["resident_on"] == host_ref and not vm["is_control_domain"]:
            if blocked:
                x.VM.add_to_blocked_operations(ref, "pool_migrate", "pinned by its owner")
            else:
                x.VM.remove_from_blocked_operations(ref, "pool_migrate")


@pytest.mark.parametrize("stuck", ["xen3", "xen1"])
def test_a_host_that_cannot_be_emptied_stops_the_roll_with_the_pool_serving(stuck: str) -> None:
    """xen3: a supporter after two done; xen1: the master, whose turn set the cluster Unmanaged."""
    with lab(NAMES, [NAMES]) as xen, \
            CloudStackSimulator(fleet=Fleet(zones=1, routers=0, redundant_pairs=0), timings=TIMINGS) as sim:
        driver = Driver(xen, with_cloudstack(xen, NAMES), cloudstack=sim)
        registered_pool(xen, sim, driver)
        block_migration(xen, stuck)
        since = len(xen.audit())
        driver.spec = with_cloudstack(xen, NAMES, maintenance={"restartAfter": now_utc(), "hostTimeoutSeconds": 120})
        with pytest.raises(ReconcileError) as raised:
            roll(driver)
        assert raised.value.reason == "CANNOT_EVACUATE_HOST" and not raised.value.retry, raised.value
        assert stuck in str(raised.value) and "Evacuating" in str(raised.value), raised.value

        before = NAMES[:NAMES.index(stuck)]
        record = driver.status["maintenance"]
        assert record["phase"] == "Failed" and record["reason"] == "CANNOT_EVACUATE_HOST"
        assert f"host {stuck}" in record["message"], record["message"]
        assert [(h["name"], h["step"]) for h in record["hosts"]] == [
            (n, "Done" if n in before else "Evacuating" if n == stuck else "Pending") for n in NAMES]
        assert events(xen, "host.reboot", since) == before, "the stuck host and those after it were not rebooted"
        assert stops(xen) == {}
        assert xen_hosts(xen) == {n: True for n in NAMES}, "the stuck host enabled again"
        # its maintenance cancelled (Up again once CloudStack reconnects the hosts of a cluster Managed again)
        assert {n: r for n, (_, r) in cluster_hosts(sim).items()} == {n: "Enabled" for n in NAMES}
        assert cluster_state(sim) == "Managed"
        assert [e["managedstate"] for e in sim.audit() if e["event"] == "cluster.updated"] == ["Unmanaged", "Managed"]
        pool = xen.pool_of("xen1")
        assert pool["ha_enabled"] and pool["ha_configuration"]["timeout"] == "180", "HA restored as recorded"

        held = len(xen.audit())
        stalled = driver.run()
        assert condition(stalled, "Stalled").status == "True", stalled.conditions
        assert condition(stalled, "Stalled").reason == "CANNOT_EVACUATE_HOST"
        assert stuck in condition(stalled, "Stalled").message
        assert [e for e in xen.audit()[held:] if e["event"] in ("host.disabled", "host.reboot", "ha.disabled")] == []

        block_migration(xen, stuck, blocked=False)
        driver.generation = 2  # the user edits the spec (e.g. a note): a new generation tries again
        roll(driver)
        assert reboots(xen, NAMES, since) == {n: 1 for n in NAMES}, "the hosts done before are not rebooted again"
        assert events(xen, "host.reboot", held) == NAMES[len(before):]
        assert xen_hosts(xen) == {n: True for n in NAMES} and cluster_state(sim) == "Managed"
        assert cluster_hosts(sim) == {n: ("Up", "Enabled") for n in NAMES}
        assert driver.status["maintenance"]["phase"] == "Completed" and xen.pool_of("xen1")["ha_enabled"]


class KillingDriver(Driver):
    """Kills (`XenLab.kill`: power lost) the host the operator has just asked to reboot, once: it stays down."""

    def __init__(self, *args: Any, xen: XenLab, victim: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.xen, self.victim, self.killed = xen, victim, False

    def context(self) -> Any:
        ctx = super().context()

        def event(*e: Any) -> None:
            self.events.append(e)
            if not self.killed and e[2] == f"rebooting host {self.victim}":
                self.killed = True
                self.xen.kill(self.victim)

        ctx.event = event
        return ctx


def test_a_host_that_does_not_come_back_stops_the_roll_and_the_rest_keeps_serving() -> None:
    with lab(NAMES, [NAMES]) as xen, \
            CloudStackSimulator(fleet=Fleet(zones=1, routers=0, redundant_pairs=0), timings=TIMINGS) as sim:
        driver = KillingDriver(xen, with_cloudstack(xen, NAMES), cloudstack=sim, xen=xen, victim="xen2")
        registered_pool(xen, sim, driver)
        since = len(xen.audit())
        driver.spec = with_cloudstack(xen, NAMES, maintenance={"restartAfter": now_utc(), "hostTimeoutSeconds": 60})
        with pytest.raises(ReconcileError) as raised:  # after hostTimeoutSeconds of waiting for xen2
            roll(driver)
        assert driver.killed
        assert raised.value.reason == "HostDidNotReturn" and not raised.value.retry, raised.value
        record = driver.status["maintenance"]
        assert record["phase"] == "Failed" and "host xen2" in record["message"], record
        assert "xen2 is not live" in record["message"], record["message"]
        assert [(h["name"], h["step"]) for h in record["hosts"]] == [
            ("xen1", "Done"), ("xen2", "Rebooting"), ("xen3", "Pending"), ("xen4", "Pending")]
        assert events(xen, "host.reboot", since) == ["xen1"], "nothing else rebooted"
        assert stops(xen) == {}
        enabled = xen_hosts(xen)
        assert enabled["xen1"] and enabled["xen3"] and enabled["xen4"], enabled
        assert cluster_state(sim) == "Managed"
        # xapi enables HA only with every host live (HOST_OFFLINE): the record says so, and HA waits for xen2
        assert not xen.pool_of("xen1")["ha_enabled"]
        assert "HA could not be enabled again" in record["message"] and "HOST_OFFLINE" in record["message"], record

        xen.revive("xen2")  # someone powers it on again: the pool's HA is enabled as the spec (and the record) say
        for _ in range(20):
            try:
                stalled = driver.run()
            except ReconcileError as error:  # e.g. HOST_OFFLINE while xen2 boots: the handler asks again later
                assert error.retry, error
                time.sleep(0.5)
                continue
            if condition(stalled, "Stalled").status == "True":
                break
            time.sleep(min(stalled.requeue_after or 0.5, 0.5))
        assert condition(stalled, "Stalled").reason == "HostDidNotReturn", stalled.conditions
        pool = xen.pool_of("xen1")
        assert pool["ha_enabled"] and pool["ha_configuration"]["timeout"] == "180"
        assert events(xen, "host.reboot", since) == ["xen1"], "the failed roll did not go on by itself"
        driver.generation = 2
        roll(driver, passes=60)  # RollBlocked while CloudStack reconnects xen2 (Connecting): asked again
        assert reboots(xen, NAMES, since) == {"xen1": 1, "xen2": 0, "xen3": 1, "xen4": 1}, \
            "xen2 booted after restartAfter when it was powered on again"
        assert xen_hosts(xen) == {n: True for n in NAMES}
        assert cluster_hosts(sim) == {n: ("Up", "Enabled") for n in NAMES} and cluster_state(sim) == "Managed"
        assert xen.pool_of("xen1")["ha_enabled"] and driver.status["maintenance"]["phase"] == "Completed"


# ---------------------------------------------------------------------------------------------------- f. window, plan


def closed_window() -> dict[str, Any]:
    """Opens in two hours for 15 minutes: closed now, whatever the day."""
    opens = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)
    return {"start": opens.strftime("%H:%M"), "durationMinutes": 15}


def test_a_closed_window_holds_the_roll() -> None:
    with lab(NAMES, [NAMES]) as xen:
        driver = Driver(xen, spec_for(xen, NAMES))
        assert ready(driver.converge(passes=10, pause=0.5))
        since = len(xen.audit())
        driver.spec = spec_for(xen, NAMES, maintenance={"restartAfter": now_utc(), "window": closed_window()})
        outcome = driver.run()
        reconciling = condition(outcome, "Reconciling")
        assert reconciling.status == "True" and reconciling.reason == "WaitingForMaintenanceWindow", outcome.conditions
        assert "4 host(s)" in " ".join(a.describe() for a in outcome.drift)
        assert outcome.applied == [] and "maintenance" not in driver.status
        touched = [e for e in xen.audit()[since:] if e["event"] in ("host.reboot", "host.disabled", "ha.disabled")]
        assert touched == []


def test_a_window_that_closes_between_turns_pauses_the_roll_and_the_next_one_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The roll's own clock (roll._utc_now) jumps past the window's end once xen1's turn is done: the roll pauses
    there with HA restored; in the window again, a new roll does the other hosts, none twice."""
    import stackops.reconcile.xenpool.roll as rolling

    with lab(NAMES, [NAMES]) as xen:
        driver = Driver(xen, spec_for(xen, NAMES))
        assert ready(driver.converge(passes=10, pause=0.5))
        opened = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=30)
        window = {"start": opened.strftime("%H:%M"), "durationMinutes": 120}
        real = rolling._utc_now

        def clock() -> datetime.datetime:
            hosts = (driver.status.get("maintenance") or {}).get("hosts") or []
            late = any(h["name"] == "xen1" and h["step"] == "Done" for h in hosts)
            return real() + datetime.timedelta(hours=3 if late else 0)

        monkeypatch.setattr(rolling, "_utc_now", clock)
        since = len(xen.audit())
        driver.spec = spec_for(xen, NAMES, maintenance={"restartAfter": now_utc(), "window": window,
                                                        "hostTimeoutSeconds": 120})
        paused = driver.run()
        record = driver.status["maintenance"]
        assert record["phase"] == "Paused" and record["reason"] == "WaitingForMaintenanceWindow", record
        assert [(h["name"], h["step"]) for h in record["hosts"]] == [
            ("xen1", "Done"), ("xen2", "Pending"), ("xen3", "Pending"), ("xen4", "Pending")]
        assert driver.status["maintenanceProgress"] == "Paused"
        assert events(xen, "host.reboot", since) == ["xen1"]
        assert xen.pool_of("xen1")["ha_enabled"], "HA restored while the roll waits"
        waiting = condition(paused, "Reconciling")
        assert waiting.status == "True" and waiting.reason == "WaitingForMaintenanceWindow", paused.conditions
        assert "after 1 of 4 host(s)" in waiting.message and not ready(paused), waiting.message

        monkeypatch.setattr(rolling, "_utc_now", real)  # in the window again
        roll(driver)
        assert events(xen, "host.reboot", since) == NAMES, "the others once each, xen1 not again"
        assert driver.status["maintenance"]["phase"] == "Completed"
        assert [h["name"] for h in driver.status["maintenance"]["hosts"]] == ["xen2", "xen3", "xen4"]
        assert xen.pool_of("xen1")["ha_enabled"] and stops(xen) == {}
        assert [e["event"] for e in xen.audit()[since:] if e["event"] in ("ha.disabled", "ha.enabled")] == [
            "ha.disabled", "ha.enabled", "ha.disabled", "ha.enabled"]


def manifests(xen: XenLab, path: Path, maintenance: dict[str, Any]) -> Path:
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": SECRET, "namespace": "lab", "annotations": {
                  "stackops.io/allowed-destinations": " ".join(xen.address(n) for n in NAMES)}},
              "stringData": {"username": xen.username, "password": xen.password}}
    pool = {"apiVersion": "stackops.io/v1alpha1", "kind": "XenPool", "metadata": {"name": "pool", "namespace": "lab"},
            "spec": {"members": [{"name": n, "address": xen.address(n)} for n in NAMES],
                     "credentialsSecretRef": {"name": SECRET}, "tls": {"plainHTTP": True}, "xenapiPort": xen.port,
                     "ha": {"timeoutSeconds": 180, "heartbeatSR": {"type": "nfs"}}, "maintenance": maintenance}}
    path.write_text(yaml.safe_dump_all([secret, pool], sort_keys=False))
    return path


def test_stackops_plan_lists_the_whole_roll(tmp_path: Path) -> None:
    with lab(NAMES, [NAMES]) as xen, UpdateServer() as server:
        driver = Driver(xen, spec_for(xen, NAMES))
        assert ready(driver.converge(passes=10, pause=0.5))
        files = [UpdateFile("XS82E050", after_apply_guidance=["restartHost"]), UpdateFile("XS82E051")]
        file = manifests(xen, tmp_path / "pool.yaml", {"updates": served(server, *files)})
        since = len(xen.audit())
        out = io.StringIO()
        code = plan_files([file], out, reconcilers={"XenPool": XenPoolReconciler(change_timeout=30,
                                                                                  poll_seconds=0.1)})
        text = out.getvalue()
        assert code == 2, text
        lines = [line for line in text.splitlines() if line.startswith("  ")]
        assert lines[0].startswith("  + download update XS82E050"), text
        assert lines[1].startswith("  + download update XS82E051"), text
        assert lines[2].startswith("  ~ start rolling maintenance of 4 host(s) (updates XS82E050, XS82E051)"), text
        assert lines[2].endswith("(disruptive)"), text
        turns = lines[3:7]
        assert [t.split(":")[0] for t in turns] == ["  ~ host xen1 (master)", "  ~ host xen2", "  ~ host xen3",
                                                      "  ~ host xen4"], text
        assert all("apply XS82E050, XS82E051" in t and t.endswith("(disruptive)") for t in turns), text
        assert lines[7] == "  ~ end the roll: enable HA again as it was recorded", text
        assert [e for e in xen.audit()[since:] if not e["event"].startswith("session.")] == [], "plan changes nothing"

        # uploaded (by the operator's first pass), the guidance is known: the plan says which hosts reboot
        driver.spec = spec_for(xen, NAMES, maintenance={"updates": served(server, *files),
                                                        "window": closed_window()})
        driver.run()
        out = io.StringIO()
        plan_files([file], out, reconcilers={"XenPool": XenPoolReconciler(change_timeout=30, poll_seconds=0.1)})
        text = out.getvalue()
        assert "download update" not in text, text
        assert text.count("reboot and wait until it is back and enabled") == 4, text


# ---------------------------------------------------------------------------------------------------- g. notices


class Webhook(NoticeReceiver):
    """A local webhook that keeps each notice with the number of reboots its host had when it arrived."""

    def __init__(self, xen: XenLab):
        super().__init__()
        self.notices: list[tuple[str, str, int, dict[str, Any]]] = []
        self.xen = xen

    def keep(self, body: dict[str, Any]) -> None:
        self.notices.append((body["host"], body["phase"], events(self.xen, "host.reboot").count(body["host"]), body))


def test_the_webhook_hears_before_and_after_each_host_in_order() -> None:
    with lab(NAMES, [NAMES]) as xen, Webhook(xen) as hook:
        driver = Driver(xen, spec_for(xen, NAMES))
        assert ready(driver.converge(passes=10, pause=0.5))
        driver.secrets["hook"] = {"url": SecretStr(hook.url)}
        driver.spec = spec_for(xen, NAMES, maintenance={
            "restartAfter": now_utc(), "hostTimeoutSeconds": 120,
            "notifications": {"webhookURLSecretRef": {"name": "hook", "key": "url"}, "allowLocalAddresses": True}})
        roll(driver)
        assert [(h, p, n) for h, p, n, _ in hook.notices] == [
            (host, phase, count) for host in NAMES for phase, count in (("before", 0), ("after", 1))]
        first = hook.notices[0][3]
        assert first == {"pool": "pool", "namespace": "lab", "host": "xen1", "phase": "before", "updates": [],
                         "reboot": True}




def test_a_refused_notice_stops_the_roll_before_its_host_is_touched() -> None:
    with lab(NAMES, [NAMES]) as xen, Webhook(xen) as hook:
        driver = Driver(xen, spec_for(xen, NAMES))
        assert ready(driver.converge(passes=10, pause=0.5))
        driver.secrets["hook"] = {"url": SecretStr(hook.url)}
        hook.refuse.add(("xen2", "before"))
        since = len(xen.audit())
        driver.spec = spec_for(xen, NAMES, maintenance={
            "restartAfter": now_utc(), "hostTimeoutSeconds": 120,
            "notifications": {"webhookURLSecretRef": {"name": "hook", "key": "url"}, "allowLocalAddresses": True}})
        with pytest.raises(ReconcileError) as raised:
            roll(driver)
        assert raised.value.reason == "NotificationFailed" and "xen2" in str(raised.value), raised.value
        assert "t0ken" not in str(raised.value) and "t0ken" not in driver.status["maintenance"]["message"]
        assert [(h, p) for h, p, _, _ in hook.notices] == [("xen1", "before"), ("xen1", "after"), ("xen2", "before")]
        assert events(xen, "host.reboot", since) == ["xen1"]
        assert "xen2" not in events(xen, "host.disabled", since), "xen2 was not touched"
        assert xen_hosts(xen) == {n: True for n in NAMES} and xen.pool_of("xen1")["ha_enabled"]
        assert driver.status["maintenance"]["phase"] == "Failed"


def test_updates_without_restart_host_are_applied_in_place() -> None:
    with lab(NAMES, [NAMES]) as xen, UpdateServer() as server:
        driver = Driver(xen, spec_for(xen, NAMES))
        assert ready(driver.converge(passes=10, pause=0.5))
        files = [UpdateFile("XS82E060", after_apply_guidance=["restartXAPI"]), UpdateFile("XS82E061")]
        since = len(xen.audit())
        driver.spec = spec_for(xen, NAMES, maintenance={"updates": served(server, *files), "hostTimeoutSeconds": 120})
        roll(driver)
        audit = xen.audit()[since:]
        applied = [(e.get("host"), e.get("name")) for e in audit if e["event"] == "pool_update.apply"]
        assert len(applied) == 8, applied
        assert [e["event"] for e in audit if e["event"] in ("host.reboot", "host.disabled", "host.evacuated",
                                                           "vm.migrated")] == [], "nothing emptied or rebooted"
        assert all(c == {"migrations": 0, "stops": 0} for c in xen.vm_counts().values()), xen.vm_counts()
        record = driver.status["maintenance"]
        assert [(h["name"], h["reboot"], h["updates"]) for h in record["hosts"]] == [
            (n, False, ["XS82E060", "XS82E061"]) for n in NAMES]
        assert record["phase"] == "Completed" and xen.pool_of("xen1")["ha_enabled"]
