"""support.wait.wait_for, the one poll every test uses, on a clock of the test's own (time passes only in its
sleeps)."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from support import wait
from support.wait import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(wait, "time", fake)
    return fake


def answers(*values: object) -> tuple[Callable[[], object], list[object]]:
    """A predicate giving `values` in turn (raising those that are exceptions), and the list of what it gave."""
    calls: list[object] = []

    def predicate() -> object:
        value = values[len(calls)]
        calls.append(value)
        if isinstance(value, Exception):
            raise value
        return value

    return predicate, calls


def test_returns_the_first_truthy_value(clock: Clock) -> None:
    predicate, calls = answers(None, 0, [], {"ready": True}, "later")
    assert wait_for(predicate, timeout=60, what="ready", interval=0.25) == {"ready": True}
    assert calls == [None, 0, [], {"ready": True}] and clock.sleeps == [0.25] * 3


def test_an_ignored_exception_counts_as_not_yet_and_another_is_raised() -> None:
    predicate, calls = answers(OSError("refused"), ConnectionResetError("reset"), "up")
    assert wait_for(predicate, timeout=60, what="up", interval=0.25, ignoring=(OSError,)) == "up"
    assert len(calls) == 3
    predicate, calls = answers(ValueError("a bug"), "up")
    with pytest.raises(ValueError, match="a bug"):
        wait_for(predicate, timeout=60, what="up", interval=0.25, ignoring=(OSError,))


def test_it_asks_every_interval_until_the_timeout_then_names_what_it_waited_for(clock: Clock) -> None:
    predicate, calls = answers(*[None] * 10)
    with pytest.raises(AssertionError, match=r"^timed out after 2s waiting for the pool master$"):
        wait_for(predicate, timeout=2, what="the pool master", interval=0.5)
    # asked at 0, 0.5, 1, 1.5 and 2 s (not yet past the deadline), and once more at 2.5 s
    assert clock.sleeps == [0.5] * 5 and len(calls) == 6
