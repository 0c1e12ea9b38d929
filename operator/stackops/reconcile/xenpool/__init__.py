"""The XenPool reconciler: observe the pool through its master (one `get_all_records` per class), plan purely,
apply through the pool API — membership changes inside the HA dance, crash-safe.

The HA dance: xapi refuses joins, ejects and master changes while HA is on. Before HA is disabled, the intent
and the HA configuration are written to `status.pendingOperation` (a checkpoint, not the end-of-pass status), so
an operator that dies in the middle finds them on restart, finishes the membership change and re-enables HA with
the recorded configuration; only then is the record cleared.

With `spec.cloudstack`, the pool is registered as a CloudStack cluster (cluster.py): CloudStack is read once the
pool has no problem and its own stages are done, and the registration actions are the plan's registration stage.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from ... import status as st
from ...api.xenpool import PendingPoolOperation, XenPoolSpec
from ...drivers.xenapi import (Endpoint, PoolSession, XenAPIError, XenAuthError, XenNoMaster, XenTLSError,
                               XenUnreachable)
from ..base import Action, Context, Outcome, ReconcileError
from ..engine import Engine, Plan as EnginePlan, Stage
from ..registration import RegistrationStage, registering, with_registration
from ..window import window_state
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
    UploadUpdate,
)
from . import cluster, failover, ha, roll as rolling, unique
from .cluster import ClusterLink
from .observed import PoolFacts, observe
from .plan import Plan, plan
from .reasons import Reason
from .turns import Roll, blockers, parse_time, plan_roll

OPERATIONS = {JoinHost: "Join", EjectHost: "Eject", DesignateMaster: "DesignateMaster"}
REACHABLE = st.ConditionType.REACHABLE


def unreachable(error: XenAPIError) -> ReconcileError:
    return ReconcileError(error.reason, str(error), retry=not isinstance(error, XenTLSError), delay=30.0,
                          conditions=[st.ConditionState(REACHABLE, "False", error.reason, str(error))])


@dataclass
class PoolConnection:
    """What a pass talks through: the session with the pool master, and the pool's CloudStack cluster (if any)."""

    session: PoolSession
    link: ClusterLink | None


@dataclass
class PoolPlan(EnginePlan):
    """The pool's plan (plan.py) as stages: clones made unique first, membership changes inside the HA dance, then
    the rest; after each of the first two the pool is observed and planned again. With the pool's CloudStack
    cluster read (`PoolFacts.cloudstack`), its registration stage follows."""

    result: Plan = field(default_factory=Plan)
    roll: Roll = field(default_factory=Roll)
    maintenance: list[Action] = field(default_factory=list)  # the whole roll, listed (rolling.actions)
    window_opens: str = ""  # the roll waits for its maintenance window, which opens then
    blocked: list[str] = field(default_factory=list)  # why the roll cannot start now (turns.blockers)

    @property
    def actions(self) -> list[Action]:
        return [*self.result.actions, *self.maintenance, *registering(self)]


@dataclass(frozen=True)
class RollStage(Stage):
    """The rolling maintenance (roll.py): its actions list the whole roll; the roller takes the steps."""

    roll: Roll = field(default_factory=Roll)


@dataclass(frozen=True)
class DanceStage(Stage):
    """Membership changes with HA off (the HA dance); `record`: the intent an earlier pass left, to finish it."""

    record: PendingPoolOperation | None = None
    resumed: bool = False


