"""The KvmHost reconciler: one batched SSH probe (observe), a pure plan, commands applied in order with few round
trips (batch.py: the Open vSwitch changes of a run in one transaction, other commands in one script, package work
one command each) — except changes on the management path, which are applied under an on-host checkpoint that
reverts them unless the operator reconnects and confirms in time (guard.py). With `spec.cloudstack`, a host that
matches its spec is looked up in CloudStack and, when it is not there, added by the plan's registration stage
(registration.py); Ready waits for it to be Up."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ... import status as st
from ...api.kvmhost import KvmHostSpec
from ...drivers.cloudstack import CloudStackPool
from ...drivers.maintenance_lock import MaintenanceLocks
from ...drivers.ssh import (CommandFailed, ConnectionLost, SSHConnection, SSHError, SSHPool, SSHTarget, SSHTimeout,
                            Unreachable)
from ..base import Action, Context, Outcome, PartialApply, ReconcileError
from ..engine import Engine, Plan, Stage
from ..registration import RegistrationStage, registering, with_registration
from ..ssh import reconcile_error, target_for
from ..window import window_state
from . import batch, guard, maintenance, registration
from .due import Maintain, due, group_of, uses_maintenance
from .actions import HostAction, InstallPackages, RefreshPackageIndex
from .observed import OWNER_KEY, HostState
from .plan import Kept, PlanError, Removal, carrying_path, management_path, plan, plan_removal, probe_arguments
from .probe import Probe, ProbeError
from .reasons import Reason

PROBE_TIMEOUT = 60.0
COMMAND_TIMEOUT = 900.0  # package installs can be slow
RETRY_PENDING_SECONDS = 30.0  # changes applied but the host does not match yet (e.g. a daemon still starting)
START_SLACK_SECONDS = 3.0  # the checkpoint round trip may take this much longer than its wait for the apply
RECONNECT_TIMEOUT_SECONDS = 3.0  # each attempt to reach the host again after a guarded change
CONFIRM_TIMEOUT_SECONDS = 5.0
RECONNECT_PAUSE_SECONDS = 0.5
CONFIRM_MARGIN_SECONDS = 1.0  # stop trying this long before the host's timer would revert
PROBE_RETRY_SECONDS = 60.0  # a probe answer that could not be read is asked for again
PACKAGE_RETRY_SECONDS = 60.0  # a failed install is tried again (backing off): the repository may get the version
PACKAGE_OUTPUT_LINES = 6  # of the package manager's output in the failure message
REACHABLE, CONFIGURED = st.ConditionType.REACHABLE, st.ConditionType.CONFIGURED
CONNECTED = st.ConditionState(REACHABLE, "True", st.Reason.CONNECTED)  # Reachable=True, without a message


@dataclass(frozen=True)
class HostFacts:
    """What plan needs (the engine's facts for a KvmHost): the host's state as the probe found it, who owns the
    objects the operator creates, and the values plan writes to the host (read with the other Secrets and
    ConfigMaps): the package repository's signing key (spec.packages.signingKeySecretRef or
    signingKeyConfigMapRef) and the OVSDB client certificate (openvswitch.manager.certificateSecretRef, for
    clientCertificate: Secret); and, once the host matches its spec, what CloudStack shows of it (`cloudstack`, with
    `spec.cloudstack`; None: not looked up)."""

    owner: str
    host: HostState
    signing_key: str | None = None
    client_tls: dict[str, str] | None = field(default=None, repr=False)
    cloudstack: registration.HostInCloudStack | None = None


def signing_key(ctx: Context, spec: KvmHostSpec) -> str | None:
    """The package repository's public key, from its Secret or its ConfigMap (the spec names one at most)."""
    secret, config_map = spec.packages.signing_key_secret_ref, spec.packages.signing_key_config_map_ref
    if secret is not None:
        return ctx.secret(secret.name, secret.key).get_secret_value()
    return ctx.config_maps[config_map.name][config_map.key] if config_map is not None else None


def package_failed(action: HostAction, error: CommandFailed) -> ReconcileError:
    """A failed index refresh or install as status shows it: what was tried and the package manager's last lines
    (its errors: apt's `E:` lines, dnf's `Error:`), never a traceback."""
    result = error.result
    output = (result.stderr if result.stderr.strip() else result.stdout) if result is not None else error.stderr_tail
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("E:", "Error:", "error:"))]
    tail = "; ".join((errors or lines)[-PACKAGE_OUTPUT_LINES:])
    status = "killed by a signal" if error.exit_status == -1 else f"exit status {error.exit_status}"
    message = f"{action.describe()} failed on {error.host} ({status})" + (f": {tail}" if tail else "")
    return ReconcileError(Reason.PACKAGE_INSTALL_FAILED, message, retry=True, delay=PACKAGE_RETRY_SECONDS,
                          conditions=[CONNECTED,
                                      st.ConditionState(CONFIGURED, "False", Reason.PACKAGE_INSTALL_FAILED, message)])


