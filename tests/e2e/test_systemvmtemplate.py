"""SystemVMTemplate rollouts against the lab CloudStack (2 zones, 2 hypervisors, 200 routers of which 50 redundant
pairs), driven pass by pass as the handlers drive them. The simulator's audit log is the witness: never more than
maxUnavailable routers rebooting, never both members of a pair down, no router rebooted twice."""
from __future__ import annotations

import asyncio

from cs import CloudStack

from stackops.drivers.cloudstack import CloudStackPool
from stackops.reconcile.systemvmtemplate import SystemVMTemplateReconciler
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.rollout import VERSION, Driver, analyse, secrets_for, spec_for

from support.rollout import Webhook, reboots_by_pair

FAST = Timings(template_download=1.0, router_reboot=0.3, systemvm_recreate=0.5, host_connect=0.2,
               host_maintenance=0.2, job=0.02)


def reconciler(pool: CloudStackPool) -> SystemVMTemplateReconciler:
    return SystemVMTemplateReconciler(pool, pass_seconds=4.0, poll_seconds=0.1, retry_backoff=0.3)


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


async def rollout(sim: CloudStackSimulator, timeout: float = 240, webhook_url: str = "", **spec_args) -> Driver:
    pool = CloudStackPool(per_endpoint=16, poll_interval=0.1, backoff=0.05, max_backoff=0.5)
    driver = Driver(reconciler(pool), spec_for(sim, webhook=bool(webhook_url), **spec_args),
                    secrets_for(sim, webhook_url))
    try:
        await driver.until_settled(timeout)
    finally:
        await pool.close()
    return driver


def client(sim: CloudStackSimulator) -> CloudStack:
    return CloudStack(endpoint=sim.endpoint, key=sim.api_key, secret=sim.secret_key)


def test_a_fleet_of_200_routers_rolls_out_within_its_limits() -> None:
    fleet = Fleet(zones=2, hypervisors=("KVM", "XenServer"), routers=200, redundant_pairs=50)
    with CloudStackSimulator(fleet=fleet, timings=FAST) as sim, Webhook() as hook:
        driver = run(rollout(sim, max_unavailable=10, webhook_url=hook.url))
        assert driver.condition("Ready")["status"] == "True", driver.status
        status = driver.status
        assert status["phase"] == "Complete"
        assert status["routers"]["total"] == 200 and status["routers"]["upgraded"] == 200
        assert status["routers"]["failed"] == 0 and status["routers"]["inFlight"] == []
        assert {(t["hypervisor"], t["zone"]) for t in status["templates"]} == {
            (h, z) for h in ("KVM", "XenServer") for z in ("lab-zone-1", "lab-zone-2")}
        assert all(t["ready"] for t in status["templates"])

        api = client(sim)
        routers = api.listRouters(listall=True, fetch_list=True)
        assert len(routers) == 200 and {r["version"] for r in routers} == {VERSION}
        assert not any(r["requiresupgrade"] for r in routers)
        templates = {t["id"]: t for t in api.listTemplates(templatefilter="all", fetch_list=True)
                     if t["name"].endswith(VERSION)}
        for zone in api.listZones(fetch_list=True):
            for hv in ("kvm", "xenserver"):
                value = api.listConfigurations(name=f"router.template.{hv}", zoneid=zone["id"],
                                               fetch_list=True)[0]["value"]
                assert value == f"systemvm-{hv}-{VERSION}"
            assert api.listConfigurations(name="minreq.sysvmtemplate.version", zoneid=zone["id"],
                                          fetch_list=True)[0]["value"] == VERSION
        system_vms = api.listSystemVms(fetch_list=True)
        assert len(system_vms) == 4 and all(v["templateid"] in templates for v in system_vms)
        assert status["systemVMs"]["replaced"] == 4

        report = analyse(sim.audit())
        assert report.max_rebooting <= 10, report.max_rebooting
        assert report.max_rebooting >= 5, "the budget was used"
        assert report.both_down == 0
        assert max(report.reboots.values()) == 1 and len(report.reboots) == 200
        assert report.rebooted_after_success == []
        # BACKUP first: in each pair the first router rebooted was the pair's BACKUP at that time
        backups = {e["router"] for e in sim.audit() if e.get("event") == "router.reboot.start"
                   and e.get("redundantstate") == "BACKUP"}
        for pair, members in reboots_by_pair(sim.audit()).items():
            assert len(members) == 2, pair
            assert members[0] in backups, pair

        # tenants heard before and after every router, in that order. Delivery is at least once: a "before" whose
        # answer did not reach the operator in time is sent again before the reboot, never after it.
        phases: dict[str, list[str]] = {}
        for notice in hook.notices:
            phases.setdefault(notice["router"], []).append(notice["phase"])
        odd = {r: p for r, p in phases.items() if [k for i, k in enumerate(p) if i == 0 or p[i - 1] != k]
               != ["before", "after"]}
        assert len(phases) == 200 and not odd, odd
        assert sum(p.count("after") for p in phases.values()) == 200
        assert set(hook.notices[0]) >= {"router", "network", "account", "domain", "phase"}

        # converged: another pass changes nothing
        before = len(sim.audit())
        again = run(rollout(sim, max_unavailable=10))
        assert again.condition("Ready")["status"] == "True"
        assert not [e for e in sim.audit()[before:] if e.get("event", "").startswith(("router.reboot",
                                                                                       "systemvm.destroyed",
                                                                                       "template.registered"))]


