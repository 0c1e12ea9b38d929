"""How a KvmHost's CloudStack registration shows in its outcome: Registered, and Ready only once the host is Up.
Registration is a stage of the host's plan, run by the engine: planned once the host matches its spec (CloudStack is
looked at only then), in the same pass as the host's own changes, with an Event, PartialApply on a failure, and
under Observe its action in the drift; a converged, registered host plans nothing."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from pydantic import SecretStr
from support.credentials import secret
from support.kvmhost_probe import ProbeOnlyHost, probe_output
from support.specs import HOST_KEY

from stackops import status as st
from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.cloudstack import CloudStackError
from stackops.drivers.ssh import CommandResult
from stackops.reconcile.base import Context, CredentialNotAllowed, Outcome, PartialApply
from stackops.reconcile.kvmhost import HostFacts, KvmHostReconciler
from stackops.reconcile.kvmhost.actions import WriteFile
from stackops.reconcile.kvmhost.plan import plan as plan_host
from stackops.reconcile.kvmhost.probe import parse
from stackops.reconcile.kvmhost.registration import AddHost, HostInCloudStack, describe_state, registered
from stackops.reconcile.registration import RegistrationStage, with_registration

ADDRESS = "10.250.0.11"
OWNER = "lab/kvm1"
CLOUDSTACK = {"connection": {"secretRef": {"name": "cs"}}, "zone": "z1", "pod": "p1", "cluster": "c1"}


def configured() -> Outcome:
    return Outcome(conditions=[*st.ready("Configured", "the host matches the spec"),
                               st.ConditionState("Configured", "True", "Configured")])


def by_type(outcome: Outcome) -> dict[str, st.ConditionState]:
    return {c.type: c for c in outcome.conditions}


def test_up_host_is_registered_and_ready() -> None:
    outcome = with_registration(configured(), registered(
        {"id": "h1", "name": "kvm1", "state": "Up", "resourcestate": "Enabled"}))
    conditions = by_type(outcome)
    assert conditions["Ready"].status == "True" and conditions["Registered"].status == "True"
    assert outcome.fields == {"cloudstackHostId": "h1", "cloudstackHostState": "Up"}
    assert outcome.requeue_after is None


def test_host_in_maintenance_is_not_ready() -> None:
    host = {"id": "h1", "name": "kvm1", "state": "Up", "resourcestate": "Maintenance"}
    assert describe_state(host) == "Up/Maintenance"
    outcome = with_registration(configured(), registered(host))
    assert by_type(outcome)["Ready"].status == "False"
    assert by_type(outcome)["Registered"].status == "False"


# --------------------------------------------------------------------------------------------------------------
# Passes over a fake host and a fake CloudStack


class CloudStack:
    """A CloudStack with zone z1, pod p1 and KVM cluster c1, holding `hosts`; records each request. Its own pool
    (`get` returns it)."""

    def __init__(self, hosts: list[dict[str, Any]] | None = None, refuse_add: bool = False):
        self.hosts = list(hosts or [])
        self.refuse_add = refuse_add
        self.requests: list[str] = []

    def get(self, url: str, api_key: str, secret_key: Any) -> "CloudStack":
        return self

    async def version(self) -> str:
        self.requests.append("listCapabilities")
        return "4.19.1.0"

    async def list(self, command: str, **params: Any) -> list[dict[str, Any]]:
        self.requests.append(command)
        return {"listHosts": self.hosts, "listZones": [{"id": "zone-1", "name": "z1"}],
                "listPods": [{"id": "pod-1", "name": "p1"}],
                "listClusters": [{"id": "cluster-1", "name": "c1", "hypervisortype": "KVM"}]}[command]

    async def call(self, command: str, **params: Any) -> dict[str, Any]:
        self.requests.append(command)
        assert command == "addHost" and params["clusterid"] == "cluster-1", (command, params)
        if self.refuse_add:
            raise CloudStackError("addHost", "Cannot transit agent status with Event AgentDisconnected", errorcode=530)
        host = {"id": "h1", "name": "kvm1", "ipaddress": ADDRESS, "state": "Connecting"}
        self.hosts.append(host)
        return {"host": [host]}


class Host:
    """A host that answers probes with `probes` in turn (the last one repeated) and accepts every command."""

    def __init__(self, *probes: str):
        self.probes = list(probes)
        self.ran: list[str] = []

    def connection(self, target: object) -> "Host":
        return self

    async def run_script(self, script: Any, **_: Any) -> CommandResult:
        self.ran.append("probe")
        return CommandResult(0, self.probes.pop(0) if len(self.probes) > 1 else self.probes[0], "")

    async def run(self, argv: Any, *, label: str | None = None, **_: Any) -> CommandResult:
        self.ran.append(label or " ".join(argv))
        return CommandResult(0, "", "")


def spec(policy: str = "Manage", **cloudstack: Any) -> KvmHostSpec:
    return KvmHostSpec.model_validate({"address": ADDRESS, "managementPolicy": policy,
                                       "cloudstack": {**CLOUDSTACK, **cloudstack},
                                       "ssh": {"privateKeySecretRef": {"name": "k"}, "hostKey": HOST_KEY}})


def probes() -> tuple[str, str]:
    """The probe of a host that does not match `spec()` yet, and of the same host once it does."""
    before = probe_output()
    files = {a.path: a.content for a in plan_host(spec(), parse(before, 16509), OWNER) if isinstance(a, WriteFile)}
    return before, probe_output(files=files)


def context(s: KvmHostSpec, events: list, status: dict | None = None) -> Context:
    secrets = {"k": secret({"ssh-privatekey": "unused"}, ADDRESS),
               "cs": {"url": SecretStr("https://cloud.example.com/client/api"), "apiKey": SecretStr("key"),
                      "secretKey": SecretStr("secret")}}
    return Context(namespace="lab", name="kvm1", generation=1, spec=s, status=dict(status or {}), secrets=secrets,
                   event=lambda *e: events.append(e), logger=logging.getLogger("test"))


def reconcile(host: Any, cloudstack: CloudStack, s: KvmHostSpec, events: list,
              status: dict | None = None) -> Outcome:
    return asyncio.run(KvmHostReconciler(host, cloudstack).reconcile(context(s, events, status)))  # type: ignore[arg-type]


def test_the_plan_of_a_configured_host_missing_from_cloudstack_is_its_registration_stage() -> None:
    _, configured_probe = probes()
    view = HostFacts(owner=OWNER, host=parse(configured_probe, 16509),
                     cloudstack=HostInCloudStack(None, "zone-1", "pod-1", "cluster-1"))
    reconciler = KvmHostReconciler(None, CloudStack())  # type: ignore[arg-type]
    [stage] = reconciler.plan(context(spec(), []), view).stages
    assert isinstance(stage, RegistrationStage) and stage.follow_up and stage.then == "stop"
    assert stage.actions == (AddHost(ADDRESS, "z1", "p1", "c1"),)
    registered_view = HostFacts(owner=OWNER, host=view.host, cloudstack=HostInCloudStack({"id": "h1"}))
    assert reconciler.plan(context(spec(), []), registered_view).stages == [], "a registered host plans nothing"


def test_connecting_host_keeps_ready_false_and_checks_again_soon() -> None:
    """A configured host not in CloudStack: the pass adds it (one Event) and reports CloudStack's answer."""
    _, configured_probe = probes()
    cloudstack, events = CloudStack(), []
    outcome = reconcile(ProbeOnlyHost(configured_probe), cloudstack, spec(), events)
    action = AddHost(ADDRESS, "z1", "p1", "c1")
    conditions = by_type(outcome)
    assert conditions["Ready"].status == "False" and conditions["Ready"].reason == "CloudStackHostConnecting"
    assert conditions["Reconciling"].status == "True"
    assert conditions["Configured"].status == "True"
    assert (conditions["Registered"].status, conditions["Registered"].reason) == ("False", "Connecting")
    assert outcome.applied == [action] and outcome.requeue_after == 5.0 and outcome.drift == []
    assert outcome.fields["cloudstackHostId"] == "h1" and outcome.fields["cloudstackHostState"] == "Connecting"
    assert events == [("Normal", "Applied", action.describe())]
    assert cloudstack.requests == ["listCapabilities", "listHosts", "listZones", "listPods", "listClusters",
                                   "addHost"], "observed once, no second look after addHost"


