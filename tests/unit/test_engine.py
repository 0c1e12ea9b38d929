"""The reconcile engine and the handler logic around it, without a cluster: observe → plan → apply, Observe
stopping after plan, partial applies, status written through the conditions helper, Secrets resolved by reference
and never exposed."""
from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass
from typing import Any

import kopf
import pytest
from pydantic import SecretStr

from stackops.api.kinds import KVMHOST, XENPOOL
from stackops.api.references import needed_secrets
from stackops.drivers.secrets import SecretError
from stackops.handlers import resources
from stackops.handlers.settings import PausableDiffBaseStorage, is_paused
from stackops.reconcile.base import Action, Context, Outcome, ReconcileError
from stackops.reconcile.engine import Engine, Plan, Stage
from stackops import status as st

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGl5nbgQ0Ap8H7yG3zF+r1y2XwQm3aGkz0Hq3E2Y5d2v"


def kvm_body(**spec: Any) -> dict[str, Any]:
    base = {"address": "10.0.1.21",
            "ssh": {"privateKeySecretRef": {"name": "kvm-ssh"}, "hostKey": HOST_KEY}}
    base.update(spec)
    return {"apiVersion": "stackops.io/v1alpha1", "kind": "KvmHost",
            "metadata": {"name": "kvm1", "namespace": "lab", "uid": "u-1", "generation": 3},
            "spec": base, "status": {}}


@dataclass(frozen=True)
class SetValue(Action):
    key: str
    value: int

    def describe(self) -> str:
        return f"set {self.key} to {self.value}"


class FakeInfra(Engine[None, dict, Plan]):
    """A reconciler over a dict, to exercise the engine."""

    kind = "KvmHost"

    def __init__(self, actual: dict[str, int], wanted: dict[str, int], fail_on: str | None = None):
        self.actual = actual
        self.wanted = wanted
        self.fail_on = fail_on
        self.observations = 0

    async def observe(self, ctx: Context, conn: None) -> dict:
        self.observations += 1
        return dict(self.actual)

    def plan(self, ctx: Context, observed: dict) -> Plan:
        actions = tuple(SetValue(k, v) for k, v in sorted(self.wanted.items()) if observed.get(k) != v)
        return Plan([Stage("set", actions)] if actions else [])

    async def execute(self, ctx: Context, conn: None, action: Action, observed: dict) -> None:
        assert isinstance(action, SetValue)
        if action.key == self.fail_on:
            raise ReconcileError("WriteFailed", f"cannot write {action.key}", retry=True, delay=5)
        self.actual[action.key] = action.value

    def report(self, ctx: Context, observed: dict, plan: Plan, applied: list[Action]) -> Outcome:
        pending = plan.actions
        if pending:
            return Outcome(st.progressing("Drifted", f"{len(pending)} differences"), drift=pending)
        return Outcome(st.ready("Converged"), drift=[])


class FakeSecrets:
    def __init__(self, values: dict[str, dict[str, str]], error: SecretError | None = None):
        self.values = values
        self.error = error

    async def read(self, namespace: str, needed: list) -> dict[str, dict[str, SecretStr]]:
        if self.error:
            raise self.error
        return {name: {k: SecretStr(v) for k, v in keys.items()} for name, keys in self.values.items()}


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    posted: list[tuple[str, str, str]] = []
    monkeypatch.setattr(kopf, "event", lambda body, type, reason, message: posted.append((type, reason, message)))
    monkeypatch.setattr(kopf, "warn", lambda body, reason, message: posted.append(("Warning", reason, message)))
    return posted


def run(kind: Any, body: dict, reconciler: Any, secrets: FakeSecrets | None = None) -> kopf.Patch:
    deps = resources.Deps(reconcilers={kind.kind: reconciler},
                          secrets=secrets or FakeSecrets({"kvm-ssh": {"ssh-privatekey": "PRIVATE-KEY-VALUE"}}))
    patch = kopf.Patch()
    asyncio.run(resources.reconcile_object(kind, deps, body, patch, logging.getLogger("test")))
    return patch


def conditions(patch: kopf.Patch) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in patch["status"]["conditions"]}


