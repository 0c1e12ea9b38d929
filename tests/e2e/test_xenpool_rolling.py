"""Rolling maintenance of a XenPool registered in CloudStack, driven in process against the lab XenAPI and the lab
CloudStack (which pings the XenServer hosts, so a reboot shows there): 3 updates — one asking for a host restart,
one not, one already applied on a host —, VMs on every host in both simulators. The pool ends at the update level,
each host rebooted once, no VM ever stopped, HA back as recorded, the cluster Managed; the order of the steps is
read from the simulators' audit logs."""
from __future__ import annotations

import dataclasses
import datetime
import http.client
import re
import urllib.parse
from typing import Any

import pytest
import XenAPI
from support.xenpool import CLOUDSTACK, Driver, Killed, condition, lab, ready, spec_for

from stackops.reconcile.base import ReconcileError
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.xenapi import XenLab
from stackops_lab.xenapi.calls_update import updates_of
from stackops_lab.xenapi.update_file import UpdateFile, UpdateServer

CLUSTER = "lab-xen-pool"
NAMES = ["xen1", "xen2", "xen3", "xen4"]
TIMINGS = Timings(host_connect=0.3, host_maintenance=0.2, job=0.05, vm_migrate=0.1, ping_timeout=0.4, xen_ping=0.1)


def updates() -> list[UpdateFile]:
    return [UpdateFile("XS82E031", after_apply_guidance=["restartHost"]),
            UpdateFile("XS82E032", after_apply_guidance=[]),
            UpdateFile("XS82E033", after_apply_guidance=["restartXAPI"])]


def maintenance(server: UpdateServer, files: list[UpdateFile], **more: Any) -> dict[str, Any]:
    listed = []
    for update in files:
        url, sha256 = server.add(update)
        listed.append({"name": update.name_label, "url": url, "sha256": sha256})
    return {"updates": listed, "hostTimeoutSeconds": 120, **more}


def pool_spec(xen: XenLab, **more: Any) -> Any:
    return spec_for(xen, NAMES, cloudstack={"connection": {"secretRef": {"name": CLOUDSTACK}}, "zone": "lab-zone-1",
                                            "pod": "lab-zone-1-pod-1", "cluster": CLUSTER}, **more)


def session(xen: XenLab) -> XenAPI.Session:
    found = XenAPI.Session(xen.url("xen1"))
    found.xenapi.login_with_password(xen.username, xen.password, "2.0", "test")
    return found


def apply_by_hand(xen: XenLab, update: UpdateFile, host: str) -> None:
    """What an operator did before: the update uploaded and applied on one host (through the official client)."""
    opened = session(xen)
    x = opened.xenapi
    task = x.task.create("import update", "")
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    connection = http.client.HTTPConnection(urllib.parse.urlsplit(xen.url("xen1")).netloc, timeout=30)
    connection.request("PUT", "/import_raw_vdi?" + urllib.parse.urlencode(
        {"session_id": opened._session, "sr_id": sr, "task_id": task}), body=update.to_bytes())
    connection.getresponse().read()
    vdi = re.search(r"OpaqueRef:[^<]+", x.task.get_result(task)).group(0)  # type: ignore[union-attr]
    ref = x.pool_update.introduce(vdi)
    host_ref = next(r for r, h in x.host.get_all_records().items() if h["name_label"] == host)
    x.pool_update.apply(ref, host_ref)


def host_updates(xen: XenLab) -> dict[str, list[str]]:
    x = session(xen).xenapi
    names = {r: u["name_label"] for r, u in x.pool_update.get_all_records().items()}
    return {h["name_label"]: sorted(names[u] for u in h["updates"]) for h in x.host.get_all_records().values()}


def reboots(xen: XenLab) -> dict[str, int]:
    counted = {n: 0 for n in NAMES}
    for event in xen.audit():
        if event["event"] == "host.reboot":
            counted[event["host"]] += 1
    return counted


def cluster_hosts(sim: CloudStackSimulator) -> dict[str, tuple[str, str]]:
    with sim.state.lock:
        return {h.name: (h.state, h.resource_state) for h in sim.state.values("host")
                if h.cluster is not None and h.cluster.name == CLUSTER}


