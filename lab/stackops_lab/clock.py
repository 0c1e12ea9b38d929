"""The simulators' time. By default it is the machine's; a test that must see a state that lasts only until the
next transition gives a simulator a `ManualClock`, and time then moves only when the test moves it
(`Scheduler.advance`): what it looks at cannot change under it, however busy the machine is."""

from __future__ import annotations

import time


class Clock:
    """The machine's clocks."""

    manual = False

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class ManualClock(Clock):
    """Stands still until `Scheduler.advance` moves it; starts at the machine's current times."""

    manual = True

    def __init__(self) -> None:
        self._monotonic = time.monotonic()
        self._epoch_offset = time.time() - self._monotonic

    def monotonic(self) -> float:
        return self._monotonic

    def time(self) -> float:
        return self._monotonic + self._epoch_offset

    def move_to(self, monotonic: float) -> None:
        if monotonic > self._monotonic:
            self._monotonic = monotonic