def test_manage_applies_in_order_and_converges(events: list) -> None:
    infra = FakeInfra(actual={"a": 1}, wanted={"a": 2, "b": 3})
    patch = run(KVMHOST, kvm_body(), infra)
    assert infra.actual == {"a": 2, "b": 3}
    assert infra.observations == 2, "observe, apply, observe again to confirm"
    assert [e[2] for e in events] == ["set a to 2", "set b to 3"]
    assert all(e[:2] == ("Normal", "Applied") for e in events)
    c = conditions(patch)
    assert c["Ready"]["status"] == "True" and c["Ready"]["observedGeneration"] == 3
    assert patch["status"]["observedGeneration"] == 3
    assert patch["status"]["drift"] == []
    assert [a["description"] for a in patch["status"]["lastApplied"]] == ["set a to 2", "set b to 3"]


def test_converged_resource_plans_nothing(events: list) -> None:
    infra = FakeInfra(actual={"a": 2}, wanted={"a": 2})
    patch = run(KVMHOST, kvm_body(), infra)
    assert events == [] and infra.observations == 1
    assert conditions(patch)["Ready"]["status"] == "True"
    assert "lastApplied" not in patch["status"]


def test_observe_policy_reports_drift_and_changes_nothing(events: list) -> None:
    infra = FakeInfra(actual={"a": 1}, wanted={"a": 2})
    body = kvm_body(managementPolicy="Observe")
    patch = run(KVMHOST, body, infra)
    assert infra.actual == {"a": 1}
    assert events == [("Warning", "DriftDetected", "1 difference(s) left alone under Observe: set a to 2")]
    assert patch["status"]["drift"] == [{"description": "set a to 2", "disruptive": False}]
    assert conditions(patch)["Ready"]["status"] == "False"

    body["status"] = {"drift": patch["status"]["drift"]}
    events.clear()
    run(KVMHOST, body, infra)
    assert events == [], "the same drift is not announced again on every resync"


def test_failure_stops_apply_records_partial_and_retries(events: list) -> None:
    infra = FakeInfra(actual={}, wanted={"a": 1, "b": 2, "c": 3}, fail_on="b")
    with pytest.raises(kopf.TemporaryError):
        run(KVMHOST, kvm_body(), infra)
    assert infra.actual == {"a": 1}, "stops at the first failure"
    assert ("Warning", "WriteFailed", "set b to 2 failed: cannot write b") in events


def test_failure_status_is_written_before_retry(events: list) -> None:
    infra = FakeInfra(actual={}, wanted={"a": 1, "b": 2}, fail_on="b")
    deps = resources.Deps(reconcilers={"KvmHost": infra},
                          secrets=FakeSecrets({"kvm-ssh": {"ssh-privatekey": "k"}}))
    patch = kopf.Patch()
    with pytest.raises(kopf.TemporaryError):
        asyncio.run(resources.reconcile_object(KVMHOST, deps, kvm_body(), patch, logging.getLogger("t")))
    c = conditions(patch)
    assert c["Reconciling"]["status"] == "True" and c["Ready"]["reason"] == "WriteFailed"
    assert [a["description"] for a in patch["status"]["lastApplied"]] == ["set a to 1"]


def test_permanent_error_is_stalled_without_retry(events: list) -> None:
    class Refusing(FakeInfra):
        async def observe(self, ctx: Context, conn: None) -> dict:
            raise ReconcileError("TooFewHostsForHA", "HA needs three hosts", retry=False)

    patch = run(KVMHOST, kvm_body(), Refusing({}, {}))
    c = conditions(patch)
    assert c["Stalled"]["status"] == "True" and c["Stalled"]["reason"] == "TooFewHostsForHA"


def test_invalid_spec_is_stalled_with_field_path(events: list) -> None:
    body = kvm_body(openvswitch={"bridges": [{"name": "cloudbr0", "ports": ["eth1"]},
                                             {"name": "cloudbr1", "ports": ["eth1"]}]})
    patch = run(KVMHOST, body, FakeInfra({}, {}))
    c = conditions(patch)
    assert c["Stalled"]["status"] == "True" and c["Stalled"]["reason"] == "InvalidSpec"
    assert "'eth1' is used twice" in c["Stalled"]["message"]
    assert events and events[0][:2] == ("Warning", "InvalidSpec")


