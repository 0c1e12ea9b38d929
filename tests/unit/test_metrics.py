"""Prometheus metrics (stackops/metrics.py): one result per reconcile pass, its duration, the Ready / drift /
rollout gauges, remote calls counted where each driver makes them, and label values that stay bounded (no host,
no message, no secret)."""
from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from prometheus_client import generate_latest
from pydantic import SecretStr

from stackops import metrics
from stackops import status as st
from stackops.api.kinds import BY_KIND, KVMHOST
from stackops.api.systemvmtemplate import RouterProgress, RouterRetry
from stackops.cli import parser as cli_parser
from stackops.drivers.cloudstack import CloudStackClient, CloudStackRateLimited
from stackops.drivers.secrets import SecretError
from stackops.drivers.ssh import SSHConnection, SSHPool, SSHTarget, Unreachable
from stackops.drivers.xenapi import Endpoint, LocalSession, PoolSession, XenAuthError
from stackops.handlers import resources
from stackops.reconcile.base import Action, Context, Outcome, Reconciler, ReconcileError

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGl5nbgQ0Ap8H7yG3zF+r1y2XwQm3aGkz0Hq3E2Y5d2v"
SECRET_VALUE = "PRIVATE-KEY-VALUE-never-a-label"
CLOSED_PORT = 9  # discard: nothing listens there


@pytest.fixture
def m(monkeypatch: pytest.MonkeyPatch) -> metrics.Metrics:
    """A fresh registry in place of the operator's, and no Events posted."""
    fresh = metrics.Metrics()
    monkeypatch.setattr(metrics, "METRICS", fresh)
    monkeypatch.setattr(kopf, "event", lambda *a, **k: None)
    monkeypatch.setattr(kopf, "warn", lambda *a, **k: None)
    return fresh


def value(m: metrics.Metrics, metric: str, /, **labels: str) -> float | None:
    return m.registry.get_sample_value(metric, labels)


def kvm_body(**spec: Any) -> dict[str, Any]:
    base = {"address": "10.0.1.21", "ssh": {"privateKeySecretRef": {"name": "kvm-ssh"}, "hostKey": HOST_KEY}}
    base.update(spec)
    return {"apiVersion": "stackops.io/v1alpha1", "kind": "KvmHost",
            "metadata": {"name": "kvm1", "namespace": "lab", "uid": "u-1", "generation": 1},
            "spec": base, "status": {}}


class Fixed(Reconciler):
    """Returns `outcome` or raises `error`."""

    kind = "KvmHost"

    def __init__(self, outcome: Outcome | None = None, error: Exception | None = None):
        self.outcome = outcome
        self.error = error

    async def reconcile(self, ctx: Context) -> Outcome:
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        return self.outcome


class Secrets:
    def __init__(self, error: SecretError | None = None):
        self.error = error

    async def read(self, namespace: str, needed: list) -> dict[str, dict[str, SecretStr]]:
        if self.error:
            raise self.error
        return {"kvm-ssh": {"ssh-privatekey": SecretStr(SECRET_VALUE)}}


class Change(Action):
    def describe(self) -> str:
        return "change something"


def run(reconciler: Reconciler, body: dict[str, Any] | None = None, secrets: Secrets | None = None,
        kind: Any = KVMHOST) -> kopf.Patch:
    deps = resources.Deps(reconcilers={kind.kind: reconciler}, secrets=secrets or Secrets())
    patch = kopf.Patch()
    try:
        asyncio.run(resources.reconcile_object(kind, deps, body or kvm_body(), patch, logging.getLogger("test")))
    except kopf.TemporaryError:
        pass
    return patch


CASES = {
    "converged": dict(reconciler=Fixed(Outcome(st.ready("Configured"), drift=[]))),
    "changed": dict(reconciler=Fixed(Outcome(st.ready("Configured"), drift=[], applied=[Change()]))),
    "drift": dict(reconciler=Fixed(Outcome(st.not_ready("DriftObserved", "2 differ"), drift=[Change(), Change()]))),
    "retry": dict(reconciler=Fixed(error=ReconcileError("Unreachable", "no answer", retry=True))),
    "stalled": dict(reconciler=Fixed(error=ReconcileError("HostKeyMismatch", "other key", retry=False))),
    "invalid_spec": dict(reconciler=Fixed(Outcome(st.ready("Configured"))), body=kvm_body(address="not an address!")),
    "secret_error": dict(reconciler=Fixed(Outcome(st.ready("Configured"))),
                         secrets=Secrets(SecretError("SecretNotFound", "Secret lab/kvm-ssh not found"))),
    "internal_error": dict(reconciler=Fixed(error=RuntimeError("a bug"))),
    "not_ready": dict(reconciler=Fixed(Outcome(st.unknown("NotObservedYet", "nothing observed yet")))),
}


