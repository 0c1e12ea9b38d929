"""Faults the simulator injects, pseudo-random but reproducible (seeded), changeable while it runs."""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Faults:
    """Rates are probabilities in [0, 1] drawn per request (per job for job_failure_rate).

    - job_failure_rate: an async job fails (jobstatus 2, jobresultcode 530, jobresult {errorcode 530,
      errortext}); a failed router reboot still cycles the router but leaves it on its OLD template.
      queryAsyncJobResult itself is never failed by it.
    - rate_limit_rate: HTTP 429 as CloudStack's api-limit plugin (ApiRateLimitServiceImpl) answers.
    - error_530_rate: HTTP 530 internal error on any API command.
    - slow_job_seconds: every async job starts this much later (a busy job queue).
    - failing_routers: names (or ids) of routers whose every reboot fails like an injected job failure.
    """

    job_failure_rate: float = 0.0
    rate_limit_rate: float = 0.0
    error_530_rate: float = 0.0
    slow_job_seconds: float = 0.0
    seed: int = 1
    failing_routers: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        result = asdict(self)
        result["failing_routers"] = sorted(self.failing_routers)
        return result

    def update(self, values: dict[str, Any]) -> None:
        """Set the given fields (unknown names raise ValueError; values are converted to the field's type)."""
        known = {field.name: field for field in fields(self)}
        for name, value in values.items():
            if name not in known:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(known)}")
            if name == "failing_routers":
                self.failing_routers = {str(item) for item in value}
            else:
                setattr(self, name, int(value) if name == "seed" else float(value))


class FaultDice:
    """Draws for a Faults object: one seeded generator, re-seeded when `seed` changes; rates of 0 and 1 never
    draw (so they do not disturb the sequence)."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._lock = threading.Lock()
        self._seed = faults.seed
        self._random = random.Random(faults.seed)

    def roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        if rate >= 1:
            return True
        with self._lock:
            if self.faults.seed != self._seed:
                self._seed = self.faults.seed
                self._random = random.Random(self._seed)
            return self._random.random() < rate

    def job_fails(self) -> bool:
        return self.roll(self.faults.job_failure_rate)

    def rate_limited(self) -> bool:
        return self.roll(self.faults.rate_limit_rate)

    def internal_error(self) -> bool:
        return self.roll(self.faults.error_530_rate)
