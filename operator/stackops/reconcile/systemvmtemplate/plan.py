"""The pure part of a SystemVMTemplate rollout: (spec, observed, progress) → what to do next.

The rollout is a sequence of stages, each computed from CloudStack's state alone (level-based, so an operator
restart recomputes what is left): register the templates, wait until they are ready, activate them (zone settings),
replace the system VMs one at a time per zone, upgrade the routers that need it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ... import status as st
from ...api.systemvmtemplate import SystemVMTemplateSpec, TemplateSource
from ..base import Action
from .actions import DeleteTemplate, RegisterTemplate, ReplaceSystemVM, SetConfiguration, UpgradeRouter
from .observed import CloudState, Router, Template, older

MINREQ = "minreq.sysvmtemplate.version"
# A rollout plans one stage at a time (each needs the one before done): what follows the stage a pass reports.
_REBOOTS = "reboot the routers that need the new version (within maxUnavailable, BACKUP before MASTER)"
LATER_STAGES = {
    "Registering": f"RolloutStages: once the templates are Ready, activate them, replace the system VMs and {_REBOOTS}",
    "Activating": f"RolloutStages: then replace the system VMs and {_REBOOTS}",
    "ReplacingSystemVMs": f"RolloutStages: then {_REBOOTS}",
}
SYSTEM_VM_TYPES = ("secondarystoragevm", "consoleproxy")


def template_name(spec: SystemVMTemplateSpec, source: TemplateSource) -> str:
    return source.name or f"systemvm-{source.hypervisor.lower()}-{spec.version}"


def router_setting(hypervisor: str) -> str:
    """`router.template.kvm`, `router.template.xenserver`, `router.template.vmware`, …"""
    return f"router.template.{hypervisor.lower()}"


def settings_read(spec: SystemVMTemplateSpec) -> list[str]:
    return [MINREQ, *(router_setting(t.hypervisor) for t in spec.templates)]


DIGEST_LENGTHS = {32: "MD5", 40: "SHA-1", 56: "SHA-224", 64: "SHA-256", 96: "SHA-384", 128: "SHA-512"}


def normal_checksum(checksum: str) -> str:
    """`{SHA-512}ABC…` and `abc…` compare equal: CloudStack may show the digest with or without the algorithm
    prefix, and a digest's length names its algorithm."""
    text = checksum.strip()
    algorithm = ""
    if text.startswith("{") and "}" in text:
        algorithm, text = text[1:].split("}", 1)
    digest = text.lower()
    return f"{(algorithm or DIGEST_LENGTHS.get(len(digest), '')).upper()}:{digest}"


@dataclass(frozen=True)
class Target:
    """One template in one zone."""

    source: TemplateSource
    name: str
    zone: str
    zone_id: str


@dataclass
class Plan:
    problems: list[str] = field(default_factory=list)  # a person must act (Stalled)
    registrations: list[Action] = field(default_factory=list)
    downloading: list[Template] = field(default_factory=list)
    ready: dict[tuple[str, str], Template] = field(default_factory=dict)  # (hypervisor, zone id) → template
    settings: list[SetConfiguration] = field(default_factory=list)
    system_vms: list[ReplaceSystemVM] = field(default_factory=list)  # the next one per zone
    system_vms_waiting: list[str] = field(default_factory=list)  # zones waiting for a replacement to run
    system_vms_total: int = 0
    system_vms_replaced: int = 0
    system_vm_expected: list[str] = field(default_factory=list)
    routers_in_scope: list[Router] = field(default_factory=list)
    routers_todo: list[Router] = field(default_factory=list)  # need the new version and are Running
    routers_skipped: list[Router] = field(default_factory=list)  # need it but are not Running
    routers_in_flight: list[Router] = field(default_factory=list)  # rebooted by this rollout, not seen to finish
    routers_upgraded: int = 0

    @property
    def stage(self) -> str:
        if self.problems:
            return "Failed"
        if self.registrations or self.downloading:
            return "Registering"
        if self.settings:
            return "Activating"
        if self.system_vms or self.system_vms_waiting:
            return "ReplacingSystemVMs"
        if self.routers_todo or self.routers_in_flight:  # a reboot in flight still needs its "after" notice
            return "UpgradingRouters"
        return "Complete"

    def actions(self, limit: int = 50) -> list[Action]:
        """Everything that differs from the spec, in rollout order (the drift under Observe)."""
        routers = [UpgradeRouter(r.id, r.name, r.zone_id, r.network, r.version, r.redundant_state)
                   for r in self.routers_todo]
        every: list[Action] = [*self.registrations, *self.settings, *self.system_vms, *routers]
        return every[:limit]


