"""Resync: every object reconciled again `spec.resyncIntervalSeconds` after its last pass, by one scheduler for all
objects rather than a kopf timer per object.

A kopf timer is a task per object that keeps the object's latest body for as long as the object exists: in
bench/scale.py (650 objects) the bodies alone were 18 MiB of the operator's memory. The scheduler keeps a due time,
the kind and the name of each object, learnt from the watch events kopf delivers anyway (`note`), sleeps until the
earliest is due, and runs that object's pass (`Pass`), which reads the object afresh.

The scheduler starts no pass while `may_act` says no: while kopf's peering pauses the operator in favour of another
one (handlers/peering.py `may_act`), resyncs wait as kopf's own handlers do.
"""
from __future__ import annotations

import asyncio
import contextvars
import heapq
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..api.kinds import Kind
from .settings import is_paused

PAUSE_RECHECK_SECONDS = 5.0  # while the operator may not act, how often the scheduler asks again
FAILED_PASS_RETRY_SECONDS = 60.0  # a pass that raised (a bug; the handlers' own errors are caught before)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Due:
    """One object's next resync: when (on the scheduler's clock), and which object."""

    at: float
    kind: Kind
    namespace: str
    name: str


# One pass for one object (kind, namespace, name, uid, retry): the seconds after which the object is to be looked
# at again when the status it wrote does not schedule it (a retry: a host unreachable, a Secret missing; or not due
# yet by the object's own lastReconcileTime), else None (the watch event of its status, or of its next change,
# schedules it).
Pass = Callable[[Kind, str, str, str, int], Awaitable["float | None"]]


def resync_in(body: Any, now: float | None = None) -> float | None:
    """Seconds until the object's next resync is due (≤ 0: due now); None when it has none: no
    resyncIntervalSeconds, no pass yet (its change handler runs first), paused, or being deleted."""
    import datetime

    spec = body.get("spec") or {}
    meta = body.get("metadata") or {}
    interval = spec.get("resyncIntervalSeconds")
    last = (body.get("status") or {}).get("lastReconcileTime")
    if not interval or not last or is_paused(body) or meta.get("deletionTimestamp"):
        return None
    try:
        then = datetime.datetime.fromisoformat(str(last).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
    return float(interval) - ((time.time() if now is None else now) - then)


class Resync:
    """Due times of every resyncing object, and the loop that runs their passes when they come."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.run_pass: Pass | None = None
        self.may_act: Callable[[], Awaitable[bool]] | None = None
        self.loop: asyncio.Task[None] | None = None
        self.due: dict[str, Due] = {}  # by uid
        self.heap: list[tuple[float, str]] = []  # (at, uid); entries whose `at` no longer matches are skipped
        self.running: dict[str, asyncio.Task[None]] = {}
        self.retries: dict[str, tuple[int, float]] = {}  # by uid: passes that asked for a retry, and when
        self.context: contextvars.Context | None = None  # kopf's (Events, settings): passes run in it
        self.wake = asyncio.Event()

    def note(self, kind: Kind, body: Any) -> None:
        """An object as a watch event shows it: schedule its next resync, or drop it (paused, deleted, no
        interval). Called from kopf's event handler, whose context the passes run in (kopf posts Events through
        it)."""
        if self.context is None:
            self.context = contextvars.copy_context()
        meta = body.get("metadata") or {}
        wait = resync_in(body)
        if wait is None:
            self.forget(meta.get("uid", ""))
            return
        at = self.clock() + max(wait, 0.0)
        if meta["uid"] in self.retries:  # the status of a pass that asked for a retry: the retry comes first
            at = min(at, self.retries[meta["uid"]][1])
        self.schedule(meta["uid"], Due(at, kind, meta["namespace"], meta["name"]))

    def schedule(self, uid: str, due: Due) -> None:
        self.due[uid] = due
        heapq.heappush(self.heap, (due.at, uid))
        if self.heap[0] == (due.at, uid):
            self.wake.set()  # earlier than what the loop sleeps for

    def forget(self, uid: str) -> None:
        self.due.pop(uid, None)
        self.retries.pop(uid, None)

    def next_due(self) -> tuple[str, Due] | None:
        while self.heap:
            at, uid = self.heap[0]
            due = self.due.get(uid)
            if due is None or due.at != at:
                heapq.heappop(self.heap)  # forgotten or rescheduled
                continue
            return uid, due
        return None

    def start(self, run_pass: Pass, may_act: Callable[[], Awaitable[bool]]) -> None:
        """Run passes with `run_pass` from now on (the operator has started), while `may_act`."""
        self.run_pass, self.may_act = run_pass, may_act
        self.loop = asyncio.create_task(self.run(), name="resync")

    async def stop(self) -> None:
        tasks = [*self.running.values(), *([self.loop] if self.loop else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def run(self) -> None:
        """Until cancelled: sleep until the earliest due object, then start its pass (one at a time per object)."""
        while True:
            self.wake.clear()
            first = self.next_due()
            wait = None if first is None else first[1].at - self.clock()
            if wait is None or wait > 0:
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=wait)
                except asyncio.TimeoutError:
                    pass
                continue
            assert self.may_act is not None, "start() first"
            if not await self.may_act():
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=PAUSE_RECHECK_SECONDS)
                except asyncio.TimeoutError:
                    pass
                continue
            self.start_due()

    def start_due(self) -> None:
        """Start the pass of every object due now (the scheduler may act)."""
        now = self.clock()
        while (first := self.next_due()) is not None and first[1].at <= now:
            uid, due = first
            heapq.heappop(self.heap)
            del self.due[uid]
            if uid in self.running:
                continue  # its pass runs; the status it writes schedules the next
            self.running[uid] = asyncio.create_task(self._pass(uid, due), context=self.context)

    async def _pass(self, uid: str, due: Due) -> None:
        retry = self.retries.get(uid, (0, 0.0))[0]
        assert self.run_pass is not None, "start() first"
        try:
            delay = await self.run_pass(due.kind, due.namespace, due.name, uid, retry)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: logged, and tried again later
            logger.exception("resync of %s %s/%s failed", due.kind.kind, due.namespace, due.name)
            delay = FAILED_PASS_RETRY_SECONDS
        finally:
            self.running.pop(uid, None)
        if delay is None:
            self.retries.pop(uid, None)
            return
        at = self.clock() + delay
        self.retries[uid] = (retry + 1, at)
        noted = self.due.get(uid)
        if noted is None or noted.at > at:
            self.schedule(uid, Due(at, due.kind, due.namespace, due.name))
