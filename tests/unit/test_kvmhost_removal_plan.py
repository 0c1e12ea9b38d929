"""KvmHost deletion under `deletionPolicy: Delete`, without a host: which Open vSwitch objects the removal plan
deletes and in what order, what it keeps (the management path, bridges shared with ports stackops did not create),
and the reconciler's `finalize` with a fake SSH connection (CloudStack first, Events, retries, Orphan)."""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from typing import Any

import pytest
from pydantic import SecretStr

import stackops.reconcile.kvmhost as kvmhost
from support.kvmhost_probe import OWNER, probe_output
from support.specs import HOST_KEY
from support.credentials import secret
from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.ssh import CommandFailed, CommandResult, Unreachable
from stackops.reconcile.base import Context, PartialApply, ReconcileError
from stackops.reconcile.kvmhost import KvmHostReconciler, guard, probe
from stackops.reconcile.kvmhost.actions import OvsCommand
from stackops.reconcile.kvmhost.observed import OWNER_KEY, HostState, OvsBridge, OvsInterface, OvsPort, OvsState
from stackops.reconcile.kvmhost.plan import PlanError, Removal, management_path, plan, plan_removal
from stackops.reconcile.kvmhost.probe import parse

ADDRESS = "10.250.0.11"
MARK = {OWNER_KEY: OWNER}


def sample() -> HostState:
    """The recorded lab database: cloudbr0 (netdev) with bond0, vxlan0 and VLAN bridge mgmt0, owned by OWNER;
    foreign0 with eth9, hand-made. The management address is on eth0, outside Open vSwitch."""
    return parse(probe_output(), 16509)


def port(name: str, bridge: str, *, owner: str | None = OWNER, interfaces: tuple[str, ...] | None = None,
         tag: int | None = None, fake: bool = False, bond: bool = False) -> OvsPort:
    return OvsPort(name=name, bridge=bridge, interfaces=interfaces or (name,), tag=tag, fake_bridge=fake,
                   bond_mode="balance-tcp" if bond else None,
                   external_ids={OWNER_KEY: owner} if owner else {})


def host(bridges: dict[str, str | None], ports: list[OvsPort], *, types: dict[str, str] | None = None,
         addresses: dict[str, tuple[str, ...]] | None = None) -> HostState:
    """A host whose database has `bridges` (name → owner or None), each with its local port, and `ports`."""
    local = [port(name, name, owner=None) for name in bridges]
    every = {p.name: p for p in [*local, *ports]}
    names = {i for p in every.values() for i in p.interfaces}
    state = OvsState(
        bridges={n: OvsBridge(n, "netdev", {OWNER_KEY: o} if o else {}) for n, o in bridges.items()},
        ports=every,
        interfaces={n: OvsInterface(n, type=(types or {}).get(n, "internal" if n in bridges else "")) for n in names})
    return dataclasses.replace(sample(), ovs=state, addresses=addresses or {"eth0": (f"{ADDRESS}/24",)})


def argvs(removal: Removal) -> list[tuple[str, ...]]:
    return [a.args for a in removal.actions if isinstance(a, OvsCommand)]


# --------------------------------------------------------------------------------------------------------------
# The removal plan


def test_every_owned_object_goes_ports_first_and_nothing_else_is_touched() -> None:
    removal = plan_removal(sample(), OWNER, ADDRESS)
    assert argvs(removal) == [("del-br", "mgmt0"), ("del-port", "cloudbr0", "bond0"),
                              ("del-port", "cloudbr0", "vxlan0"), ("del-br", "cloudbr0")]
    assert [a.describe() for a in removal.actions] == [
        "remove VLAN bridge mgmt0 (deletionPolicy Delete)", "remove bond bond0 from cloudbr0 (deletionPolicy Delete)",
        "remove vxlan port vxlan0 from cloudbr0 (deletionPolicy Delete)",
        "remove bridge cloudbr0 (deletionPolicy Delete)"]
    assert all(a.disruptive for a in removal.actions)
    assert removal.kept == ()
    named = {word for a in removal.actions for word in a.argv()}
    assert not named & {"foreign0", "eth9"}, "the hand-made bridge and its port are never named"


