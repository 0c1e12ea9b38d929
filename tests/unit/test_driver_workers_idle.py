"""The drivers' worker threads end when they have had nothing to do for `idle_seconds`: a quiet operator keeps no
SSH, XenAPI or Kubernetes worker thread, and the next call starts one again.

Threads are joined, never sampled; `idle_seconds` is short so that the join returns soon. `SAFETY` only keeps broken
code from hanging a test: it never decides a result."""
from __future__ import annotations

import threading

import pytest

from stackops.drivers.workers import DEFAULT_IDLE_SECONDS, Workers

SAFETY = 30.0


def threads_of(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"{name}-")]


def test_an_idle_thread_ends_and_the_next_call_starts_another() -> None:
    workers = Workers("idle-a", 2, reserved=1, idle_seconds=0.05)
    try:
        running, release = threading.Event(), threading.Event()

        def hold() -> threading.Thread:
            running.set()
            release.wait(SAFETY)
            return threading.current_thread()

        held = workers.submit(hold)
        assert running.wait(SAFETY)
        urgent = workers.submit(threading.current_thread, urgent=True)  # the reserved thread takes it
        reserved = urgent.result(SAFETY)  # while the first thread is held: it cannot have taken the urgent call
        release.set()
        first = held.result(SAFETY)
        assert first is not reserved
        for thread in (first, reserved):
            thread.join(SAFETY)
        assert not first.is_alive() and not reserved.is_alive()
        assert workers.threads() == 0 and threads_of("idle-a") == []

        again = workers.submit(threading.current_thread).result(SAFETY)
        assert again not in (first, reserved), "a new thread took the call"
    finally:
        workers.shutdown()


def test_a_busy_thread_takes_the_calls_queued_meanwhile() -> None:
    """Idle means without a call: a thread that finishes a call and finds another queued runs it."""
    workers = Workers("idle-b", 1, idle_seconds=0.05)
    release = threading.Event()
    try:
        held = workers.submit(lambda: (release.wait(SAFETY), threading.current_thread())[1])
        queued = workers.submit(threading.current_thread)
        release.set()
        assert held.result(SAFETY) is queued.result(SAFETY), "the queued call ran on the same thread"
    finally:
        workers.shutdown()


def test_the_default_idle_time() -> None:
    assert Workers("idle-c", 1).idle_seconds == DEFAULT_IDLE_SECONDS == 60.0
    with pytest.raises(ValueError):
        Workers("idle-d", 1, idle_seconds=0)
