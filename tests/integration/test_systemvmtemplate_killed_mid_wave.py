"""An operator killed in the middle of a router wave, at each step of a reboot, and started again: against the lab
CloudStack, in process, driven pass by pass as the handlers drive it, with status carried over exactly as the
API server would hold it (the checkpoints written before the kill, nothing after).

The kill is a `Killed` raised at the chosen point, after which nothing the dead operator does reaches CloudStack
or status. The simulator runs on a ManualClock. Until the system VMs run the new template a ticker moves it in
real time (those stages wait for CloudStack jobs inside a pass); from then on, the router stage, it moves only
between passes, when the test moves it. So a reboot job the dead operator submitted is still queued, its router
still Running on the old version, when the new operator first looks: exactly the moment a second reboot would be
submitted. Witnesses: the simulator's audit log (one reboot job per router) and the tenant webhook (one "after"
notice per router)."""
from __future__ import annotations

import asyncio
import copy
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from stackops.drivers.cloudstack import CloudStackClient, CloudStackPool
from stackops.reconcile.systemvmtemplate import SystemVMTemplateReconciler
from stackops_lab.clock import ManualClock
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.rollout import VERSION, Driver, secrets_for, spec_for

from support.rollout import Webhook

FAST = Timings(template_download=0.4, router_reboot=0.3, systemvm_recreate=0.4, host_connect=0.2,
               host_maintenance=0.2, job=0.05)
ROUTERS = 6
REBOOTS = ("upgradeRouterTemplate", "rebootRouter")
STEP = 0.25  # simulated seconds between passes


class Killed(BaseException):
    """The operator's process died (SIGKILL): no handler of the operator catches it."""


class Operator:
    """One operator process: its own reconciler and CloudStack clients, status as the API server holds it.
    `kill_at` names where it dies (the first time that point is reached):

    - "before-submit": the reboot is about to be sent to CloudStack;
    - "after-submit": CloudStack accepted the reboot, the answer (the job id) is lost;
    - "job-written": status was written with the reboot's job id;
    - "job-done": CloudStack answered that a reboot job ended (queryAsyncJobResult, or a listAsyncJobs poll of the
      jobs in flight), the answer is lost."""

    def __init__(self, sim: CloudStackSimulator, hook: Webhook, status: dict[str, Any], kill_at: str = ""):
        self.sim = sim
        self.kill_at = kill_at
        self.dead = False
        self.pool = CloudStackPool(per_endpoint=8, poll_interval=0.05, backoff=0.05, max_backoff=0.2)
        self.reconciler = SystemVMTemplateReconciler(self.pool, pass_seconds=0.3, poll_seconds=0.05,
                                                     retry_backoff=0.2, settle_seconds=0.5)
        self.driver = Driver(self.reconciler, spec_for(sim, max_unavailable=2, webhook=True),
                             secrets_for(sim, hook.url), status=status)
        self.status_at_death: dict[str, Any] = {}
        self._wrap_clients()
        self._wrap_checkpoint()

    def die(self) -> None:
        self.dead = True
        self.status_at_death = copy.deepcopy(self.driver.status)
        raise Killed(self.kill_at)

    def _wrap_clients(self) -> None:
        operator, get = self, self.pool.get

        def wrapped_get(*args: Any, **kwargs: Any) -> CloudStackClient:
            client = get(*args, **kwargs)
            if getattr(client, "wrapped", False):
                return client
            request = client.request

            async def checked(command: str, **params: Any) -> Any:
                if operator.dead:
                    raise Killed("dead")
                if command in REBOOTS and operator.kill_at == "before-submit":
                    operator.die()
                answer = await request(command, **params)
                if operator.dead:
                    raise Killed("dead")
                if command in REBOOTS and operator.kill_at == "after-submit":
                    operator.die()
                if operator.kill_at == "job-done" and any(
                        str(job.get("cmd", "")).endswith("RebootRouterCmd") and job.get("jobstatus")
                        for job in job_answers(command, answer)):
                    operator.die()
                return answer

            client.request = checked  # type: ignore[method-assign]
            client.wrapped = True  # type: ignore[attr-defined]
            return client

        self.pool.get = wrapped_get  # type: ignore[method-assign]

    def _wrap_checkpoint(self) -> None:
        operator, write = self, self.driver.checkpoint

        async def checkpoint(fields: dict[str, Any]) -> None:
            if operator.dead:
                raise Killed("dead")
            await write(fields)
            written = (fields.get("routers") or {}).get("inFlight") or []
            if operator.kill_at == "job-written" and any(f.get("jobId") for f in written):
                operator.die()

        self.driver.checkpoint = checkpoint  # type: ignore[method-assign]

    async def run(self, max_passes: int = 2000) -> None:
        """Passes until the rollout settles, the simulated clock moving STEP after each once the ticker stopped
        (Killed: it died)."""
        try:
            with Ticker(self.sim) as ticker:
                for _ in range(max_passes):  # only stops a hang: a working rollout settles long before
                    if await self.driver.one() is None:
                        return
                    if ticker.done.is_set():
                        self.sim.scheduler.advance(STEP)
                    await asyncio.sleep(0.02)
            raise AssertionError(f"not settled: {self.driver.status}")
        finally:
            await self.pool.close()


