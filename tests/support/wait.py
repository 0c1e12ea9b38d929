"""Waiting for something a test needs, on the machine's clock. The timeout only stops a hang: it is far above what a
loaded machine needs, and what a test asserts never depends on how long the wait took (a state that lasts only until
a simulator's next transition is looked at on a manual clock instead: support.xenapi.advance_until)."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.02,
             ignoring: tuple[type[BaseException], ...] = ()) -> Any:
    """Call `predicate` every `interval` seconds until it returns something truthy, and return that; an exception
    of `ignoring` counts as not yet. After `timeout` seconds: AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except ignoring:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
