"""The simulator's audit log: every state change, in order, with wall-clock and monotonic time.

Not a CloudStack feature (CloudStack has events and the usage log); it is how tests see what happened and
when, e.g. that the two members of a redundant router pair were never down at the same time
(`pair.both_down`).
"""

from __future__ import annotations

import threading
import time
from typing import Any


class AuditLog:
    """Append-only, thread-safe list of events: {"t": monotonic, "time": epoch, "event": name, ...}."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {"t": time.monotonic(), "time": time.time(), "event": event}
        entry.update(fields)
        with self._lock:
            self._events.append(entry)
        return entry

    def snapshot(self) -> list[dict[str, Any]]:
        """A copy of the log (each event copied too)."""
        with self._lock:
            return [dict(event) for event in self._events]
