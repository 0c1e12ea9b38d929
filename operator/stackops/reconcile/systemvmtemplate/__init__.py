"""SystemVMTemplate: register a system VM template and roll it out, level-based and resumable.

Each pass observes CloudStack (one `list*` per collection), plans the next stage from what it sees (plan.py, pure)
and applies it: registrations, zone settings, one system VM replacement per zone at a time, or one bounded wave of
router reboots (rollout.py). Progress that CloudStack cannot tell us (retry counts, reboots in flight) lives in
status, each reboot written before it is submitted and again with its job, so a restarted operator picks up where
the last one stopped (resume.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from ... import status as st
from ...api.systemvmtemplate import RouterProgress, SystemVMProgress, SystemVMTemplateSpec, TemplateStatus
from ...drivers.cloudstack import (
    CloudStackClient,
    CloudStackError,
    CloudStackParameterError,
    CloudStackPool,
    CloudStackUnsupportedVersion,
)
from .. import cloudstack
from ..base import Action, Context, Outcome, ReconcileError
from ..engine import Engine, Plan as EnginePlan, Stage
from .actions import DeleteTemplate, RegisterTemplate, ReplaceSystemVM, SetConfiguration
from .notify import RouterNotifier
from .observed import CloudState, observe
from . import plan as planner
from ..window import window_state
from .plan import Plan, later_stages, settings_read, template_name
from .reasons import Reason
from .rollout import RouterWave, WaveMemory

STAGE_REQUEUE = {"Registering": 3.0, "Activating": 0.5, "ReplacingSystemVMs": 2.0, "UpgradingRouters": 0.5}


def cloudstack_failure(error: CloudStackError, doing: str) -> ReconcileError:
    """A driver error as a reason for status: refused parameters and a CloudStack too old for a command need a
    person, the rest is retried."""
    needs_person = isinstance(error, (CloudStackParameterError, CloudStackUnsupportedVersion))
    return ReconcileError(error.reason, f"{doing}: {error}", retry=not needs_person, delay=15.0)


@dataclass
class RolloutFacts:
    """What a pass sees: CloudStack (one list per collection) and the progress status keeps; the router wave of
    the pass, once it ran, and the OS types a registration looked up."""

    cloud: CloudState
    progress: RouterProgress
    systemvms: SystemVMProgress
    wave: RouterWave | None = None
    os_types: dict[str, str] = field(default_factory=dict)


@dataclass
class RolloutPlan(EnginePlan):
    """The rollout's plan (plan.py): one stage a pass, the one CloudStack's state says is next."""

    rollout: Plan = field(default_factory=Plan)

    @property
    def actions(self) -> list[Action]:
        return self.rollout.actions()


@dataclass(frozen=True)
class RouterStage(Stage):
    """The routers' stage: one bounded wave of reboots (rollout.py), which posts its own Events."""

    rollout: Plan = field(default_factory=Plan)