@pytest.mark.parametrize("result", sorted(CASES))
def test_each_pass_is_counted_once_with_its_result(m: metrics.Metrics, result: str) -> None:
    run(**CASES[result])
    assert value(m, "stackops_reconciles_total", kind="KvmHost", result=result) == 1
    others = [r for r in metrics.RESULTS if r != result
              and value(m, "stackops_reconciles_total", kind="KvmHost", result=r)]
    assert others == []
    assert value(m, "stackops_reconcile_duration_seconds_count", kind="KvmHost") == 1


def test_results_of_outcomes() -> None:
    assert metrics.outcome_result(Outcome(st.progressing("Converging", "x"), requeue_after=30)) == "retry"
    assert metrics.outcome_result(Outcome(st.progressing("Registering", "x"))) == "retry"
    assert metrics.outcome_result(Outcome(st.stalled("RoutersFailed", "x"), applied=[Change()])) == "stalled"
    assert metrics.outcome_result(Outcome(st.progressing("Converging", "x"), drift=[Change()],
                                          applied=[Change()])) == "changed"
    assert set(CASES) == set(metrics.RESULTS)


def test_ready_and_drift_gauges_follow_the_status_written(m: metrics.Metrics) -> None:
    run(**CASES["drift"])
    assert value(m, "stackops_resource_ready", kind="KvmHost", namespace="lab", name="kvm1") == 0
    assert value(m, "stackops_drift_actions", kind="KvmHost", namespace="lab", name="kvm1") == 2
    run(**CASES["converged"])
    assert value(m, "stackops_resource_ready", kind="KvmHost", namespace="lab", name="kvm1") == 1
    assert value(m, "stackops_drift_actions", kind="KvmHost", namespace="lab", name="kvm1") == 0
    assert value(m, "stackops_resource_stalled", kind="KvmHost", namespace="lab", name="kvm1") == 0
    run(**CASES["retry"])  # a failure keeps the last drift count, and is not Ready
    assert value(m, "stackops_resource_ready", kind="KvmHost", namespace="lab", name="kvm1") == 0
    assert value(m, "stackops_drift_actions", kind="KvmHost", namespace="lab", name="kvm1") == 0
    assert value(m, "stackops_resource_stalled", kind="KvmHost", namespace="lab", name="kvm1") == 0
    for stalled in ("stalled", "invalid_spec"):
        run(**CASES[stalled])
        assert value(m, "stackops_resource_stalled", kind="KvmHost", namespace="lab", name="kvm1") == 1
        run(**CASES["converged"])
        assert value(m, "stackops_resource_stalled", kind="KvmHost", namespace="lab", name="kvm1") == 0


def test_deleting_an_object_drops_its_gauges(m: metrics.Metrics) -> None:
    run(**CASES["drift"])
    registry = kopf.OperatorRegistry()
    deps = resources.Deps(reconcilers={"KvmHost": CASES["drift"]["reconciler"]}, secrets=Secrets())
    resources.register_kind(registry, KVMHOST, deps)
    on_delete = next(h.fn for h in registry._changing.get_all_handlers() if h.id == "finalize")
    asyncio.run(on_delete(body=kvm_body(deletionPolicy="Orphan"), logger=logging.getLogger("test")))
    assert value(m, "stackops_resource_ready", kind="KvmHost", namespace="lab", name="kvm1") is None
    assert value(m, "stackops_drift_actions", kind="KvmHost", namespace="lab", name="kvm1") is None
    assert value(m, "stackops_resource_stalled", kind="KvmHost", namespace="lab", name="kvm1") is None
    assert value(m, "stackops_reconciles_total", kind="KvmHost", result="drift") == 1  # counters stay


def systemvmtemplate_body() -> dict[str, Any]:
    document = next(d for d in yaml.safe_load_all((EXAMPLES / "systemvmtemplate.yaml").read_text())
                    if d.get("kind") == "SystemVMTemplate")
    document["metadata"].update(uid="u-2", generation=1)
    return document


def test_rollout_routers_gauges(m: metrics.Metrics) -> None:
    progress = RouterProgress(total=200, upgraded=150, in_progress=10, failed=2, failed_routers=["r-1", "r-2"],
                              retrying=[RouterRetry(id="i", name="r-3", attempts=1)])
    outcome = Outcome(st.progressing("UpgradingRouters", "150/200"), drift=[], requeue_after=5,
                      fields={"phase": "UpgradingRouters", "routers": progress.model_dump(by_alias=True)})
    body = systemvmtemplate_body()
    kind = BY_KIND["SystemVMTemplate"]
    run(Fixed(outcome), body=body, kind=kind)
    labels = dict(namespace="stackops-demo", name="systemvm-4.19.1")
    got = {s: value(m, "stackops_rollout_routers", state=s, **labels) for s in metrics.ROUTER_STATES}
    assert got == {"total": 200, "upgraded": 150, "failed": 2, "in_flight": 10, "retrying": 1}
    assert value(m, "stackops_reconciles_total", kind="SystemVMTemplate", result="retry") == 1
    m.forget("SystemVMTemplate", labels["namespace"], labels["name"])
    assert all(value(m, "stackops_rollout_routers", state=s, **labels) is None for s in metrics.ROUTER_STATES)


