"""A Python port of kstatus' status computation for custom resources (sigs.k8s.io/cli-utils, pkg/kstatus/status:
`Compute` in status.go, `checkGenericProperties` and `checkGeneration` in generic.go).

Only the part that applies to custom resources is ported: the legacy rules (`GetLegacyConditionsFn`) cover
built-in kinds only (Deployment, Pod, …), so for any other kind `Compute` is the generic check followed by
"Current". This is what `kubectl`-less tools built on kstatus (Flux's kustomize-controller without
healthCheckExprs, kpt, cli-utils' apply --wait) report for a stackops object.

Used by the tests only: the operator writes conditions, it never computes kstatus itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IN_PROGRESS, FAILED, CURRENT, TERMINATING = "InProgress", "Failed", "Current", "Terminating"


@dataclass(frozen=True)
class Result:
    status: str
    message: str


class KstatusError(ValueError):
    """What kstatus returns as an error (a field of the wrong type): the caller's status is Unknown."""


def _nested(obj: dict[str, Any], *path: str) -> tuple[Any, bool]:
    value: Any = obj
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None, False
        value = value[key]
    return value, value is not None


def _nested_int(obj: dict[str, Any], *path: str) -> tuple[int, bool]:
    """unstructured.NestedInt64: absent → not found; present but not an int64 → an error."""
    value, found = _nested(obj, *path)
    if not found:
        return 0, False
    if isinstance(value, bool) or not isinstance(value, int):
        raise KstatusError(f"{'.'.join(path)} accessor error: {value!r} is of the type {type(value).__name__}, "
                           "expected int64")
    return value, True


def _check_generation(obj: dict[str, Any]) -> Result | None:
    generation, found = _nested_int(obj, "metadata", "generation")
    if not found:
        return None
    observed, found = _nested_int(obj, "status", "observedGeneration")
    if found and observed != generation:  # no observedGeneration at all: the check is skipped
        return Result(IN_PROGRESS, f"{obj.get('kind', '')} generation is {generation}, but latest observed "
                                   f"generation is {observed}")
    return None


def _check_generic_properties(obj: dict[str, Any]) -> Result | None:
    deletion, found = _nested(obj, "metadata", "deletionTimestamp")
    if found and deletion != "":
        return Result(TERMINATING, "Resource scheduled for deletion")
    result = _check_generation(obj)
    if result is not None:
        return result
    conditions, _ = _nested(obj, "status", "conditions")
    for condition in conditions or []:
        if not isinstance(condition, dict):
            continue
        if condition.get("type") == "Reconciling" and condition.get("status") == "True":
            return Result(IN_PROGRESS, str(condition.get("message", "")))
        if condition.get("type") == "Stalled" and condition.get("status") == "True":
            return Result(FAILED, str(condition.get("message", "")))
    return None


def compute(obj: dict[str, Any]) -> Result:
    """status.Compute for a custom resource."""
    return _check_generic_properties(obj) or Result(CURRENT, "Resource is current")