def test_a_registered_up_host_plans_nothing_and_looks_once() -> None:
    _, configured_probe = probes()
    cloudstack, events = CloudStack([{"id": "h1", "name": "kvm1", "ipaddress": ADDRESS, "state": "Up"}]), []
    outcome = reconcile(ProbeOnlyHost(configured_probe), cloudstack, spec(), events)
    assert by_type(outcome)["Ready"].status == "True" and by_type(outcome)["Registered"].reason == "Up"
    assert outcome.applied == [] and outcome.drift == [] and events == []
    assert cloudstack.requests == ["listCapabilities", "listHosts"]


def test_under_observe_the_missing_registration_is_drift() -> None:
    _, configured_probe = probes()
    cloudstack, events = CloudStack(), []
    outcome = reconcile(ProbeOnlyHost(configured_probe), cloudstack, spec("Observe"), events)
    action = AddHost(ADDRESS, "z1", "p1", "c1")
    assert outcome.drift == [action] and outcome.applied == []
    assert by_type(outcome)["Registered"].reason == "NotRegistered"
    assert by_type(outcome)["Ready"].reason == "CloudStackHostNotRegistered"
    assert [(e[0], e[1]) for e in events] == [("Warning", "DriftDetected")] and action.describe() in events[0][2]
    assert "addHost" not in cloudstack.requests


