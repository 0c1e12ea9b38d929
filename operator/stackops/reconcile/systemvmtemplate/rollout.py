"""The router stage of a rollout: keep up to maxUnavailable routers rebooting, for at most one pass.

Reboots are CloudStack async jobs. A pass starts reboots as slots free up and reaps finished jobs; jobs still
running when the pass ends are picked up by the next pass, so the budget stays full across passes. Routers
CloudStack shows rebooting count against the budget, routers at the new version are never rebooted again.

Every step is written to status (`routers.inFlight`, through ctx.checkpoint) before the next one is taken, so an
operator that dies anywhere in a wave loses nothing: the router's "before" notice is sent, then the reboot is
written without a job id (an intent), then submitted, then written with its job id; a finished reboot's "after"
notice is sent, then the reboot leaves status. A restarted operator reaps the reboots with a job id, resolves the
intents with `listAsyncJobs` (resume.py), and so never submits a second reboot for one the first operator
submitted. A notice is sent at least once: only an operator that dies between a notice and the write after it
sends that notice again (each "after" notice carries the reboot's `jobId`, for receivers that want to see it once).
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import time
from dataclasses import dataclass
from typing import Callable

from ...api.systemvmtemplate import RouterInFlight, RouterProgress, RouterRetry, SystemVMTemplateSpec
from ...drivers.cloudstack import CloudStackClient, CloudStackError, CloudStackUnavailable
from ..base import Checkpoint, EventSink, keep_in_memory
from .notify import NotificationError, Notifier
from .observed import Observed, Router, older
from .plan import Plan, budget, choose_routers, window_state
from .resume import REBOOT_COMMAND, resolve, start_date

log = logging.getLogger(__name__)


def rfc3339(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def epoch(text: str) -> float:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


@dataclass
class Flight:
    router: Router
    job_id: str
    started: float


class RouterWave:
    """One pass of the router stage."""

    def __init__(self, client: CloudStackClient, spec: SystemVMTemplateSpec, plan: Plan, observed: Observed,
                 progress: RouterProgress, notifier: Notifier, event: EventSink, *, deadline: float,
                 poll_seconds: float, retry_backoff: float, checkpoint: Checkpoint = keep_in_memory,
                 settle_seconds: float = 60.0, clock: Callable[[], float] = time.time):
        self.client = client
        self.spec = spec
        self.rules = spec.rollout.routers
        self.plan = plan
        self.observed = observed
        self.progress = progress
        self.notifier = notifier
        self.event = event
        self.deadline = deadline
        self.poll = poll_seconds
        self.retry_backoff = retry_backoff
        self.clock = clock
        self.checkpoint = checkpoint
        self.settle = settle_seconds  # how long an intent without a job may still be on its way (resume.py)
        self.by_id = {r.id: r for r in observed.routers}
        self.flights: dict[str, Flight] = {}
        self.intents: dict[str, RouterInFlight] = {}  # written, maybe submitted, no job id known
        for item in progress.in_flight:
            router = self.by_id.get(item.id)
            if router is not None and item.job_id:
                self.flights[item.id] = Flight(router, item.job_id, epoch(item.started))
            elif router is not None:
                self.intents[item.id] = item
        self.todo = {r.id: r for r in plan.routers_todo}
        self.retries = {r.id: r for r in progress.retrying}
        self.failed = {n for n in progress.failed_routers}
        self.upgraded_now = 0
        self.window_closed = False
        self._saving = asyncio.Lock()
        self._changes = 0  # status changes made / written (save)
        self._saved = 0
        self.notification_error = ""
        self.notification_reason = ""

    # ------------------------------------------------------------------ the loop

    @property
    def external_busy(self) -> set[str]:
        """Routers in scope CloudStack shows rebooting (or starting, stopping) that no reboot of ours explains."""
        return {r.id for r in self.plan.routers_in_scope if r.transitional} - set(self.flights) - set(self.intents)

    async def run(self) -> None:
        await self.resume()
        limit = budget(self.rules.max_unavailable, len(self.plan.routers_in_scope))
        while True:
            await self.reap()
            now = self.clock()
            if now >= self.deadline:
                break
            window = window_state(self.rules.maintenance_window, datetime.datetime.now(datetime.timezone.utc))
            self.window_closed = not window.open
            started: list[Router] = []
            if window.open and not self.notification_error:
                busy = set(self.flights) | set(self.intents) | self.external_busy
                blocked = {rid for rid, r in self.retries.items() if epoch(r.not_before) > now}
                blocked |= {r.id for r in self.todo.values() if r.name in self.failed}
                chosen = choose_routers(list(self.todo.values()), self.observed.routers, busy, limit - len(busy),
                                        blocked=blocked, respect_pairs=self.rules.respect_redundant_pairs)
                started = await self.start_all(chosen)
            if not self.flights and not started:
                break  # nothing rebooting and nothing startable now (done, backing off or outside the window)
            await asyncio.sleep(self.poll)

    async def resume(self) -> None:
        """The intents an earlier pass left: a reboot CloudStack has becomes a flight, one it never got is
        forgotten (the router is rebooted like any other); see resume.py."""
        if not self.intents:
            return
        intents = list(self.intents.values())
        try:
            jobs = await self.client.list("listAsyncJobs", listall=True, keyword=REBOOT_COMMAND,
                                          startdate=start_date(intents, self.clock()))
        except CloudStackError as error:  # the intents stay: their routers count as rebooting until it answers
            log.warning("listing reboot jobs to resume %d reboot(s) failed: %s", len(intents), error.errortext)
            return
        reported = {r.job_id for r in self.retries.values() if r.job_id}
        found = resolve(intents, jobs, now=self.clock(), settle=self.settle, reported=reported)
        for router_id, job_id in found.submitted.items():
            intent = self.intents.pop(router_id)
            self.flights[router_id] = Flight(self.by_id[router_id], job_id, epoch(intent.started))
        for router_id in found.unsent:
            log.info("the reboot of router %s was written but never reached CloudStack", self.intents[router_id].name)
            del self.intents[router_id]
        if found.submitted or found.unsent:
            await self.save()

    async def start_all(self, routers: list[Router]) -> list[Router]:
        """Start these reboots together; the ones started. Every start ends before a failure is raised."""
        results = await asyncio.gather(*(self.start(r) for r in routers), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [r for r, ok in zip(routers, results) if ok]

    async def start(self, router: Router) -> bool:
        zone = self.observed.zone_name(router.zone_id)
        try:
            await self.notifier.send(router, zone, "before", version=router.version, targetVersion=self.spec.version)
        except NotificationError as error:  # tenants must hear before their router goes down: start nothing more
            self.notification_error, self.notification_reason = str(error), error.reason
            return False
        intent = RouterInFlight(id=router.id, name=router.name, started=rfc3339(self.clock()))
        self.intents[router.id] = intent
        self.todo.pop(router.id, None)
        await self.save()  # in status before CloudStack hears of it
        try:
            job_id = ""
            if router.requires_upgrade:
                answer = await self.client.call("upgradeRouterTemplate", id=router.id)
                jobs = answer.get("asyncjobs") or []
                job_id = str(jobs[0].get("jobid", "")) if jobs else ""
            if not job_id:  # CloudStack saw no upgrade to do (it answers `{}`): a reboot boots the new template
                job_id = await self.client.start("rebootRouter", id=router.id)
        except CloudStackUnavailable as error:
            # No clear answer: the reboot may have started. The intent stays; the next pass asks CloudStack.
            log.warning("starting the reboot of %s got no answer: %s", router.name, error.errortext)
            return False
        except CloudStackError as error:
            del self.intents[router.id]
            await self.finish(router, ok=False, why=error.errortext)
            return False
        del self.intents[router.id]
        if not job_id:
            await self.finish(router, ok=False, why="CloudStack started no reboot job")
            return False
        self.flights[router.id] = Flight(router, job_id, epoch(intent.started))
        await self.save()
        return True

    async def reap(self) -> None:
        if not self.flights:
            return
        flights = list(self.flights.values())
        results = await asyncio.gather(*(self.client.job(f.job_id) for f in flights), return_exceptions=True)
        for flight, job in zip(flights, results):
            if isinstance(job, CloudStackError):
                continue  # polled again next round
            if isinstance(job, BaseException):
                raise job
            if not job.done:
                continue
            del self.flights[flight.router.id]
            if not job.ok:
                await self.finish(flight.router, ok=False, why=str(job.result.get("errortext", "reboot job failed")),
                                  job_id=flight.job_id)
                continue
            answer = job.result.get("router") or job.result.get("domainrouter") or {}
            version = str(answer.get("version", "") or flight.router.version)
            if answer and older(version, self.spec.version):
                await self.finish(flight.router, ok=False, why=f"came back on version {version}", job_id=flight.job_id)
            else:
                await self.finish(flight.router, ok=True, why="", version=version, job_id=flight.job_id)

    async def finish(self, router: Router, *, ok: bool, why: str, version: str = "", job_id: str = "") -> None:
        """A reboot ended (or could not start): count it, send the "after" notice, then write status."""
        zone = self.observed.zone_name(router.zone_id)
        self.todo.pop(router.id, None)
        if ok:
            self.retries.pop(router.id, None)
            if older(router.version, self.spec.version):  # seen on the new version already: the plan counted it
                self.upgraded_now += 1
            self.event("Normal", "RouterUpgraded", f"router {router.name} ({router.network}, zone {zone}) "
                       f"rebooted onto version {version or self.spec.version}")
        else:
            retry = self.retries.get(router.id) or RouterRetry(id=router.id, name=router.name)
            retry.attempts += 1
            retry.last_error = why[:300]
            retry.job_id = job_id
            delay = min(self.retry_backoff * 2 ** (retry.attempts - 1), 3600.0)
            retry.not_before = rfc3339(self.clock() + delay)
            self.retries[router.id] = retry
            if retry.attempts > self.rules.max_retries:
                self.failed.add(router.name)
                self.event("Warning", "RouterFailed", f"router {router.name} failed {retry.attempts} time(s), "
                           f"giving up: {why}")
            else:
                self.event("Warning", "RouterRebootFailed", f"router {router.name}: {why}; retry "
                           f"{retry.attempts}/{self.rules.max_retries} not before {retry.not_before}")
        try:
            await self.notifier.send(router, zone, "after", result="upgraded" if ok else "failed",
                                     version=version or router.version, jobId=job_id)
        except Exception as error:  # the reboot happened; a lost "after" notice is reported, not retried
            self.event("Warning", "NotificationFailed", str(error))
        await self.save()

    async def save(self) -> None:
        """Write the router progress to status now (ctx.checkpoint). One write at a time, each with every change
        made before it; a change an earlier write already carried is not written again."""
        self._changes += 1
        wanted = self._changes
        async with self._saving:
            if self._saved >= wanted:
                return
            carried = self._changes
            await self.checkpoint({"routers": self.write().model_dump(by_alias=True, mode="json")})
            self._saved = carried

    # ------------------------------------------------------------------ results

    def write(self) -> RouterProgress:
        progress = self.progress
        progress.total = len(self.plan.routers_in_scope)
        progress.upgraded = self.plan.routers_upgraded + self.upgraded_now
        progress.in_progress = len(self.flights) + len(self.intents) + len(self.external_busy)
        progress.failed_routers = sorted(self.failed)
        progress.failed = len(progress.failed_routers)
        progress.skipped_routers = sorted(r.name for r in self.plan.routers_skipped)
        progress.in_flight = [RouterInFlight(id=f.router.id, name=f.router.name, job_id=f.job_id,
                                             started=rfc3339(f.started)) for f in self.flights.values()]
        progress.in_flight += [i.model_copy() for i in self.intents.values()]
        progress.retrying = [r for r in self.retries.values() if r.name not in self.failed]
        return progress

    @property
    def remaining(self) -> int:
        todo = {r.id for r in self.todo.values() if r.name not in self.failed}
        return len(todo | set(self.flights) | set(self.intents))
