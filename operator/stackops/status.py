"""kstatus conditions: the one place status conditions are computed.

Every kind reports `Ready`, `Reconciling` and `Stalled` (kstatus' abnormal-true pair) plus its domain
conditions. A condition keeps its `lastTransitionTime` while its status stays the same.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]
MAX_MESSAGE = 1024


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class ConditionState:
    """What a condition should say; the helper adds times and generations."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def _clean(message: str) -> str:
    """One paragraph, bounded: status is read by people and tools, never a traceback."""
    text = " ".join(message.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def merge_conditions(existing: list[dict[str, Any]] | None, wanted: list[ConditionState], generation: int,
                     timestamp: str | None = None) -> list[dict[str, Any]]:
    """The new condition list: `wanted` replaces same-typed conditions; others are kept as they were."""
    timestamp = timestamp or now()
    previous = {c.get("type"): c for c in existing or [] if isinstance(c, dict)}
    result: dict[str, dict[str, Any]] = {t: dict(c) for t, c in previous.items()}
    for state in wanted:
        old = previous.get(state.type)
        changed = old is None or old.get("status") != state.status
        result[state.type] = {
            "type": state.type,
            "status": state.status,
            "reason": state.reason,
            "message": _clean(state.message),
            "lastTransitionTime": timestamp if changed else old.get("lastTransitionTime", timestamp),
            "observedGeneration": generation,
        }
    order = {"Ready": 0, "Reconciling": 1, "Stalled": 2}
    return sorted(result.values(), key=lambda c: (order.get(c["type"], 3), c["type"]))


def ready(reason: str, message: str = "") -> list[ConditionState]:
    """Converged: Ready=True, not reconciling, not stalled."""
    return [ConditionState("Ready", "True", reason, message),
            ConditionState("Reconciling", "False", reason),
            ConditionState("Stalled", "False", reason)]


def progressing(reason: str, message: str) -> list[ConditionState]:
    """Work in progress or waiting for something that will come (a retry will happen)."""
    return [ConditionState("Ready", "False", reason, message),
            ConditionState("Reconciling", "True", reason, message),
            ConditionState("Stalled", "False", reason)]


def not_ready(reason: str, message: str) -> list[ConditionState]:
    """Not as specified, and deliberately so (e.g. drift left alone under Observe): no work, not stuck."""
    return [ConditionState("Ready", "False", reason, message),
            ConditionState("Reconciling", "False", reason),
            ConditionState("Stalled", "False", reason)]


def stalled(reason: str, message: str) -> list[ConditionState]:
    """Cannot make progress without a change from a person (bad spec, refused operation)."""
    return [ConditionState("Ready", "False", reason, message),
            ConditionState("Reconciling", "False", reason),
            ConditionState("Stalled", "True", reason, message)]


def unknown(reason: str, message: str) -> list[ConditionState]:
    """The operator cannot tell (e.g. no reconciler for this kind yet). Never a fake Ready=True."""
    return [ConditionState("Ready", "Unknown", reason, message),
            ConditionState("Reconciling", "False", reason),
            ConditionState("Stalled", "False", reason)]


def get_condition(status: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for condition in (status or {}).get("conditions") or []:
        if condition.get("type") == type_:
            return condition
    return None
