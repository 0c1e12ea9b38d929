"""An in-memory stand-in for drivers.maintenance_lock.MaintenanceLocks (one group, `slots` slots, no TTL), for
in-process KvmHost maintenance tests that need no API server: `KvmHostReconciler(..., locks=lambda ns: locks)`."""
from __future__ import annotations

import datetime
import threading
from typing import Any

from stackops.drivers.maintenance_lock import Holding, Slot


class MemoryLocks:
    def __init__(self, slots: int = 1) -> None:
        self.holders: dict[int, tuple[str, dict[str, Any]]] = {}
        self.slots = slots
        self._lock = threading.Lock()

    def acquire(self, group: str, holder: str, ttl: int, max_unavailable: int, record: dict[str, Any]) -> Slot | None:
        with self._lock:
            for n, (who, kept) in self.holders.items():
                if who == holder:
                    return self._slot(n, group, holder, ttl, kept)
            free = [n for n in range(min(max_unavailable, self.slots)) if n not in self.holders]
            if not free:
                return None
            self.holders[free[0]] = (holder, dict(record))
            return self._slot(free[0], group, holder, ttl, record)

    def renew(self, slot: Slot) -> Slot | None:
        with self._lock:
            return slot if any(who == slot.holder for who, _ in self.holders.values()) else None

    def release(self, slot: Slot) -> bool:
        with self._lock:
            for n, (who, _) in list(self.holders.items()):
                if who == slot.holder:
                    del self.holders[n]
                    return True
            return False

    def held(self, group: str) -> list[Holding]:
        with self._lock:
            return [Holding(f"slot-{n}", who, None, 900, False, dict(record))
                    for n, (who, record) in sorted(self.holders.items())]

    @staticmethod
    def _slot(n: int, group: str, holder: str, ttl: int, record: dict[str, Any]) -> Slot:
        return Slot("lab", f"slot-{n}", group, holder, ttl, "1", datetime.datetime.now(datetime.timezone.utc),
                    dict(record))
