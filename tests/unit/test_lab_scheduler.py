"""The simulators' scheduler on a manual clock: nothing runs until the test moves time, then everything that
falls due runs in order, at its own due time."""
from __future__ import annotations

import threading

import pytest

from stackops_lab.audit import AuditLog
from stackops_lab.clock import Clock, ManualClock
from stackops_lab.scheduler import Scheduler


def test_a_manual_clock_moves_only_when_advanced() -> None:
    clock = ManualClock()
    scheduler = Scheduler(threading.RLock(), clock=clock)
    scheduler.start()  # no thread on a manual clock
    start = clock.monotonic()
    log = AuditLog(clock)
    seen: list[tuple[str, float]] = []

    def later(name: str) -> None:
        seen.append((name, clock.monotonic() - start))
        log.record(name)

    scheduler.call_later(1.0, lambda: later("b"))
    scheduler.call_later(0.5, lambda: later("a"))
    scheduler.call_later(1.0, lambda: later("c"))  # same due time: submission order
    scheduler.call_later(0.0, lambda: scheduler.call_later(0.25, lambda: later("chained")))
    assert seen == [] and clock.monotonic() == start

    scheduler.advance(0)
    assert seen == []
    scheduler.advance(0.6)
    assert seen == [("chained", 0.25), ("a", 0.5)]
    assert clock.monotonic() == pytest.approx(start + 0.6)
    scheduler.advance(10)
    assert seen[2:] == [("b", 1.0), ("c", 1.0)]
    assert [event["t"] - start for event in log.snapshot()] == [0.25, 0.5, 1.0, 1.0]
    assert log.snapshot()[0]["time"] == pytest.approx(clock.time() - 10.6 + 0.25)
    scheduler.stop()


def test_a_late_callback_sees_its_due_time_and_its_follow_ups_keep_the_pace() -> None:
    """On the machine's clock a busy machine runs a callback late: inside it, the present is its due time."""

    class LateClock(Clock):
        now = 100.0

        def monotonic(self) -> float:
            return self.now

    clock = LateClock()
    scheduler = Scheduler(threading.RLock(), clock=clock)
    seen: list[tuple[str, float]] = []
    done = threading.Event()

    def follow_up() -> None:
        seen.append(("follow-up", scheduler.now()))
        done.set()

    def first() -> None:
        seen.append(("first", scheduler.now()))
        scheduler.call_later(1.0, follow_up)

    scheduler.call_later(1.0, first)
    clock.now = 105.0  # the thread wakes 4 s late
    scheduler.start()
    assert done.wait(120), "both are overdue and run at once"  # a hang guard only
    scheduler.stop()
    assert seen == [("first", 101.0), ("follow-up", 102.0)]
    assert scheduler.now() == 105.0  # outside a callback: the clock


def test_a_failing_callback_does_not_stop_the_others() -> None:
    scheduler = Scheduler(threading.RLock(), clock=ManualClock())
    ran: list[str] = []
    scheduler.call_later(0.1, lambda: 1 / 0)
    scheduler.call_later(0.2, lambda: ran.append("after"))
    scheduler.advance(1)
    assert ran == ["after"]


def test_advance_needs_a_manual_clock() -> None:
    with pytest.raises(RuntimeError, match="ManualClock"):
        Scheduler(threading.RLock(), clock=Clock()).advance(1)