def client_tls(ctx: Context, spec: KvmHostSpec) -> dict[str, str] | None:
    """The keys of openvswitch.manager.certificateSecretRef that clientCertificate: Secret writes to the host."""
    manager = spec.openvswitch.manager
    if manager is None or manager.client_certificate != "Secret" or manager.certificate_secret_ref is None:
        return None
    name = manager.certificate_secret_ref.name
    ctx.credential(name, "tls.key", to=[spec.address], what="the OVSDB client key written to the host")
    values = ctx.secrets.get(name, {})
    return {k: v.get_secret_value() for k, v in values.items() if k in ("tls.crt", "tls.key", "ca.crt")}


def unreachable(error: SSHError) -> ReconcileError:
    failure = reconcile_error(error)
    failure.conditions = [st.ConditionState(REACHABLE, "False", error.reason, str(error))]
    return failure


@dataclass(frozen=True)
class GuardedStage(Stage):
    """Management-path changes (and what precedes them) applied under an on-host checkpoint; `risky`: the changes
    on the path."""

    risky: tuple[HostAction, ...] = ()


@dataclass(frozen=True)
class MaintenanceStage(Stage):
    """The host's maintenance (maintenance.py): its one action lists it; the maintainer takes the steps."""

    due: Any = None


@dataclass
class HostPlan(Plan):
    risky: list[HostAction] = field(default_factory=list)
    maintenance: str = ""  # why due maintenance does not start in this pass (its window is closed, it failed)