def test_missing_secret_is_reconciling_and_retried(events: list) -> None:
    secrets = FakeSecrets({}, SecretError("SecretNotFound", "Secret lab/kvm-ssh not found"))
    deps = resources.Deps(reconcilers={"KvmHost": FakeInfra({}, {})}, secrets=secrets)
    patch = kopf.Patch()
    with pytest.raises(kopf.TemporaryError):
        asyncio.run(resources.reconcile_object(KVMHOST, deps, kvm_body(), patch, logging.getLogger("t")))
    c = conditions(patch)
    assert c["Ready"]["reason"] == "SecretNotFound" and c["Reconciling"]["status"] == "True"


def test_unexpected_exception_never_puts_a_traceback_in_status(events: list) -> None:
    class Buggy(FakeInfra):
        async def observe(self, ctx: Context, conn: None) -> dict:
            raise KeyError("password=hunter2")

    deps = resources.Deps(reconcilers={"KvmHost": Buggy({}, {})},
                          secrets=FakeSecrets({"kvm-ssh": {"ssh-privatekey": "k"}}))
    patch = kopf.Patch()
    with pytest.raises(kopf.TemporaryError) as raised:
        asyncio.run(resources.reconcile_object(KVMHOST, deps, kvm_body(), patch, logging.getLogger("t")))
    message = conditions(patch)["Ready"]["message"]
    assert conditions(patch)["Ready"]["reason"] == "InternalError"
    assert "hunter2" not in message and "Traceback" not in message and "hunter2" not in str(raised.value)


def test_secret_values_are_hidden() -> None:
    value = SecretStr("PRIVATE-KEY-VALUE")
    assert "PRIVATE-KEY-VALUE" not in repr(value) and "PRIVATE-KEY-VALUE" not in str(value)
    assert "PRIVATE-KEY-VALUE" not in repr({"k": value})


def test_needed_secrets_finds_every_reference() -> None:
    spec = XENPOOL.spec.model_validate({
        "members": [{"name": "xen1", "address": "10.0.0.11"}],
        "credentialsSecretRef": {"name": "pool-root"},
        "tls": {"caSecretRef": {"name": "xen-ca"}},
        "cloudstack": {"connection": {"secretRef": {"name": "cs-api"}}, "zone": "z1", "pod": "p1", "cluster": "c1"},
    })
    found = {(n.path, n.name, n.keys) for n in needed_secrets(spec)}
    assert found == {
        ("spec.credentialsSecretRef", "pool-root", ("username", "password")),
        ("spec.tls.caSecretRef", "xen-ca", ("ca.crt",)),
        ("spec.cloudstack.connection.secretRef", "cs-api", ("url", "apiKey", "secretKey")),
    }


def test_pause_annotation() -> None:
    assert is_paused({"metadata": {"annotations": {"stackops.io/paused": "true"}}})
    assert is_paused({"metadata": {"annotations": {"stackops.io/paused": "True"}}})
    assert not is_paused({"metadata": {"annotations": {"stackops.io/paused": "false"}}})
    assert not is_paused({"metadata": {}})


def test_paused_object_keeps_its_diff_base() -> None:
    storage = PausableDiffBaseStorage(prefix="stackops.io", key="last-handled-configuration")
    paused = kopf.Body({"metadata": {"annotations": {"stackops.io/paused": "true"}}, "spec": {"a": 1}})
    patch = kopf.Patch()
    storage.store(body=paused, patch=patch, essence=kopf.BodyEssence({"spec": {"a": 1}}))
    assert not patch, "nothing may be written to a paused object"
    active = kopf.Body({"metadata": {"annotations": {}}, "spec": {"a": 1}})
    storage.store(body=active, patch=patch, essence=kopf.BodyEssence({"spec": {"a": 1}}))
    assert "stackops.io/last-handled-configuration" in patch["metadata"]["annotations"]


class StoredObject:
    """The API server's copy of one object, as the resync pass reads it (get) and patches its status."""

    def __init__(self, body: dict) -> None:
        self.body = body
        self.status_patches: list[dict] = []

    def get_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str) -> dict:
        return copy.deepcopy(self.body)

    def patch_namespaced_custom_object_status(self, group: str, version: str, namespace: str, plural: str,
                                              name: str, patch: dict) -> dict:
        self.status_patches.append(patch)
        return self.body


