"""The pure part of a XenPool reconcile: (spec, facts) → actions, problems a person must solve, and notices.

Order matters: membership (joins, designate, ejects) first — inside the HA dance when HA is on —, then HA, then
the pool settings, VMs and hosts."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ...api.xenpool import XenPoolSpec
from .actions import (
    ClearVMPriority,
    DesignateMaster,
    DisableHA,
    EjectHost,
    EnableHA,
    EnableHost,
    JoinHost,
    MakeHostUnique,
    PoolAction,
    SetHostName,
    SetAllowOvercommit,
    SetHostFailuresToTolerate,
    SetVSwitchController,
)
from .observed import SR, PoolFacts
from .reasons import Reason


@dataclass
class Problem:
    reason: str
    message: str


@dataclass
class Plan:
    actions: list[PoolAction] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # Stalled: a person must act
    waiting: list[str] = field(default_factory=list)  # members not reachable now (retried)
    notices: list[str] = field(default_factory=list)  # differences the spec does not allow us to fix

    @property
    def membership(self) -> list[PoolAction]:
        return [a for a in self.actions if a.needs_ha_off]


def heartbeat_sr(spec: XenPoolSpec, facts: PoolFacts) -> SR | Problem:
    selector = spec.ha.heartbeat_sr
    shared = [sr for sr in facts.srs.values() if sr.shared]
    if selector.uuid:
        found = [sr for sr in facts.srs.values() if sr.uuid == selector.uuid]
        what = f"uuid {selector.uuid}"
    elif selector.name_label:
        found = [sr for sr in facts.srs.values() if sr.name_label == selector.name_label]
        what = f"name label {selector.name_label!r}"
    else:
        found = [sr for sr in shared if sr.type == selector.type]
        what = f"type {selector.type}"
    if not found:
        return Problem(Reason.HEARTBEAT_SR_NOT_FOUND, f"ha.heartbeatSR: the pool has no shared SR with {what}")
    if len(found) > 1:
        names = ", ".join(sorted(sr.name_label for sr in found))
        return Problem(Reason.HEARTBEAT_SR_AMBIGUOUS, f"ha.heartbeatSR: several shared SRs with {what} ({names}); "
                       "name one by uuid or nameLabel")
    if not found[0].shared:
        return Problem(Reason.HEARTBEAT_SR_NOT_SHARED, f"ha.heartbeatSR: SR {found[0].name_label} is not shared")
    return found[0]


def plan_uniqueness(spec: XenPoolSpec, facts: PoolFacts, plan: Plan) -> None:
    """Duplicate host UUIDs (cloned installations) and name labels among the pool's hosts and the members outside
    it. Hosts in the pool are never changed; under MakeUnique the later of two clones (spec order) outside the pool
    is made unique, and a member whose label is taken is renamed to its member name."""
    uuids = [h.uuid for h in facts.hosts.values()] + [c.uuid for c in facts.candidates.values() if c.uuid]
    labels = [h.name_label for h in facts.hosts.values()] + \
        [c.name_label for c in facts.candidates.values() if c.name_label]
    duplicate_uuids = sorted(u for u, n in Counter(uuids).items() if n > 1)
    duplicate_labels = sorted(label for label, n in Counter(labels).items() if n > 1)
    if not duplicate_uuids and not duplicate_labels:
        return
    what = "; ".join([*(f"host UUID {u} is used by more than one host (a cloned installation)" for u in duplicate_uuids),
                      *(f"name label {label!r} is used by more than one host" for label in duplicate_labels)])
    if spec.uniqueness.policy != "MakeUnique":
        reason = Reason.DUPLICATE_HOST_UUID if duplicate_uuids else Reason.DUPLICATE_HOST_NAME
        plan.problems.append(Problem(reason, f"{what}; nothing is joined until it is fixed "
                                     "(uniqueness.policy: MakeUnique fixes clones over SSH)"))
        return
    seen_uuids = {h.uuid for h in facts.hosts.values()}
    fixed: set[str] = set()
    for member in spec.members:
        candidate = facts.candidates.get(member.address)
        if candidate is None or not candidate.uuid:
            continue
        if candidate.uuid in seen_uuids:
            plan.actions.append(MakeHostUnique(member.name, member.address, candidate.uuid))
            fixed.add(member.address)
        seen_uuids.add(candidate.uuid)
    by_address = {m.address: m.name for m in spec.members}
    label_holders = [(h.address, h.name_label) for h in facts.hosts.values()] + \
        [(c.address, c.name_label) for c in facts.candidates.values() if c.name_label]
    for address, label in sorted(label_holders):
        name = by_address.get(address)
        if label in duplicate_labels and address not in fixed and name is not None and label != name:
            plan.actions.append(SetHostName(name, address, label))
            fixed.add(address)
    if not plan.actions:  # duplicates only among hosts the spec does not let us change
        plan.problems.append(Problem(Reason.DUPLICATE_HOST_NAME, f"{what}; rename the hosts that are not members"))


def plan_membership(spec: XenPoolSpec, facts: PoolFacts, plan: Plan) -> int:
    """Joins, designate, ejects; returns the pool size after them."""
    size = len(facts.hosts)
    for member in spec.members:
        if facts.host_by_address(member.address) is not None:
            continue
        candidate = facts.candidates.get(member.address)
        if candidate is None or candidate.error:
            plan.waiting.append(f"{member.name} ({candidate.error if candidate else 'not looked at'})")
        elif candidate.master_of:
            plan.problems.append(Problem(Reason.MEMBER_IN_ANOTHER_POOL, f"member {member.name} belongs to the pool of "
                                         f"{candidate.master_of}; eject it there first"))
        elif candidate.pool_size > 1:
            plan.problems.append(Problem(Reason.MEMBER_IS_MASTER_OF_OTHER_HOSTS, f"member {member.name} is the "
                                         f"master of {candidate.pool_size - 1} other host(s); a joining host must be "
                                         "alone"))
        elif candidate.running_vms:
            plan.problems.append(Problem(Reason.JOINING_HOST_HAS_RUNNING_VMS, f"member {member.name} runs VMs "
                                         f"({', '.join(candidate.running_vms[:5])}); stop or move them to join it"))
        else:
            plan.actions.append(JoinHost(member.name, member.address))
            size += 1
    if spec.master is not None:
        target = next(m for m in spec.members if m.name == spec.master)
        master = facts.master
        if master is None or master.address != target.address:
            plan.actions.append(DesignateMaster(target.name, target.address))
    wanted = {m.address for m in spec.members}
    new_master = spec.master is not None
    for host in sorted(facts.hosts.values(), key=lambda h: h.name_label):
        if host.address in wanted:
            continue
        if "Eject" not in spec.allowed_destructive_actions:
            plan.notices.append(f"host {host.name_label} ({host.address}) is in the pool but not in the spec; add "
                                "Eject to allowedDestructiveActions to eject it")
        elif host.ref == facts.master_ref and not new_master:
            plan.problems.append(Problem(Reason.CANNOT_EJECT_MASTER, f"host {host.name_label} is the pool master and "
                                         "not in the spec; name the new master in spec.master first"))
        elif host.running_vms:
            plan.problems.append(Problem(Reason.HOST_HAS_RESIDENT_VMS, f"host {host.name_label} runs VMs "
                                         f"({', '.join(host.running_vms[:5])}); migrate them away to eject it"))
        else:
            plan.actions.append(EjectHost(host.name_label, host.ref, host.address))
            size -= 1
    return size


def plan_ha(spec: XenPoolSpec, facts: PoolFacts, plan: Plan, size: int) -> None:
    ha = spec.ha
    if not ha.enabled:
        if facts.ha_enabled:
            plan.actions.append(DisableHA("the spec turns HA off"))
        return
    if size < 3 and not ha.allow_fewer_than_three_hosts:
        plan.problems.append(Problem(Reason.TOO_FEW_HOSTS_FOR_HA, f"HA in a pool of {size} host(s) makes the "
                                     "survivors fence themselves when one host is lost; add hosts, or set "
                                     "ha.allowFewerThanThreeHosts (labs only)"))
        return
    sr = heartbeat_sr(spec, facts)
    if isinstance(sr, Problem):
        plan.problems.append(sr)
        return
    timeout = str(ha.timeout_seconds)
    if not facts.ha_enabled:
        plan.actions.append(EnableHA(sr.uuid, sr.name_label, ha.timeout_seconds))
    else:
        changed = []
        if facts.ha_configuration.get("timeout") != timeout:
            changed.append(f"timeout {facts.ha_configuration.get('timeout', 'unset')} → {timeout}")
        if facts.heartbeat_sr_uuids and sr.uuid not in facts.heartbeat_sr_uuids:
            changed.append(f"heartbeat SR → {sr.name_label}")
        if changed:
            why = ", ".join(changed)
            plan.actions += [DisableHA(f"to apply {why}"), EnableHA(sr.uuid, sr.name_label, ha.timeout_seconds, why)]
    if ha.host_failures_to_tolerate is not None and ha.host_failures_to_tolerate != facts.ha_host_failures_to_tolerate:
        plan.actions.append(SetHostFailuresToTolerate(ha.host_failures_to_tolerate))
    if ha.allow_overcommit != facts.ha_allow_overcommit:
        plan.actions.append(SetAllowOvercommit(ha.allow_overcommit))


def plan_settings(spec: XenPoolSpec, facts: PoolFacts, plan: Plan) -> None:
    if spec.vswitch_controller is not None and facts.vswitch_controller != spec.vswitch_controller.address:
        plan.actions.append(SetVSwitchController(spec.vswitch_controller.address, facts.vswitch_controller))
    if spec.vm_ha_restart_priority.policy == "Clear":
        plan.actions += [ClearVMPriority(vm.ref, vm.name_label, vm.ha_restart_priority) for vm in facts.vms_with_priority]
    if spec.host_recovery.enable_disabled_hosts:
        wanted = {m.address for m in spec.members}
        for host in sorted(facts.hosts.values(), key=lambda h: h.name_label):
            if host.address in wanted and host.live and not host.enabled:
                plan.actions.append(EnableHost(host.name_label, host.ref))


def plan(spec: XenPoolSpec, facts: PoolFacts) -> Plan:
    result = Plan()
    plan_uniqueness(spec, facts, result)
    if result.problems or result.actions:  # clones are fixed before anything joins
        return result
    size = plan_membership(spec, facts, result)
    plan_ha(spec, facts, result, size)
    plan_settings(spec, facts, result)
    return result