class XenPoolReconciler(Engine[PoolConnection, PoolFacts, PoolPlan]):
    kind = "XenPool"

    def __init__(self, ssh: Any = None, cloudstack: Any = None, *, change_timeout: float = 600.0,
                 poll_seconds: float = 1.0):
        self.ssh = ssh  # SSHPool: dom0 access for uniqueness.policy MakeUnique
        self.cloudstack = cloudstack  # CloudStackPool: the pool's registration as a CloudStack cluster
        self.change_timeout = change_timeout
        self.poll = poll_seconds

    def link(self, ctx: Context, spec: XenPoolSpec) -> ClusterLink | None:
        if spec.cloudstack is None:
            return None
        if self.cloudstack is None:
            raise ReconcileError(Reason.CLOUDSTACK_UNAVAILABLE, "spec.cloudstack is set but this operator runs without "
                                 "a CloudStack client", retry=False)
        return ClusterLink(self.cloudstack, ctx, spec)

    def session(self, ctx: Context) -> PoolSession:
        spec: XenPoolSpec = ctx.spec
        ref = spec.credentials_secret_ref
        ca = None
        if spec.tls.ca_secret_ref is not None:
            ref_ca = spec.tls.ca_secret_ref
            ca = ctx.secret(ref_ca.name, ref_ca.key).get_secret_value()
            try:
                ssl.create_default_context(cadata=ca)
            except (ssl.SSLError, ValueError):
                message = f"Secret {ref_ca.name} key {ref_ca.key} holds no valid PEM CA certificate (tls.caSecretRef)"
                raise ReconcileError(Reason.INVALID_CA, message, delay=60.0,
                                     conditions=[st.ConditionState(REACHABLE, "False", Reason.INVALID_CA, message)]) \
                    from None
        endpoint = Endpoint(port=spec.xenapi_port or (80 if spec.tls.plain_http else 443),
                            plain_http=spec.tls.plain_http, ca_pem=ca, insecure=spec.tls.insecure_skip_verify)
        addresses = [m.address for m in spec.members]
        password = ctx.credential(ref.name, "password", to=addresses, what="the XenAPI login")
        return PoolSession(addresses, ctx.secret(ref.name, "username").get_secret_value(), password, endpoint)

    @contextlib.asynccontextmanager
    async def connect(self, ctx: Context) -> AsyncIterator[PoolConnection]:
        session = self.session(ctx)
        link = self.link(ctx, ctx.spec)
        try:
            yield PoolConnection(session, link)
        finally:
            await session.close()

    async def observe(self, ctx: Context, conn: PoolConnection) -> PoolFacts:
        return await self.read(conn.session, ctx.spec)

    async def read(self, session: PoolSession, spec: XenPoolSpec) -> PoolFacts:
        """The pool through its master (one get_all_records per class)."""
        return await observe(session, spec)

    async def recover(self, ctx: Context, conn: PoolConnection, error: Exception) -> Outcome | None:
        """No master answers: the failover procedure (failover.py) decides what to do and reports it."""
        if isinstance(error, XenNoMaster):
            last = rolling.recorded(ctx)
            if last is not None and last.phase == "Rolling" and ctx.spec.management_policy == "Manage":
                applied: list[Action] = []  # the master may be rebooting for its turn: no failover, the roll goes on
                await self.go_on(ctx, conn, last, applied)
                message = f"the roll went on while no master answered: {rolling.progress(rolling.recorded(ctx) or last)}"
                return Outcome(conditions=st.progressing(Reason.ROLLING, message), applied=applied, requeue_after=1.0)
            return await failover.master_lost(self, ctx, conn.session, ctx.spec, error)
        return None

    async def resume(self, ctx: Context, conn: PoolConnection, facts: PoolFacts,
                     applied: list[Action]) -> PoolFacts:
        """The master answers again: its loss is forgotten. A dance an earlier pass did not finish (status
        `pendingOperation`) is finished first: the membership change, HA as recorded, the cluster managed again."""
        if ctx.status.get("masterUnreachableSince") or ctx.status.get("supportersLostMasterSince"):
            await ctx.checkpoint({"masterUnreachableSince": None, "supportersLostMasterSince": None})
        if ctx.spec.management_policy == "Observe":
            return facts
        last = rolling.recorded(ctx)
        if last is not None and last.phase == "Rolling":
            await self.go_on(ctx, conn, last, applied)
            return await self.observe(ctx, conn)
        pending = self.pending(ctx)
        if pending is None:
            return facts
        if not (not facts.ha_enabled and pending.restore_ha or pending.cluster_unmanaged):
            await ctx.checkpoint({"pendingOperation": None})
            return facts
        ctx.event("Warning", "ResumingHADance", f"{pending.operation} {pending.host} began at {pending.started_at} "
                  "and was not finished: finishing it" + (" and re-enabling HA" if pending.restore_ha else ""))
        stage = DanceStage("resume", tuple(plan(ctx.spec, facts).membership), record=pending, resumed=True)
        applied.extend(await self.run_stage(ctx, conn, stage, facts))
        return await self.observe(ctx, conn)

    async def go_on(self, ctx: Context, conn: PoolConnection, last: Any, applied: list[Action]) -> None:
        """A roll an earlier pass did not finish: on from its recorded step."""
        ctx.event("Warning", "ResumingRoll", f"the roll ({last.request}) began at {last.started_at} and was not "
                  f"finished: going on from {rolling.progress(last)}")
        roller = rolling.Roller(self, ctx, conn)
        try:
            await roller.proceed(last)
        finally:
            applied.extend(roller.applied)

    async def observe_follow_up(self, ctx: Context, conn: PoolConnection, facts: PoolFacts,
                                plan: PoolPlan) -> PoolFacts:
        """With `spec.cloudstack`, the pool's cluster and its hosts in CloudStack, once the pool has no problem.
        Under Manage, a password the registration would hand CloudStack that its Secret does not allow there stalls
        the pass now (CredentialNotAllowed), before anything is sent."""
        if conn.link is None or plan.result.problems:
            return facts
        found = await conn.link.observe()
        if ctx.spec.management_policy == "Manage":
            conn.link.check_credentials(cluster.plan(ctx.spec, facts, found))
        return dataclasses.replace(facts, cloudstack=found)

    def plan(self, ctx: Context, facts: PoolFacts) -> PoolPlan:
        result = plan(ctx.spec, facts)
        if result.problems:
            return PoolPlan([], result)
        stages: list[Stage] = []
        fixes = tuple(a for a in result.actions if isinstance(a, (MakeHostUnique, SetHostName)))
        rest = tuple(a for a in result.actions if not a.needs_ha_off)
        if fixes:  # clones are made unique before anything joins
            stages.append(Stage("unique", fixes, then="replan"))
        elif result.membership:
            stages.append(DanceStage("membership", tuple(result.membership), then="replan"))
        elif rest:
            stages.append(Stage("pool", rest))
        adding = []
        if facts.cloudstack is not None and ctx.spec.cloudstack is not None:
            adding = cluster.plan(ctx.spec, facts, facts.cloudstack)
        pool_plan = PoolPlan(stages, result)
        if not stages and not result.waiting and not adding:  # the pool is as it should be: its maintenance
            self.plan_maintenance(ctx, facts, pool_plan)
        if adding:
            pool_plan.stages.append(RegistrationStage("cloudstack", tuple(adding)))
        return pool_plan

    def plan_maintenance(self, ctx: Context, facts: PoolFacts, pool_plan: PoolPlan) -> None:
        """Uploads first (then planned again: the updates' guidance is known once they are in the pool), then the
        roll, inside its window, once every member is live."""
        spec: XenPoolSpec = ctx.spec
        now = datetime.datetime.now(datetime.timezone.utc)
        roll = plan_roll(spec, facts, now, rolling.recorded(ctx), ctx.generation)
        pool_plan.roll = roll
        if roll.problems:
            pool_plan.result.problems.extend(roll.problems)
            return
        if not roll.work:
            return
        pool_plan.maintenance = rolling.actions(spec, facts, roll, cloudstack=spec.cloudstack is not None)
        if roll.uploads:
            uploads = tuple(a for a in pool_plan.maintenance if isinstance(a, UploadUpdate))
            pool_plan.stages.append(Stage("uploads", uploads, then="replan"))
            return
        pool_plan.blocked = blockers(spec, facts, roll)
        if pool_plan.blocked:
            return
        window = window_state(spec.maintenance.window, now)
        if not window.open:
            pool_plan.window_opens = window.next_open.isoformat() if window.next_open else "never"
            return
        pool_plan.stages.append(RollStage("roll", tuple(pool_plan.maintenance), roll=roll))

    async def run_stage(self, ctx: Context, conn: PoolConnection, stage: Stage, facts: PoolFacts) -> list[Action]:
        if isinstance(stage, RollStage):
            roller = rolling.Roller(self, ctx, conn)
            await roller.start(stage.roll, facts)
            return roller.applied
        if isinstance(stage, RegistrationStage):  # its credentials were checked with the facts it is planned from
            assert conn.link is not None and facts.cloudstack is not None
            done = await self.execute_each(ctx, conn, stage.actions, facts, [])
            await conn.link.refresh(facts.cloudstack)  # what the report shows: the hosts as CloudStack has them now
            return done
        if not isinstance(stage, DanceStage):
            return await self.execute_each(ctx, conn, stage.actions, facts, [])
        record = stage.record if stage.resumed else await self.intent(ctx.spec, facts, list(stage.actions),
                                                                       conn.link)
        return await self.dance(ctx, conn, facts, list(stage.actions), record)

    def report(self, ctx: Context, facts: PoolFacts, plan: PoolPlan, applied: list[Action]) -> Outcome:
        """The pool's status; with its CloudStack cluster read, the registration too (Ready waits for it). The
        drift: what the plan still holds (under Observe, the registration too)."""
        spec: XenPoolSpec = ctx.spec
        manage = spec.management_policy == "Manage"
        outcome = self.status(ctx, facts, plan.result, applied, observe_only=not manage)
        outcome.drift = [*(outcome.drift or []), *plan.maintenance, *(a for a in registering(plan) if a not in applied)]
        self.report_maintenance(ctx, plan, outcome, manage)
        if spec.cloudstack is None or facts.cloudstack is None or plan.result.problems:
            return outcome
        done = [a for a in applied if isinstance(a, cluster.REGISTERING)]
        return with_registration(outcome, cluster.status(spec, facts, facts.cloudstack, done, manage=manage))

    def report_maintenance(self, ctx: Context, plan: PoolPlan, outcome: Outcome, manage: bool) -> None:
        """A roll that waits (for its window, for restartAfter) or that Observe leaves alone."""
        last = rolling.recorded(ctx)
        if last is not None:
            outcome.fields["maintenanceProgress"] = rolling.progress(last)
        if plan.result.problems or plan.result.actions or plan.result.waiting:
            return
        ready = outcome.conditions[0].type == st.ConditionType.READY and outcome.conditions[0].status == "True"
        if plan.maintenance and not manage:
            summary = f"{len(plan.maintenance)} maintenance step(s): " + "; ".join(
                a.describe() for a in plan.maintenance[:3])
            outcome.conditions[:3] = st.not_ready(st.Reason.DRIFT_OBSERVED, summary)
        elif plan.blocked and ready:
            message = f"{len(plan.maintenance)} maintenance step(s) wait: " + "; ".join(plan.blocked)
            outcome.conditions[:3] = st.progressing(Reason.ROLL_BLOCKED, message)
            outcome.requeue_after = 60.0
        elif plan.window_opens and ready:
            message = (f"{len(plan.maintenance)} maintenance step(s) wait for the maintenance window, which opens "
                       f"{plan.window_opens}")
            outcome.conditions[:3] = st.progressing(Reason.WAITING_FOR_MAINTENANCE_WINDOW, message)
            outcome.requeue_after = 300.0
        elif last is not None and last.phase == "Paused" and plan.maintenance and ready:  # it paused in this pass
            done = sum(1 for h in last.hosts if h.step == "Done")
            opens = window_state(ctx.spec.maintenance.window, datetime.datetime.now(datetime.timezone.utc)).next_open
            message = (f"the roll paused after {done} of {len(last.hosts)} host(s): the maintenance window closed; "
                       "the rest waits for the next one" + (f", which opens {opens.isoformat()}" if opens else ""))
            outcome.conditions[:3] = st.progressing(Reason.WAITING_FOR_MAINTENANCE_WINDOW, message)
            outcome.requeue_after = 300.0
        elif plan.roll.not_yet and ready:
            outcome.conditions[0] = dataclasses.replace(outcome.conditions[0],
                                                        message=f"{outcome.conditions[0].message}; {plan.roll.not_yet}")
            outcome.requeue_after = min(float(ctx.spec.resync_interval_seconds), _until(ctx.spec))

    def failure(self, ctx: Context, error: Exception) -> ReconcileError | None:
        if not isinstance(error, XenAPIError):
            return None
        if isinstance(error, XenAuthError):
            return ReconcileError(error.reason, f"the credentials in Secret {ctx.spec.credentials_secret_ref.name} "
                                  f"were refused ({error})", delay=60.0,
                                  conditions=[st.ConditionState(REACHABLE, "False", error.reason)])
        if error.reason in (XenUnreachable.reason, XenNoMaster.reason, XenTLSError.reason):
            return unreachable(error)
        ctx.event("Warning", XenAPIError.reason, str(error))
        return ReconcileError(error.code if error.code.isupper() else XenAPIError.reason, str(error), delay=30.0,
                              conditions=[st.ConditionState(REACHABLE, "True", st.Reason.CONNECTED)])

    async def finalize(self, ctx: Context) -> None:
        """A roll in flight is stopped first, with the pool serving (the host of the turn given back, the cluster
        Managed, HA as recorded). deletionPolicy Delete removes the CloudStack cluster registration (hosts through
        maintenance, then the cluster); the XenServer pool is never dismantled."""
        spec: XenPoolSpec = ctx.spec
        last = rolling.recorded(ctx)
        if last is not None and last.phase == "Rolling":
            async with self.connect(ctx) as conn:
                await rolling.Roller(self, ctx, conn).abandon(last)
        link = self.link(ctx, spec) if spec.deletion_policy == "Delete" else None
        if link is not None:
            await link.deregister()

    async def intent(self, spec: XenPoolSpec, facts: PoolFacts, membership: list[Action],
                     link: ClusterLink | None) -> PendingPoolOperation | None:
        """What to record before a membership change: HA to restore, a CloudStack cluster to manage again."""
        moves_master = any(isinstance(a, DesignateMaster) for a in membership)
        unmanage = moves_master and link is not None and await link.load() is not None
        if not facts.ha_enabled and not unmanage:
            return None
        first = membership[0]
        return PendingPoolOperation(
            operation=OPERATIONS[type(first)], host=getattr(first, "name", ""),
            ha_configuration=facts.ha_configuration if facts.ha_enabled else {},
            heartbeat_srs=self.heartbeat(spec, facts) if facts.ha_enabled else [],
            restore_ha=facts.ha_enabled, cluster_unmanaged=unmanage, started_at=st.now())

    def pending(self, ctx: Context) -> PendingPoolOperation | None:
        recorded = ctx.status.get("pendingOperation")
        return PendingPoolOperation.model_validate(recorded) if isinstance(recorded, dict) else None

    def heartbeat(self, spec: XenPoolSpec, facts: PoolFacts) -> list[str]:
        if facts.heartbeat_sr_uuids:
            return facts.heartbeat_sr_uuids
        from .plan import heartbeat_sr

        sr = heartbeat_sr(spec, facts)
        return [] if not hasattr(sr, "uuid") else [sr.uuid]  # type: ignore[union-attr]

    # ------------------------------------------------------------------ the HA dance

    async def dance(self, ctx: Context, conn: PoolConnection, facts: PoolFacts, membership: list[Action],
                    record: PendingPoolOperation | None) -> list[Action]:
        """Membership changes with HA off: record → (cluster Unmanaged) → disable HA → change → enable HA as
        recorded → (cluster Managed) → clear. A host to eject goes into CloudStack maintenance first. Each step
        is written to status before it is taken (the record), so a killed operator finishes it (resume)."""
        spec: XenPoolSpec = ctx.spec
        session, link = conn.session, conn.link
        applied: list[Action] = []
        if record is not None:
            await ctx.checkpoint({"pendingOperation": record.model_dump(by_alias=True)})
        if record is not None and record.cluster_unmanaged and link is not None:
            if (done := await link.set_managed(False)) is not None:
                applied.append(done)
        if record is not None and facts.ha_enabled:
            action = DisableHA(f"xapi refuses {record.operation} while HA is on; HA is re-enabled afterwards")
            await self.execute_each(ctx, conn, [action], facts, applied)
        for action in membership:
            if isinstance(action, EjectHost) and link is not None:
                await link.maintain(action.address)
            await self.execute_each(ctx, conn, [action], facts, applied)
        if record is not None and record.restore_ha:
            timeout = int(record.ha_configuration.get("timeout", spec.ha.timeout_seconds))
            sr_uuid = record.heartbeat_srs[0] if record.heartbeat_srs else ""
            sr = next((s for s in (await self.read(session, spec)).srs.values() if s.uuid == sr_uuid), None)
            enable = EnableHA(sr_uuid, sr.name_label if sr else sr_uuid, timeout, "as it was before the change")
            await ha.enable(session, sr_uuid, dict(record.ha_configuration) or {"timeout": str(timeout)},
                            timeout=self.change_timeout, poll=self.poll)
            applied.append(enable)
            ctx.event("Normal", "Applied", enable.describe())
        if record is not None and record.cluster_unmanaged and link is not None:
            if (done := await link.set_managed(True)) is not None:
                applied.append(done)
        if record is not None:
            await ctx.checkpoint({"pendingOperation": None})
        return applied

    # ------------------------------------------------------------------ actions

    async def execute(self, ctx: Context, conn: PoolConnection, action: Action, facts: PoolFacts) -> None:
        if isinstance(action, cluster.REGISTERING):
            assert conn.link is not None and facts.cloudstack is not None
            await conn.link.apply(action, facts.cloudstack)
            return
        if isinstance(action, UploadUpdate):
            await rolling.Roller(self, ctx, conn).upload(action, facts)
            return
        assert isinstance(action, PoolAction)
        spec: XenPoolSpec = ctx.spec
        session = conn.session
        pool = facts.pool_ref
        if isinstance(action, JoinHost):
            ref = spec.credentials_secret_ref
            assert session.master_address is not None  # connected: the master answered
            password = ctx.credential(ref.name, "password", to=[action.address, session.master_address],
                                      what="pool.join")
            joiner = PoolSession([action.address], session.username, password, session.endpoint)
            try:
                await joiner.call("pool.join", session.master_address, session.username, password.get_secret_value())
            finally:
                await joiner.close()
            await self.wait(session, spec, lambda f: (h := f.host_by_address(action.address)) is not None and h.live,
                            f"{action.name} to join")
        elif isinstance(action, EjectHost):
            await session.call("pool.eject", action.ref)
            await self.wait(session, spec, lambda f: action.ref not in f.hosts, f"{action.name} to leave")
        elif isinstance(action, DesignateMaster):
            current = await self.read(session, spec)
            host = current.host_by_address(action.address)
            if host is None:
                raise ReconcileError(Reason.MASTER_NOT_IN_POOL, f"{action.name} is not in the pool", retry=True)
            await session.call("pool.designate_new_master", host.ref)
            await self.wait(session, spec, lambda f: f.master is not None and f.master.address == action.address,
                            f"{action.name} to become master")
        elif isinstance(action, DisableHA):
            await ha.disable(session, timeout=self.change_timeout, poll=self.poll)
        elif isinstance(action, EnableHA):
            await ha.enable(session, action.sr_uuid, {"timeout": str(action.timeout)}, timeout=self.change_timeout,
                            poll=self.poll)
        elif isinstance(action, SetHostFailuresToTolerate):
            await session.call("pool.set_ha_host_failures_to_tolerate", pool, str(action.value))
        elif isinstance(action, SetAllowOvercommit):
            await session.call("pool.set_ha_allow_overcommit", pool, action.value)
        elif isinstance(action, SetVSwitchController):
            await session.call("pool.set_vswitch_controller", action.address)
        elif isinstance(action, ClearVMPriority):
            await session.call("VM.set_ha_restart_priority", action.ref, "")
        elif isinstance(action, EnableHost):
            await session.call("host.enable", action.ref)
        elif isinstance(action, MakeHostUnique):
            await unique.make_unique(self.ssh, ctx, spec, session, action, self.change_timeout, self.poll)
        elif isinstance(action, SetHostName):
            await unique.rename(session, action)

    async def wait(self, session: PoolSession, spec: XenPoolSpec, done: Any, what: str) -> None:
        deadline = time.monotonic() + self.change_timeout
        while True:
            try:
                if done(await self.read(session, spec)):
                    return
            except XenAPIError:
                pass  # the pool is reorganising itself (e.g. a new master): ask again
            if time.monotonic() > deadline:
                raise ReconcileError(Reason.POOL_CHANGE_TIMEOUT, f"waited {self.change_timeout:.0f}s for {what}",
                                     delay=30.0)
            await asyncio.sleep(self.poll)

    # ------------------------------------------------------------------ status

    def status(self, ctx: Context, facts: PoolFacts, result: Plan, applied: list[Action], *,
               observe_only: bool = False) -> Outcome:
        spec: XenPoolSpec = ctx.spec
        names = {m.address: m.name for m in spec.members}
        master = facts.master
        fields: dict[str, Any] = {
            "poolUUID": facts.pool_uuid,
            "master": names.get(master.address, master.name_label) if master else None,
            "hostCount": len(facts.hosts),
            "hosts": [{"name": names.get(h.address, h.name_label), "uuid": h.uuid, "address": h.address,
                       "master": h.ref == facts.master_ref,
                       "role": "master" if h.ref == facts.master_ref else "supporter", "enabled": h.enabled,
                       "live": h.live}
                      for h in sorted(facts.hosts.values(), key=lambda h: names.get(h.address, h.name_label))],
            "ha": {"enabled": facts.ha_enabled, "timeoutSeconds": _int(facts.ha_configuration.get("timeout")),
                   "statefiles": facts.ha_statefiles, "hostFailuresToTolerate": facts.ha_host_failures_to_tolerate,
                   "planExistsFor": facts.ha_plan_exists_for, "overcommitted": facts.ha_overcommitted},
            "vswitchController": facts.vswitch_controller or None,
            "vmsWithHARestartPriority": [vm.name_label for vm in facts.vms_with_priority],
        }
        reachable = st.ConditionState(REACHABLE, "True", st.Reason.CONNECTED, f"pool master {facts.master_address}")
        pending = result.actions
        requeue = None
        if result.problems:
            first = result.problems[0]
            conditions = st.stalled(first.reason, "; ".join(p.message for p in result.problems))
        elif pending:
            summary = f"{len(pending)} difference(s): " + "; ".join(a.describe() for a in pending[:5])
            conditions = st.not_ready(st.Reason.DRIFT_OBSERVED, summary) if observe_only else \
                st.progressing(st.Reason.CONVERGING, summary)
            requeue = None if observe_only else 30.0
        elif result.waiting:
            conditions = st.progressing(Reason.MEMBER_UNREACHABLE,
                                        "members not reachable: " + "; ".join(result.waiting))
            requeue = 60.0
        else:
            message = "the pool matches the spec" + (f"; {'; '.join(result.notices)}" if result.notices else "")
            conditions = st.ready(Reason.POOL_CONVERGED, message)
        ha_ok = facts.ha_enabled == spec.ha.enabled and not any(isinstance(a, (EnableHA, DisableHA)) for a in pending)
        domain = [reachable, st.ConditionState(st.ConditionType.HA_CONFIGURED, "True" if ha_ok else "False",
                                               Reason.HA_AS_SPECIFIED if ha_ok else Reason.HA_DIFFERS)]
        return Outcome(conditions=[*conditions, *domain], fields=fields, drift=list(pending), applied=applied,
                       requeue_after=requeue)


def _until(spec: XenPoolSpec) -> float:
    """Seconds until `maintenance.restartAfter` (at least 1)."""
    assert spec.maintenance.restart_after is not None
    moment = parse_time(spec.maintenance.restart_after)
    return max(1.0, (moment - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


__all__ = ["XenPoolReconciler"]
