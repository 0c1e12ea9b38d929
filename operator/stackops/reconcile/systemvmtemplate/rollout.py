"""The router stage of a rollout: keep up to maxUnavailable routers rebooting, for at most one pass.

Reboots are CloudStack async jobs. A pass starts reboots as slots free up and reaps finished jobs; when the pass
ends, jobs still running are written to status (`routers.inFlight`) and picked up by the next pass, so the budget
stays full across passes and an operator restart loses nothing: routers CloudStack shows rebooting count against
the budget, routers at the new version are never rebooted again.
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
from ..base import EventSink
from .notify import NotificationError, Notifier
from .observed import Observed, Router, older
from .plan import Plan, budget, choose_routers, window_state

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
                 poll_seconds: float, retry_backoff: float, clock: Callable[[], float] = time.time):
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
        self.by_id = {r.id: r for r in observed.routers}
        self.flights: dict[str, Flight] = {}
        for item in progress.in_flight:
            router = self.by_id.get(item.id)
            if router is not None and item.job_id:
                self.flights[item.id] = Flight(router, item.job_id, epoch(item.started))
        self.todo = {r.id: r for r in plan.routers_todo}
        self.retries = {r.id: r for r in progress.retrying}
        self.failed = {n for n in progress.failed_routers}
        self.upgraded_now = 0
        self.external_busy = {r.id for r in plan.routers_in_scope if r.transitional and r.id not in self.flights}
        self.window_closed = False
        self.notification_error = ""
        self.notification_reason = ""

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
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
                busy = set(self.flights) | self.external_busy
                blocked = {rid for rid, r in self.retries.items() if epoch(r.not_before) > now}
                blocked |= {r.id for r in self.todo.values() if r.name in self.failed}
                chosen = choose_routers(list(self.todo.values()), self.observed.routers, busy, limit - len(busy),
                                        blocked=blocked, respect_pairs=self.rules.respect_redundant_pairs)
                started = [r for r, ok in zip(chosen, await asyncio.gather(*(self.start(r) for r in chosen))) if ok]
            if not self.flights and not started:
                break  # nothing rebooting and nothing startable now (done, backing off or outside the window)
            await asyncio.sleep(self.poll)

    async def start(self, router: Router) -> bool:
        zone = self.observed.zone_name(router.zone_id)
        try:
            await self.notifier.send(router, zone, "before", version=router.version, targetVersion=self.spec.version)
        except NotificationError as error:  # tenants must hear before their router goes down: start nothing more
            self.notification_error, self.notification_reason = str(error), error.reason
            return False
        try:
            job_id = ""
            if router.requires_upgrade:
                answer = await self.client.call("upgradeRouterTemplate", id=router.id)
                jobs = answer.get("asyncjobs") or []
                job_id = str(jobs[0].get("jobid", "")) if jobs else ""
            if not job_id:  # CloudStack saw no upgrade to do (it answers `{}`): a reboot boots the new template
                job_id = await self.client.start("rebootRouter", id=router.id)
        except CloudStackUnavailable as error:
            # No clear answer: the reboot may have started. Leave the router to the next observe.
            log.warning("starting the reboot of %s got no answer: %s", router.name, error.errortext)
            self.todo.pop(router.id, None)
            return False
        except CloudStackError as error:
            await self.finish(router, ok=False, why=error.errortext)
            return False
        if not job_id:
            await self.finish(router, ok=False, why="CloudStack started no reboot job")
            return False
        self.flights[router.id] = Flight(router, job_id, self.clock())
        self.todo.pop(router.id, None)
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
                await self.finish(flight.router, ok=False, why=str(job.result.get("errortext", "reboot job failed")))
                continue
            answer = job.result.get("router") or job.result.get("domainrouter") or {}
            version = str(answer.get("version", "") or flight.router.version)
            if answer and older(version, self.spec.version):
                await self.finish(flight.router, ok=False, why=f"came back on version {version}")
            else:
                await self.finish(flight.router, ok=True, why="", version=version)

    async def finish(self, router: Router, *, ok: bool, why: str, version: str = "") -> None:
        zone = self.observed.zone_name(router.zone_id)
        self.todo.pop(router.id, None)
        if ok:
            self.retries.pop(router.id, None)
            self.upgraded_now += 1
            self.event("Normal", "RouterUpgraded", f"router {router.name} ({router.network}, zone {zone}) "
                       f"rebooted onto version {version or self.spec.version}")
        else:
            retry = self.retries.get(router.id) or RouterRetry(id=router.id, name=router.name)
            retry.attempts += 1
            retry.last_error = why[:300]
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
                                     version=version or router.version)
        except Exception as error:  # the reboot happened; a lost "after" notice is reported, not retried
            self.event("Warning", "NotificationFailed", str(error))

    # ------------------------------------------------------------------ results

    def write(self) -> RouterProgress:
        progress = self.progress
        progress.total = len(self.plan.routers_in_scope)
        progress.upgraded = self.plan.routers_upgraded + self.upgraded_now
        progress.in_progress = len(self.flights) + len(self.external_busy)
        progress.failed_routers = sorted(self.failed)
        progress.failed = len(progress.failed_routers)
        progress.skipped_routers = sorted(r.name for r in self.plan.routers_skipped)
        progress.in_flight = [RouterInFlight(id=f.router.id, name=f.router.name, job_id=f.job_id,
                                             started=rfc3339(f.started)) for f in self.flights.values()]
        progress.retrying = [r for r in self.retries.values() if r.name not in self.failed]
        return progress

    @property
    def remaining(self) -> int:
        return len([r for r in self.todo.values() if r.name not in self.failed]) + len(self.flights)
