"""Host maintenance and host availability in the lab CloudStack simulator, through the `cs` client (issue 14):
prepareHostForMaintenance's resource states and refusals with CloudStack's texts, VMs migrated to Up and Enabled
peers with the memory for them (HA Migration work, retried max.retries times migrate.retry.interval apart),
ErrorInMaintenance, cancelHostMaintenance → Enabled; a host that stops answering: Alert, Down and HA restarts when
it was Enabled, only Disconnected when Disabled or in maintenance; updateCluster managedstate. The VMs are user
VMs the tests place (`add_user_vm`), seen through listVirtualMachines.

Everything runs on a ManualClock: the simulator's time moves only when a test advances it, so each state looked at
cannot change under the test however busy the machine is."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cs import CloudStack

from stackops_lab.clock import ManualClock
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from support.cloudstack_sim import client

TIMINGS = Timings(host_connect=0.5, host_maintenance=0.5, job=0.05, vm_migrate=2.0, ping_timeout=3.0,
                  host_investigate=2.0, vm_restart=1.0, cluster_reconnect=1.0)
BIG = 40 * 1024  # MiB: two of these do not fit on one 64 GiB host


@pytest.fixture
def sim() -> Iterator[CloudStackSimulator]:
    fleet = Fleet(zones=1, hypervisors=("XenServer",), routers=0, redundant_pairs=0, hosts_per_cluster=3)
    with CloudStackSimulator(fleet=fleet, timings=TIMINGS, clock=ManualClock()) as lab:
        yield lab


@pytest.fixture
def api(sim: CloudStackSimulator) -> CloudStack:
    return client(sim)


def hosts(api: CloudStack) -> list[dict[str, Any]]:
    return sorted(api.listHosts(type="Routing")["host"], key=lambda h: h["name"])


def host_state(api: CloudStack, host: dict[str, Any]) -> tuple[str, str]:
    row = api.listHosts(id=host["id"])["host"][0]
    return row["state"], row["resourcestate"]


def db_id(sim: CloudStackSimulator, host: dict[str, Any]) -> int:
    return sim.state.hosts[host["id"]].db_id


def where(api: CloudStack, vm: str) -> tuple[str | None, str]:
    """listVirtualMachines: the VM's host (None without one) and state."""
    row = api.listVirtualMachines(id=vm)["virtualmachine"][0]
    return row.get("hostid"), row["state"]


def job(sim: CloudStackSimulator, api: CloudStack, call: Any, **params: Any) -> dict[str, Any]:
    """Submit an async command, let its job run (the minimum job time) and answer its result."""
    jobid = call(**params)["jobid"]
    sim.scheduler.advance(0)
    sim.scheduler.advance(TIMINGS.job)
    result = api.queryAsyncJobResult(jobid=jobid)
    assert result["jobstatus"] != 0
    return result


def refusal(result: dict[str, Any]) -> tuple[int, str]:
    assert result["jobstatus"] == 2, result
    return result["jobresultcode"], result["jobresult"]["errortext"]


def clear_system_vms(sim: CloudStackSimulator, keep: dict[str, Any]) -> None:
    """Put the zone's SSVM and CPVM on `keep`, so that capacity figures are plain."""
    with sim.state.lock:
        for vm in sim.state.values("systemvm"):
            vm.host = sim.state.hosts[keep["id"]]