def job_answers(command: str, answer: Any) -> list[dict[str, Any]]:
    """The jobs a CloudStack answer reports on: queryAsyncJobResult's one, or a listAsyncJobs page (`count` and
    `asyncjobs`, or the entries of every page)."""
    if command == "queryAsyncJobResult":
        return [answer]
    if command == "listAsyncJobs":
        return list(answer.get("asyncjobs", [])) if isinstance(answer, dict) else list(answer)
    return []


def system_vms_replaced(sim: CloudStackSimulator) -> bool:
    with sim.state.lock:
        vms = [v for v in sim.state.values("systemvm") if sim.state.live(v)]
        return len(vms) >= 2 and all(v.state == "Running" and v.template is not None
                                     and v.template.version == VERSION for v in vms)


class Ticker:
    """Moves the simulator's clock STEP every 10 ms of real time until its system VMs run the new template."""

    def __init__(self, sim: CloudStackSimulator):
        self.sim = sim
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not system_vms_replaced(self.sim) and not self.done.wait(0.01):
            self.sim.scheduler.advance(STEP)
        self.done.set()

    def __enter__(self) -> "Ticker":
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.done.set()
        self.thread.join()


@pytest.fixture
def sim() -> Iterator[CloudStackSimulator]:
    fleet = Fleet(zones=1, hypervisors=("KVM",), routers=ROUTERS, redundant_pairs=1)
    with CloudStackSimulator(fleet=fleet, timings=FAST, clock=ManualClock()) as simulator:
        yield simulator


def reboot_jobs(sim: CloudStackSimulator) -> Counter:
    return Counter(e["instance"] for e in sim.audit()
                   if e.get("event") == "job.created" and str(e.get("cmd", "")).endswith("RebootRouterCmd"))


def notices(hook: Webhook, phase: str) -> Counter:
    return Counter(n["routerId"] for n in hook.notices if n["phase"] == phase)


@pytest.mark.parametrize("kill_at", ["before-submit", "after-submit", "job-written", "job-done"])
def test_an_operator_killed_mid_wave_reboots_no_router_twice_and_tells_each_tenant_once(
        sim: CloudStackSimulator, kill_at: str) -> None:
    with Webhook() as hook:
        first = Operator(sim, hook, {}, kill_at=kill_at)
        with pytest.raises(Killed):
            asyncio.run(first.run())
        assert first.dead and first.status_at_death == first.driver.status
        in_flight = first.status_at_death["routers"]["inFlight"]
        if kill_at == "before-submit":  # written before CloudStack heard of it
            assert in_flight and not any(f["jobId"] for f in in_flight), in_flight
            assert not reboot_jobs(sim)
        if kill_at == "after-submit":  # CloudStack has the job, status only the intent
            assert in_flight and not any(f["jobId"] for f in in_flight), in_flight
            assert reboot_jobs(sim)
        if kill_at == "job-written":
            assert [f["jobId"] for f in in_flight if f["jobId"]], in_flight

        second = Operator(sim, hook, copy.deepcopy(first.driver.status))
        asyncio.run(second.run())

        status = second.driver.status
        assert status["phase"] == "Complete", status
        assert status["routers"]["upgraded"] == ROUTERS and status["routers"]["inFlight"] == []
        routers = {r.uuid: r for r in sim.state.values("router")}
        assert {r.version for r in routers.values()} == {VERSION}
        jobs = reboot_jobs(sim)
        assert set(jobs) == set(routers) and max(jobs.values()) == 1, f"reboot jobs per router: {jobs}"
        starts = Counter(e["router"] for e in sim.audit() if e.get("event") == "router.reboot.start")
        assert max(starts.values()) == 1
        after = notices(hook, "after")
        assert after == Counter(set(routers)), f"'after' notices per router: {after}"
        assert {n["result"] for n in hook.notices if n["phase"] == "after"} == {"upgraded"}
        assert set(notices(hook, "before")) == set(routers)
        assert not [e for e in second.driver.events if e[1] in ("RouterRebootFailed", "RouterFailed")]
