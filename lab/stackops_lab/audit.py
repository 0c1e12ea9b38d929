"""A simulator's audit log: every state change, in order, with wall-clock and monotonic time.

Neither CloudStack's nor XenServer's feature; it is how tests see what happened and when. The lab CloudStack
records router reboots (`router.reboot.start`/`.end`, `pair.both_down`), templates, settings, system VMs and hosts;
the lab XenAPI records ha.enabled/ha.disabled (with the configuration), pool.join, pool.eject, host.reboot,
master.changed, host.fenced, host.enabled/host.disabled, vm.ha_restart_priority, sdn.controller, session.login,
pool.operation_released, tls.handshake_failed, …
"""

from __future__ import annotations

import threading
from typing import Any

from stackops_lab.clock import Clock


class AuditLog:
    """Append-only, thread-safe list of events: {"t": monotonic, "time": epoch, "event": name, ...}."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or Clock()
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {"t": self._clock.monotonic(), "time": self._clock.time(), "event": event}
        entry.update(fields)
        with self._lock:
            self._events.append(entry)
        return entry

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(event) for event in self._events]