def test_vms_migrate_to_peers_with_room_then_maintenance_and_cancel(sim: CloudStackSimulator,
                                                                    api: CloudStack) -> None:
    a, b, c = hosts(api)
    clear_system_vms(sim, c)
    vm1 = sim.add_user_vm(a["id"], "vm1", memory=BIG)
    vm2 = sim.add_user_vm(b["id"], "vm2", memory=BIG)
    small = sim.add_user_vm(a["id"], "small", memory=2048)
    memory_before = sum(h["memoryallocated"] for h in hosts(api) if h["id"] != a["id"])

    result = job(sim, api, api.prepareHostForMaintenance, id=a["id"])
    assert result["jobstatus"] == 1 and result["jobresult"]["host"]["resourcestate"] == "PrepareForMaintenance"
    # vm1 cannot join vm2 on b: it goes to c, the peer with the most free memory; small goes to b then
    assert where(api, vm1) == (c["id"], "Migrating")
    assert where(api, small)[1] == "Migrating"
    assert host_state(api, a) == ("Up", "PrepareForMaintenance")
    memory = {h["id"]: h["memoryallocated"] for h in hosts(api)}  # CloudStack's view: migrating in counts
    assert memory[b["id"]] + memory[c["id"]] - memory_before == (BIG + 2048) * 1024 * 1024
    sim.scheduler.advance(TIMINGS.vm_migrate)
    assert where(api, vm1) == (c["id"], "Running")
    assert where(api, vm2) == (b["id"], "Running")
    assert where(api, small)[0] in (b["id"], c["id"])
    assert host_state(api, a) == ("Up", "Maintenance")
    counts = sim.vm_counts()
    assert counts[vm1] == counts[small] == {"migrations": 1, "stops": 0, "restarts": 0}
    assert vm2 not in counts

    result = job(sim, api, api.cancelHostMaintenance, id=a["id"])
    assert result["jobresult"]["host"]["resourcestate"] == "Enabled"
    assert refusal(job(sim, api, api.cancelHostMaintenance, id=a["id"])) == (
        530, f"Cannot perform cancelMaintenance when resource state is Enabled, hostId = {db_id(sim, a)}")


def test_no_room_anywhere_ends_in_error_in_maintenance_after_the_retries(sim: CloudStackSimulator,
                                                                          api: CloudStack) -> None:
    a, b, c = hosts(api)
    clear_system_vms(sim, c)
    api.updateConfiguration(name="max.retries", value="3")
    api.updateConfiguration(name="migrate.retry.interval", value="10")
    vm_b = sim.add_user_vm(b["id"], "vm-b", memory=BIG)
    sim.add_user_vm(c["id"], "vm-c", memory=BIG)
    stuck = sim.add_user_vm(a["id"], "vm-a", memory=BIG)

    assert job(sim, api, api.prepareHostForMaintenance, id=a["id"])["jobstatus"] == 1
    sim.scheduler.advance(15)  # two of three tries failed: a failed migration with a retry left
    assert host_state(api, a) == ("Up", "ErrorInPrepareForMaintenance")
    assert [e["attempt"] for e in sim.audit() if e["event"] == "vm.migration.failed"] == [1, 2]
    assert refusal(job(sim, api, api.prepareHostForMaintenance, id=a["id"])) == (
        530, "Host is already in state ErrorInPrepareForMaintenance. Cannot recall for maintenance until resolved.")
    cluster_id = sim.state.hosts[a["id"]].cluster.db_id
    assert refusal(job(sim, api, api.prepareHostForMaintenance, id=b["id"])) == (
        530, "There are other servers attempting migrations for maintenance. Found hosts in PrepareForMaintenance "
             f"OR ErrorInPrepareForMaintenance STATUS in cluster {cluster_id}")
    sim.scheduler.advance(10)  # the third and last try: the work is given up
    assert host_state(api, a) == ("Up", "ErrorInMaintenance")
    assert where(api, stuck) == (a["id"], "Running")
    assert sim.hostops.maintenance.left[a["id"]] == 1
    assert sim.vm_counts() == {}  # no VM was stopped (nor moved)

    # ErrorInMaintenance may try again (AdminAskMaintenance); with room made on b the VM goes there
    with sim.state.lock:  # vm-b stopped (as a user's stopVirtualMachine leaves it): room on b
        record = sim.state.table("uservm")[vm_b]
        record.state, record.host, record.last_host = "Stopped", None, record.host
    assert job(sim, api, api.prepareHostForMaintenance, id=a["id"])["jobresult"]["host"]["resourcestate"] == \
        "PrepareForMaintenance"
    sim.scheduler.advance(TIMINGS.vm_migrate)
    assert where(api, stuck) == (b["id"], "Running")
    assert host_state(api, a) == ("Up", "Maintenance")
    assert sim.vm_counts()[stuck] == {"migrations": 1, "stops": 0, "restarts": 0}


