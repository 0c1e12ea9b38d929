"""The KvmHost reconciler: one batched SSH probe (observe), a pure plan, commands applied one by one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ... import status as st
from ...api.kvmhost import KvmHostSpec
from ...drivers.ssh import SSHConnection, SSHError, SSHPool, SSHTarget
from ..base import Action, Context, Outcome, PlannedReconciler, ReconcileError
from .actions import HostAction
from .observed import Observed
from .plan import PlanError, management_path, package_names, plan
from .probe import SCRIPT, parse

PROBE_TIMEOUT = 60.0
COMMAND_TIMEOUT = 900.0  # package installs can be slow
RETRY_PENDING_SECONDS = 30.0  # changes applied but the host does not match yet (e.g. a daemon still starting)


@dataclass(frozen=True)
class HostView:
    """What plan needs: the facts and who owns the objects the operator creates."""

    owner: str
    facts: Observed


def unreachable(error: SSHError) -> ReconcileError:
    failure = error.reconcile_error()
    failure.conditions = [st.ConditionState("Reachable", "False", error.reason, str(error))]
    return failure


class KvmHostReconciler(PlannedReconciler[HostView]):
    kind = "KvmHost"

    def __init__(self, pool: SSHPool):
        self.pool = pool

    def connection(self, ctx: Context) -> SSHConnection:
        spec: KvmHostSpec = ctx.spec  # type: ignore[assignment]
        ref = spec.ssh.private_key_secret_ref
        return self.pool.connection(SSHTarget.from_settings(spec.address, spec.ssh, ctx.secret(ref.name, ref.key)))

    async def observe(self, ctx: Context) -> HostView:
        spec: KvmHostSpec = ctx.spec  # type: ignore[assignment]
        names = sorted({*package_names(spec, "apt"), *package_names(spec, "yum")})
        try:
            result = await self.connection(ctx).run_script(SCRIPT, args=names, timeout=PROBE_TIMEOUT, label="probe")
        except SSHError as error:
            raise unreachable(error) from None
        return HostView(owner=f"{ctx.namespace}/{ctx.name}", facts=parse(result.stdout, spec.libvirt.tcp_port))

    def plan(self, spec: Any, observed: HostView) -> list[Action]:
        try:
            return list(plan(spec, observed.facts, observed.owner))
        except PlanError as error:
            raise ReconcileError(error.reason, str(error), retry=False,
                                 conditions=[st.ConditionState("Reachable", "True", "Connected"),
                                             st.ConditionState("Configured", "False", error.reason, str(error))]) \
                from None

    def check(self, ctx: Context, actions: list[Action], observed: HostView) -> None:
        """Changes on the path that carries the management address would need the on-host automatic rollback,
        which this version does not have: refuse the whole plan before anything is changed."""
        path = management_path(ctx.spec, observed.facts)  # type: ignore[arg-type]
        risky = [a for a in actions if isinstance(a, HostAction) and path & set(a.argv())]
        if risky:
            message = (f"not applied: {'; '.join(a.describe() for a in risky)} would change "
                       f"{', '.join(sorted(path))}, which carries the management address {ctx.spec.address}; "
                       "such changes need the automatic on-host rollback, which this version does not have yet")
            raise ReconcileError("ManagementPathChange", message, retry=False,
                                 conditions=[st.ConditionState("Reachable", "True", "Connected"),
                                             st.ConditionState("Configured", "False", "ManagementPathChange",
                                                               message)])

    async def execute(self, ctx: Context, action: Action, observed: HostView) -> None:
        assert isinstance(action, HostAction)
        try:
            await self.connection(ctx).run(action.argv(), input=action.stdin(), timeout=COMMAND_TIMEOUT,
                                           mutation=True, label=action.describe())
        except SSHError as error:
            raise unreachable(error) if error.reason in ("Unreachable", "ConnectionLost") else \
                error.reconcile_error() from None

    def report(self, ctx: Context, observed: HostView, pending: list[Action]) -> Outcome:
        facts = observed.facts
        spec: KvmHostSpec = ctx.spec  # type: ignore[assignment]
        reachable = st.ConditionState("Reachable", "True", "Connected", f"probed over SSH as {spec.ssh.user}")
        if pending:
            summary = f"{len(pending)} difference(s): " + "; ".join(a.describe() for a in pending[:5])
            observe = spec.management_policy == "Observe"
            reason = "DriftObserved" if observe else "Converging"
            # Under Observe nothing is in progress and nothing is stuck: Ready=False says the host differs.
            conditions = st.not_ready(reason, summary) if observe else st.progressing(reason, summary)
            configured = st.ConditionState("Configured", "False", reason, summary)
        else:
            conditions = st.ready("Configured", "the host matches the spec")
            configured = st.ConditionState("Configured", "True", "Configured", "the host matches the spec")
        fields: dict[str, Any] = {
            "versions": {"os": facts.os_name, "kernel": facts.kernel, "openvswitch": facts.ovs_version,
                         "libvirt": facts.libvirt_version, "qemu": facts.qemu_version,
                         "cloudstackAgent": facts.agent_version},
            "packageManager": facts.package_manager,
        }
        manager = spec.openvswitch.manager
        if manager is not None and facts.ovs is not None:
            fields["manager"] = {"target": ",".join(facts.ovs.managers), "connected": facts.ovs.manager_connected,
                                 "certificateFingerprint": facts.certificate_fingerprint or ""}
        requeue = RETRY_PENDING_SECONDS if pending and spec.management_policy == "Manage" else None
        return Outcome(conditions=[*conditions, reachable, configured], fields=fields, drift=pending,
                       requeue_after=requeue)