def test_a_host_that_does_not_match_its_spec_is_not_looked_up() -> None:
    unconfigured, _ = probes()
    cloudstack, events = CloudStack(), []
    outcome = reconcile(ProbeOnlyHost(unconfigured), cloudstack, spec("Observe"), events)
    assert by_type(outcome)["Registered"].reason == "WaitingForConfiguration"
    assert not any(isinstance(a, AddHost) for a in outcome.drift or [])
    assert cloudstack.requests == [], "no request to CloudStack before the host is configured"


def test_the_host_is_configured_then_registered_in_the_same_pass() -> None:
    unconfigured, configured_probe = probes()
    host, cloudstack, events = Host(unconfigured, configured_probe), CloudStack(), []
    outcome = reconcile(host, cloudstack, spec(), events)
    assert [type(a).__name__ for a in outcome.applied][-1] == "AddHost" and len(outcome.applied) > 1
    assert host.ran[0] == "probe" and host.ran[-1] == "probe" and host.ran.count("probe") == 2, host.ran
    assert cloudstack.requests == ["listCapabilities", "listHosts", "listZones", "listPods", "listClusters",
                                   "addHost"]
    assert by_type(outcome)["Ready"].reason == "CloudStackHostConnecting"


def test_a_refused_registration_after_the_host_changes_says_what_was_applied() -> None:
    unconfigured, configured_probe = probes()
    host, cloudstack, events = Host(unconfigured, configured_probe), CloudStack(refuse_add=True), []
    with pytest.raises(PartialApply) as failed:
        reconcile(host, cloudstack, spec(), events)
    assert failed.value.applied and not any(isinstance(a, AddHost) for a in failed.value.applied)
    assert failed.value.conditions[0].type == "Registered" and failed.value.conditions[0].reason == \
        "RegistrationFailed"
    warning = events[-1]
    assert warning[:2] == ("Warning", "RegistrationFailed") and "add host 10.250.0.11" in warning[2]


def test_a_host_password_its_secret_keeps_from_cloudstack_stalls_before_anything_is_sent() -> None:
    unconfigured, configured_probe = probes()
    host, cloudstack, events = Host(unconfigured, configured_probe), CloudStack(), []
    ctx = context(spec(passwordSecretRef={"name": "pw", "key": "password"}), events)
    ctx.secrets["pw"] = secret({"password": "host-pw"}, ADDRESS)  # the host only, not CloudStack
    with pytest.raises(CredentialNotAllowed) as refused:
        asyncio.run(KvmHostReconciler(host, cloudstack).reconcile(ctx))  # type: ignore[arg-type]
    assert refused.value.refused == ["the CloudStack url of Secret lab/cs"]
    assert "addHost" not in cloudstack.requests and host.ran.count("probe") == 2, "the host was configured"