def test_job_failures_and_rate_limits_are_ridden_out_and_hopeless_routers_are_named() -> None:
    fleet = Fleet(zones=1, hypervisors=("KVM",), routers=60, redundant_pairs=10)
    with CloudStackSimulator(fleet=fleet, timings=FAST) as sim:
        hopeless = sorted(r.name for r in sim.state.tables["router"].values())[:2]
        sim.faults.job_failure_rate = 0.15
        sim.faults.rate_limit_rate = 0.1
        sim.faults.failing_routers = set(hopeless)
        driver = run(rollout(sim, max_unavailable=6, maxRetries=4))
        status = driver.status
        assert status["routers"]["failedRouters"] == hopeless, status["routers"]
        assert status["routers"]["upgraded"] == 58
        assert status["phase"] == "Failed"
        stalled = driver.condition("Stalled")
        assert stalled["status"] == "True" and stalled["reason"] == "RoutersFailed"
        assert all(name in stalled["message"] for name in hopeless)
        report = analyse(sim.audit())
        assert report.max_rebooting <= 6 and report.both_down == 0
        assert report.rebooted_after_success == []
        for name in hopeless:
            router_id = next(r.uuid for r in sim.state.tables["router"].values() if r.name == name)
            assert report.reboots[router_id] == 5  # first attempt + maxRetries


def test_observe_reports_the_rollout_and_changes_nothing() -> None:
    fleet = Fleet(zones=1, hypervisors=("KVM",), routers=10, redundant_pairs=2)
    with CloudStackSimulator(fleet=fleet, timings=FAST) as sim:
        pool = CloudStackPool()
        driver = Driver(reconciler(pool), spec_for(sim).model_copy(update={"management_policy": "Observe"}),
                        secrets_for(sim))
        before = len(sim.audit())
        run(driver.one())
        run(pool.close())
        assert driver.condition("Ready")["status"] == "False"
        assert driver.condition("Ready")["reason"] == "DriftDetected"
        assert any(r == "DriftDetected" for _, r, _ in driver.events)
        assert [e for e in sim.audit()[before:] if not e.get("event", "").startswith("job")] == []


def test_outside_the_maintenance_window_no_router_reboots() -> None:
    import datetime

    tomorrow = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1))
    window = {"days": [tomorrow.strftime("%a")], "start": "00:00", "durationMinutes": 15, "timeZone": "UTC"}
    fleet = Fleet(zones=1, hypervisors=("KVM",), routers=6, redundant_pairs=1)
    with CloudStackSimulator(fleet=fleet, timings=FAST) as sim:
        async def go() -> Driver:
            pool = CloudStackPool(poll_interval=0.1)
            driver = Driver(reconciler(pool), spec_for(sim, maintenanceWindow=window), secrets_for(sim))
            for _ in range(60):
                await driver.one()
                if driver.status.get("phase") == "Waiting":
                    break
                await asyncio.sleep(0.3)
            await pool.close()
            return driver

        driver = run(go())
        audit = sim.audit()
    assert driver.status["phase"] == "Waiting", driver.status
    assert driver.condition("Reconciling")["reason"] == "WaitingForMaintenanceWindow"
    assert driver.status["nextWindow"].startswith(tomorrow.strftime("%Y-%m-%dT00:00:00"))
    assert driver.status["systemVMs"]["replaced"] == 2, "system VMs do not wait for the window"
    assert not [e for e in audit if e.get("event") == "router.reboot.start"]
