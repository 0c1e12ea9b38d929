"""The router stage of a rollout: keep up to maxUnavailable routers rebooting, for at most one pass.

Reboots are CloudStack async jobs. A pass starts reboots as slots free up and follows the jobs in flight with one
`listAsyncJobs` request a poll, whatever their number (jobs.py), polling when a reboot may have ended (timing.py:
from how long the reboots seen so far took). The moment a poll shows a job ended its slot is given to the next
router, while that reboot's "after" notice is sent. Jobs still running when the pass ends are picked up by the next
pass, so the budget stays full across passes; a pass past its time ends at a moment no reboot is due to end before
the next pass can follow it (`handover_seconds`), or after one more reboot's time at the latest. Routers CloudStack
shows rebooting count against the budget, routers at the new version are never rebooted again.

Every step is written to status (`routers.inFlight`, through ctx.checkpoint) before the next one is taken, so an
operator that dies anywhere in a wave loses nothing: the router's "before" notice is sent, then the reboot is
written without a job id (an intent), then submitted, then written with its job id; a finished reboot's "after"
notice is sent, then the reboot leaves status (until then it stays there, though its slot is already the next
router's). A restarted operator reaps the reboots with a job id, resolves the intents with `listAsyncJobs`
(resume.py), and so never submits a second reboot for one the first operator submitted. A notice is sent at least
once: only an operator that dies between a notice and the write after it sends that notice again (each "after"
notice carries the reboot's `jobId`, for receivers that want to see it once).
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Coroutine

from ...api.systemvmtemplate import RouterInFlight, RouterProgress, RouterRetry, SystemVMTemplateSpec
from ...drivers.cloudstack import CloudStackClient, CloudStackError, CloudStackUnavailable, Job
from ..base import Checkpoint, EventSink, keep_in_memory
from .jobs import Listing, poll
from ..notify import NotificationError
from .notify import RouterNotifier
from .observed import CloudState, Router, older
from ..window import window_state
from .plan import Plan, budget, choose_routers
from .resume import REBOOT_COMMAND, resolve, start_date
from .timing import RebootTimes

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
    started: float  # as status keeps it: whole seconds
    answered: float | None = None  # when CloudStack answered with the job, on this operator's clock (None: unknown)
    pending_seen: float | None = None  # the last poll that saw the job pending

    @property
    def since(self) -> float:
        return self.answered if self.answered is not None else self.started


@dataclass
class WaveMemory:
    """What one SystemVMTemplate's waves learn and hand to the next pass of the same operator: how long reboots
    take, where its jobs stand in the listing, when each job was answered. An operator that starts afresh learns
    them again."""

    times: RebootTimes = field(default_factory=RebootTimes)
    listing: Listing = field(default_factory=Listing)
    answered: dict[str, float] = field(default_factory=dict)  # job id → when CloudStack answered with it


class RouterWave:
    """One pass of the router stage."""

    def __init__(self, client: CloudStackClient, spec: SystemVMTemplateSpec, plan: Plan, observed: CloudState,
                 progress: RouterProgress, notifier: RouterNotifier, event: EventSink, *, deadline: float,
                 poll_seconds: float, retry_backoff: float, checkpoint: Checkpoint = keep_in_memory,
                 settle_seconds: float = 60.0, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, memory: WaveMemory | None = None,
                 handover_seconds: float = 1.0):
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
        self.sleep = sleep
        self.checkpoint = checkpoint
        self.settle = settle_seconds  # how long an intent without a job may still be on its way (resume.py)
        self.memory = memory or WaveMemory()
        self.memory.times.poll_seconds = poll_seconds
        self.handover = handover_seconds  # how long the next pass takes to follow the reboots this one leaves
        self.by_id = {r.id: r for r in observed.routers}
        self.flights: dict[str, Flight] = {}
        self.finishing: dict[str, Flight] = {}  # ended, "after" notice not sent yet: in status, not in the budget
        self.intents: dict[str, RouterInFlight] = {}  # written, maybe submitted, no job id known
        for item in progress.in_flight:
            router = self.by_id.get(item.id)
            if router is not None and item.job_id:
                self.flights[item.id] = Flight(router, item.job_id, epoch(item.started),
                                               self.memory.answered.get(item.job_id))
            elif router is not None:
                self.intents[item.id] = item
        self.ours = set(self.flights)  # every router whose reboot this wave followed
        self.todo = {r.id: r for r in plan.routers_todo}
        self.retries = {r.id: r for r in progress.retrying}
        self.failed = {n for n in progress.failed_routers}
        self.limit = budget(self.rules.max_unavailable, len(plan.routers_in_scope))
        self.starting: set[str] = set()  # chosen, "before" notice on its way: no intent yet
        self.tasks: set[asyncio.Future[Any]] = set()  # starts and "after" notices under way
        self.error: BaseException | None = None
        self.upgraded_now = 0
        self.window_closed = False
        self.last_poll = clock()
        self.polls = 0
        self._saving = asyncio.Lock()
        self._changes = 0  # status changes made / written (save)
        self._saved = 0
        self.notification_error = ""
        self.notification_reason = ""

    # ------------------------------------------------------------------ the loop

    @property
    def external_busy(self) -> set[str]:
        """Routers in scope CloudStack showed rebooting (or starting, stopping) that no reboot of ours explains: not
        one this wave followed (a reboot of ours that ended in this pass no longer holds its slot)."""
        return {r.id for r in self.plan.routers_in_scope if r.transitional} - self.ours - set(self.intents)

    async def run(self) -> None:
        started = self.clock()
        try:
            await self.resume()
            self.fill()
            while (self.flights or self.tasks) and self.error is None:
                if not self.flights:  # only starts under way: their jobs are the next to follow
                    await asyncio.wait(set(self.tasks), return_when=asyncio.FIRST_COMPLETED)
                    continue
                now = self.clock()
                if now >= self.deadline and self.may_hand_over(now, self.deadline - started):
                    break
                when = self.memory.times.next_poll(now, self.last_poll, [f.since for f in self.flights.values()])
                if when is not None and when > now:
                    await self.sleep(when - now)
                await self.reap()
            # nothing rebooting and nothing startable (done, backing off, outside the window), or the pass is over
            while self.tasks:
                await asyncio.wait(set(self.tasks))
        finally:  # a wave that fails or is cancelled leaves no start behind: what status holds is what was done
            for task in list(self.tasks):
                task.cancel()
            if self.tasks:
                await asyncio.wait(set(self.tasks))
            self.memory.answered = {f.job_id: f.answered for f in self.flights.values() if f.answered is not None}
        if self.error is not None:
            raise self.error

    def may_hand_over(self, now: float, length: float) -> bool:
        """Whether the pass may end now: no reboot is due to end before the next pass can follow it, or the pass
        ran one more reboot's time (at most its own length again) past its deadline."""
        expected = self.memory.times.expected
        if expected is None or now >= self.deadline + min(expected, length):
            return True
        first_due = min(self.memory.times.due(f.since) for f in self.flights.values())
        return first_due - now >= self.handover

    def fill(self) -> None:
        """Start reboots for the slots free now (each start goes on by itself: the wave keeps polling)."""
        now = self.clock()
        window = window_state(self.rules.maintenance_window, datetime.datetime.now(datetime.timezone.utc))
        self.window_closed = not window.open
        if not window.open or self.notification_error or self.error is not None:
            return
        busy = set(self.flights) | set(self.intents) | self.starting | self.external_busy
        blocked = {rid for rid, r in self.retries.items() if epoch(r.not_before) > now}
        blocked |= {r.id for r in self.todo.values() if r.name in self.failed}
        chosen = choose_routers(list(self.todo.values()), self.observed.routers, busy, self.limit - len(busy),
                                blocked=blocked, respect_pairs=self.rules.respect_redundant_pairs)
        for router in chosen:
            self.starting.add(router.id)
            self.spawn(self.start(router))

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` beside the wave; the first failure stops the wave (raised once every task ended)."""
        task = asyncio.ensure_future(work)
        self.tasks.add(task)

        def ended(done: asyncio.Future[Any]) -> None:
            self.tasks.discard(done)
            if not done.cancelled() and done.exception() is not None and self.error is None:
                self.error = done.exception()

        task.add_done_callback(ended)

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
            self.ours.add(router_id)
        for router_id in found.unsent:
            log.info("the reboot of router %s was written but never reached CloudStack", self.intents[router_id].name)
            del self.intents[router_id]
        if found.submitted or found.unsent:
            await self.save()

    async def start(self, router: Router) -> bool:
        """One reboot, from its "before" notice to its job in status; whether it started."""
        zone = self.observed.zone_name(router.zone_id)
        try:
            await self.notifier.send(router, zone, "before", version=router.version, targetVersion=self.spec.version)
        except NotificationError as error:  # tenants must hear before their router goes down: start nothing more
            self.notification_error, self.notification_reason = str(error), error.reason
            return False
        finally:
            self.starting.discard(router.id)
        intent = RouterInFlight(id=router.id, name=router.name, started=rfc3339(self.clock()))
        self.intents[router.id] = intent
        self.ours.add(router.id)
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
        self.flights[router.id] = Flight(router, job_id, epoch(intent.started), answered=self.clock())
        await self.save()
        return True

    async def reap(self) -> None:
        """One poll of the jobs in flight. Each slot a job ended frees goes to the next router at once; the ended
        reboots are counted, and told beside."""
        flights = list(self.flights.values())
        polled = self.last_poll = self.clock()
        self.polls += 1
        oldest = [RouterInFlight(id=f.router.id, name=f.router.name, started=rfc3339(f.started)) for f in flights]
        try:
            jobs = await poll(self.client, [f.job_id for f in flights], start_date(oldest, polled),
                              self.memory.listing)
        except CloudStackError as error:  # polled again next time
            log.warning("listing %d reboot job(s) failed: %s", len(flights), error.errortext)
            return
        ended: list[tuple[Flight, bool, str, str]] = []
        for flight in flights:
            job = jobs.get(flight.job_id)
            if job is None:
                continue
            if not job.done:
                flight.pending_seen = polled
                continue
            del self.flights[flight.router.id]
            self.finishing[flight.router.id] = flight
            ok, why, version = self.outcome(flight, job)
            if ok and flight.answered is not None:
                self.memory.times.learn((flight.pending_seen or flight.answered) - flight.answered,
                                        polled - flight.answered)
            self.count(flight.router, ok=ok, why=why, version=version, job_id=flight.job_id)
            ended.append((flight, ok, version, flight.job_id))
        if ended:
            self.fill()
        for flight, ok, version, job_id in ended:
            self.spawn(self.tell(flight.router, ok=ok, version=version, job_id=job_id))

    def outcome(self, flight: Flight, job: Job) -> tuple[bool, str, str]:
        """(ok, why not, the version the router came back on) of an ended reboot job."""
        if not job.ok:
            return False, str(job.result.get("errortext", "reboot job failed")), ""
        answer = job.result.get("router") or job.result.get("domainrouter") or {}
        version = str(answer.get("version", "") or flight.router.version)
        if answer and older(version, self.spec.version):
            return False, f"came back on version {version}", ""
        return True, "", version

    async def finish(self, router: Router, *, ok: bool, why: str, version: str = "", job_id: str = "") -> None:
        """A reboot ended (or could not start): count it, send the "after" notice, then write status."""
        self.count(router, ok=ok, why=why, version=version, job_id=job_id)
        await self.tell(router, ok=ok, version=version, job_id=job_id)

    def count(self, router: Router, *, ok: bool, why: str, version: str = "", job_id: str = "") -> None:
        """A reboot ended (or could not start): the progress and retries it makes, its Event."""
        zone = self.observed.zone_name(router.zone_id)
        self.todo.pop(router.id, None)
        if ok:
            self.retries.pop(router.id, None)
            if older(router.version, self.spec.version):  # seen on the new version already: the plan counted it
                self.upgraded_now += 1
            self.event("Normal", "RouterUpgraded", f"router {router.name} ({router.network}, zone {zone}) "
                       f"rebooted onto version {version or self.spec.version}")
            return
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

    async def tell(self, router: Router, *, ok: bool, version: str = "", job_id: str = "") -> None:
        """The "after" notice of a counted reboot, then status without it."""
        zone = self.observed.zone_name(router.zone_id)
        try:
            await self.notifier.send(router, zone, "after", result="upgraded" if ok else "failed",
                                     version=version or router.version, jobId=job_id)
        except Exception as error:  # the reboot happened; a lost "after" notice is reported, not retried
            self.event("Warning", "NotificationFailed", str(error))
        self.finishing.pop(router.id, None)
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
                                             started=rfc3339(f.started))
                              for f in [*self.flights.values(), *self.finishing.values()]]
        progress.in_flight += [i.model_copy() for i in self.intents.values()]
        progress.retrying = [r for r in self.retries.values() if r.name not in self.failed]
        return progress

    @property
    def remaining(self) -> int:
        todo = {r.id for r in self.todo.values() if r.name not in self.failed}
        return len(todo | set(self.flights) | set(self.intents))