def targets(spec: SystemVMTemplateSpec, observed: CloudState, plan: Plan) -> list[Target]:
    result = []
    for source in spec.templates:
        zones = source.zones or sorted(observed.zones)
        for zone in zones:
            if zone not in observed.zones:
                plan.problems.append(f"zone {zone!r} ({source.hypervisor} template) does not exist in CloudStack")
                continue
            result.append(Target(source, template_name(spec, source), zone, observed.zones[zone]))
    return result


def plan_templates(spec: SystemVMTemplateSpec, observed: CloudState, wanted: list[Target], plan: Plan) -> None:
    """Reuse a template with the same name and checksum; replace one whose checksum or URL the spec changed."""
    for target in wanted:
        source = target.source
        found = [t for t in observed.templates if t.name == target.name and t.zone_id == target.zone_id
                 and t.hypervisor.lower() == source.hypervisor.lower()]

        def matches(t: Template) -> bool:
            same_sum = not t.checksum or normal_checksum(t.checksum) == normal_checksum(source.checksum)
            return same_sum and (not t.url or t.url == str(source.url))

        usable = [t for t in found if matches(t) and not t.failed]
        if usable:
            best = max(usable, key=lambda t: t.ready)
            if best.ready:
                plan.ready[(source.hypervisor, target.zone_id)] = best
            else:
                plan.downloading.append(best)
            continue
        failed = [t for t in found if matches(t)]
        if failed:
            plan.problems.append(f"download of template {target.name} in zone {target.zone} failed: "
                                 f"{failed[0].status or 'no reason given'}; fix url or checksum in the spec")
            continue
        in_use = [t for t in found if in_use_by_system_vm(t, observed)]
        if in_use:
            plan.problems.append(f"template {target.name} in zone {target.zone} exists with another checksum or URL "
                                 "and system VMs use it; give the new template another name")
            continue
        for template in found:
            plan.registrations.append(DeleteTemplate(template.name, template.id, target.zone, target.zone_id,
                                                     "the spec changed its checksum or URL"))
        plan.registrations.append(RegisterTemplate(target.name, source.hypervisor, target.zone, target.zone_id,
                                                   str(source.url), source.checksum, source.format, source.os_type))


def in_use_by_system_vm(template: Template, observed: CloudState) -> bool:
    return any(v.template_id == template.id for v in observed.system_vms)


def plan_settings(spec: SystemVMTemplateSpec, observed: CloudState, wanted: list[Target], plan: Plan) -> None:
    zones = sorted({(t.zone, t.zone_id) for t in wanted})
    for target in wanted:
        if spec.activation.set_router_template:
            setting = router_setting(target.source.hypervisor)
            current = observed.config.get(target.zone_id, {}).get(setting, "")
            if current != target.name:
                plan.settings.append(SetConfiguration(setting, target.name, target.zone, target.zone_id, current))
    if spec.activation.set_minimum_required_version:
        for zone, zone_id in zones:
            current = observed.config.get(zone_id, {}).get(MINREQ, "")
            if current != spec.version:
                plan.settings.append(SetConfiguration(MINREQ, spec.version, zone, zone_id, current))


def plan_system_vms(spec: SystemVMTemplateSpec, observed: CloudState, plan: Plan, expected: list[str]) -> None:
    """One replacement at a time per zone: the next only when every system VM of the zone runs."""
    seen = set(expected)
    for vm in observed.system_vms:
        seen.add(f"{observed.zone_name(vm.zone_id)}/{vm.type}")
    plan.system_vm_expected = sorted(seen)
    if not spec.rollout.system_vms.replace:
        return
    zones = {z for (_, z) in plan.ready}
    for zone, zone_id in sorted(observed.zones.items()):
        if zone_id not in zones:
            continue
        vms = [v for v in observed.system_vms if v.zone_id == zone_id and v.state not in ("Destroyed", "Expunging")]
        in_scope = [v for v in vms if _template_for(v.hypervisor, zone_id, plan) is not None]
        plan.system_vms_total += len(in_scope)
        current = [v for v in in_scope if _template_for(v.hypervisor, zone_id, plan).id == v.template_id]
        plan.system_vms_replaced += sum(1 for v in current if v.state == "Running")
        present = {v.type for v in vms}
        missing = [t for t in SYSTEM_VM_TYPES if f"{zone}/{t}" in seen and t not in present]
        if missing or any(v.state != "Running" for v in vms):
            plan.system_vms_waiting.append(zone)  # a replacement is on its way: one at a time
            continue
        old = sorted((v for v in in_scope if v not in current),
                     key=lambda v: (SYSTEM_VM_TYPES.index(v.type) if v.type in SYSTEM_VM_TYPES else 9, v.name))
        if old:
            plan.system_vms.append(ReplaceSystemVM(old[0].id, old[0].name, old[0].type, zone))