class SystemVMTemplateReconciler(Engine[CloudStackClient, RolloutFacts, RolloutPlan]):
    kind = "SystemVMTemplate"

    def __init__(self, pool: CloudStackPool, *, pass_seconds: float = 15.0, poll_seconds: float = 1.0,
                 retry_backoff: float = 30.0, settle_seconds: float = 60.0, handover_seconds: float = 1.0,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.pool = pool
        self.pass_seconds = pass_seconds
        self.poll_seconds = poll_seconds  # the longest wait between two polls of a reboot that is due (timing.py)
        self.retry_backoff = retry_backoff
        self.settle_seconds = settle_seconds  # a reboot written but not known to CloudStack: how long to wait
        self.handover_seconds = handover_seconds  # from one pass's end to the next one following its reboots
        self.clock = clock  # the router waves' time (tests: the lab CloudStack's)
        self.sleep = sleep
        self._memory: dict[tuple[str, str], WaveMemory] = {}  # per object: what its waves learned (rollout.py)

    def later_stages(self, conditions: list[st.ConditionState]) -> list[str]:
        return later_stages(conditions)

    def connect(self, ctx: Context) -> contextlib.nullcontext[CloudStackClient]:
        return contextlib.nullcontext(cloudstack.client_for(self.pool, ctx, ctx.spec.cloudstack.secret_ref.name))

    async def observe(self, ctx: Context, client: CloudStackClient) -> RolloutFacts:
        spec: SystemVMTemplateSpec = ctx.spec
        names = [template_name(spec, t) for t in spec.templates]
        systemvms = SystemVMProgress.model_validate(ctx.status.get("systemVMs") or {})
        try:
            await cloudstack.record_version(client, ctx)
            observed = await observe(client, names, settings_read(spec))
        except CloudStackError as error:
            raise cloudstack_failure(error, "reading CloudStack") from None
        return RolloutFacts(observed, self._progress(ctx), systemvms)

    def plan(self, ctx: Context, facts: RolloutFacts) -> RolloutPlan:
        rollout = planner.plan(ctx.spec, facts.cloud, facts.systemvms.expected,
                               [f.id for f in facts.progress.in_flight])
        stage = rollout.stage
        actions: list[Action] = {"Registering": rollout.registrations, "Activating": list(rollout.settings),
                                 "ReplacingSystemVMs": list(rollout.system_vms)}.get(stage, [])
        stages: list[Stage] = []
        if rollout.problems:
            pass  # the report says what blocks the rollout
        elif stage == "UpgradingRouters":
            stages = [RouterStage(stage, (), then="stop", rollout=rollout)]
        elif actions:
            stages = [Stage(stage, tuple(actions), then="stop")]  # the next pass sees what CloudStack made of it
        return RolloutPlan(stages, rollout)

    async def run_stage(self, ctx: Context, client: CloudStackClient, stage: Stage,
                        facts: RolloutFacts) -> list[Action]:
        if isinstance(stage, RouterStage):
            facts.wave = await self._routers(ctx, client, stage.rollout, facts)
            return []
        if any(isinstance(a, RegisterTemplate) for a in stage.actions):
            try:
                facts.os_types = {str(o.get("description")): str(o.get("id"))
                                  for o in await client.list("listOsTypes")}
            except CloudStackError as error:
                raise cloudstack_failure(error, stage.name.lower()) from None
            for action in stage.actions:
                if isinstance(action, RegisterTemplate) and action.os_type not in facts.os_types:
                    raise ReconcileError(Reason.OS_TYPE_NOT_FOUND, f"CloudStack has no OS type {action.os_type!r} "
                                         f"(spec.templates[].osType)", retry=False)
        return await self.execute_each(ctx, client, stage.actions, facts, [])

    async def execute(self, ctx: Context, client: CloudStackClient, action: Action, facts: RolloutFacts) -> None:
        try:
            if isinstance(action, RegisterTemplate):
                await client.call(
                    "registerTemplate", name=action.name, displaytext=f"{action.name} (stackops)",
                    format=action.format, hypervisor=action.hypervisor, url=action.url, zoneid=action.zone_id,
                    checksum=action.checksum, ostypeid=facts.os_types[action.os_type], templatetype="SYSTEM",
                    isextractable=False, passwordenabled=False, requireshvm=True, isfeatured=False, ispublic=False)
            elif isinstance(action, DeleteTemplate):
                await client.run("deleteTemplate", id=action.id, zoneid=action.zone_id, timeout=300)
            elif isinstance(action, SetConfiguration):
                await client.call("updateConfiguration", name=action.setting, value=action.value,
                                  zoneid=action.zone_id)
            elif isinstance(action, ReplaceSystemVM):
                await client.run("destroySystemVm", id=action.id, timeout=600)
            else:
                raise AssertionError(f"not a rollout action: {action!r}")
        except CloudStackError as error:
            raise cloudstack_failure(error, action.describe()) from None

    def report(self, ctx: Context, facts: RolloutFacts, plan: RolloutPlan, applied: list[Action]) -> Outcome:
        rollout = plan.rollout
        if ctx.spec.management_policy == "Observe":
            return self._observe_only(ctx, rollout, facts.cloud, facts.progress)
        if rollout.problems:
            return self._report(ctx, rollout, facts.cloud, facts.progress, [],
                                st.stalled(Reason.ROLLOUT_BLOCKED, "; ".join(rollout.problems)))
        return self._report(ctx, rollout, facts.cloud, facts.progress, applied, wave=facts.wave)

    # ------------------------------------------------------------------ stages

    async def _routers(self, ctx: Context, client: CloudStackClient, plan: Plan, facts: RolloutFacts) -> RouterWave:
        """One bounded wave of router reboots (rollout.py); it writes its progress into `facts.progress`."""
        spec: SystemVMTemplateSpec = ctx.spec
        observed, progress = facts.cloud, facts.progress
        url, allow_local = None, False
        if spec.notifications is not None:
            ref = spec.notifications.webhook_url_secret_ref
            url, allow_local = ctx.secret(ref.name, ref.key), spec.notifications.allow_local_addresses
        notifier = RouterNotifier(url, allow_local=allow_local)
        memory = self._memory.setdefault((ctx.namespace, ctx.name), WaveMemory())
        wave = RouterWave(client, spec, plan, observed, progress, notifier, ctx.event,
                          deadline=self.clock() + self.pass_seconds, poll_seconds=self.poll_seconds,
                          retry_backoff=self.retry_backoff, checkpoint=ctx.checkpoint,
                          settle_seconds=self.settle_seconds, clock=self.clock, sleep=self.sleep, memory=memory,
                          handover_seconds=self.handover_seconds)
        await wave.run()
        wave.write()
        return wave

    # ------------------------------------------------------------------ status

    def _progress(self, ctx: Context) -> RouterProgress:
        progress = RouterProgress.model_validate(ctx.status.get("routers") or {})
        if progress.generation != ctx.generation:  # a new spec: failed routers get another chance
            progress.retrying, progress.failed_routers, progress.failed = [], [], 0
            progress.generation = ctx.generation
        return progress

    def _fields(self, plan: Plan, observed: CloudState, progress: RouterProgress) -> dict[str, Any]:
        templates = []
        for (hypervisor, zone_id), template in sorted(plan.ready.items()):
            templates.append(TemplateStatus(hypervisor=hypervisor, zone=observed.zone_name(zone_id), id=template.id,
                                            ready=True, download_status=template.status))
        for template in plan.downloading:
            templates.append(TemplateStatus(hypervisor=template.hypervisor, zone=observed.zone_name(template.zone_id),
                                            id=template.id, ready=False, download_status=template.status))
        fields: dict[str, Any] = {"templates": [t.model_dump(by_alias=True) for t in templates]}
        fields["systemVMs"] = SystemVMProgress(total=plan.system_vms_total, replaced=plan.system_vms_replaced,
                                               expected=plan.system_vm_expected).model_dump(by_alias=True)
        if plan.stage == "Complete":
            progress.total = len(plan.routers_in_scope)
            progress.upgraded = plan.routers_upgraded
            progress.in_progress, progress.in_flight = 0, []
            progress.skipped_routers = sorted(r.name for r in plan.routers_skipped)
        if plan.stage in ("UpgradingRouters", "Complete") or progress.total:
            fields["routers"] = progress.model_dump(by_alias=True)
        return fields

    def _report(self, ctx: Context, plan: Plan, observed: CloudState, progress: RouterProgress, applied: list[Action],
                conditions: list[st.ConditionState] | None = None, wave: RouterWave | None = None) -> Outcome:
        spec: SystemVMTemplateSpec = ctx.spec
        stage = plan.stage
        fields = self._fields(plan, observed, progress)
        requeue: float | None = STAGE_REQUEUE.get(stage)
        phase = stage
        if conditions is None:
            if stage == "Registering":
                waiting = ", ".join(f"{t.name} in {observed.zone_name(t.zone_id)}: {t.status or 'queued'}"
                                    for t in plan.downloading)
                conditions = st.progressing(Reason.REGISTERING,
                                            f"registering or downloading templates: {waiting or 'started'}")
            elif stage == "Activating":
                conditions = st.progressing(Reason.ACTIVATING, f"{len(plan.settings)} zone setting(s) to set")
            elif stage == "ReplacingSystemVMs":
                conditions = st.progressing(Reason.REPLACING_SYSTEM_VMS, f"{plan.system_vms_replaced}/"
                                            f"{plan.system_vms_total} system VMs on the new template; waiting in: "
                                            f"{', '.join(plan.system_vms_waiting) or '-'}")
            elif stage == "UpgradingRouters" and wave is not None:
                conditions, phase, requeue = self._router_conditions(spec, progress, wave)
            elif stage == "Complete":
                conditions = self._complete_conditions(progress)
                phase = "Failed" if progress.failed_routers else "Complete"
            else:
                conditions = st.progressing(stage, stage)
        else:
            phase = "Failed"
            requeue = None
        fields["phase"] = phase
        fields["nextWindow"] = None
        if phase == "Waiting":
            window = window_state(spec.rollout.routers.maintenance_window, st_now())
            if window.next_open is not None:
                fields["nextWindow"] = window.next_open.isoformat().replace("+00:00", "Z")
        conditions = conditions + self._domain_conditions(plan, progress, phase)
        return Outcome(conditions=conditions, fields=fields, drift=[], applied=applied, requeue_after=requeue)

    def _router_conditions(self, spec: SystemVMTemplateSpec, progress: RouterProgress,
                           wave: RouterWave) -> tuple[list[st.ConditionState], str, float | None]:
        counts = (f"{progress.upgraded}/{progress.total} routers upgraded, {progress.in_progress} rebooting, "
                  f"{progress.failed} failed")
        if wave.notification_reason == st.Reason.WEBHOOK_ADDRESS_NOT_ALLOWED:  # the Secret or the spec must change
            return (st.stalled(st.Reason.WEBHOOK_ADDRESS_NOT_ALLOWED, f"{wave.notification_error}; {counts}"),
                    "UpgradingRouters", None)
        if wave.notification_error:
            return (st.progressing(st.Reason.NOTIFICATION_FAILED, f"{wave.notification_error}; {counts}"),
                    "UpgradingRouters", 30.0)
        if wave.remaining == 0:
            if progress.failed_routers:
                return (st.stalled(Reason.ROUTERS_FAILED, f"{counts}: {', '.join(progress.failed_routers[:20])}"),
                        "Failed", None)
            return st.progressing(Reason.UPGRADING_ROUTERS, counts), "UpgradingRouters", 0.5
        if wave.window_closed and not wave.flights and not wave.intents:
            window = window_state(spec.rollout.routers.maintenance_window, st_now())
            delay = 300.0
            if window.next_open is not None:
                delay = max(1.0, min(delay, (window.next_open - st_now()).total_seconds()))
            return st.progressing(Reason.WAITING_FOR_MAINTENANCE_WINDOW, counts), "Waiting", delay
        if not wave.flights and wave.retries:
            soonest = min((r.not_before for r in wave.retries.values()), default="")
            return (st.progressing(Reason.RETRYING_ROUTERS, f"{counts}; next retry at {soonest}"),
                    "UpgradingRouters", 5.0)
        if not wave.flights and wave.intents:
            return (st.progressing(Reason.RESOLVING_REBOOTS, f"{counts}; {len(wave.intents)} reboot(s) were written "
                                   "but CloudStack has no job for them yet"), "UpgradingRouters", 5.0)
        return st.progressing(Reason.UPGRADING_ROUTERS, counts), "UpgradingRouters", 0.5

    def _complete_conditions(self, progress: RouterProgress) -> list[st.ConditionState]:
        if progress.failed_routers:
            return st.stalled(Reason.ROUTERS_FAILED, f"{progress.failed} router(s) failed after all retries: "
                              f"{', '.join(progress.failed_routers[:20])}")
        return st.ready(Reason.ROLLOUT_COMPLETE,
                        f"{progress.upgraded}/{progress.total} routers on the new version")

    def _domain_conditions(self, plan: Plan, progress: RouterProgress, phase: str) -> list[st.ConditionState]:
        order = ["Registering", "Activating", "ReplacingSystemVMs", "UpgradingRouters", "Complete"]
        stage = plan.stage if plan.stage in order else "Registering"
        reached = order.index(stage)

        def cond(kind: st.ConditionType, index: int, reason_done: Reason, reason_wait: Reason) -> st.ConditionState:
            done = reached > index
            return st.ConditionState(kind, "True" if done else "False", reason_done if done else reason_wait)

        routers_done = stage == "Complete" and not progress.failed_routers
        return [cond(st.ConditionType.TEMPLATES_READY, 0, Reason.TEMPLATES_READY, Reason.REGISTERING),
                cond(st.ConditionType.ACTIVATED, 1, Reason.SETTINGS_APPLIED, Reason.NOT_ACTIVATED),
                cond(st.ConditionType.SYSTEM_VMS_REPLACED, 2, Reason.SYSTEM_VMS_REPLACED, Reason.NOT_REPLACED),
                st.ConditionState(st.ConditionType.ROUTERS_UPGRADED, "True" if routers_done else "False",
                                  Reason.ROUTERS_UPGRADED if routers_done else (
                                      Reason.ROUTERS_FAILED if progress.failed_routers else Reason.NOT_UPGRADED))]

    def _observe_only(self, ctx: Context, plan: Plan, observed: CloudState, progress: RouterProgress) -> Outcome:
        actions = plan.actions()  # the engine posts DriftDetected when they change
        fields = self._fields(plan, observed, progress)
        fields["phase"] = "Pending" if actions or plan.problems else "Complete"
        if plan.problems:
            conditions = st.stalled(Reason.ROLLOUT_BLOCKED, "; ".join(plan.problems))
        elif actions:
            conditions = st.not_ready(Reason.DRIFT_DETECTED, f"{plan.stage}: {len(plan.routers_todo)} router(s) and "
                                      f"{len(plan.registrations) + len(plan.settings) + len(plan.system_vms)} other "
                                      "change(s) left alone under Observe")
        else:
            conditions = st.ready(Reason.ROLLOUT_COMPLETE, "nothing differs from the spec")
        return Outcome(conditions=conditions, fields=fields, drift=actions)

    # ------------------------------------------------------------------ deletion

    async def finalize(self, ctx: Context) -> None:
        """deletionPolicy Delete: delete the templates of this spec that no system VM or router uses."""
        spec: SystemVMTemplateSpec = ctx.spec
        self._memory.pop((ctx.namespace, ctx.name), None)
        client = cloudstack.client_for(self.pool, ctx, spec.cloudstack.secret_ref.name)
        names = [template_name(spec, t) for t in spec.templates]
        try:
            observed = await observe(client, names, [])
            used = {v.template_id for v in observed.system_vms} | {r.template_id for r in observed.routers}
            for template in observed.templates:
                if template.id in used:
                    ctx.event("Warning", "TemplateInUse", f"template {template.name} in zone "
                              f"{observed.zone_name(template.zone_id)} is in use and was left in CloudStack")
                    continue
                await client.run("deleteTemplate", id=template.id, zoneid=template.zone_id, timeout=300)
                ctx.event("Normal", "Applied", f"deleted template {template.name} in zone "
                          f"{observed.zone_name(template.zone_id)}")
        except CloudStackError as error:
            raise cloudstack_failure(error, "deleting templates") from None


def st_now():  # noqa: ANN201 - a tiny seam for tests
    import datetime
    return datetime.datetime.now(datetime.timezone.utc)


__all__ = ["SystemVMTemplateReconciler"]
