"""Prometheus metrics: reconciles, remote calls, drift, readiness and router rollouts (docs/metrics.md).

Everything lives in one `Metrics` object with its own `CollectorRegistry`, so tests can make a fresh one;
`METRICS` is the operator's, served by `stackops run --metrics-address`. Label values are bounded: kinds, the
result names below, driver names, error reasons (a class attribute, never a message or a host), and the namespace
and name of the objects themselves. Nothing read from a Secret ever becomes a label.
"""
from __future__ import annotations

import re
import time
from typing import Any, Mapping

from prometheus_client import (GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry, Counter, Gauge,
                               Histogram, start_http_server)

from .status import ConditionType

RESULTS = ("converged", "changed", "drift", "retry", "stalled", "not_ready", "invalid_spec", "secret_error",
           "internal_error")
DRIVERS = ("ssh", "xenapi", "cloudstack")
ROUTER_STATES = ("total", "upgraded", "failed", "in_flight", "retrying")
RECONCILE_BUCKETS = (.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
REMOTE_CALL_BUCKETS = (.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_REASON = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")


class Metrics:
    """The operator's metrics, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):  # process_*, python_* as usual
            r.register(standard)
        self.reconciles = Counter("stackops_reconciles", "Reconcile passes by kind and result.",
                                  ["kind", "result"], registry=r)
        self.reconcile_duration = Histogram("stackops_reconcile_duration_seconds", "Duration of a reconcile pass.",
                                            ["kind"], buckets=RECONCILE_BUCKETS, registry=r)
        self.remote_calls = Counter("stackops_remote_calls", "Calls to infrastructure by driver and outcome "
                                    "(`ok` or the error's reason).", ["driver", "outcome"], registry=r)
        self.remote_call_duration = Histogram("stackops_remote_call_duration_seconds",
                                              "Duration of a call to infrastructure.", ["driver"],
                                              buckets=REMOTE_CALL_BUCKETS, registry=r)
        self.drift = Gauge("stackops_drift_actions", "Differences from the spec found on the last pass.",
                           ["kind", "namespace", "name"], registry=r)
        self.ready = Gauge("stackops_resource_ready", "1 when the object's Ready condition is True, else 0.",
                           ["kind", "namespace", "name"], registry=r)
        self.stalled = Gauge("stackops_resource_stalled", "1 when the object's Stalled condition is True, else 0.",
                             ["kind", "namespace", "name"], registry=r)
        self.routers = Gauge("stackops_rollout_routers", "SystemVMTemplate router rollout progress by state.",
                             ["namespace", "name", "state"], registry=r)

    def remote_call(self, driver: str) -> "RemoteCall":
        return RemoteCall(self, driver)

    def reconcile_pass(self, kind: str, namespace: str, name: str) -> "ReconcilePass":
        return ReconcilePass(self, kind, namespace, name)

    def observe_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Gauges from a status patch as written: Ready, drift count, router rollout counters."""
        if "conditions" in status:
            true = {c.get("type") for c in status["conditions"] or [] if c.get("status") == "True"}
            self.ready.labels(kind, namespace, name).set(1 if ConditionType.READY in true else 0)
            self.stalled.labels(kind, namespace, name).set(1 if ConditionType.STALLED in true else 0)
        if "drift" in status:
            self.drift.labels(kind, namespace, name).set(len(status["drift"] or []))
        routers = status.get("routers")
        if kind == "SystemVMTemplate" and isinstance(routers, Mapping):
            counts = {"total": routers.get("total", 0), "upgraded": routers.get("upgraded", 0),
                      "failed": routers.get("failed", 0), "in_flight": routers.get("inProgress", 0),
                      "retrying": len(routers.get("retrying") or [])}
            for state, value in counts.items():
                self.routers.labels(namespace, name, state).set(value or 0)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """The object is gone: drop its label sets."""
        for gauge in (self.drift, self.ready, self.stalled):
            _remove(gauge, kind, namespace, name)
        if kind == "SystemVMTemplate":
            for state in ROUTER_STATES:
                _remove(self.routers, namespace, name, state)


def _remove(gauge: Gauge, *labels: str) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:  # never set
        pass


def error_outcome(error: BaseException) -> str:
    """A bounded label for a failure: the error class's `reason` (e.g. `Unreachable`), else its class name."""
    reason = getattr(type(error), "reason", None)
    if isinstance(reason, str) and _REASON.match(reason):
        return reason
    return type(error).__name__


class RemoteCall:
    """`with metrics.remote_call("ssh"): ...` counts one call (`ok` or the error's reason) and times it."""

    def __init__(self, metrics: Metrics, driver: str):
        assert driver in DRIVERS, driver
        self.metrics = metrics
        self.driver = driver
        self.started = 0.0

    def __enter__(self) -> "RemoteCall":
        self.started = time.monotonic()
        return self

    def __exit__(self, type_: Any, error: BaseException | None, traceback: Any) -> bool:
        outcome = "ok" if error is None else error_outcome(error)
        self.metrics.remote_calls.labels(self.driver, outcome).inc()
        self.metrics.remote_call_duration.labels(self.driver).observe(time.monotonic() - self.started)
        return False


class ReconcilePass:
    """One handler pass. The handler sets `result`; on exit the pass is counted and timed (a cancelled pass is
    not), and `status` (the status patch written, if set) updates the object's gauges."""

    def __init__(self, metrics: Metrics, kind: str, namespace: str, name: str):
        self.metrics = metrics
        self.kind, self.namespace, self.name = kind, namespace, name
        self.result: str | None = None
        self.status: Mapping[str, Any] | None = None
        self.started = 0.0

    def __enter__(self) -> "ReconcilePass":
        self.started = time.monotonic()
        return self

    def __exit__(self, type_: Any, error: BaseException | None, traceback: Any) -> bool:
        if error is not None and not isinstance(error, Exception):  # cancelled (e.g. operator shutdown)
            return False
        result = self.result or ("internal_error" if error is not None else "not_ready")
        assert result in RESULTS, result
        self.metrics.reconciles.labels(self.kind, result).inc()
        self.metrics.reconcile_duration.labels(self.kind).observe(time.monotonic() - self.started)
        if self.status is not None:
            self.metrics.observe_status(self.kind, self.namespace, self.name, self.status)
        return False


def outcome_result(outcome: Any) -> str:
    """The result of a pass that ended with a reconcile Outcome (see RESULTS and docs/metrics.md)."""
    state = {c.type: c.status for c in outcome.conditions}
    if state.get(ConditionType.STALLED) == "True":
        return "stalled"
    if outcome.applied:
        return "changed"
    if outcome.drift:
        return "drift"
    if state.get(ConditionType.READY) == "True":
        return "converged"
    if state.get(ConditionType.RECONCILING) == "True" or outcome.requeue_after:
        return "retry"
    return "not_ready"


METRICS = Metrics()
REGISTRY = METRICS.registry


def remote_call(driver: str) -> RemoteCall:
    """Counted against the operator's metrics (looked up at each call, so tests can swap `METRICS`)."""
    return METRICS.remote_call(driver)


def serve(address: str) -> tuple[str, int]:
    """Serve /metrics on `host:port` (`:9100` or `9100` for every address) in a background thread."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    start_http_server(int(port), addr=host, registry=METRICS.registry)
    return host, int(port)