def _template_for(hypervisor: str, zone_id: str, plan: Plan) -> Template | None:
    for (h, z), template in plan.ready.items():
        if h.lower() == hypervisor.lower() and z == zone_id:
            return template
    return None


def plan_routers(spec: SystemVMTemplateSpec, observed: CloudState, plan: Plan, in_flight: list[str] = ()) -> None:
    """`in_flight`: ids of the routers status shows rebooting (`routers.inFlight`)."""
    rules = spec.rollout.routers
    scope = {(h.lower(), z) for (h, z) in plan.ready}
    plan.routers_in_flight = [r for r in observed.routers if r.id in set(in_flight)]
    for router in observed.routers:
        if (router.hypervisor.lower(), router.zone_id) not in scope:
            continue
        plan.routers_in_scope.append(router)
        needs = older(router.version, spec.version) and (router.requires_upgrade or not rules.only_requiring_upgrade)
        if not needs:
            plan.routers_upgraded += 1
        elif not rules.enabled:
            continue
        elif router.running or router.transitional:
            if router.running:
                plan.routers_todo.append(router)
        else:
            plan.routers_skipped.append(router)


def plan(spec: SystemVMTemplateSpec, observed: CloudState, expected_system_vms: list[str] = (),
                 in_flight: list[str] = ()) -> Plan:
    """Everything the rollout still has to do, staged: later stages are planned only when earlier ones are done.
    `in_flight`: the router reboots status shows in flight (the router stage lasts until they are seen to end)."""
    plan = Plan()
    wanted = targets(spec, observed, plan)
    if plan.problems:
        return plan
    plan_templates(spec, observed, wanted, plan)
    if plan.problems or plan.registrations or plan.downloading:
        return plan
    plan_settings(spec, observed, wanted, plan)
    if plan.settings:
        return plan
    plan_system_vms(spec, observed, plan, list(expected_system_vms))
    if plan.system_vms or plan.system_vms_waiting:
        return plan
    plan_routers(spec, observed, plan, in_flight)
    return plan


# ---------------------------------------------------------------------------------------------------- routers


def budget(max_unavailable: int | str, total: int) -> int:
    """maxUnavailable as a count: a percentage of the routers to upgrade, rounded down, at least 1."""
    if isinstance(max_unavailable, int):
        return max(1, max_unavailable)
    return max(1, math.floor(total * int(max_unavailable.rstrip("%")) / 100))


def _order(router: Router) -> tuple[int, str]:
    role = router.redundant_state.upper()
    return ({"BACKUP": 0}.get(role, 2 if role == "PRIMARY" or role == "MASTER" else 1), router.name)


def choose_routers(todo: list[Router], every: list[Router], busy: set[str], slots: int, *, blocked: set[str],
                   respect_pairs: bool = True) -> list[Router]:
    """The routers to reboot now: at most `slots`, never one whose pair partner is down or busy, a PRIMARY only
    after its BACKUP is done. `busy`: ids rebooting now; `blocked`: ids not to start now (failed, backing off)."""
    if slots <= 0:
        return []
    pairs: dict[str, list[Router]] = {}
    for router in every:
        if router.redundant and router.pair:
            pairs.setdefault(router.pair, []).append(router)
    waiting = {r.id for r in todo if r.id not in blocked}
    chosen: list[Router] = []
    taken_pairs: set[str] = set()
    for router in sorted(todo, key=_order):
        if len(chosen) >= slots:
            break
        if router.id in busy or router.id in blocked or not router.running:
            continue
        if respect_pairs and router.redundant and router.pair:
            if router.pair in taken_pairs:
                continue
            peers = [p for p in pairs.get(router.pair, []) if p.id != router.id]
            if any(p.id in busy or not p.running for p in peers):
                continue
            if router.redundant_state.upper() in ("PRIMARY", "MASTER") and any(
                    p.id in waiting and p.redundant_state.upper() not in ("PRIMARY", "MASTER") for p in peers):
                continue  # the BACKUP goes first
            taken_pairs.add(router.pair)
        chosen.append(router)
    return chosen


# ---------------------------------------------------------------------------------------------------- window


def later_stages(conditions: list[st.ConditionState]) -> list[str]:
    """What follows the changes a pass lists (`stackops plan` shows them after the changes): the stages after the
    one its Ready condition names (`Registering: …`)."""
    ready = next((c for c in conditions if c.type == st.ConditionType.READY), None)
    stage = ready.message.split(":", 1)[0] if ready is not None else ""
    return [LATER_STAGES[stage]] if stage in LATER_STAGES else []