def resync(deps: resources.Deps, body: dict) -> Any:
    meta = body["metadata"]
    return resources.resync_object(KVMHOST, meta["namespace"], meta["name"], meta["uid"], 0, deps=deps,
                                   settings=kopf.OperatorSettings())


def test_a_resync_pass_never_writes_an_older_generation_last(events: list) -> None:
    """A resync pass holds the object (generation 3, waiting for its Secrets); the spec changes (generation 4)
    meanwhile. The passes take the object one after the other, in the order they started, each with the spec it
    read under the object's lock: the last status written is generation 4's."""
    live = kvm_body(resyncIntervalSeconds=60)
    live["metadata"]["generation"] = 3
    live["status"] = {"lastReconcileTime": "2000-01-01T00:00:00Z", "observedGeneration": 3}
    stored = StoredObject(live)
    written: list[int] = []

    class SlowFirstSecrets(FakeSecrets):
        calls = 0

        async def read(self, namespace: str, needed: list) -> dict[str, dict[str, SecretStr]]:
            SlowFirstSecrets.calls += 1
            await asyncio.sleep(0.3 if SlowFirstSecrets.calls == 1 else 0.01)
            return await super().read(namespace, needed)

    class Slow(FakeInfra):
        async def observe(self, ctx: Context, conn: None) -> dict:
            await asyncio.sleep(0.1)
            return await super().observe(ctx, conn)

    deps = resources.Deps(reconcilers={"KvmHost": Slow({}, {})}, custom_api=stored,
                          secrets=SlowFirstSecrets({"kvm-ssh": {"ssh-privatekey": "PRIVATE-KEY-VALUE"}}))

    async def change(body: dict) -> None:
        patch = kopf.Patch()
        await resources.reconcile_object(KVMHOST, deps, body, patch, logging.getLogger("t"))
        written.append(patch.status["observedGeneration"])

    async def scenario() -> None:
        timer = asyncio.create_task(resync(deps, live))
        await asyncio.sleep(0.05)
        changed = kvm_body(resyncIntervalSeconds=60)
        changed["metadata"]["generation"] = 4
        stored.body = {**copy.deepcopy(changed), "status": live["status"]}  # the API server has the change
        await asyncio.gather(timer, change(changed))

    asyncio.run(scenario())
    written.insert(0, stored.status_patches[0]["status"]["observedGeneration"])
    assert written == [3, 4]


def test_a_resync_that_waited_leaves_an_object_paused_meanwhile_alone(events: list) -> None:
    """A resync pass waits for the object's lock while another pass runs; the object is paused meanwhile. The
    resync reads the object once it holds the lock: it neither observes nor writes."""
    live = kvm_body(resyncIntervalSeconds=60)
    live["status"] = {"lastReconcileTime": "2000-01-01T00:00:00Z", "observedGeneration": 3}
    stored = StoredObject(live)
    infra = FakeInfra({"a": 1}, {})
    observed: list[str] = []
    entered = asyncio.Event()
    release = asyncio.Event()

    class Held(FakeInfra):
        async def observe(self, ctx: Context, conn: None) -> dict:
            observed.append("first" if not entered.is_set() else "again")
            entered.set()
            await release.wait()
            return await infra.observe(ctx, conn)

    deps = resources.Deps(reconcilers={"KvmHost": Held({}, {})}, custom_api=stored,
                          secrets=FakeSecrets({"kvm-ssh": {"ssh-privatekey": "PRIVATE-KEY-VALUE"}}))

    async def scenario() -> None:
        first = asyncio.create_task(resources.reconcile_object(
            KVMHOST, deps, kvm_body(resyncIntervalSeconds=60), kopf.Patch(), logging.getLogger("t")))
        await entered.wait()  # the first pass holds the object
        waiting = asyncio.create_task(resync(deps, live))
        await asyncio.sleep(0)  # the resync pass now waits for the lock
        live["metadata"]["annotations"] = {"stackops.io/paused": "true"}
        release.set()
        await asyncio.gather(first, waiting)

    asyncio.run(scenario())
    assert observed == ["first"]
    assert stored.status_patches == []


