"""Following the router reboots in flight: one `listAsyncJobs` request a poll for all of them (jobs.py), polls when
a reboot may have ended (timing.py), and a slot that frees goes to the next router at once (rollout.py). CloudStack
is a fake listing here; the wave's clock is a virtual one where a test says so."""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import pytest
from support.rollout import observed, router, spec

from stackops.api.systemvmtemplate import RouterInFlight, RouterProgress
from stackops.drivers.cloudstack import CloudStackServerError, Job
from stackops.reconcile.systemvmtemplate.jobs import SLACK, Listing, poll, window
from stackops.reconcile.systemvmtemplate import plan as planner
from stackops.reconcile.systemvmtemplate.observed import CloudState, Router
from stackops.reconcile.systemvmtemplate.rollout import RouterWave, WaveMemory, rfc3339
from stackops.reconcile.systemvmtemplate.timing import RebootTimes

REBOOT_CMD = "org.apache.cloudstack.api.command.admin.router.RebootRouterCmd"
DAY = "2026-05-27"


# ---------------------------------------------------------------------------------------------------- window


def test_a_window_is_the_smallest_page_that_holds_the_positions() -> None:
    assert window(0, 25) == (1, 25)
    assert window(25, 50) == (2, 25)
    assert window(480, 530) == (10, 53)  # no page of 50 to 52 entries holds 480 … 529
    for first in range(0, 1200, 7):
        for end in range(first + 1, first + 60, 5):
            page, size = window(first, end)
            assert (page - 1) * size <= first and end <= page * size
            assert all(first // smaller != (end - 1) // smaller for smaller in range(end - first, size))
    assert window(0, 501) is None and window(10, 20, largest=9) is None


# ---------------------------------------------------------------------------------------------------- poll


def entry(jobid: str, status: int = 0) -> dict[str, Any]:
    """One AsyncJobResponse of `listAsyncJobs`."""
    result = {"jobresulttype": "object", "jobresult": {"router": {"version": "4.19.1"}}} if status else {}
    return {"accountid": "a1", "account": "tenant-1", "domainid": "d1", "domainpath": "/", "userid": "u1",
            "cmd": REBOOT_CMD, "jobstatus": status, "jobprocstatus": 0, "jobresultcode": 0, **result,
            "jobinstancetype": "DomainRouter", "jobinstanceid": f"router-{jobid}", "created": f"{DAY}T20:00:00+0000",
            "jobid": jobid}


class Listed:
    """CloudStack's reboot jobs, as listAsyncJobs pages them (ordered by job id) and queryAsyncJobResult answers."""

    def __init__(self, *jobids: str) -> None:
        self.entries = [entry(j) for j in jobids]
        self.hidden: set[str] = set()  # jobs queryAsyncJobResult knows and the listing does not show
        self.requests: list[tuple[str, Any]] = []

    def add(self, *jobids: str) -> None:
        self.entries += [entry(j) for j in jobids]

    def end(self, jobid: str, status: int = 1) -> None:
        self.entries = [entry(jobid, status) if e["jobid"] == jobid else e for e in self.entries]

    @property
    def shown(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["jobid"] not in self.hidden]

    async def page(self, command: str, page: int, pagesize: int,
                   **params: Any) -> tuple[list[dict[str, Any]], int]:
        assert command == "listAsyncJobs" and params["listall"] and params["keyword"] == "RebootRouterCmd"
        assert 1 <= pagesize <= 500
        self.requests.append(("page", (page, pagesize)))
        return self.shown[(page - 1) * pagesize:page * pagesize], len(self.shown)

    async def list(self, command: str, **params: Any) -> list[dict[str, Any]]:
        self.requests.append(("list", command))
        return self.shown

    async def job(self, jobid: str) -> Job:
        self.requests.append(("queryAsyncJobResult", jobid))
        found = [e for e in self.entries if e["jobid"] == jobid]
        if not found:
            raise CloudStackServerError("queryAsyncJobResult", "no such job", errorcode=530)
        return Job.parse(jobid, found[0])


def test_a_poll_is_one_request_for_every_job_in_flight() -> None:
    cloud = Listed(*(f"old-{n}" for n in range(1200)), *(f"j{n}" for n in range(25)))
    listing = Listing()
    first = asyncio.run(poll(cloud, [f"j{n}" for n in range(25)], DAY, listing))
    assert cloud.requests == [("list", "listAsyncJobs")]  # a fresh operator reads the listing once
    assert set(first) == {f"j{n}" for n in range(25)} and not any(j.done for j in first.values())

    for round_ in range(20):  # a rollout: jobs end, the next ones are appended behind them
        cloud.requests.clear()
        ended = [f"j{n}" for n in range(round_ * 5, round_ * 5 + 5)]
        for jobid in ended:
            cloud.end(jobid)
        flying = [f"j{n}" for n in range(round_ * 5, round_ * 5 + 25)]
        jobs = asyncio.run(poll(cloud, flying, DAY, listing))
        assert [kind for kind, _ in cloud.requests] == ["page"], cloud.requests
        page, size = cloud.requests[0][1]
        assert size <= 25 + 5 + SLACK or (page - 1) * size > 1200  # the window, not the 1,200 older jobs
        assert {j for j, job in jobs.items() if job.done} == set(ended) and set(jobs) == set(flying)
        cloud.add(*(f"j{n}" for n in range(round_ * 5 + 25, round_ * 5 + 30)))


def test_a_job_the_page_misses_makes_the_poll_read_the_whole_listing() -> None:
    cloud = Listed(*(f"old-{n}" for n in range(100)), "j1", "j2")
    listing = Listing()
    asyncio.run(poll(cloud, ["j1", "j2"], DAY, listing))
    cloud.entries = cloud.entries[50:]  # older jobs expunged: everything moved back
    cloud.end("j1")
    cloud.requests.clear()
    jobs = asyncio.run(poll(cloud, ["j1", "j2"], DAY, listing))
    assert [kind for kind, _ in cloud.requests] == ["page", "list"]
    assert jobs["j1"].done and not jobs["j2"].done
    cloud.requests.clear()
    asyncio.run(poll(cloud, ["j1", "j2"], DAY, listing))  # positions learned again: one page
    assert [kind for kind, _ in cloud.requests] == ["page"]


def test_a_new_start_date_or_a_job_the_listing_lacks() -> None:
    cloud = Listed("j1", "j2", "j3")
    cloud.hidden = {"j3"}
    cloud.end("j3", status=2)
    listing = Listing()
    jobs = asyncio.run(poll(cloud, ["j1", "j2", "j3", "gone"], DAY, listing))
    assert cloud.requests == [("list", "listAsyncJobs"), ("queryAsyncJobResult", "j3"),
                              ("queryAsyncJobResult", "gone")]
    assert set(jobs) == {"j1", "j2", "j3"} and jobs["j3"].done and not jobs["j3"].ok  # "gone": polled next time
    cloud.requests.clear()
    asyncio.run(poll(cloud, ["j1", "j2"], "2026-05-28", listing))  # another listing: positions unknown
    assert cloud.requests == [("list", "listAsyncJobs")]


def test_a_failed_listing_is_the_polls_failure() -> None:
    class Down(Listed):
        async def list(self, command: str, **params: Any) -> list[dict[str, Any]]:
            raise CloudStackServerError(command, "internal error", errorcode=530)

    with pytest.raises(CloudStackServerError):
        asyncio.run(poll(Down("j1"), ["j1"], DAY, Listing()))


# ---------------------------------------------------------------------------------------------------- timing


def test_until_a_reboot_was_seen_to_end_polls_start_soon_and_grow_to_poll_seconds() -> None:
    times = RebootTimes(poll_seconds=1.0)
    assert times.expected is None and times.next_poll(100.0, 100.0, []) is None
    assert times.next_poll(100.0, 100.0, [100.0]) == pytest.approx(100.125)
    assert times.next_poll(100.2, 100.2, [100.0]) == pytest.approx(100.325)
    assert times.next_poll(108.0, 108.0, [100.0]) == pytest.approx(109.0)


def test_polls_come_when_a_reboot_is_due_then_often_then_less() -> None:
    times = RebootTimes(poll_seconds=1.0)
    for seconds in (60.0, 61.0, 59.0, 62.0, 75.0):
        times.learn(seconds, seconds)
    assert times.expected == 60.0  # a low quantile: the reboots that take longer are polled for after
    assert times.fine == pytest.approx(0.6)
    assert times.next_poll(0.0, 0.0, [0.0, 10.0]) == pytest.approx(30.0)  # early failures: a poll every E/2
    assert times.next_poll(50.0, 45.0, [0.0, 10.0]) == pytest.approx(60.0)  # then when the first is due
    assert times.next_poll(60.0, 60.0, [0.0, 10.0]) == pytest.approx(60.6)  # due: every hundredth of E
    assert times.next_poll(64.0, 63.5, [0.0]) == pytest.approx(64.5)  # late: a quarter of how late, at most 1 s


def test_a_reboot_teaches_the_middle_of_where_it_ended_or_a_little_less_than_its_end() -> None:
    times = RebootTimes(poll_seconds=1.0)
    times.learn(1.9, 2.1)  # polls close together (fine: 1/8 s until a reboot was seen): the middle
    times.learn(3.0, 2.0)  # seen pending "after" it ended: clocks disagree, the end counts
    assert list(times.samples) == [pytest.approx(2.0), pytest.approx(2.0)]
    times.learn(1.0, 2.0)  # last seen pending long before: a twentieth less than the end
    times.learn(2.4, 2.5)  # a quarter of the gap at most
    assert list(times.samples)[2:] == [pytest.approx(1.9), pytest.approx(2.475)]


# ---------------------------------------------------------------------------------------------------- the wave


class Cloud(Listed):
    """Listed, plus upgradeRouterTemplate (a job per router, named after it), the tenant webhook and status."""

    def __init__(self, *jobids: str, after_yields: int = 0) -> None:
        super().__init__(*jobids)
        self.log: list[tuple[str, str]] = []
        self.after_yields = after_yields  # an "after" notice takes this many turns of the event loop

    async def call(self, command: str, **params: Any) -> dict[str, Any]:
        assert command == "upgradeRouterTemplate"
        self.requests.append((command, params["id"]))
        self.log.append(("submit", params["id"]))
        self.add(f"job-{params['id']}")
        return {"asyncjobs": [{"jobid": f"job-{params['id']}"}]}

    async def start(self, command: str, **params: Any) -> str:
        raise AssertionError(f"unexpected {command}")

    async def send(self, router: Router, zone: str, phase: str, **extra: Any) -> None:
        self.log.append((phase, router.id))
        if phase == "after":
            for _ in range(self.after_yields):
                await asyncio.sleep(0)
            self.log.append(("after sent", router.id))

    async def checkpoint(self, fields: dict[str, Any]) -> None:
        self.log.append(("status", ",".join(f["id"] for f in fields["routers"]["inFlight"])))


def in_flight(*routers: str, started: float) -> RouterProgress:
    return RouterProgress(in_flight=[RouterInFlight(id=r, name=f"{r}-VM", job_id=f"job-{r}", started=rfc3339(started))
                                     for r in routers])


def wave(cloud: Cloud, facts: CloudState, progress: RouterProgress, max_unavailable: int, **kwargs: Any) -> RouterWave:
    plan = planner.plan(spec(max_unavailable), facts, [], [f.id for f in progress.in_flight])
    options: dict[str, Any] = {"deadline": time.time() + 0.3, "poll_seconds": 0.02, **kwargs}
    return RouterWave(cloud, spec(max_unavailable), plan, facts, progress, cloud, lambda *e: None,  # type: ignore[arg-type]
                      retry_backoff=30.0, checkpoint=cloud.checkpoint, **options)


def test_a_freed_slot_goes_to_the_next_router_while_the_ended_reboot_is_told() -> None:
    cloud = Cloud("job-r1", "job-r2", after_yields=50)
    cloud.end("job-r1")  # r2's job runs on
    facts = observed(router(1, state="Starting"), router(2, state="Stopping"), router(3))
    asyncio.run(wave(cloud, facts, in_flight("r1", "r2", started=time.time()), 2).run())
    log = cloud.log
    assert ("submit", "r3") in log and log.index(("submit", "r3")) < log.index(("after sent", "r1")), log
    assert log.index(("before", "r3")) < log.index(("status", "r2,r1,r3")) < log.index(("submit", "r3"))
    assert log[-1] == ("status", "r2,r3")  # r1 left status once told


def test_a_reboot_of_ours_that_ends_in_the_pass_frees_its_slot() -> None:
    """r1 was rebooting (Starting) when the pass observed CloudStack: its slot is ours, not some other reboot's."""
    cloud = Cloud("job-r1")
    cloud.end("job-r1")
    facts = observed(router(1, state="Starting"), router(2))
    done = wave(cloud, facts, in_flight("r1", started=time.time()), 1)
    asyncio.run(done.run())
    assert ("submit", "r2") in cloud.log and done.write().in_progress == 1


class VirtualTime:
    def __init__(self) -> None:
        self.now = 1_780_000_000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def test_ten_reboots_in_flight_cost_one_request_a_poll_and_a_slot_is_refilled_at_the_poll_that_frees_it() -> None:
    virtual = VirtualTime()
    start = virtual.now
    memory = WaveMemory(times=RebootTimes(samples=deque([2.0] * 5, maxlen=25)))  # reboots took 2 s so far
    cloud = Cloud()
    running: dict[str, float] = {}  # job → when it was answered
    submitted: dict[str, float] = {}  # router → when its reboot was submitted
    submit = cloud.call

    async def call(command: str, **params: Any) -> dict[str, Any]:
        answer = await submit(command, **params)
        running[answer["asyncjobs"][0]["jobid"]] = submitted[params["id"]] = virtual.now
        return answer

    async def sleep(seconds: float) -> None:  # CloudStack ends each reboot 2 s after answering with its job
        await virtual.sleep(seconds)
        for jobid, answered in list(running.items()):
            if virtual.now - answered >= 2.0:
                cloud.end(jobid)
                del running[jobid]

    cloud.call = call  # type: ignore[method-assign]
    done = wave(cloud, observed(*(router(n) for n in range(1, 21))), RouterProgress(), 10,
                deadline=start + 60, clock=virtual.clock, sleep=sleep, memory=memory)
    asyncio.run(done.run())
    polls = [r for kind, r in cloud.requests if kind in ("page", "list", "queryAsyncJobResult")]
    assert len(submitted) == 20 and done.remaining == 0
    assert len(polls) == done.polls <= 12  # one request a poll, ten jobs in flight
    assert {round(t - start, 3) for t in submitted.values()} == {0.0, 2.0}  # the poll at 2 s refilled the slots
    assert virtual.now - start <= 4.0 + memory.times.fine  # the second ten seen to end as they ended