# --- remote calls -----------------------------------------------------------------------------------------------


class HostInMessage(Exception):
    reason = "Not a label: 10.0.0.1 refused"  # not an identifier: the class name is used


def test_remote_call_outcomes(m: metrics.Metrics) -> None:
    with metrics.remote_call("ssh"):
        pass
    for error in (Unreachable("cannot connect to 10.0.0.1:22", host="10.0.0.1:22"),
                  CloudStackRateLimited("listRouters", "API limit"), XenAuthError("login", "AUTH", ["root"]),
                  ValueError("boom"), HostInMessage("10.0.0.1")):
        with pytest.raises(type(error)):
            with metrics.remote_call("ssh"):
                raise error
    outcomes = {s.labels["outcome"]: s.value for s in m.remote_calls.collect()[0].samples
                if s.name == "stackops_remote_calls_total"}
    assert outcomes == {"ok": 1, "Unreachable": 1, "CloudStackRateLimited": 1, "AuthenticationFailed": 1,
                        "ValueError": 1, "HostInMessage": 1}
    assert value(m, "stackops_remote_call_duration_seconds_count", driver="ssh") == 6
    with pytest.raises(AssertionError):
        metrics.remote_call("telnet")


def throwaway_private_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()


def test_ssh_driver_counts_its_calls(m: metrics.Metrics) -> None:
    target = SSHTarget(address="127.0.0.1", port=CLOSED_PORT, user="root", host_key=HOST_KEY,
                       private_key=SecretStr(throwaway_private_key()), connect_timeout=2)
    pool = SSHPool()
    try:
        connection = SSHConnection(pool, target)
        for call in (connection.connect, lambda: connection.run(["true"]), lambda: connection.run_script("true")):
            with pytest.raises(Unreachable):
                asyncio.run(call())
    finally:
        pool.shutdown()
    assert value(m, "stackops_remote_calls_total", driver="ssh", outcome="Unreachable") == 3


def test_cloudstack_driver_counts_each_request(m: metrics.Metrics) -> None:
    async def call() -> None:
        client = CloudStackClient(f"http://127.0.0.1:{CLOSED_PORT}/client/api", "key", SecretStr(SECRET_VALUE),
                                  attempts=2, backoff=0.01)
        try:
            await client.call("rebootRouter", id="r-1")  # a mutation: not retried
        finally:
            await client.close()

    with pytest.raises(Exception) as raised:
        asyncio.run(call())
    assert raised.value.reason == "CloudStackUnreachable"
    assert value(m, "stackops_remote_calls_total", driver="cloudstack", outcome="CloudStackUnreachable") == 1


def test_xenapi_driver_counts_its_calls(m: metrics.Metrics) -> None:
    endpoint = Endpoint(port=CLOSED_PORT, plain_http=True, timeout=2)
    session = PoolSession(["127.0.0.1"], "root", SecretStr(SECRET_VALUE), endpoint)
    with pytest.raises(Exception):
        asyncio.run(session.call("pool.get_all"))
    with pytest.raises(Exception):
        asyncio.run(LocalSession("127.0.0.1", "root", SecretStr(SECRET_VALUE), endpoint).call("host.get_all"))
    assert value(m, "stackops_remote_calls_total", driver="xenapi", outcome="MasterUnreachable") == 1
    assert value(m, "stackops_remote_calls_total", driver="xenapi", outcome="Unreachable") == 1


def test_label_values_are_bounded(m: metrics.Metrics) -> None:
    for case in CASES.values():
        run(**case)
    test_ssh_driver_counts_its_calls(m)
    test_xenapi_driver_counts_its_calls(m)
    text = generate_latest(m.registry).decode()
    assert SECRET_VALUE not in text
    assert "127.0.0.1" not in text and "10.0.1.21" not in text, "no host in a label"
    identifier = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
    for family in m.registry.collect():
        for sample in family.samples:
            for label in ("result", "driver", "outcome", "state", "kind"):
                if label in sample.labels:
                    assert identifier.match(sample.labels[label]), sample
    results = {s.labels["result"] for s in m.reconciles.collect()[0].samples if "result" in s.labels}
    assert results <= set(metrics.RESULTS)


def test_run_serves_metrics_by_default_and_can_turn_them_off() -> None:
    assert cli_parser().parse_args(["run"]).metrics_address == "0.0.0.0:9100"
    assert cli_parser().parse_args(["run", "--metrics-address="]).metrics_address == ""


def test_the_operator_registry_is_not_the_global_one() -> None:
    from prometheus_client import REGISTRY as GLOBAL

    assert metrics.REGISTRY is not GLOBAL
    names = {family.name for family in metrics.REGISTRY.collect()}
    assert {"stackops_reconciles", "stackops_reconcile_duration_seconds", "stackops_remote_calls",
            "stackops_remote_call_duration_seconds", "stackops_drift_actions", "stackops_resource_ready",
            "stackops_resource_stalled", "stackops_rollout_routers", "process_resident_memory_bytes"} <= names