class Watching(Driver):
    """Notes status.ha.enabled at each checkpoint that shows a host rebooting (what the HA column says then)."""

    ha_while_rebooting: list[Any]

    def context(self) -> Any:
        ctx = super().context()
        inner, self.ha_while_rebooting = ctx.checkpoint, getattr(self, "ha_while_rebooting", [])

        async def checkpoint(fields: dict[str, Any]) -> None:
            await inner(fields)
            if "Rebooting" in str(self.status.get("maintenanceProgress")):
                self.ha_while_rebooting.append((self.status.get("ha") or {}).get("enabled"))

        return dataclasses.replace(ctx, checkpoint=checkpoint)


def test_three_updates_roll_through_a_registered_pool_without_stopping_a_vm() -> None:
    with lab(NAMES, [NAMES]) as xen, UpdateServer() as server, \
            CloudStackSimulator(fleet=Fleet(zones=1, routers=0, redundant_pairs=0), timings=TIMINGS) as sim:
        driver = Watching(xen, pool_spec(xen), cloudstack=sim)
        assert ready(driver.converge(passes=20, pause=0.5))
        with sim.state.lock:
            ids = {h.name: h.uuid for h in sim.state.values("host") if h.cluster and h.cluster.name == CLUSTER}
        for name, host_id in ids.items():
            sim.add_user_vm(host_id, f"tenant-{name}", memory=512)
        files = updates()
        apply_by_hand(xen, files[2], "xen3")

        driver.spec = pool_spec(xen, maintenance=maintenance(server, files))
        outcome = driver.converge(passes=20, pause=0.5)
        assert ready(outcome), outcome.conditions

        wanted = sorted(u.name_label for u in files)
        assert host_updates(xen) == {n: wanted for n in NAMES}
        assert reboots(xen) == {n: 1 for n in NAMES}, "every host rebooted exactly once"
        assert all(c["stops"] == 0 for c in xen.vm_counts().values()), xen.vm_counts()
        assert all(c.get("stops", 0) == 0 and c.get("restarts", 0) == 0 for c in sim.vm_counts().values())
        pool = xen.pool_of("xen1")
        assert pool["ha_enabled"] and pool["ha_configuration"]["timeout"] == "180"
        assert cluster_hosts(sim) == {n: ("Up", "Enabled") for n in NAMES}
        with sim.state.lock:
            cluster = next(c for c in sim.state.values("cluster") if c.name == CLUSTER)
            assert cluster.managed_state == "Managed"
        roll = driver.status["maintenance"]
        assert roll["phase"] == "Completed" and [h["name"] for h in roll["hosts"]] == NAMES
        assert driver.status["maintenanceProgress"] == "Completed"
        assert driver.ha_while_rebooting and not any(driver.ha_while_rebooting), \
            "status.ha says HA is off while the roll has it off"
        assert driver.status["ha"]["enabled"] and driver.status["ha"]["timeoutSeconds"] == 180

        # the master first; each host emptied before its reboot; the cluster Unmanaged only around the master's
        order = [(e["event"], e.get("host") or e.get("name") or e.get("managedstate"))
                 for e in [*xen.audit(), *sim.audit()] if e["event"] in ("host.reboot", "cluster.updated")]
        assert [h for e, h in order if e == "host.reboot"][0] == "xen1"
        states = [e["managedstate"] for e in sim.audit() if e["event"] == "cluster.updated"]
        assert states == ["Unmanaged", "Managed"], states

        again = driver.run()
        assert ready(again) and again.applied == [], "a converged pool plans nothing"
        assert condition(again, "HAConfigured").status == "True"


def test_a_precheck_failure_touches_no_host_and_names_host_and_update() -> None:
    with lab(NAMES, [NAMES]) as xen, UpdateServer() as server:
        driver = Driver(xen, spec_for(xen, NAMES))
        assert ready(driver.converge(passes=10, pause=0.5))
        files = updates()
        updates_of(xen).fail_precheck[("xen3", files[1].uuid)] = [
            "UPDATE_PRECHECK_FAILED_CONFLICT_PRESENT", files[1].name_label, "XS82E029"]
        before = xen.audit()
        driver.spec = spec_for(xen, NAMES, maintenance=maintenance(server, files))
        with pytest.raises(ReconcileError) as raised:  # the handler writes it as Stalled
            driver.converge(passes=6, pause=0.5)
        assert raised.value.reason == "UPDATE_PRECHECK_FAILED_CONFLICT_PRESENT" and not raised.value.retry
        assert "xen3" in str(raised.value) and "XS82E032" in str(raised.value), raised.value
        touched = [e for e in xen.audit()[len(before):]
                   if e["event"] in ("host.disabled", "host.reboot", "pool_update.apply", "ha.disabled",
                                     "pool.disable_ha")]
        assert touched == [], touched
        assert xen.pool_of("xen1")["ha_enabled"]
        assert driver.status["maintenance"]["phase"] == "Failed"
        again = driver.run()
        stalled = condition(again, "Stalled")
        assert stalled.status == "True" and stalled.reason == "UPDATE_PRECHECK_FAILED_CONFLICT_PRESENT", \
            "stays Stalled until the spec changes"
        assert "xen3" in stalled.message and "XS82E032" in stalled.message, stalled.message