def test_another_owners_objects_are_not_removed() -> None:
    assert plan_removal(sample(), "lab/other", ADDRESS) == Removal()
    both = host({"cloudbr0": OWNER, "cloudbr9": "lab/other"},
                [port("vx0", "cloudbr0"), port("vx9", "cloudbr9", owner="lab/other")], types={"vx0": "gre"})
    assert argvs(plan_removal(both, OWNER, ADDRESS)) == [("del-port", "cloudbr0", "vx0"), ("del-br", "cloudbr0")]


def test_bridges_in_name_order_each_after_its_own_ports() -> None:
    observed = host({"cloudbr1": OWNER, "cloudbr0": OWNER},
                    [port("int1", "cloudbr1"), port("storage0", "cloudbr0", tag=124, fake=True),
                     port("bond0", "cloudbr0", interfaces=("eno49", "eno50"), bond=True),
                     port("guest0", "cloudbr1", tag=200, fake=True), port("eno51", "cloudbr0")],
                    types={"int1": "internal"})
    removal = plan_removal(observed, OWNER, ADDRESS)
    assert argvs(removal) == [("del-br", "storage0"), ("del-port", "cloudbr0", "bond0"),
                              ("del-port", "cloudbr0", "eno51"), ("del-br", "cloudbr0"),
                              ("del-br", "guest0"), ("del-port", "cloudbr1", "int1"), ("del-br", "cloudbr1")]
    assert "remove internal port int1 from cloudbr1 (deletionPolicy Delete)" in [a.describe() for a in removal.actions]
    assert "remove port eno51 from cloudbr0 (deletionPolicy Delete)" in [a.describe() for a in removal.actions]


def test_owned_ports_of_a_hand_made_bridge_go_and_the_bridge_stays() -> None:
    observed = host({"br-ex": None}, [port("eno49", "br-ex"), port("vnet0", "br-ex", owner=None)])
    removal = plan_removal(observed, OWNER, ADDRESS)
    assert argvs(removal) == [("del-port", "br-ex", "eno49")]
    assert removal.kept == ()


def test_the_bridge_carrying_the_management_address_is_kept_whole() -> None:
    # the management address on VLAN bridge mgmt0 of cloudbr0: every owned object of cloudbr0 is on the path
    observed = dataclasses.replace(sample(), addresses={"mgmt0": (f"{ADDRESS}/24",), "eth0": ()})
    removal = plan_removal(observed, OWNER, ADDRESS)
    assert removal.actions == ()
    assert [(k.what, k.reason) for k in removal.kept] == [
        ("VLAN bridge mgmt0 on cloudbr0", "ManagementPath"), ("bond bond0 on cloudbr0", "ManagementPath"),
        ("vxlan port vxlan0 on cloudbr0", "ManagementPath"), ("bridge cloudbr0", "ManagementPath")]


def test_a_management_nic_in_an_owned_bridge_keeps_that_bridge_and_the_others_go() -> None:
    observed = host({"cloudbr0": OWNER, "cloudbr1": OWNER},
                    [port("eth0", "cloudbr0"), port("storage0", "cloudbr0", tag=124, fake=True),
                     port("eno49", "cloudbr1"), port("guest0", "cloudbr1", tag=200, fake=True)])
    removal = plan_removal(observed, OWNER, ADDRESS)
    assert argvs(removal) == [("del-br", "guest0"), ("del-port", "cloudbr1", "eno49"), ("del-br", "cloudbr1")]
    assert {k.what for k in removal.kept} == {"port eth0 on cloudbr0", "VLAN bridge storage0 on cloudbr0",
                                             "bridge cloudbr0"}
    assert {k.reason for k in removal.kept} == {"ManagementPath"}
    # the same judgement as the guard's: nothing removed names an interface of the path
    assert not guard.risky_actions(removal.actions, {"eth0", "cloudbr0", "storage0"})


def test_an_owned_port_on_a_hand_made_management_bridge_is_kept() -> None:
    observed = host({"br-mgmt": None}, [port("eth0", "br-mgmt", owner=None), port("eno49", "br-mgmt")],
                    addresses={"br-mgmt": (f"{ADDRESS}/24",)})
    removal = plan_removal(observed, OWNER, ADDRESS)
    assert removal.actions == () and [(k.what, k.reason) for k in removal.kept] == [
        ("port eno49 on br-mgmt", "ManagementPath")]


