"""What drives a simulator's time-based transitions (the lab CloudStack's and the lab XenAPI's): one heap of
callbacks ordered by due time, then submission order, each run with the simulator's state lock held.

On the machine's clock a thread runs them when they fall due. On a `ManualClock` nothing runs until a test calls
`advance(seconds)`, which runs, in the caller's thread and in order, every callback that falls due in that time
(those it schedules too), moving the clock to each one's due time."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable

from stackops_lab.clock import Clock, ManualClock

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, lock: threading.RLock, name: str = "lab-scheduler", clock: Clock | None = None) -> None:
        self._lock = lock
        self.clock = clock or Clock()
        self._name = name
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._condition = threading.Condition()
        self._sequence = itertools.count()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._running = threading.local()  # .due: the due time of the callback this thread runs

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run `callback` `delay` seconds after now (the simulation's: a callback's follow-ups keep its pace)."""
        with self._condition:
            heapq.heappush(self._heap, (self.now() + max(0.0, delay), next(self._sequence), callback))
            self._condition.notify()

    def start(self) -> None:
        if self._thread is None and not self.clock.manual:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._stopping:
                    if self._heap:
                        wait = self._heap[0][0] - self.clock.monotonic()
                        if wait <= 0:
                            break
                        self._condition.wait(wait)
                    else:
                        self._condition.wait()
                if self._stopping:
                    return
                due, _, callback = heapq.heappop(self._heap)
            self._call(due, callback)

    def now(self) -> float:
        """The simulation's present: inside a callback, the time it was due (a thread that runs late on a busy
        machine still sees the callbacks in their order and their time), else the clock's."""
        due = getattr(self._running, "due", None)
        return self.clock.monotonic() if due is None else due

    def _call(self, due: float, callback: Callable[[], None]) -> None:
        self._running.due = due
        try:
            with self._lock:
                callback()
        except Exception:  # a broken callback must not stop the simulation
            log.exception("scheduled callback failed")
        finally:
            self._running.due = None

    def advance(self, seconds: float = 0.0) -> None:
        """Move a manual clock `seconds` ahead, running what falls due on the way (0: what is due now)."""
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise RuntimeError("advance() needs a scheduler on a ManualClock")
        until = clock.monotonic() + max(0.0, seconds)
        while True:
            with self._condition:
                if not self._heap or self._heap[0][0] > until:
                    break
                due, _, callback = heapq.heappop(self._heap)
            clock.move_to(due)
            self._call(due, callback)
        clock.move_to(until)