def test_a_retry_that_finds_room_corrects_the_errors(sim: CloudStackSimulator, api: CloudStack) -> None:
    a, b, c = hosts(api)
    clear_system_vms(sim, c)
    api.updateConfiguration(name="migrate.retry.interval", value="10")
    vm_b = sim.add_user_vm(b["id"], "vm-b", memory=BIG)
    sim.add_user_vm(c["id"], "vm-c", memory=BIG)
    moving = sim.add_user_vm(a["id"], "vm-a", memory=BIG)
    job(sim, api, api.prepareHostForMaintenance, id=a["id"])
    assert host_state(api, a) == ("Up", "ErrorInPrepareForMaintenance")
    with sim.state.lock:  # vm-b stopped meanwhile: room on b for the next try
        record = sim.state.table("uservm")[vm_b]
        record.state, record.host, record.last_host = "Stopped", None, record.host
    sim.scheduler.advance(10)  # the second try: migrating, the error corrected
    assert where(api, moving) == (b["id"], "Migrating")
    assert host_state(api, a) == ("Up", "PrepareForMaintenance")
    sim.scheduler.advance(TIMINGS.vm_migrate)
    assert host_state(api, a) == ("Up", "Maintenance")
    assert sim.vm_counts()[moving] == {"migrations": 1, "stops": 0, "restarts": 0}


def test_cancel_while_preparing_cancels_the_pending_migrations(sim: CloudStackSimulator, api: CloudStack) -> None:
    a, b, c = hosts(api)
    clear_system_vms(sim, c)
    api.updateConfiguration(name="migrate.retry.interval", value="10")
    vm_b = sim.add_user_vm(b["id"], "vm-b", memory=BIG)
    sim.add_user_vm(c["id"], "vm-c", memory=BIG)
    staying = sim.add_user_vm(a["id"], "vm-a", memory=BIG)
    job(sim, api, api.prepareHostForMaintenance, id=a["id"])
    assert host_state(api, a) == ("Up", "ErrorInPrepareForMaintenance")
    assert job(sim, api, api.cancelHostMaintenance, id=a["id"])["jobresult"]["host"]["resourcestate"] == "Enabled"
    with sim.state.lock:  # room on b now: a retry would take it, but the work was cancelled
        record = sim.state.table("uservm")[vm_b]
        record.state, record.host, record.last_host = "Stopped", None, record.host
    sim.scheduler.advance(60)
    assert where(api, staying) == (a["id"], "Running") and sim.vm_counts() == {}
    assert len([e for e in sim.audit() if e["event"] == "vm.migration.failed"]) == 1
    assert host_state(api, a) == ("Up", "Enabled")


def test_without_an_up_and_enabled_peer_the_job_fails_and_the_host_is_error_in_maintenance(
        sim: CloudStackSimulator, api: CloudStack) -> None:
    a, b, c = hosts(api)
    clear_system_vms(sim, c)
    vm = sim.add_user_vm(a["id"], "vm", memory=1024)
    api.updateHost(id=b["id"], allocationstate="Disable")
    api.updateHost(id=c["id"], allocationstate="Disable")
    assert refusal(job(sim, api, api.prepareHostForMaintenance, id=a["id"])) == (
        530, f"Unable to prepare for maintenance host {db_id(sim, a)}")
    assert host_state(api, a) == ("Up", "PrepareForMaintenance")
    sim.scheduler.advance(TIMINGS.host_maintenance)
    assert host_state(api, a) == ("Up", "ErrorInMaintenance")
    assert where(api, vm) == (a["id"], "Running")
    assert job(sim, api, api.cancelHostMaintenance, id=a["id"])["jobresult"]["host"]["resourcestate"] == "Enabled"


def test_list_virtual_machines(sim: CloudStackSimulator, api: CloudStack) -> None:
    a, b, _ = hosts(api)
    vm = sim.add_user_vm(a["id"], "web-1", memory=2048, ha=True)
    sim.add_user_vm(b["id"], "db-1", state="Stopped")
    (row,) = api.listVirtualMachines(hostid=a["id"])["virtualmachine"]
    assert {k: row[k] for k in ("id", "name", "state", "hostid", "hostname", "memory", "haenable")} == {
        "id": vm, "name": "web-1", "state": "Running", "hostid": a["id"], "hostname": a["name"], "memory": 2048,
        "haenable": True}
    assert row["instancename"].endswith(f"-{sim.state.table('uservm')[vm].db_id}-VM")
    (stopped,) = api.listVirtualMachines(state="Stopped")["virtualmachine"]
    assert stopped["name"] == "db-1" and "hostid" not in stopped  # a stopped VM has no host
    assert api.listVirtualMachines(listall=True, clusterid=a["clusterid"])["count"] == 1
    assert api.listVirtualMachines(listall=True)["count"] == 2
    assert [r["name"] for r in api.listVirtualMachines(haenable=True)["virtualmachine"]] == ["web-1"]