class KvmHostReconciler(Engine[SSHConnection, HostFacts, HostPlan]):
    kind = "KvmHost"

    def __init__(self, pool: SSHPool, cloudstack: CloudStackPool | None = None,
                 locks: Callable[[str], MaintenanceLocks] | None = None, maintenance_poll: float = 1.0,
                 maintenance_requeue: float = 5.0, maintenance_lock_wait: float = 30.0):
        """`locks`: the maintenance locks of a namespace (None: this process has no Kubernetes API, and
        maintenance waits); `maintenance_poll`: how often maintenance looks again while it waits for CloudStack
        or the host; `maintenance_requeue`: how soon a host waiting for its group's lock tries again, after
        waiting for it up to `maintenance_lock_wait` seconds in its pass."""
        self.pool = pool
        self.cloudstack = cloudstack
        self.locks = locks
        self.maintenance_poll = maintenance_poll
        self.maintenance_requeue = maintenance_requeue
        self.maintenance_lock_wait = maintenance_lock_wait
        self.probe = Probe()  # the probe, and the versions of each host's binaries it remembers
        self.waiting: dict[str, str] = {}  # namespace/name → why its maintenance waits (this pass)

    def connect(self, ctx: Context) -> contextlib.nullcontext[SSHConnection]:
        return contextlib.nullcontext(self.connection(ctx))

    async def finalize(self, ctx: Context) -> None:
        """deletionPolicy Delete: the host leaves CloudStack through maintenance first; then the Open vSwitch
        objects this KvmHost created are removed, each with an `Applied` Event (plan_removal: ports, bonds,
        tunnels and VLAN bridges before their bridge), and the host is probed again to make sure they are gone.

        The management path is never cut: owned objects it runs over (the bridge carrying `spec.address`, its
        ports and NICs) are kept, and so is a bridge or VLAN bridge that also holds ports stackops did not create
        (deleting it would delete them); each kind is named in a Warning Event (`ManagementPathKept`,
        `SharedObjectsKept`) and the deletion completes. Configuration files, packages, the package repository
        source, the OVSDB manager and SSL settings stay as they are.

        A maintenance under way (under either policy) is ended first (maintenance.Maintainer.stop): a host still
        being drained is given back, one already empty goes through its reboot and comes back.

        Any failure — the host unreachable, Open vSwitch not answering, a management-path change of an earlier
        pass not settled yet, a command failing — raises ReconcileError: the finalizer keeps the object and the
        handler tries again. Under `Orphan` (which the handler does not even pass here) nothing is done."""
        spec: KvmHostSpec = ctx.spec
        last = maintenance.recorded(ctx)
        if last is not None and last.phase == "InProgress":
            await maintenance.Maintainer(self, ctx, self.connection(ctx)).stop(last)
        if spec.deletion_policy != "Delete":
            return
        if spec.cloudstack is not None and self.cloudstack is not None:
            await registration.deregister(self.cloudstack, ctx, spec)
        conn = self.connection(ctx)
        view = await self.resume_guarded(ctx, conn, await self.observe(ctx, conn))
        removal = self.removal(view, spec.address)
        if removal.actions:
            actions: list[Action] = list(removal.actions)
            await self.execute_each(ctx, conn, actions, view, [])
            removal = self.removal(await self.observe(ctx, conn), spec.address)
            if removal.actions:
                left = "; ".join(a.describe() for a in removal.actions)
                raise ReconcileError(Reason.REMOVAL_INCOMPLETE, "Open vSwitch objects this KvmHost created are still "
                                     f"on the host after removing them: {left}; trying again", retry=True, delay=30.0)
        self.report_kept(ctx, spec, removal.kept)

    def in_flight(self, status: dict[str, Any]) -> bool:
        """A host in maintenance: its deletion ends the maintenance first (Maintainer.stop)."""
        return ((status.get(maintenance.KEY) or {}).get("phase")) == "InProgress"

    def removal(self, facts: HostFacts, address: str) -> Removal:
        try:
            removal = plan_removal(facts.host, facts.owner, address)
        except PlanError as error:
            raise ReconcileError(error.reason, f"{error}; deletion waits", retry=True, delay=60.0) from None
        path = carrying_path(address, facts.host)
        assert not guard.risky_actions(removal.actions, path), "plan_removal keeps the management path"
        return removal

    @staticmethod
    def report_kept(ctx: Context, spec: KvmHostSpec, kept: tuple[Kept, ...]) -> None:
        """One Warning Event per kind of object deletion leaves on the host."""
        path = [k.what for k in kept if k.reason == "ManagementPath"]
        if path:
            ctx.event("Warning", "ManagementPathKept", f"kept {', '.join(path)}: the management path to "
                      f"{spec.address} runs over them and removing them could cut the host off the network; they "
                      f"keep their {OWNER_KEY} mark (remove them by hand once the host is reached another way)")
        shared = [f"{k.what} ({k.detail})" for k in kept if k.reason == "SharedObject"]
        if shared:
            ctx.event("Warning", "SharedObjectsKept", f"kept {'; '.join(shared)}: deleting them would delete ports "
                      f"stackops did not create; they keep their {OWNER_KEY} mark")

    def connection(self, ctx: Context) -> SSHConnection:
        spec: KvmHostSpec = ctx.spec
        ref = spec.ssh.private_key_secret_ref
        key = ctx.credential(ref.name, ref.key, to=[spec.address], what="SSH")
        return self.pool.connection(target_for(spec.address, spec.ssh, key))

    async def observe(self, ctx: Context, conn: SSHConnection) -> HostFacts:
        spec: KvmHostSpec = ctx.spec
        try:
            host = f"{ctx.namespace}/{ctx.name}@{spec.address}"
            result = await conn.run_script(self.probe.script, args=self.probe.arguments(host, probe_arguments(spec)),
                                           timeout=PROBE_TIMEOUT, label="probe")
        except SSHError as error:
            raise unreachable(error) from None
        try:
            state = self.probe.parse(host, result.stdout, spec.libvirt.tcp_port)
        except ProbeError as error:  # a host whose answer cannot be read is not planned from (nothing changes)
            raise ReconcileError(Reason.PROBE_OUTPUT_INVALID, f"the probe's answer from {spec.address} could not be "
                                 f"read: {error}", delay=PROBE_RETRY_SECONDS, conditions=[CONNECTED]) from None
        return HostFacts(owner=f"{ctx.namespace}/{ctx.name}", host=state,
                         signing_key=signing_key(ctx, spec), client_tls=client_tls(ctx, spec))

    async def observe_follow_up(self, ctx: Context, conn: SSHConnection, facts: HostFacts,
                                plan: HostPlan) -> HostFacts:
        """With `spec.cloudstack`, a host that matches its spec (its plan has nothing left) is looked up in
        CloudStack; a host that does not is not (Registered: WaitingForConfiguration). Under Manage, a host password
        that addHost would hand CloudStack where its Secret does not allow it stalls the pass now
        (CredentialNotAllowed), before anything is sent."""
        spec: KvmHostSpec = ctx.spec
        if spec.cloudstack is None or self.cloudstack is None or plan.actions:
            return facts
        found = await registration.observe(self.cloudstack, ctx, spec)
        if spec.management_policy == "Manage" and registration.plan(spec, found):
            registration.password(ctx, spec)
        return dataclasses.replace(facts, cloudstack=found)

    def plan(self, ctx: Context, facts: HostFacts) -> HostPlan:
        """Management-path changes (and what precedes them) form a guarded stage; the rest follows one by one. A
        host that matches its spec and is not in CloudStack yet: the registration stage."""
        spec: KvmHostSpec = ctx.spec
        try:
            actions = self.host_actions(ctx, facts)
        except PlanError as error:
            raise ReconcileError(error.reason, str(error), retry=False,
                                 conditions=[CONNECTED,
                                             st.ConditionState(CONFIGURED, "False", error.reason, str(error))]) \
                from None
        risky = guard.risky_actions(actions, management_path(spec, facts.host))
        if not actions:
            adding = registration.plan(spec, facts.cloudstack) if facts.cloudstack is not None else []
            if adding:
                return HostPlan([RegistrationStage("cloudstack", tuple(adding))])
            return self.plan_maintenance(ctx, facts)
        if not risky:
            return HostPlan([Stage("host", tuple(actions))])
        guarded, rest = guard.split_guarded(actions, risky)
        stages: list[Stage] = [GuardedStage("management path", tuple(guarded), then="next" if rest else "report",
                                            risky=tuple(risky))]
        if rest:
            stages.append(Stage("host", tuple(rest)))
        return HostPlan(stages, list(risky))

    def host_actions(self, ctx: Context, facts: HostFacts) -> list[HostAction]:
        """The host's own plan; an agent version change waits for maintenance on a host that is registered in
        CloudStack (or not looked up yet: the plan without it is what decides the lookup)."""
        spec: KvmHostSpec = ctx.spec
        unregistered = facts.cloudstack is not None and facts.cloudstack.host is None
        defer = uses_maintenance(spec) and not unregistered
        return list(plan(spec, facts.host, facts.owner, facts.signing_key, facts.client_tls, defer_agent=defer))

    def plan_maintenance(self, ctx: Context, facts: HostFacts) -> HostPlan:
        """Maintenance due on a host that matches its spec (and is registered, with `spec.cloudstack`): one stage,
        unless its window is closed or it failed for this generation (`HostPlan.maintenance` says which)."""
        spec: KvmHostSpec = ctx.spec
        if spec.cloudstack is not None and (facts.cloudstack is None or facts.cloudstack.host is None):
            return HostPlan()
        last = maintenance.recorded(ctx)
        now = datetime.datetime.now(datetime.timezone.utc)
        found = due(spec, facts.host, facts.cloudstack.host if facts.cloudstack else None, last, now)
        if found is None:
            return HostPlan()
        action = Maintain(found.request, group_of(spec), found.reboot, found.changes, spec.cloudstack is not None)
        if last is not None and last.phase == "Failed" and last.generation == ctx.generation:
            return HostPlan(maintenance=f"maintenance failed for this generation: {last.message}")
        window = window_state(spec.maintenance.window, now)
        if not window.open and spec.management_policy == "Manage":
            opens = window.next_open.isoformat() if window.next_open else "never"
            return HostPlan(maintenance=f"waiting for the maintenance window, which opens {opens}: {found.request}")
        return HostPlan([MaintenanceStage("maintenance", (action,), due=found)])

    def check(self, ctx: Context, plan: HostPlan, facts: HostFacts) -> Outcome | None:
        """A management-path change the host already reverted for this generation is not tried again."""
        if not plan.risky:
            return None
        blocker = self.blocking_rollback(ctx, facts)
        return None if blocker is None else self.rolled_back(ctx, facts, plan, blocker)

    async def run_stage(self, ctx: Context, conn: SSHConnection, stage: Stage, facts: HostFacts) -> list[Action]:
        if isinstance(stage, MaintenanceStage):
            try:
                await maintenance.Maintainer(self, ctx, conn).start(stage.due)
            except maintenance.Waiting as waiting:
                self.waiting[f"{ctx.namespace}/{ctx.name}"] = str(waiting)
                return []
            return list(stage.actions)
        if isinstance(stage, RegistrationStage):  # addHost records CloudStack's answer in facts.cloudstack
            return await self.execute_each(ctx, conn, stage.actions, facts, [])
        if isinstance(stage, GuardedStage):
            return list(await self.guarded_apply(ctx, facts, list(stage.actions), list(stage.risky)))
        return await self.execute_folded(ctx, conn, [a for a in stage.actions if isinstance(a, HostAction)], facts)

    # -- fewer round trips (batch.py)

    async def execute_folded(self, ctx: Context, conn: SSHConnection, actions: list[HostAction],
                             facts: HostFacts) -> list[Action]:
        """The actions in order, runs of them folded into one command each (batch.fold); one Event per action as
        `execute_each` posts them, and the first failure stops with what was done (PartialApply)."""
        applied: list[Action] = []
        for unit in batch.fold(actions):
            if isinstance(unit, HostAction):
                await self.execute_each(ctx, conn, [unit], facts, applied)
                continue
            try:
                done, failed, error = await self.run_unit(conn, unit)
            except ReconcileError as lost:  # the host was not reached: what the unit did is not known
                ctx.event("Warning", lost.reason, f"{unit.describe()} failed: {lost}")
                raise PartialApply(lost, applied) from lost
            for action in done:
                applied.append(action)
                ctx.event("Normal", action.event_reason, action.describe())
            if error is not None:
                ctx.event("Warning", error.reason, f"{failed.describe() if failed else unit.describe()} failed: "
                          f"{error}")
                raise PartialApply(error, applied)
        return applied

    async def run_unit(self, conn: SSHConnection, unit: batch.OvsTransaction | batch.Script) -> tuple[
            list[HostAction], HostAction | None, ReconcileError | None]:
        """One round trip: (the actions done, the action that failed, the failure). A failed transaction applied
        nothing; a failed script applied the commands before the failing one."""
        label = "; ".join(a.describe() for a in unit.actions)
        try:
            if isinstance(unit, batch.OvsTransaction):
                await conn.run(unit.argv(), timeout=COMMAND_TIMEOUT, mutation=True, label=f"ovs-vsctl ({label})")
            else:
                await conn.run(("sh", "-s"), input=unit.text(), timeout=COMMAND_TIMEOUT, mutation=True,
                               label=f"sh -s ({label})")
            return [*unit.actions], None, None
        except CommandFailed as error:
            output = error.result.stderr if error.result is not None else error.stderr_tail
            lines = [line.strip() for line in output.splitlines() if line.strip()]
            status = "was killed by a signal" if error.exit_status == -1 else f"exited with status {error.exit_status}"
            if isinstance(unit, batch.OvsTransaction):
                failed: HostAction | None = batch.failed_action(unit, output)
                what = failed.describe() if failed else f"{unit.describe()} ({label})"
                tail = "; ".join(lines[-3:])
                message = (f"{what} {status} on {error.host}" + (f": {tail}" if tail else "") +
                           "; nothing of the transaction was applied")
                return [], failed, ReconcileError(CommandFailed.reason, message, retry=error.retry, delay=error.delay)
            done = batch.parse_done(error.result.stdout if error.result is not None else "")
            failed = unit.actions[done] if done < len(unit.actions) else None
            header = f"== {failed.describe()}" if failed else None
            own = lines[len(lines) - lines[::-1].index(header):] if header in lines else lines
            tail = "; ".join(own[-3:])
            message = f"{failed.describe() if failed else unit.describe()} {status} on {error.host}" + \
                (f": {tail}" if tail else "")
            return [*unit.actions[:done]], failed, ReconcileError(CommandFailed.reason, message, retry=error.retry,
                                                                     delay=error.delay)
        except SSHError as error:
            raise unreachable(error) if error.reason in (Unreachable.reason, ConnectionLost.reason) else \
                reconcile_error(error) from None

    # -- management-path changes (guard.py)

    async def resume(self, ctx: Context, conn: SSHConnection, facts: HostFacts,
                     applied: list[Action] | None = None) -> HostFacts:
        """Maintenance an earlier pass did not finish goes on from its recorded step; then a guarded change of an
        earlier pass still undecided is settled (`resume_guarded`)."""
        if await self.resume_maintenance(ctx, conn):
            facts = await self.observe(ctx, conn)
        return await self.resume_guarded(ctx, conn, facts)

    async def resume_maintenance(self, ctx: Context, conn: SSHConnection) -> bool:
        """Whether maintenance was in flight (and is now finished): an operator restarted mid-way goes on from the
        recorded step, the host possibly down for its reboot."""
        last = maintenance.recorded(ctx)
        if last is None or last.phase != "InProgress" or ctx.spec.management_policy != "Manage":
            return False
        ctx.event("Warning", "ResumingMaintenance", f"the maintenance ({last.request}) began at {last.started_at} "
                  f"and was not finished: going on from {last.step}")
        await maintenance.Maintainer(self, ctx, conn).proceed(last)
        return True

    async def recover(self, ctx: Context, conn: SSHConnection, error: Exception) -> Outcome | None:
        """The host did not answer the first probe: if it is in maintenance (rebooting), the maintenance goes on
        and the pass ends with the host as it came back."""
        if not isinstance(error, ReconcileError) or not await self.resume_maintenance(ctx, conn):
            return None
        facts = await self.observe(ctx, conn)
        return self.report(ctx, facts, HostPlan(), [])

    async def resume_guarded(self, ctx: Context, conn: SSHConnection, facts: HostFacts) -> HostFacts:
        """A guarded change of an earlier pass still undecided (the operator restarted, or lost the host while
        confirming): confirm it if it has finished and this pass reached the host, else wait for the host's
        timer. Nothing else is changed meanwhile: a revert would undo it."""
        host = facts.host
        spec: KvmHostSpec = ctx.spec
        checkpoint = guard.latest(host.checkpoints, facts.owner, "pending", "reverting", now=host.host_time)
        if checkpoint is None:
            return facts
        state = checkpoint.state(host.host_time)
        if state == "pending" and checkpoint.applied is not None and spec.management_policy == "Manage":
            try:
                result = guard.parse_confirm((await conn.run_script(
                    guard.CONFIRM, args=[checkpoint.id], timeout=CONFIRM_TIMEOUT_SECONDS, mutation=True,
                    label=f"confirm checkpoint {checkpoint.id}", urgent=True)).stdout)
            except SSHError as error:
                raise unreachable(error) if error.reason in (Unreachable.reason, ConnectionLost.reason) else \
                    reconcile_error(error) from None
            if result.state == "confirmed":
                ctx.event("Normal", "ChangeConfirmed", f"reached the host again and confirmed checkpoint "
                          f"{checkpoint.id}: {checkpoint.changes}")
                return facts
            if result.state == "rolled-back":
                return await self.observe(ctx, conn)
            state = result.state
        left = (checkpoint.expires - host.host_time) if checkpoint.expires and host.host_time else 0
        doing = "is reverting it" if state == "reverting" else f"reverts it in {max(left, 0)}s unless it is confirmed"
        raise ReconcileError(
            Reason.ROLLBACK_PENDING, f"the management-path change of checkpoint {checkpoint.id} "
            f"({checkpoint.changes}) is not confirmed yet and the host {doing}; nothing else is changed meanwhile",
            retry=True, delay=float(min(max(left, 0) + 3, 30)),
            conditions=[CONNECTED])

    def blocking_rollback(self, ctx: Context, facts: HostFacts) -> tuple[int, str, str] | None:
        """(generation, time, reason) of a revert of this very change — same generation of the same spec —
        recorded on the host or in status: the risky plan is not tried again until the spec changes."""
        spec: KvmHostSpec = ctx.spec
        checkpoint = guard.latest(facts.host.checkpoints, facts.owner, "rolled-back")
        if checkpoint is not None and checkpoint.generation == ctx.generation and \
                checkpoint.digest == guard.spec_digest(spec):
            return ctx.generation, checkpoint.rolled_back_time or "", guard.rollback_reason(checkpoint, spec.address)
        recorded = ctx.status.get("rollback")
        if isinstance(recorded, dict) and recorded.get("generation") == ctx.generation:
            return ctx.generation, str(recorded.get("time", "")), str(recorded.get("reason", ""))
        return None

    def rolled_back(self, ctx: Context, facts: HostFacts, plan: HostPlan,
                    blocker: tuple[int, str, str]) -> Outcome:
        generation, when, reason = blocker
        message = (f"not applied again: {reason}{f' at {when}' if when else ''}. The change is not retried for "
                   f"generation {generation}: fix the spec (a new generation) to try again")
        outcome = self.report(ctx, facts, plan, [])
        outcome.conditions = [*st.stalled(Reason.ROLLED_BACK, message),
                              CONNECTED,
                              st.ConditionState(CONFIGURED, "False", Reason.ROLLED_BACK, message),
                              *(c for c in outcome.conditions if c.type == st.ConditionType.REGISTERED)]
        outcome.requeue_after = None
        return outcome

    async def guarded_apply(self, ctx: Context, facts: HostFacts, guarded: list[HostAction],
                            risky: list[HostAction]) -> list[HostAction]:
        """Checkpoint, start the revert timer and the apply (one round trip), reconnect afresh and confirm.
        Returns the actions applied; raises when the change could not be confirmed."""
        spec: KvmHostSpec = ctx.spec
        timeout = spec.openvswitch.rollback_timeout_seconds
        checkpoint = guard.new_checkpoint_id()
        changes = "; ".join(a.describe() for a in risky)
        args = guard.start_args(checkpoint, timeout, ctx.generation, facts.owner, guard.spec_digest(spec), risky,
                                management_path(spec, facts.host))
        connection = self.connection(ctx)
        deadline = time.monotonic() + timeout - CONFIRM_MARGIN_SECONDS
        ctx.event("Normal", "GuardedApply", f"applying under checkpoint {checkpoint} (the host reverts it unless "
                  f"the operator reconnects and confirms within {timeout}s): {changes}")
        try:
            await connection.run(["sh", "-c", guard.START, "stackops-checkpoint", *args],
                                 input=guard.apply_script(guarded), mutation=True,
                                 timeout=guard.apply_wait(timeout) + START_SLACK_SECONDS,
                                 label=f"checkpoint {checkpoint} and apply {len(guarded)} management-path change(s)")
        except CommandFailed as error:
            raise ReconcileError(Reason.CHECKPOINT_FAILED, f"no checkpoint could be written, so nothing was changed: "
                                 f"{error}", retry=True, delay=60.0,
                                 conditions=[CONNECTED]) from None
        except (SSHTimeout, ConnectionLost):
            pass  # the change may have cut this connection: reconnecting tells
        except SSHError as error:
            raise unreachable(error) if error.reason == Unreachable.reason else reconcile_error(error) from None
        connection.close()
        result = await self.reconnect_and_confirm(connection.target, checkpoint, deadline)
        where = connection.target.display
        if result is None:
            raise ReconcileError(
                Reason.ROLLBACK_PENDING, f"applied [{changes}] under checkpoint {checkpoint}, then could not reach "
                f"{where} again within {timeout}s: the host reverts the change by itself; checking again after that",
                retry=True, delay=CONFIRM_MARGIN_SECONDS + 5.0,
                conditions=[st.ConditionState(REACHABLE, "False", ConnectionLost.reason,
                                              f"no SSH connection to {where} after the management-path change")])
        if result.state == "missing":
            raise ReconcileError(ConnectionLost.reason, f"the connection to {where} was lost before checkpoint "
                                 f"{checkpoint} was written; nothing was changed", retry=True, delay=10.0)
        if result.state != "confirmed":
            raise ReconcileError(
                Reason.ROLLBACK_PENDING, f"reached {where} again too late: the host is reverting checkpoint "
                f"{checkpoint} ([{changes}]); checking again", retry=True, delay=5.0,
                conditions=[CONNECTED])
        done = guarded if result.applied == 0 else guarded[: result.progress]
        for action in done:
            ctx.event("Normal", "Applied", action.describe())
        ctx.event("Normal", "ChangeConfirmed", f"reconnected and confirmed checkpoint {checkpoint}: {changes}")
        if result.applied != 0:
            failed = guarded[result.progress] if result.progress < len(guarded) else None
            tail = " ".join(result.log.split()[-60:])
            error = ReconcileError(CommandFailed.reason, f"{failed.describe() if failed else 'the guarded apply'} "
                                   f"exited with status {result.applied} on {where}" + (f": {tail}" if tail else ""))
            ctx.event("Warning", error.reason, str(error))
            raise PartialApply(error, list(done))
        return done

    async def reconnect_and_confirm(self, target: SSHTarget, checkpoint: str,
                                    deadline: float) -> guard.ConfirmResult | None:
        """Fresh connections with short timeouts until one confirms (or finds the host reverting), or the
        deadline passes (None). The confirm is urgent: it does not queue behind other hosts' commands."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0.2:
                return None
            attempt = dataclasses.replace(target, connect_timeout=max(
                0.5, min(target.connect_timeout, RECONNECT_TIMEOUT_SECONDS, left)))
            connection = self.pool.connection(attempt)
            try:
                result = guard.parse_confirm((await connection.run_script(
                    guard.CONFIRM, args=[checkpoint], timeout=max(0.5, min(CONFIRM_TIMEOUT_SECONDS, left)),
                    mutation=True, label=f"confirm checkpoint {checkpoint}", urgent=True)).stdout)
                if result.state != "running":
                    return result
            except (Unreachable, ConnectionLost, SSHTimeout):
                pass
            except SSHError as error:
                raise reconcile_error(error) from None
            connection.close()  # a confirmation counts only over a connection opened after the change
            await asyncio.sleep(max(0.0, min(RECONNECT_PAUSE_SECONDS, deadline - time.monotonic())))

    async def execute(self, ctx: Context, conn: SSHConnection, action: Action, facts: HostFacts) -> None:
        if isinstance(action, registration.AddHost):
            assert self.cloudstack is not None and facts.cloudstack is not None
            await registration.add(self.cloudstack, ctx, ctx.spec, facts.cloudstack)
            return
        assert isinstance(action, HostAction)
        try:
            await conn.run(action.argv(), input=action.stdin(), timeout=COMMAND_TIMEOUT,
                                           mutation=True, label=action.describe())
        except CommandFailed as error:
            if isinstance(action, (InstallPackages, RefreshPackageIndex)):
                raise package_failed(action, error) from None
            raise reconcile_error(error) from None
        except SSHError as error:
            raise unreachable(error) if error.reason in (Unreachable.reason, ConnectionLost.reason) else \
                reconcile_error(error) from None

    def report(self, ctx: Context, facts: HostFacts, plan: HostPlan, applied: list[Action]) -> Outcome:
        """The host's conditions and fields; with `spec.cloudstack`, its registration (Ready waits for the host to
        be Up there). The drift: what the plan still holds (under Observe, the registration too)."""
        adding = registering(plan)
        due_now = [a for a in plan.actions if isinstance(a, Maintain)]
        pending = [a for a in plan.actions if a not in adding and a not in due_now]
        host = facts.host
        spec: KvmHostSpec = ctx.spec
        reachable = st.ConditionState(REACHABLE, "True", st.Reason.CONNECTED, f"probed over SSH as {spec.ssh.user}")
        if pending:
            summary = f"{len(pending)} difference(s): " + "; ".join(a.describe() for a in pending[:5])
            observe = spec.management_policy == "Observe"
            reason = st.Reason.DRIFT_OBSERVED if observe else st.Reason.CONVERGING
            # Under Observe nothing is in progress and nothing is stuck: Ready=False says the host differs.
            conditions = st.not_ready(reason, summary) if observe else st.progressing(reason, summary)
            configured = st.ConditionState(CONFIGURED, "False", reason, summary)
        else:
            conditions = st.ready(Reason.CONFIGURED, "the host matches the spec")
            configured = st.ConditionState(CONFIGURED, "True", Reason.CONFIGURED,
                                           "the host matches the spec")
        fields: dict[str, Any] = {
            "versions": {"os": host.os_name, "kernel": host.kernel, "openvswitch": host.ovs_version,
                         "libvirt": host.libvirt_version, "qemu": host.qemu_version,
                         "cloudstackAgent": host.agent_version},
            "packageManager": host.package_manager,
            "rebootRequired": host.reboot_required,
            "rebootRequiredBy": list(host.reboot_required_by),
        }
        manager = spec.openvswitch.manager
        if manager is not None and host.ovs is not None:
            shown = host.client_certificate_fingerprint if manager.client_certificate == "Secret" else \
                host.certificate_fingerprint
            fields["manager"] = {"target": ",".join(host.ovs.managers), "connected": host.ovs.manager_connected,
                                 "certificateFingerprint": shown or ""}
        reverted = guard.latest(host.checkpoints, facts.owner, "rolled-back")
        if reverted is not None:
            fields["rollback"] = guard.rollback_status(reverted, spec.address)
            if (ctx.status.get("rollback") or {}).get("time") != reverted.rolled_back_time:
                ctx.event("Warning", Reason.ROLLED_BACK, fields["rollback"]["reason"])
        requeue = RETRY_PENDING_SECONDS if pending and spec.management_policy == "Manage" else None
        outcome = Outcome(conditions=[*conditions, reachable, configured], fields=fields,
                          drift=[*pending, *(a for a in adding if a not in applied), *due_now], requeue_after=requeue)
        if spec.cloudstack is not None:
            outcome = with_registration(outcome, registration.status(facts.cloudstack,
                                                                      driver=self.cloudstack is not None))
        return self.report_maintenance(ctx, facts, plan, outcome, due_now, bool(pending))

    def report_maintenance(self, ctx: Context, facts: HostFacts, plan: HostPlan, outcome: Outcome,
                           due_now: list[Action], pending: bool) -> Outcome:
        """The boot time, the last maintenance, and maintenance that is due on a host otherwise as it should be:
        waiting (for the lock, its peers, room for its VMs, the window: Reconciling), failed for this generation
        (Stalled), or left alone under Observe (drift)."""
        spec: KvmHostSpec = ctx.spec
        if facts.host.boot_time is not None:
            outcome.fields["bootTime"] = datetime.datetime.fromtimestamp(
                int(facts.host.boot_time), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        last = maintenance.recorded(ctx)
        waiting = self.waiting.pop(f"{ctx.namespace}/{ctx.name}", "")
        progress = maintenance.progress(last) if last is not None else None
        ready = any(c.type == st.ConditionType.READY and c.status == "True" for c in outcome.conditions)
        keep = [c for c in outcome.conditions if c.type not in (st.ConditionType.READY, st.ConditionType.RECONCILING,
                                                                 st.ConditionType.STALLED)]
        if plan.maintenance.startswith("maintenance failed") and last is not None:
            outcome.conditions = [*st.stalled(last.reason or st.Reason.MAINTENANCE_FAILED, plan.maintenance), *keep]
            outcome.requeue_after = None
        elif pending or not (due_now or plan.maintenance):
            pass
        elif spec.management_policy == "Observe":
            summary = "; ".join(a.describe() for a in due_now)
            outcome.conditions = [*st.not_ready(st.Reason.DRIFT_OBSERVED, summary), *keep]
        elif plan.maintenance:  # the window is closed
            progress = "waiting for the window"
            outcome.conditions = [*st.progressing(Reason.WAITING_FOR_MAINTENANCE_WINDOW, plan.maintenance), *keep]
            outcome.requeue_after = min(outcome.requeue_after or 300.0, 300.0)
        elif waiting:
            progress = f"waiting: {waiting}"[:120]
            message = f"{'; '.join(a.describe() for a in due_now)}; waiting: {waiting}"
            outcome.conditions = [*st.progressing(Reason.MAINTENANCE_WAITING, message), *keep]
            outcome.requeue_after = self.maintenance_requeue
        elif ready:
            outcome.requeue_after = min(outcome.requeue_after or self.maintenance_requeue, self.maintenance_requeue)
        if progress is not None:
            outcome.fields[maintenance.PROGRESS] = progress
        return outcome