def test_a_xenpool_deleted_mid_roll_leaves_the_pool_serving() -> None:
    with lab(NAMES, [NAMES]) as xen, UpdateServer() as server, \
            CloudStackSimulator(fleet=Fleet(zones=1, routers=0, redundant_pairs=0), timings=TIMINGS) as sim:
        driver = Driver(xen, pool_spec(xen), cloudstack=sim)
        assert ready(driver.converge(passes=20, pause=0.5))
        files = updates()
        driver.spec = pool_spec(xen, maintenance=maintenance(server, files))
        context = driver.context

        def dying() -> Any:
            ctx = context()
            checkpoint = ctx.checkpoint

            async def write(fields: dict[str, Any]) -> None:
                await checkpoint(fields)
                turns = (fields.get("maintenance") or {}).get("hosts") or []
                if any(t["name"] == "xen2" and t["step"] == "Updating" for t in turns):
                    raise Killed

            ctx.checkpoint = write
            return ctx

        driver.context = dying  # type: ignore[method-assign]
        with pytest.raises(Killed):
            driver.converge(passes=20, pause=0.5)
        driver.context = context  # type: ignore[method-assign]
        x = session(xen).xenapi
        disabled = [h["name_label"] for h in x.host.get_all_records().values() if not h["enabled"]]
        assert disabled == ["xen2"] and not xen.pool_of("xen1")["ha_enabled"], "killed with xen2 emptied, HA off"
        assert cluster_hosts(sim)["xen2"] == ("Up", "Maintenance")

        driver.finalize()
        assert all(h["enabled"] for h in x.host.get_all_records().values())
        assert cluster_hosts(sim) == {n: ("Up", "Enabled") for n in NAMES}
        pool = xen.pool_of("xen1")
        assert pool["ha_enabled"] and pool["ha_configuration"]["timeout"] == "180"
        assert driver.status["maintenance"]["phase"] == "Failed"
        assert all(c["stops"] == 0 for c in xen.vm_counts().values())


def test_the_turn_after_the_masters_waits_for_cloudstack_to_reconnect_the_cluster() -> None:
    """The cluster Managed again after the master's turn: CloudStack's direct agent scan reconnects the other hosts
    later than the rebooted master's own agent, which reconnects at the first ping that reaches it once the cluster
    is Managed (pings every second, cluster_reconnect 3 s here); the next host is drained only once CloudStack has
    it Up again (it refuses to prepare a Disconnected host for maintenance)."""
    names = ["xen1", "xen2", "xen3"]
    timings = dataclasses.replace(TIMINGS, cluster_reconnect=3.0, xen_ping=1.0)
    with lab(names, [names]) as xen, \
            CloudStackSimulator(fleet=Fleet(zones=1, routers=0, redundant_pairs=0), timings=timings) as sim:
        cloudstack = {"connection": {"secretRef": {"name": CLOUDSTACK}}, "zone": "lab-zone-1",
                      "pod": "lab-zone-1-pod-1", "cluster": CLUSTER}
        driver = Driver(xen, spec_for(xen, names, cloudstack=cloudstack), cloudstack=sim)
        assert ready(driver.converge(passes=20, pause=0.5))
        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        driver.spec = spec_for(xen, names, cloudstack=cloudstack,
                               maintenance={"restartAfter": now, "hostTimeoutSeconds": 120})
        outcome = driver.converge(passes=20, pause=0.5)
        assert ready(outcome), outcome.conditions
        assert driver.status["maintenance"]["phase"] == "Completed", driver.status["maintenance"]
        assert {e["host"] for e in xen.audit() if e["event"] == "host.reboot"} == set(names)
        refused = [e for e in sim.audit() if e["event"] == "host.maintenance.refused"]
        assert refused == [], refused
        assert cluster_hosts(sim) == {n: ("Up", "Enabled") for n in names}