def test_refusals_with_cloudstacks_texts(sim: CloudStackSimulator, api: CloudStack) -> None:
    a, b, c = hosts(api)
    clear_system_vms(sim, c)
    cluster_id = sim.state.hosts[a["id"]].cluster.db_id

    api.updateHost(id=b["id"], allocationstate="Disable")
    code, text = refusal(job(sim, api, api.prepareHostForMaintenance, id=b["id"]))
    assert code == 530
    assert text.startswith(f'Cannot transit resource state of Host {{"id":{db_id(sim, b)},')
    assert text.endswith("to MaintenanceNo next resource state found for current state = Disabled event = "
                         "AdminAskMaintenance")
    assert host_state(api, b) == ("Up", "Disabled")
    api.updateHost(id=b["id"], allocationstate="Enable")

    sim.add_user_vm(a["id"], "moving", memory=1024)
    assert job(sim, api, api.prepareHostForMaintenance, id=a["id"])["jobstatus"] == 1
    assert refusal(job(sim, api, api.prepareHostForMaintenance, id=a["id"])) == (
        530, "Host is already in state PrepareForMaintenance. Cannot recall for maintenance until resolved.")
    assert refusal(job(sim, api, api.prepareHostForMaintenance, id=b["id"])) == (
        530, "There are other servers attempting migrations for maintenance. Found hosts in PrepareForMaintenance "
             f"OR ErrorInPrepareForMaintenance STATUS in cluster {cluster_id}")
    sim.scheduler.advance(TIMINGS.vm_migrate)
    assert host_state(api, a) == ("Up", "Maintenance")
    assert refusal(job(sim, api, api.prepareHostForMaintenance, id=a["id"])) == (
        530, "Host is already in state Maintenance. Cannot recall for maintenance until resolved.")

    for state, text in (
            ("Migrating", "Host contains incoming VMs migrating. Please wait for them to complete before putting to "
                          "maintenance."),
            ("Starting", "Host contains VMs in starting/stopping state. Please wait for them to complete before "
                         "putting to maintenance."),
            ("Error", "Host contains VMs in error/unknown/shutdown state. Please fix errors to proceed.")):
        vm = sim.add_user_vm(b["id"], f"vm-{state}", state=state)
        assert refusal(job(sim, api, api.prepareHostForMaintenance, id=b["id"])) == (530, text)
        assert host_state(api, b) == ("Up", "Enabled")
        with sim.state.lock:
            sim.state.table("uservm")[vm].state = "Stopped"


def test_an_enabled_host_that_stops_answering_goes_alert_and_its_ha_vms_restart_elsewhere(
        sim: CloudStackSimulator, api: CloudStack) -> None:
    a, b, c = hosts(api)
    clear_system_vms(sim, c)
    ha = sim.add_user_vm(a["id"], "ha", memory=4096, ha=True)
    plain = sim.add_user_vm(a["id"], "plain", memory=4096)
    sim.host_unreachable(a["id"], 30)
    sim.scheduler.advance(TIMINGS.ping_timeout)
    assert host_state(api, a) == ("Alert", "Enabled")
    assert where(api, ha) == (a["id"], "Running")
    sim.scheduler.advance(TIMINGS.host_investigate)
    assert host_state(api, a) == ("Down", "Enabled")
    assert where(api, ha)[1] == "Starting" and where(api, ha)[0] in (b["id"], c["id"])
    assert where(api, plain) == (None, "Stopped")
    sim.scheduler.advance(TIMINGS.vm_restart)
    assert where(api, ha)[1] == "Running"
    assert sim.vm_counts() == {ha: {"migrations": 0, "stops": 1, "restarts": 1},
                               plain: {"migrations": 0, "stops": 1, "restarts": 0}}
    sim.scheduler.advance(30 - TIMINGS.ping_timeout - TIMINGS.host_investigate - TIMINGS.vm_restart)
    assert host_state(api, a) == ("Connecting", "Enabled")  # answering again: the agent reconnects
    sim.scheduler.advance(TIMINGS.host_connect)
    assert host_state(api, a) == ("Up", "Enabled")


