"""Async jobs and the scheduler thread that drives every time-based transition.

Mirrors CloudStack's AsyncJobManager as the API shows it: an async command answers at once with a job id;
the work runs later (ApiAsyncJobDispatcher.runJob); queryAsyncJobResult reports jobstatus 0 (pending),
1 (succeeded) or 2 (failed) with jobresultcode, jobresulttype "object" and jobresult — the command's response
object, or on failure an ExceptionResponse {uuidList, errorcode, errortext} (no cserrorcode), the job's
result code being that error code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stackops_lab.audit import AuditLog
from stackops_lab.scheduler import Scheduler
from stackops_lab.cloudstack.errors import INTERNAL_ERROR
from stackops_lab.cloudstack.faults import FaultDice
from stackops_lab.cloudstack.state import Account, Entity, State
from stackops_lab.cloudstack.timings import Timings

log = logging.getLogger(__name__)

PENDING, SUCCEEDED, FAILED = 0, 1, 2


@dataclass(eq=False)
class Job(Entity):
    cmd: str = ""  # Java class name of the command, as AsyncJobVO.cmd
    account: Account | None = None
    user_uuid: str = ""
    instance_type: str | None = None
    instance_uuid: str | None = None
    created: float = field(default_factory=time.time)  # Jobs.submit: the simulator's clock
    status: int = PENDING
    result_code: int = 0
    result: dict[str, Any] | None = None
    completed: float | None = None
    injected_failure: bool = False
    earliest: float = 0.0
    kind = "job"


class JobContext:
    """What a job's runner gets: schedule further steps (run under the state lock), then succeed or fail."""

    def __init__(self, jobs: Jobs, job: Job) -> None:
        self.jobs = jobs
        self.job = job

    @property
    def injected_failure(self) -> bool:
        return self.job.injected_failure

    def later(self, delay: float, step: Callable[[], None]) -> None:
        self.jobs.scheduler.call_later(delay, self.jobs.guarded(self.job, step))

    def succeed(self, result: dict[str, Any]) -> None:
        self.jobs.finish(self.job, SUCCEEDED, 0, result)

    def fail(self, code: int, text: str) -> None:
        self.jobs.finish(self.job, FAILED, code, {"uuidList": [], "errorcode": code, "errortext": text})


Runner = Callable[[JobContext], None]


class Jobs:
    """Creates, runs and completes async jobs."""

    def __init__(self, state: State, scheduler: Scheduler, audit: AuditLog, timings: Timings,
                 dice: FaultDice) -> None:
        self.state = state
        self.scheduler = scheduler
        self.audit = audit
        self.timings = timings
        self.dice = dice

    def submit(self, cmd: str, account: Account, user_uuid: str, instance_type: str | None,
               instance_uuid: str | None, runner: Runner, failure_text: str | None = None) -> Job:
        """Queue a job (call with the state lock held). With an injected failure and a `failure_text` the
        runner never runs and the job fails with that text; runners that model their own failure (router
        reboot) get `failure_text=None` and look at `ctx.injected_failure`."""
        state = self.state
        job = state.add(Job(uuid=state.new_uuid(), db_id=state.next_id("job"), cmd=cmd, account=account,
                            user_uuid=user_uuid, instance_type=instance_type, instance_uuid=instance_uuid,
                            created=self.scheduler.clock.time(), injected_failure=self.dice.job_fails()))
        self.audit.record("job.created", job=job.uuid, cmd=cmd, instance=instance_uuid,
                          injected_failure=job.injected_failure)

        def start() -> None:
            job.earliest = self.scheduler.clock.monotonic() + self.timings.job
            context = JobContext(self, job)
            if job.injected_failure and failure_text is not None:
                context.fail(INTERNAL_ERROR, failure_text)
                return
            runner(context)

        self.scheduler.call_later(self.dice.faults.slow_job_seconds, self.guarded(job, start))
        return job

    def guarded(self, job: Job, step: Callable[[], None]) -> Callable[[], None]:
        """A step whose unexpected exception fails the job with 530, as ApiAsyncJobDispatcher does."""

        def run() -> None:
            try:
                step()
            except Exception as error:
                log.exception("job %s failed unexpectedly", job.uuid)
                if job.status == PENDING:
                    self.finish(job, FAILED, INTERNAL_ERROR,
                                {"uuidList": [], "errorcode": INTERNAL_ERROR, "errortext": str(error)})

        return run

    def finish(self, job: Job, status: int, code: int, result: dict[str, Any]) -> None:
        if job.status != PENDING:
            return
        wait = job.earliest - self.scheduler.clock.monotonic()
        if wait > 0:
            self.scheduler.call_later(wait, lambda: self.finish(job, status, code, result))
            return
        job.status, job.result_code, job.result, job.completed = status, code, result, self.scheduler.clock.time()
        self.audit.record("job.completed", job=job.uuid, cmd=job.cmd, status=status, resultcode=code,
                          instance=job.instance_uuid)