def test_startup_waits_for_the_crds() -> None:
    from types import SimpleNamespace

    from kubernetes.client.exceptions import ApiException

    from stackops.handlers import peering

    class FakeCustomApi:
        def __init__(self, served: dict[tuple[str, str], list[str]]):
            self.served = served
            self.created: list[str] = []

        def get_api_resources(self, group: str, version: str) -> Any:
            if (group, version) not in self.served:
                raise ApiException(status=404)
            return SimpleNamespace(resources=[SimpleNamespace(name=n) for n in self.served[(group, version)]])

        def create_cluster_custom_object(self, group: str, version: str, plural: str, body: dict) -> None:
            self.created.append(body["metadata"]["name"])

    nothing = FakeCustomApi({})
    with pytest.raises(kopf.TemporaryError, match="xenpools.stackops.io"):
        asyncio.run(peering.prepare(nothing, "stackops", logging.getLogger("t")))
    assert nothing.created == []

    everything = FakeCustomApi({
        ("stackops.io", "v1alpha1"): ["xenpools", "kvmhosts", "systemvmtemplates", "cloudstackreleases",
                                      "xenpools/status"],
        ("kopf.dev", "v1"): ["clusterkopfpeerings"],
    })
    asyncio.run(peering.prepare(everything, "stackops", logging.getLogger("t")))
    assert everything.created == ["stackops"]
    asyncio.run(peering.prepare(everything, None, logging.getLogger("t")))
    assert everything.created == ["stackops"], "standalone: no peering object"


def test_a_resync_that_finds_the_object_not_yet_due_asks_to_come_back_when_it_is(events: list) -> None:
    """Reconciled while the resync waited (or the wall clock went back): the pass changes nothing and writes
    nothing, so no watch event will schedule the object again; it answers when it is due instead of dropping out."""
    live = kvm_body(resyncIntervalSeconds=600)
    live["status"] = {"lastReconcileTime": st.now(), "observedGeneration": 3}
    stored = StoredObject(live)
    infra = FakeInfra({}, {})
    deps = resources.Deps(reconcilers={"KvmHost": infra}, custom_api=stored,
                          secrets=FakeSecrets({"kvm-ssh": {"ssh-privatekey": "PRIVATE-KEY-VALUE"}}))
    again = asyncio.run(resync(deps, live))
    assert again is not None and 590 <= again <= 600
    assert infra.observations == 0 and stored.status_patches == []


def test_a_pass_that_waited_plans_from_the_status_the_pass_before_it_left(events: list) -> None:
    """A change pass waits for the object's lock while a resync pass runs and records a step of multi-step work in
    status (a checkpoint). kopf handed the change pass the body of its event, from before: once it holds the lock
    it reads the object again and sees the step recorded, so it never takes that step a second time."""
    live = kvm_body(resyncIntervalSeconds=60)
    live["status"] = {"lastReconcileTime": "2000-01-01T00:00:00Z", "observedGeneration": 3,
                      "maintenanceProgress": "Draining"}
    stored = StoredObject(live)
    seen: list[str | None] = []

    class Recording(FakeInfra):
        async def observe(self, ctx: Context, conn: None) -> dict:
            seen.append(ctx.status.get("maintenanceProgress"))
            if len(seen) == 1:  # the resync pass takes the step and records it
                await asyncio.sleep(0.1)
                await ctx.checkpoint({"maintenanceProgress": "Completed"})
                stored.body["status"]["maintenanceProgress"] = "Completed"
            return await super().observe(ctx, conn)

    deps = resources.Deps(reconcilers={"KvmHost": Recording({}, {})}, custom_api=stored,
                          secrets=FakeSecrets({"kvm-ssh": {"ssh-privatekey": "PRIVATE-KEY-VALUE"}}))

    async def scenario() -> None:
        timer = asyncio.create_task(resync(deps, live))
        await asyncio.sleep(0.05)
        stale = copy.deepcopy(live)  # the event kopf delivers was made before the step was recorded
        await asyncio.gather(timer, resources.reconcile_object(KVMHOST, deps, stale, kopf.Patch(),
                                                                logging.getLogger("t")))

    asyncio.run(scenario())
    assert seen == ["Draining", "Completed"]
