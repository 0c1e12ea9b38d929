"""Router reboots survive an operator restart: each is written to status before it is submitted and with its job
right after; a restarted operator resolves what it finds (resume.py) from captured `listAsyncJobs` answers, and
the router stage lasts until every reboot in status was seen to end (its "after" notice)."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from support.rollout import observed, router, spec

from stackops.api.systemvmtemplate import RouterInFlight, RouterProgress, RouterRetry
from stackops.drivers.cloudstack import Job
from stackops.reconcile.systemvmtemplate import plan as planner
from stackops.reconcile.systemvmtemplate.observed import CloudState, Router
from stackops.reconcile.systemvmtemplate.resume import resolve, start_date
from stackops.reconcile.systemvmtemplate.rollout import RouterWave, rfc3339

NOW = 1_780_000_000.0  # 2026-05-28T20:26:40Z
REBOOT_CMD = "org.apache.cloudstack.api.command.admin.router.RebootRouterCmd"


def cs_date(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(epoch))


def listed_job(jobid: str, router: str, created: float, *, cmd: str = REBOOT_CMD, status: int = 0) -> dict[str, Any]:
    """One entry of `listAsyncJobs` as CloudStack answers it (AsyncJobResponse)."""
    return {"accountid": "a1", "account": "tenant-1", "domainid": "d1", "domainpath": "/", "userid": "u1",
            "cmd": cmd, "jobstatus": status, "jobprocstatus": 0, "jobresultcode": 0,
            "jobinstancetype": "DomainRouter", "jobinstanceid": router, "created": cs_date(created), "jobid": jobid}


def intent(router: str, started: float) -> RouterInFlight:
    return RouterInFlight(id=router, name=f"{router}-VM", job_id="", started=rfc3339(started))


# ---------------------------------------------------------------------------------------------------- resolve


def test_an_intent_takes_the_newest_reboot_job_of_its_router_since_it_was_written() -> None:
    jobs = [listed_job("j-old", "r1", NOW - 3600),  # an earlier reboot by someone else
            listed_job("j-stop", "r1", NOW + 1, cmd="org.apache.cloudstack.api.command.admin.router.StopRouterCmd"),
            listed_job("j-other", "r2", NOW + 1),
            listed_job("j1", "r1", NOW + 1), listed_job("j1b", "r1", NOW + 2)]
    found = resolve([intent("r1", NOW)], jobs, now=NOW + 5, settle=60)
    assert found.submitted == {"r1": "j1b"} and found.unsent == [] and found.unsure == []


def test_an_intent_without_a_job_is_unsure_until_it_settles_then_unsent() -> None:
    jobs = [listed_job("j-old", "r1", NOW - 3600), listed_job("j-other", "r2", NOW + 1)]
    assert resolve([intent("r1", NOW)], jobs, now=NOW + 10, settle=60).unsure == ["r1"]
    assert resolve([intent("r1", NOW)], jobs, now=NOW + 61, settle=60).unsent == ["r1"]


def test_a_failed_attempt_already_reported_is_never_taken_for_the_next_one() -> None:
    failed = listed_job("j-failed", "r1", NOW - 30, status=2)  # within the clock skew of the new intent
    found = resolve([intent("r1", NOW)], [failed], now=NOW + 61, settle=60, reported={"j-failed"})
    assert found.submitted == {} and found.unsent == ["r1"]
    assert resolve([intent("r1", NOW)], [failed], now=NOW + 61, settle=60).submitted == {"r1": "j-failed"}


def test_the_server_clock_may_run_behind_by_the_skew() -> None:
    assert resolve([intent("r1", NOW)], [listed_job("j1", "r1", NOW - 50)], now=NOW, settle=60).submitted == {
        "r1": "j1"}


def test_start_date_is_the_day_before_the_oldest_intent() -> None:
    assert start_date([intent("r1", NOW), intent("r2", NOW - 86400 * 3)], NOW) == "2026-05-24"


# ---------------------------------------------------------------------------------------------------- plan


def test_the_router_stage_lasts_while_a_reboot_in_status_is_not_seen_to_end() -> None:
    facts = observed(router(1, version="4.19.1"), router(2, state="Starting"))
    assert planner.plan(spec(), facts).stage == "Complete"  # nothing to start: but r2's reboot is ours
    plan = planner.plan(spec(), facts, [], ["r2"])
    assert plan.stage == "UpgradingRouters" and [r.id for r in plan.routers_in_flight] == ["r2"]
    assert planner.plan(spec(), observed(router(1, version="4.19.1")), [], ["r2"]).stage == "Complete"  # gone


# ---------------------------------------------------------------------------------------------------- the wave


class Recorder:
    """CloudStack, the status writes and the tenant webhook of one wave, in the order they happen."""

    def __init__(self, listed: list[dict[str, Any]] = (), job_status: int = 0) -> None:
        self.log: list[tuple[str, Any]] = []
        self.listed = list(listed)
        self.job_status = job_status
        self.status: dict[str, Any] = {}

    async def list(self, command: str, **params: Any) -> list[dict[str, Any]]:
        self.log.append(("cloudstack", command))
        return self.listed if command == "listAsyncJobs" else []

    async def page(self, command: str, page: int, pagesize: int, **params: Any) -> tuple[list[dict[str, Any]], int]:
        self.log.append(("cloudstack", command))
        listed = self.listed if command == "listAsyncJobs" else []
        return listed[(page - 1) * pagesize:page * pagesize], len(listed)

    async def call(self, command: str, **params: Any) -> dict[str, Any]:
        self.log.append(("cloudstack", command))
        assert command == "upgradeRouterTemplate"
        return {"asyncjobs": [{"jobid": f"job-{params['id']}"}]}

    async def start(self, command: str, **params: Any) -> str:
        raise AssertionError(f"unexpected {command}")

    async def job(self, jobid: str) -> Job:
        self.log.append(("cloudstack", f"queryAsyncJobResult {jobid}"))
        result = {"router": {"version": "4.19.1"}} if self.job_status == 1 else {}
        return Job(jobid=jobid, status=self.job_status, result=result)

    async def checkpoint(self, fields: dict[str, Any]) -> None:
        self.status = fields["routers"]
        self.log.append(("status", [(f["id"], f["jobId"]) for f in fields["routers"]["inFlight"]]))

    async def send(self, router: Router, zone: str, phase: str, **extra: Any) -> None:
        self.log.append(("notice", (phase, router.id, extra.get("jobId"))))


def wave(recorder: Recorder, facts: CloudState, progress: RouterProgress, *, settle: float = 60.0) -> RouterWave:
    plan = planner.plan(spec(), facts, [], [f.id for f in progress.in_flight])
    return RouterWave(recorder, spec(), plan, facts, progress, recorder, lambda *e: None,  # type: ignore[arg-type]
                      deadline=time.time() + 0.3, poll_seconds=0.05, retry_backoff=30.0,
                      checkpoint=recorder.checkpoint, settle_seconds=settle)


def submits(recorder: Recorder) -> list[str]:
    return [what for kind, what in recorder.log if kind == "cloudstack" and what in ("upgradeRouterTemplate",
                                                                                     "rebootRouter")]


def followed(recorder: Recorder, job: str) -> bool:
    """Whether CloudStack was asked about `job` after status recorded it in flight (a listing of the reboot jobs,
    which the Recorder answers with its job, or its own queryAsyncJobResult)."""
    written = next((i for i, (kind, what) in enumerate(recorder.log)
                    if kind == "status" and any(j == job for _, j in what)), None)
    return written is not None and any(
        what in ("listAsyncJobs", f"queryAsyncJobResult {job}") for kind, what in recorder.log[written:]
        if kind == "cloudstack")


def test_a_reboot_is_written_before_it_is_submitted_and_with_its_job_right_after() -> None:
    recorder = Recorder()
    asyncio.run(wave(recorder, observed(router(1)), RouterProgress()).run())
    steps = [step for step in recorder.log if step[0] != "cloudstack" or step[1] == "upgradeRouterTemplate"]
    assert steps[:4] == [("notice", ("before", "r1", None)), ("status", [("r1", "")]),
                         ("cloudstack", "upgradeRouterTemplate"), ("status", [("r1", "job-r1")])]
    assert recorder.status["inFlight"][0]["jobId"] == "job-r1"


@pytest.mark.parametrize("seen", [router(1, state="Starting"), router(1, version="4.19.1")])
def test_a_finished_reboot_is_told_then_leaves_status_and_is_counted_once(seen: Router) -> None:
    recorder = Recorder(job_status=1)
    progress = RouterProgress(in_flight=[RouterInFlight(id="r1", name="r-1-VM", job_id="job-r1",
                                                        started=rfc3339(time.time()))])
    asyncio.run(wave(recorder, observed(seen), progress).run())
    steps = [step for step in recorder.log if step[0] != "cloudstack"]
    assert steps == [("notice", ("after", "r1", "job-r1")), ("status", [])]
    assert submits(recorder) == [] and recorder.status["upgraded"] == 1


def test_a_restart_takes_the_job_cloudstack_has_for_an_intent_and_submits_nothing() -> None:
    started = time.time() - 5
    recorder = Recorder([listed_job("job-seen", "r1", started + 1)])
    progress = RouterProgress(in_flight=[intent("r1", started)])
    done = wave(recorder, observed(router(1)), progress)  # the job is queued: r1 still Running on 4.18.0
    asyncio.run(done.run())
    assert submits(recorder) == [] and followed(recorder, "job-seen")
    assert [(f["id"], f["jobId"]) for f in recorder.status["inFlight"]] == [("r1", "job-seen")]
    assert not any(step[0] == "notice" for step in recorder.log)  # "before" was sent by the first operator


def test_a_restart_keeps_a_young_intent_without_a_job_as_rebooting() -> None:
    recorder = Recorder([listed_job("job-other", "r9", time.time())])
    progress = RouterProgress(in_flight=[intent("r1", time.time() - 5)])
    done = wave(recorder, observed(router(1), router(2)), progress)  # maxUnavailable 1: r1 holds the slot
    asyncio.run(done.run())
    assert submits(recorder) == [] and list(done.intents) == ["r1"]
    assert [(f.id, f.job_id) for f in done.write().in_flight] == [("r1", "")] and done.remaining == 2


def test_a_restart_reboots_the_router_of_an_intent_cloudstack_never_got_once_it_settled() -> None:
    recorder = Recorder([listed_job("job-failed-before", "r1", time.time() - 10, status=2)])
    progress = RouterProgress(in_flight=[intent("r1", time.time() - 5)],
                              retrying=[RouterRetry(id="r1", name="r-1-VM", attempts=1, job_id="job-failed-before")])
    asyncio.run(wave(recorder, observed(router(1)), progress, settle=1.0).run())
    assert submits(recorder) == ["upgradeRouterTemplate"]
    assert [(f["id"], f["jobId"]) for f in recorder.status["inFlight"]] == [("r1", "job-r1")]