def test_only_where_the_address_is_now_counts_not_where_the_spec_wanted_it() -> None:
    # the spec once asked for the management address on cloudbr0, but the host carries it on eth0 (never moved,
    # or rolled back): the spec's intent makes cloudbr0 part of management_path, not of the removal's path
    observed = host({"cloudbr0": OWNER}, [port("eno49", "cloudbr0")])
    s = KvmHostSpec.model_validate({"address": ADDRESS, "ssh": {"privateKeySecretRef": {"name": "k"},
                                                                "hostKey": HOST_KEY},
                                    "openvswitch": {"bridges": [{"name": "cloudbr0", "addresses": [f"{ADDRESS}/24"]}]}})
    assert "cloudbr0" in management_path(s, observed)
    assert argvs(plan_removal(observed, OWNER, ADDRESS)) == [("del-port", "cloudbr0", "eno49"), ("del-br", "cloudbr0")]


def test_a_bridge_with_ports_stackops_did_not_create_is_kept_and_its_own_ports_go() -> None:
    observed = host({"cloudbr1": OWNER}, [port("bond1", "cloudbr1", interfaces=("eno49", "eno50"), bond=True),
                                          port("vnet0", "cloudbr1", owner=None)])
    removal = plan_removal(observed, OWNER, ADDRESS)
    assert argvs(removal) == [("del-port", "cloudbr1", "bond1")]
    assert [(k.what, k.reason, k.detail) for k in removal.kept] == [
        ("bridge cloudbr1", "SharedObject", "it also holds vnet0")]


def test_a_vlan_bridge_whose_vlan_has_foreign_ports_is_kept() -> None:
    # `del-br guest0` would delete every port of VLAN 200 on the parent, vnet3 included
    observed = host({"br-ex": None}, [port("guest0", "br-ex", tag=200, fake=True), port("vnet3", "br-ex", owner=None,
                                                                                       tag=200),
                                      port("storage0", "br-ex", tag=124, fake=True), port("vnet4", "br-ex", owner=None,
                                                                                          tag=999)])
    removal = plan_removal(observed, OWNER, ADDRESS)
    assert argvs(removal) == [("del-br", "storage0")]
    assert [(k.what, k.reason, k.detail) for k in removal.kept] == [
        ("VLAN bridge guest0 on br-ex", "SharedObject", "VLAN 200 also has vnet3")]


def test_a_port_owned_by_another_kvmhost_counts_as_foreign() -> None:
    observed = host({"cloudbr0": OWNER}, [port("vx0", "cloudbr0"), port("vx9", "cloudbr0", owner="lab/other")])
    removal = plan_removal(observed, OWNER, ADDRESS)
    assert argvs(removal) == [("del-port", "cloudbr0", "vx0")]
    assert [k.what for k in removal.kept] == ["bridge cloudbr0"]


def test_open_vswitch_not_answering_blocks_and_no_open_vswitch_means_nothing_to_do() -> None:
    with pytest.raises(PlanError) as refused:
        plan_removal(parse(probe_output(ovs=False), 16509), OWNER, ADDRESS)
    assert refused.value.reason == "OpenVSwitchNotRunning"
    absent = dataclasses.replace(parse(probe_output(ovs=False), 16509), ovs_version=None)
    assert plan_removal(absent, OWNER, ADDRESS) == Removal()


def test_a_fresh_host_has_nothing_to_remove() -> None:
    assert plan_removal(parse(probe_output(empty_ovs=True), 16509), OWNER, ADDRESS) == Removal()


def test_the_spec_dropping_objects_still_plans_the_same_leftover_removals() -> None:
    """The removal helpers are shared with the converge plan: leftovers read as before."""
    s = KvmHostSpec.model_validate({"address": ADDRESS, "ssh": {"privateKeySecretRef": {"name": "k"},
                                                                "hostKey": HOST_KEY},
                                    "openvswitch": {"bridges": [{"name": "cloudbr0", "datapathType": "netdev"}]}})
    described = [a.describe() for a in plan(s, sample(), OWNER) if "no longer in the spec" in a.describe()]
    assert described == ["remove port bond0 from cloudbr0 (no longer in the spec)",
                         "remove port vxlan0 from cloudbr0 (no longer in the spec)",
                         "remove VLAN bridge mgmt0 (no longer in the spec)"]


# --------------------------------------------------------------------------------------------------------------
# The reconciler's finalize, with a fake SSH connection


