"""The thread that drives a simulator's time-based transitions (the lab CloudStack's and the lab XenAPI's): one
heap of callbacks ordered by due time, then submission order, each run with the simulator's state lock held."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, lock: threading.RLock, name: str = "lab-scheduler") -> None:
        self._lock = lock
        self._name = name
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._condition = threading.Condition()
        self._sequence = itertools.count()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        with self._condition:
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), next(self._sequence), callback))
            self._condition.notify()

    def start(self) -> None:
        if self._thread is None:
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
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                        self._condition.wait(wait)
                    else:
                        self._condition.wait()
                if self._stopping:
                    return
                _, _, callback = heapq.heappop(self._heap)
            try:
                with self._lock:
                    callback()
            except Exception:  # a broken callback must not stop the simulation
                log.exception("scheduled callback failed")