def test_a_host_back_before_the_investigation_ends_is_up_without_ha(sim: CloudStackSimulator,
                                                                    api: CloudStack) -> None:
    a, _, c = hosts(api)
    clear_system_vms(sim, c)
    vm = sim.add_user_vm(a["id"], "vm", ha=True)
    sim.host_unreachable(a["id"], TIMINGS.ping_timeout + 1)
    sim.scheduler.advance(TIMINGS.ping_timeout)
    assert host_state(api, a) == ("Alert", "Enabled")
    sim.scheduler.advance(TIMINGS.host_investigate)
    assert host_state(api, a)[0] in ("Up", "Connecting")
    sim.scheduler.advance(TIMINGS.host_connect)
    assert host_state(api, a) == ("Up", "Enabled")
    assert where(api, vm) == (a["id"], "Running") and sim.vm_counts() == {}


@pytest.mark.parametrize("prepare", ["maintenance", "disabled"])
def test_a_host_in_maintenance_or_disabled_that_stops_answering_is_only_disconnected(
        sim: CloudStackSimulator, api: CloudStack, prepare: str) -> None:
    a, b, c = hosts(api)
    clear_system_vms(sim, c)
    vm = sim.add_user_vm(a["id"], "vm", ha=True)
    if prepare == "maintenance":
        job(sim, api, api.prepareHostForMaintenance, id=a["id"])
        sim.scheduler.advance(TIMINGS.vm_migrate)
        expected = "Maintenance"
    else:
        api.updateHost(id=a["id"], allocationstate="Disable")
        expected = "Disabled"
    placed = where(api, vm)
    sim.host_unreachable(a["id"], 20)
    sim.scheduler.advance(TIMINGS.ping_timeout + TIMINGS.host_investigate + 5)
    assert host_state(api, a) == ("Disconnected", expected)
    assert not [e for e in sim.audit() if e["event"] == "host.state" and e["host"] == a["id"]
                and e["state"] in ("Alert", "Down")]
    assert where(api, vm) == placed and all(c["stops"] == 0 for c in sim.vm_counts().values())
    sim.scheduler.advance(20)
    sim.scheduler.advance(TIMINGS.host_connect)
    assert host_state(api, a) == ("Up", expected)


def test_a_disconnected_host_declared_degraded_has_its_vms_restarted_elsewhere(sim: CloudStackSimulator,
                                                                              api: CloudStack) -> None:
    a, b, c = hosts(api)
    clear_system_vms(sim, c)
    ha = sim.add_user_vm(a["id"], "ha", ha=True)
    api.updateHost(id=a["id"], allocationstate="Disable")
    sim.host_unreachable(a["id"], 60)
    sim.scheduler.advance(TIMINGS.ping_timeout + TIMINGS.host_investigate)
    assert host_state(api, a) == ("Disconnected", "Disabled")
    assert where(api, ha) == (a["id"], "Running") and sim.vm_counts() == {}  # no investigation, no HA
    result = job(sim, api, api.declareHostAsDegraded, id=a["id"])
    assert result["jobresult"]["host"]["resourcestate"] == "Degraded"
    assert where(api, ha)[1] == "Starting" and where(api, ha)[0] in (b["id"], c["id"])
    sim.scheduler.advance(TIMINGS.vm_restart)
    assert where(api, ha)[1] == "Running"
    assert sim.vm_counts() == {ha: {"migrations": 0, "stops": 1, "restarts": 1}}


def test_managedstate_unmanaged_disconnects_and_managed_reconnects(sim: CloudStackSimulator,
                                                                   api: CloudStack) -> None:
    a, b, c = hosts(api)
    cluster = a["clusterid"]
    assert api.updateCluster(id=cluster, managedstate="Unmanaged")["cluster"]["managedstate"] == "Unmanaged"
    assert {host_state(api, h)[0] for h in (a, b, c)} == {"Disconnected"}
    sim.host_unreachable(b["id"], 5)  # b reboots while the cluster is unmanaged: no agent connects
    sim.scheduler.advance(10)
    assert {host_state(api, h)[0] for h in (a, b, c)} == {"Disconnected"}
    sim.host_unreachable(c["id"], 60)  # c is still away when the cluster is managed again
    assert api.updateCluster(id=cluster, managedstate="Managed")["cluster"]["managedstate"] == "Managed"
    sim.scheduler.advance(TIMINGS.cluster_reconnect)
    assert [host_state(api, h)[0] for h in (a, b, c)] == ["Up", "Up", "Alert"]
    sim.scheduler.advance(60)
    sim.scheduler.advance(TIMINGS.host_connect)
    assert host_state(api, c)[0] == "Up"
