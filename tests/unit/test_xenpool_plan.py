"""The pure part of XenPool: membership, the three-host rule, HA reconfiguration, settings, uniqueness; and its
CloudStack registration as a stage of its plan."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any, AsyncIterator

from stackops.api.xenpool import XenPoolSpec
from stackops.reconcile.base import Action, Context
from stackops.reconcile.registration import RegistrationStage
from stackops.reconcile.xenpool import PoolConnection, XenPoolReconciler
from stackops.reconcile.xenpool.cluster import AddCluster, AddClusterHosts, ClusterInCloudStack
from stackops.reconcile.xenpool.actions import (
    ClearVMPriority,
    DesignateMaster,
    DisableHA,
    EjectHost,
    EnableHA,
    EnableHost,
    JoinHost,
    MakeHostUnique,
    SetHostName,
    SetVSwitchController,
)
from stackops.reconcile.xenpool.observed import SR, VM, Candidate, Host, PoolFacts
from stackops.reconcile.xenpool.plan import plan


def spec(members: int = 3, **changes: Any) -> XenPoolSpec:
    data: dict[str, Any] = {
        "members": [{"name": f"xen{i}", "address": f"10.0.0.{i}"} for i in range(1, members + 1)],
        "credentialsSecretRef": {"name": "xen"},
        "tls": {"insecureSkipVerify": True},
    }
    data.update(changes)
    return XenPoolSpec.model_validate(data)


def host(i: int, **changes: Any) -> Host:
    values: dict[str, Any] = dict(ref=f"h{i}", uuid=f"uuid-{i}", name_label=f"xen{i}", address=f"10.0.0.{i}",
                                  enabled=True, live=True)
    values.update(changes)
    return Host(**values)


def facts(hosts: list[Host], **changes: Any) -> PoolFacts:
    values: dict[str, Any] = dict(
        pool_ref="p", pool_uuid="pool-uuid", master_ref=hosts[0].ref, ha_enabled=True,
        ha_configuration={"timeout": "180"}, ha_statefiles=["vdi"], ha_host_failures_to_tolerate=1,
        ha_plan_exists_for=1, ha_overcommitted=False, ha_allow_overcommit=True, vswitch_controller="",
        hosts={h.ref: h for h in hosts}, srs={"sr1": SR("sr1", "sr-uuid", "nfs-pri", "nfs", True)},
        vms_with_priority=[], heartbeat_sr_uuids=["sr-uuid"])
    values.update(changes)
    return PoolFacts(**values)


def kinds(result) -> list[type]:  # noqa: ANN001
    return [type(a) for a in result.actions]


def test_converged_pool_plans_nothing() -> None:
    result = plan(spec(), facts([host(1), host(2), host(3)]))
    assert result.actions == [] and result.problems == []


def test_ha_off_is_enabled_with_the_explicit_timeout() -> None:
    result = plan(spec(), facts([host(1), host(2), host(3)], ha_enabled=False, ha_configuration={}))
    assert result.actions == [EnableHA("sr-uuid", "nfs-pri", 180)]


def test_changed_timeout_is_disable_then_enable() -> None:
    result = plan(spec(ha={"timeoutSeconds": 300}), facts([host(1), host(2), host(3)]))
    assert kinds(result) == [DisableHA, EnableHA] and result.actions[1].timeout == 300


def test_two_hosts_with_ha_is_refused_unless_allowed() -> None:
    result = plan(spec(2), facts([host(1), host(2)], ha_enabled=False))
    assert [p.reason for p in result.problems] == ["TooFewHostsForHA"] and result.actions == []
    allowed = plan(spec(2, ha={"allowFewerThanThreeHosts": True}), facts([host(1), host(2)], ha_enabled=False))
    assert kinds(allowed) == [EnableHA]


def test_join_is_planned_for_a_standalone_member_and_counts_for_the_three_host_rule() -> None:
    candidate = Candidate("10.0.0.3", uuid="uuid-3", name_label="xen3", pool_size=1)
    result = plan(spec(), facts([host(1), host(2)], ha_enabled=False, candidates={"10.0.0.3": candidate}))
    assert kinds(result) == [JoinHost, EnableHA]
    assert result.membership == [JoinHost("xen3", "10.0.0.3")]


def test_a_clone_is_detected_before_joining() -> None:
    clone = Candidate("10.0.0.3", uuid="uuid-1", name_label="xen3", pool_size=1)
    result = plan(spec(), facts([host(1), host(2)], candidates={"10.0.0.3": clone}))
    assert [p.reason for p in result.problems] == ["DuplicateHostUUID"] and result.actions == []
    assert "uuid-1" in result.problems[0].message


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def unique_spec(members: int = 4) -> XenPoolSpec:
    listed = [{"name": f"xen{i}", "address": f"10.0.0.{i}", "sshHostKey": KEY} for i in range(1, members + 1)]
    data: dict[str, Any] = {"members": listed, "credentialsSecretRef": {"name": "xen"}, "tls": {"plainHTTP": True},
                            "uniqueness": {"policy": "MakeUnique", "ssh": {"privateKeySecretRef": {"name": "k"}}}}
    return XenPoolSpec.model_validate(data)


def test_make_unique_fixes_the_later_clone_outside_the_pool_and_nothing_joins_in_that_pass() -> None:
    clone = Candidate("10.0.0.3", uuid="uuid-1", name_label="xen1", pool_size=1)
    twin = Candidate("10.0.0.4", uuid="uuid-1", name_label="xen1", pool_size=1)
    result = plan(unique_spec(), facts([host(1), host(2)], candidates={"10.0.0.3": clone, "10.0.0.4": twin}))
    assert result.problems == []
    assert result.actions == [MakeHostUnique("xen3", "10.0.0.3", "uuid-1"), MakeHostUnique("xen4", "10.0.0.4", "uuid-1")]
    # two standalone clones of each other: the first in spec order keeps its UUID, its label is set
    first = Candidate("10.0.0.3", uuid="uuid-9", name_label="template", pool_size=1)
    second = Candidate("10.0.0.4", uuid="uuid-9", name_label="template", pool_size=1)
    result = plan(unique_spec(), facts([host(1), host(2)], candidates={"10.0.0.3": first, "10.0.0.4": second}))
    assert result.actions == [MakeHostUnique("xen4", "10.0.0.4", "uuid-9"), SetHostName("xen3", "10.0.0.3", "template")]


def test_make_unique_renames_a_member_whose_label_is_taken() -> None:
    named = Candidate("10.0.0.3", uuid="uuid-3", name_label="xen1", pool_size=1)
    result = plan(unique_spec(3), facts([host(1), host(2)], candidates={"10.0.0.3": named}))
    assert result.actions == [SetHostName("xen3", "10.0.0.3", "xen1")]
    detected = plan(spec(), facts([host(1), host(2)], candidates={"10.0.0.3": named}))
    assert [p.reason for p in detected.problems] == ["DuplicateHostName"]


def test_members_that_cannot_join() -> None:
    elsewhere = Candidate("10.0.0.3", master_of="10.9.9.9")
    assert plan(spec(), facts([host(1), host(2)], candidates={"10.0.0.3": elsewhere})).problems[0].reason == \
        "MemberInAnotherPool"
    busy = Candidate("10.0.0.3", uuid="u3", name_label="xen3", pool_size=1, running_vms=("vm-a",))
    assert plan(spec(), facts([host(1), host(2)], candidates={"10.0.0.3": busy})).problems[0].reason == \
        "JoiningHostHasRunningVMs"
    gone = Candidate("10.0.0.3", error="Unreachable: refused")
    result = plan(spec(), facts([host(1), host(2)], candidates={"10.0.0.3": gone}))
    assert result.waiting and result.problems[0].reason == "TooFewHostsForHA"


def test_host_not_in_spec_is_ejected_only_when_allowed() -> None:
    hosts = [host(1), host(2), host(3), host(4)]
    noticed = plan(spec(), facts(hosts))
    assert noticed.actions == [] and "xen4" in noticed.notices[0]
    ejected = plan(spec(allowedDestructiveActions=["Eject"]), facts(hosts))
    assert ejected.actions == [EjectHost("xen4", "h4", "10.0.0.4")]
    busy = [*hosts[:3], host(4, running_vms=("vm-b",))]
    assert plan(spec(allowedDestructiveActions=["Eject"]), facts(busy)).problems[0].reason == "HostHasResidentVMs"


def test_designate_master() -> None:
    result = plan(spec(master="xen2"), facts([host(1), host(2), host(3)]))
    assert result.actions == [DesignateMaster("xen2", "10.0.0.2")]


def test_settings_vms_and_disabled_hosts() -> None:
    result = plan(spec(vswitchController={"address": "10.1.1.1"}),
                  facts([host(1), host(2, enabled=False), host(3, enabled=False, live=False)],
                        vms_with_priority=[VM("vm1", "router-1", "restart")]))
    assert result.actions == [SetVSwitchController("10.1.1.1", ""), ClearVMPriority("vm1", "router-1", "restart"),
                              EnableHost("xen2", "h2")]  # a dead host is not enabled
    ignored = plan(spec(vmHARestartPriority={"policy": "Ignore"}, hostRecovery={"enableDisabledHosts": False}),
                   facts([host(1), host(2, enabled=False), host(3)], vms_with_priority=[VM("v", "v", "restart")]))
    assert ignored.actions == []


def test_heartbeat_sr_problems() -> None:
    two = {"a": SR("a", "ua", "nfs-a", "nfs", True), "b": SR("b", "ub", "nfs-b", "nfs", True)}
    result = plan(spec(), facts([host(1), host(2), host(3)], ha_enabled=False, srs=two))
    assert result.problems[0].reason == "HeartbeatSRAmbiguous"
    named = plan(spec(ha={"heartbeatSR": {"nameLabel": "nfs-b"}}), facts([host(1), host(2), host(3)],
                                                                        ha_enabled=False, srs=two))
    assert named.actions == [EnableHA("ub", "nfs-b", 180)]


# --------------------------------------------------------------------------------------------------------------
# The pool's CloudStack registration: a stage of its plan, run by the engine (over canned facts and a fake link)

CLOUDSTACK = {"connection": {"secretRef": {"name": "cs"}}, "zone": "z1", "pod": "p1", "cluster": "c1"}


class Link:
    """The pool's CloudStack cluster as the pass's link shows it: `found` for each look, what is done recorded."""

    def __init__(self, found: ClusterInCloudStack):
        self.found = found
        self.log: list[str] = []

    async def observe(self) -> ClusterInCloudStack:
        self.log.append("observe")
        return ClusterInCloudStack(self.found.cluster, list(self.found.hosts))

    def check_credentials(self, actions: Any) -> None:
        self.log.append("credentials")

    async def apply(self, action: Any, found: ClusterInCloudStack) -> None:
        self.log.append(type(action).__name__)
        if isinstance(action, AddCluster):
            found.cluster = self.found.cluster = {"id": "cluster-1", "name": "c1"}
        elif isinstance(action, AddClusterHosts):
            self.found.hosts = [{"id": f"c{i}", "name": f"xen{i}", "ipaddress": f"10.0.0.{i}", "state": "Connecting"}
                                for i in (1, 2, 3)]

    async def refresh(self, found: ClusterInCloudStack) -> None:
        self.log.append("refresh")
        found.hosts = list(self.found.hosts)


class CannedPool(XenPoolReconciler):
    """A XenPool reconciler over `pool` (PoolFacts) and a fake CloudStack link; a pool action changes `pool`."""

    def __init__(self, pool: PoolFacts, link: Link):
        super().__init__()
        self.pool, self.fake = pool, link

    @contextlib.asynccontextmanager
    async def connect(self, ctx: Context) -> AsyncIterator[PoolConnection]:
        yield PoolConnection(None, self.fake)  # type: ignore[arg-type]

    async def observe(self, ctx: Context, conn: PoolConnection) -> PoolFacts:
        self.fake.log.append("pool")
        return dataclasses.replace(self.pool)

    async def execute(self, ctx: Context, conn: PoolConnection, action: Action, facts: PoolFacts) -> None:
        if isinstance(action, SetVSwitchController):
            self.pool = dataclasses.replace(self.pool, vswitch_controller=action.address)
            return
        await super().execute(ctx, conn, action, facts)


def pass_over(pool: PoolFacts, link: Link, policy: str = "Manage", **changes: Any) -> tuple[Any, list]:
    events: list = []
    ctx = Context(namespace="lab", name="pool", generation=1,
                  spec=spec(cloudstack=CLOUDSTACK, managementPolicy=policy, **changes), status={}, secrets={},
                  event=lambda *e: events.append(e), logger=logging.getLogger("test"))
    return asyncio.run(CannedPool(pool, link).reconcile(ctx)), events


def test_the_plan_of_a_pool_missing_from_cloudstack_is_its_registration_stage() -> None:
    pool = facts([host(1), host(2), host(3)], cloudstack=ClusterInCloudStack(None))
    ctx = Context(namespace="lab", name="pool", generation=1, spec=spec(cloudstack=CLOUDSTACK), status={},
                  secrets={}, event=lambda *e: None, logger=logging.getLogger("test"))
    [stage] = XenPoolReconciler().plan(ctx, pool).stages
    assert isinstance(stage, RegistrationStage) and stage.follow_up
    assert stage.actions == (AddCluster("c1", "xen1"), AddClusterHosts("c1", ("xen1", "xen2", "xen3"), "10.0.0.1"))
    up = [{"id": f"c{i}", "name": f"xen{i}", "ipaddress": f"10.0.0.{i}", "state": "Up"} for i in (1, 2, 3)]
    registered = facts([host(1), host(2), host(3)], cloudstack=ClusterInCloudStack({"id": "cluster-1"}, up))
    assert XenPoolReconciler().plan(ctx, registered).stages == [], "a registered pool plans nothing"


def test_a_pool_is_registered_by_its_registration_stage_with_an_event_per_action() -> None:
    link = Link(ClusterInCloudStack(None))
    outcome, events = pass_over(facts([host(1), host(2), host(3)]), link)
    assert link.log == ["pool", "observe", "credentials", "AddCluster", "AddClusterHosts", "refresh"], \
        "the password checked before anything is sent; the hosts listed again once, for the report"
    assert [type(a).__name__ for a in outcome.applied] == ["AddCluster", "AddClusterHosts"]
    assert [e[:2] for e in events] == [("Normal", "Applied")] * 2
    registered = next(c for c in outcome.conditions if c.type == "Registered")
    assert (registered.status, registered.reason) == ("False", "HostsNotUp")
    assert outcome.fields["cloudstackClusterId"] == "cluster-1" and outcome.requeue_after == 5.0
    assert outcome.drift == []


def test_cloudstack_is_read_once_the_pools_own_stage_is_done_and_registration_follows_in_the_same_pass() -> None:
    link = Link(ClusterInCloudStack(None))
    outcome, _ = pass_over(facts([host(1), host(2), host(3)]), link, vswitchController={"address": "10.1.1.1"})
    assert link.log == ["pool", "pool", "observe", "credentials", "AddCluster", "AddClusterHosts", "refresh"]
    assert [type(a).__name__ for a in outcome.applied] == ["SetVSwitchController", "AddCluster", "AddClusterHosts"]


def test_under_observe_the_registration_is_drift_with_the_pools_own() -> None:
    link = Link(ClusterInCloudStack(None))
    outcome, events = pass_over(facts([host(1), host(2), host(3)]), link, "Observe",
                                vswitchController={"address": "10.1.1.1"})
    assert link.log == ["pool", "observe"], "nothing applied"
    assert [type(a).__name__ for a in outcome.drift] == ["SetVSwitchController", "AddCluster", "AddClusterHosts"]
    assert [e[1] for e in events] == ["DriftDetected"] and "add CloudStack cluster c1" in events[0][2]
    registered = next(c for c in outcome.conditions if c.type == "Registered")
    assert registered.reason == "NotRegistered"


def test_a_pool_with_a_problem_is_not_looked_up_in_cloudstack() -> None:
    link = Link(ClusterInCloudStack(None))
    outcome, _ = pass_over(facts([host(1), host(2)]), link)  # HA in a pool of two: TooFewHostsForHA
    assert link.log == ["pool"] and not [c for c in outcome.conditions if c.type == "Registered"]