class FakeHost:
    """Answers probes with `probes` in turn (the last one repeated, or an exception), records every command."""

    def __init__(self, *probes: str | Exception, fail: str | None = None):
        self.probes = list(probes)
        self.fail = fail  # a command whose argv contains this fails
        self.calls: list[Any] = []

    def next_probe(self) -> str:
        answer = self.probes.pop(0) if len(self.probes) > 1 else self.probes[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class FakeConnection:
    def __init__(self, host: FakeHost):
        self.host = host

    async def run(self, argv, *, input=None, timeout=60.0, check=True, mutation=False, label=None):
        self.host.calls.append(tuple(argv))
        if self.host.fail and self.host.fail in argv:
            raise CommandFailed(f"{label} exited with status 1", host="kvm1", exit_status=1,
                                result=CommandResult(1, "", "ovs-vsctl: no bridge named cloudbr0"))
        return CommandResult(0, "", "")

    async def run_script(self, script, *, args=(), timeout=60.0, check=True, mutation=False, label="script"):
        assert script is probe.SCRIPT, "only the probe is run"
        self.host.calls.append("probe")
        return CommandResult(0, self.host.next_probe(), "")


class FakePool:
    def __init__(self, host: FakeHost):
        self.host = host

    def connection(self, target: Any) -> FakeConnection:
        return FakeConnection(self.host)


def spec(**changes: Any) -> KvmHostSpec:
    data: dict[str, Any] = {"address": ADDRESS, "ssh": {"privateKeySecretRef": {"name": "k"}, "hostKey": HOST_KEY},
                            "deletionPolicy": "Delete"}
    data.update(changes)
    return KvmHostSpec.model_validate(data)


def context(s: KvmHostSpec, events: list) -> Context:
    return Context(namespace="lab", name="kvm1", generation=3, spec=s, status={},
                   secrets={"k": secret({"ssh-privatekey": "unused"}, s.address)}, event=lambda *e: events.append(e),
                   logger=logging.getLogger("test"))


def finalize(host: FakeHost, s: KvmHostSpec, events: list, cloudstack: Any = None) -> None:
    asyncio.run(KvmHostReconciler(FakePool(host), cloudstack).finalize(context(s, events)))  # type: ignore[arg-type]


REMOVED = probe_output(empty_ovs=True)


def test_finalize_removes_with_an_applied_event_each_and_checks_again() -> None:
    host = FakeHost(probe_output(), REMOVED)
    events: list = []
    finalize(host, spec(), events)
    assert host.calls == ["probe",
                          ("ovs-vsctl", "--timeout=30", "del-br", "mgmt0"),
                          ("ovs-vsctl", "--timeout=30", "del-port", "cloudbr0", "bond0"),
                          ("ovs-vsctl", "--timeout=30", "del-port", "cloudbr0", "vxlan0"),
                          ("ovs-vsctl", "--timeout=30", "del-br", "cloudbr0"),
                          "probe"]
    assert [e[:2] for e in events] == [("Normal", "Applied")] * 4
    assert events[-1][2] == "remove bridge cloudbr0 (deletionPolicy Delete)"


def test_finalize_under_orphan_does_nothing() -> None:
    host = FakeHost(probe_output())
    events: list = []
    finalize(host, spec(deletionPolicy="Orphan"), events)
    assert host.calls == [] and events == []


def test_cloudstack_goes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    host = FakeHost(probe_output(), REMOVED)
    order: list[str] = []

    async def deregister(pool: Any, ctx: Context, s: KvmHostSpec) -> None:
        assert host.calls == [], "nothing on the host before the host has left CloudStack"
        order.append("deregister")

    monkeypatch.setattr(kvmhost.registration, "deregister", deregister)
    s = spec(cloudstack={"connection": {"secretRef": {"name": "cs"}}, "zone": "z", "pod": "p", "cluster": "c"})
    finalize(host, s, [], cloudstack=object())
    assert order == ["deregister"] and host.calls[0] == "probe" and len(host.calls) == 6


def test_a_cloudstack_failure_leaves_the_host_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    host = FakeHost(probe_output())

    async def deregister(pool: Any, ctx: Context, s: KvmHostSpec) -> None:
        raise ReconcileError("MaintenanceFailed", "ErrorInMaintenance", delay=60.0)

    monkeypatch.setattr(kvmhost.registration, "deregister", deregister)
    s = spec(cloudstack={"connection": {"secretRef": {"name": "cs"}}, "zone": "z", "pod": "p", "cluster": "c"})
    with pytest.raises(ReconcileError) as failed:
        finalize(host, s, [], cloudstack=object())
    assert failed.value.reason == "MaintenanceFailed" and host.calls == []


@pytest.mark.parametrize(("probe", "reason"), [
    (Unreachable("connection refused"), "Unreachable"),  # the object is kept for a retry
    (probe_output(ovs=False), "OpenVSwitchNotRunning"),  # Open vSwitch not answering
], ids=["unreachable", "open-vswitch-not-answering"])
def test_a_probe_that_finds_no_usable_host_keeps_the_object_for_a_retry(probe: str | Exception, reason: str) -> None:
    host = FakeHost(probe)
    with pytest.raises(ReconcileError) as failed:
        finalize(host, spec(), [])
    assert failed.value.reason == reason and failed.value.retry
    assert host.calls == ["probe"], "the probe was tried, nothing else"


def test_a_failed_removal_stops_with_a_warning_and_is_retried() -> None:
    host = FakeHost(probe_output(), fail="bond0")
    events: list = []
    with pytest.raises(PartialApply) as failed:
        finalize(host, spec(), events)
    assert failed.value.reason == "CommandFailed" and failed.value.retry
    assert [a.describe() for a in failed.value.applied] == ["remove VLAN bridge mgmt0 (deletionPolicy Delete)"]
    assert [e[1] for e in events] == ["Applied", "CommandFailed"]
    assert ("ovs-vsctl", "--timeout=30", "del-br", "cloudbr0") not in host.calls, "stops at the first failure"


def test_objects_still_there_afterwards_are_retried() -> None:
    host = FakeHost(probe_output())  # someone (or something) puts them back
    with pytest.raises(ReconcileError) as failed:
        finalize(host, spec(), [])
    assert failed.value.reason == "RemovalIncomplete" and failed.value.retry
    assert "remove bridge cloudbr0" in str(failed.value)


def test_the_management_path_is_kept_with_a_warning_and_deletion_completes() -> None:
    on_path = probe_output(addresses={"mgmt0": [f"{ADDRESS}/24"], "eth0": []})
    host = FakeHost(on_path)
    events: list = []
    finalize(host, spec(), events)
    assert host.calls == ["probe"], "nothing on the path is touched, and there was nothing else"
    [(kind, reason, message)] = events
    assert (kind, reason) == ("Warning", "ManagementPathKept")
    assert "bridge cloudbr0" in message and "VLAN bridge mgmt0 on cloudbr0" in message and ADDRESS in message


def test_a_shared_bridge_is_kept_with_a_warning() -> None:
    shared = host({"cloudbr1": OWNER}, [port("vx1", "cloudbr1"), port("vnet0", "cloudbr1", owner=None)])
    after = host({"cloudbr1": OWNER}, [port("vnet0", "cloudbr1", owner=None)])
    events: list = []
    reconciler = KvmHostReconciler(FakePool(FakeHost(probe_output())))  # type: ignore[arg-type]
    views = [shared, after]

    async def observe(ctx: Context, conn: object) -> kvmhost.HostFacts:
        return kvmhost.HostFacts(owner=OWNER, host=views.pop(0) if len(views) > 1 else views[0])

    reconciler.observe = observe  # type: ignore[method-assign]
    asyncio.run(reconciler.finalize(context(spec(), events)))
    assert [e[1] for e in events] == ["Applied", "SharedObjectsKept"]
    assert "bridge cloudbr1 (it also holds vnet0)" in events[1][2]


def test_an_unsettled_management_path_change_is_waited_for() -> None:
    # the probe's checkpoints section: a guarded change of this KvmHost, still running, its timer due at 1010
    values = {"owner": OWNER, "generation": "2", "changes": "add eth0 to bridge cloudbr0", "started": "990",
              "expires": "1010"}
    line = "checkpoint 20240101T000000Z-abcd " + " ".join(
        f"{key}={base64.b64encode(value.encode()).decode()}" for key, value in values.items())
    host = FakeHost(probe_output() + f"@@checkpoints -\nnow 1000\n{line}\n")
    with pytest.raises(ReconcileError) as waiting:
        finalize(host, spec(), [])
    assert waiting.value.reason == "RollbackPending" and waiting.value.retry
    assert host.calls == ["probe"], "nothing is removed while the host may still restore its database"
