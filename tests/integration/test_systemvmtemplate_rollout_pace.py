"""A whole rollout against the lab CloudStack on a simulated clock: how many API requests it costs per router and
how close its router stage comes to the ideal ceil(N/M) × reboot time.

The simulator's ManualClock moves only when the test or the router wave moves it: between passes by the requeue
the pass asked for (at most 0.5 s, as the handlers' loop in `stackops_lab.rollout.Driver`), inside the router stage
when the wave sleeps until its next poll (after the starts and notices under way reached CloudStack). So every
figure below is the same on an idle machine and a busy one."""
from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from stackops.api.systemvmtemplate import SystemVMTemplateSpec
from stackops.drivers.cloudstack import CloudStackPool
from stackops.reconcile.systemvmtemplate import SystemVMTemplateReconciler
from stackops_lab.clock import ManualClock
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.rollout import VERSION, Driver, analyse, secrets_for, spec_for

ROUTERS, MAX_UNAVAILABLE, REBOOT = 60, 6, 2.0


@pytest.fixture(params=[0, 10], ids=["singles", "10-pairs"])
def sim(request: pytest.FixtureRequest) -> Iterator[CloudStackSimulator]:
    fleet = Fleet(zones=1, hypervisors=("KVM",), routers=ROUTERS, redundant_pairs=request.param)
    timings = Timings(template_download=1.0, router_reboot=REBOOT, systemvm_recreate=0.5, job=0.02)
    with CloudStackSimulator(fleet=fleet, timings=timings, clock=ManualClock()) as simulator:
        yield simulator


def api_requests(sim: CloudStackSimulator) -> Counter:
    """The API requests the simulator answered, by command (its access log)."""
    counts: Counter = Counter()
    for line in sim.access_log():
        url = urlsplit(line.split(" ")[1])
        if url.path == "/client/api":
            counts[parse_qs(url.query).get("command", ["POST"])[0]] += 1
    return counts


async def roll_out(sim: CloudStackSimulator) -> Driver:
    async def sleep(seconds: float) -> None:
        """The wave waits: what it started reaches CloudStack first, then the simulated time moves."""
        here = asyncio.current_task()
        while others := [t for t in asyncio.all_tasks() if t is not here and not t.done()]:
            await asyncio.wait(others)
        sim.scheduler.advance(seconds)

    pool = CloudStackPool(per_endpoint=8, poll_interval=0.25)
    reconciler = SystemVMTemplateReconciler(pool, pass_seconds=8.0, poll_seconds=0.25, clock=sim.clock.time,
                                            sleep=sleep)
    body = spec_for(sim, max_unavailable=MAX_UNAVAILABLE).model_dump(by_alias=True, exclude_unset=True)
    body["rollout"]["systemVMs"] = {"replace": False}  # their replacement waits inside a pass: not on this clock
    spec = SystemVMTemplateSpec.model_validate(body)
    driver = Driver(reconciler, spec, secrets_for(sim))
    try:
        for _ in range(200):
            delay = await driver.one()
            if delay is None:
                return driver
            sim.scheduler.advance(min(delay, 0.5))
        raise AssertionError(f"not settled: {driver.status}")
    finally:
        await pool.close()


def test_a_rollout_costs_at_most_3_requests_per_router_and_keeps_close_to_the_ideal(
        sim: CloudStackSimulator) -> None:
    driver = asyncio.run(roll_out(sim))
    assert driver.status["phase"] == "Complete", driver.status
    assert driver.status["routers"]["upgraded"] == ROUTERS
    assert {r.version for r in sim.state.values("router")} == {VERSION}

    requests = api_requests(sim)
    assert requests["upgradeRouterTemplate"] == ROUTERS and requests["queryAsyncJobResult"] == 0, requests
    assert sum(requests.values()) <= 3 * ROUTERS, requests

    report = analyse(sim.audit())
    assert report.max_rebooting == MAX_UNAVAILABLE and report.both_down == 0
    assert max(report.reboots.values()) == 1
    ideal = math.ceil(ROUTERS / MAX_UNAVAILABLE) * REBOOT
    assert report.last_end - report.first_start <= 1.05 * ideal, (report.last_end - report.first_start, ideal)
