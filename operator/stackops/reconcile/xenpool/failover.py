"""A pool whose master does not answer.

With HA on (as last observed: a supporter without a master cannot be asked), XenServer elects a new master itself
(after the HA timeout): the operator only reports. With HA off the supporters keep pointing at the dead master;
under `masterFailover.policy: EmergencyTransition` the operator fails over — but only on the supporters' word,
never on its own: a partition between the operator and the master alone must not make a second master. Each pass
asks every live supporter, from its dom0 (reach.py), whether it reaches the master; quorum.py decides. While a
strict majority of the live supporters cannot reach it either, the delay runs — `delaySeconds`, counted from
`status.supportersLostMasterSince` (the first pass that found that majority; kept across operator restarts,
cleared by any pass that does not find it) —; then the operator picks one of them — the spec's `master` if it is
one, else the first in spec order —, calls `pool.emergency_transition_to_master` there over a `slave_local`
session, waits for it to answer as master and calls `pool.recover_slaves`. Without such a majority:
`MasterUnreachableFromOperatorOnly` (a supporter still reaches the master) or `SupportersViewUnavailable` (no
dom0 SSH, or too many views unknown), a Warning Event when that starts, and no failover.
"""
from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

from ... import status as st
from ...api.xenpool import XenPoolSpec
from ...drivers.xenapi import PoolSession, XenAPIError, XenNoMaster
from ..base import Context, Outcome, ReconcileError
from .quorum import Verdict, decide
from .reasons import Reason
from .reach import supporters_view

SUPPORTER = "supporter of "


def _now() -> str:
    """Now, to the millisecond (a delay is counted from it)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _seconds_since(stamp: str) -> float:
    then = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return (datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()


def _unreachable(message: str) -> list[st.ConditionState]:
    return [st.ConditionState(st.ConditionType.REACHABLE, "False", Reason.MASTER_UNREACHABLE, message)]


def _waiting(conditions: list[st.ConditionState], fields: dict[str, Any], requeue: float) -> Outcome:
    """Waiting with no master: `conditions` (st.progressing) and Reachable=False with the same message."""
    return Outcome(conditions=[*conditions, *_unreachable(conditions[0].message)], fields=fields,
                   requeue_after=requeue)


def _last_reason(ctx: Context) -> str | None:
    """Ready's reason as the last pass wrote it."""
    return next((c.get("reason") for c in ctx.status.get("conditions") or []
                 if isinstance(c, dict) and c.get("type") == st.ConditionType.READY), None)


async def master_lost(reconciler: Any, ctx: Context, session: PoolSession, spec: XenPoolSpec,
                      lost: XenNoMaster) -> Outcome:
    since = ctx.status.get("masterUnreachableSince")
    if not since:  # to the millisecond: the operator lost the master here
        since = _now()
        await ctx.checkpoint({"masterUnreachableSince": since})
    by_address = {m.address: m.name for m in spec.members}
    supporters = {address: why[len(SUPPORTER):] for address, why in lost.unreachable.items()
                  if why.startswith(SUPPORTER) and address in by_address}
    if not supporters:
        raise ReconcileError(Reason.MASTER_UNREACHABLE, str(lost), delay=30.0, conditions=_unreachable(str(lost)))
    old = ", ".join(sorted({by_address.get(a, a) for a in supporters.values()})) or "the master"
    fields: dict[str, Any] = {"masterUnreachableSince": since}
    if (ctx.status.get("ha") or {}).get("enabled"):  # as last seen: a supporter without a master cannot tell
        message = f"master {old} does not answer since {since}; HA is on, so XenServer elects a new master"
        return _waiting(st.progressing(Reason.MASTER_LOST_HA_WILL_RECOVER, message), fields, 10.0)
    policy = spec.master_failover
    if policy.policy == "Disabled":
        message = (f"master {old} does not answer since {since} and HA is off; masterFailover.policy is Disabled: "
                   "recover it, or let the operator fail over (EmergencyTransition)")
        return _waiting(st.progressing(Reason.MASTER_UNREACHABLE, message), fields, 30.0)
    if spec.management_policy == "Observe":  # read-only: a failover is a change like any other
        message = (f"master {old} does not answer since {since} and HA is off; managementPolicy is Observe: the "
                   "operator does not fail over")
        return _waiting(st.progressing(Reason.MASTER_UNREACHABLE, message), fields, 30.0)
    verdict = decide(spec, await supporters_view(reconciler.ssh, ctx, spec, session.endpoint.port, supporters))
    if verdict.chosen is None:
        return await _refused(ctx, verdict, old, since, fields)
    confirmed = ctx.status.get("supportersLostMasterSince")
    if not confirmed:  # the delay is counted from the first pass the supporters agreed
        confirmed = _now()
        await ctx.checkpoint({"supportersLostMasterSince": confirmed})
    fields["supportersLostMasterSince"] = confirmed
    waited = _seconds_since(confirmed)
    if waited < policy.delay_seconds:
        left = policy.delay_seconds - waited
        message = (f"master {old} does not answer the operator since {since} nor its supporters since {confirmed} "
                   f"({verdict.message}); failing over in {left:.0f}s unless it returns")
        return _waiting(st.progressing(Reason.MASTER_UNREACHABLE, message), fields, min(left, 30.0) + 0.5)
    return await _transition(reconciler, ctx, session, spec, verdict, old, since, confirmed)


async def _refused(ctx: Context, verdict: Verdict, old: str, since: str, fields: dict[str, Any]) -> Outcome:
    """No failover: the supporters do not confirm that the master is gone (or cannot be asked)."""
    if ctx.status.get("supportersLostMasterSince"):  # their agreement must last the whole delay
        await ctx.checkpoint({"supportersLostMasterSince": None})
    fields["supportersLostMasterSince"] = None
    message = f"master {old} does not answer the operator since {since}, but no failover: {verdict.message}"
    if _last_reason(ctx) != verdict.reason:
        ctx.event("Warning", verdict.reason, message)
    return _waiting(st.progressing(verdict.reason, message), fields, 30.0)


async def _transition(reconciler: Any, ctx: Context, session: PoolSession, spec: XenPoolSpec, verdict: Verdict,
                      old: str, since: str, confirmed: str) -> Outcome:
    assert verdict.chosen is not None
    chosen = verdict.chosen
    name = next((m.name for m in spec.members if m.address == chosen), chosen)
    ctx.event("Warning", "MasterFailover", f"master {old} unreachable since {since} with HA off, and from its "
              f"supporters since {confirmed} ({verdict.message}): emergency transition of {name} to master")
    await session.local(chosen).call("pool.emergency_transition_to_master")
    master = PoolSession([chosen], session.username, session._password, session.endpoint)
    try:
        deadline = time.monotonic() + reconciler.change_timeout
        while True:
            try:
                if await master.connect() == chosen:
                    break
            except XenAPIError:
                pass  # HOST_STILL_BOOTING while its xapi restarts as master
            if time.monotonic() > deadline:
                raise ReconcileError(Reason.FAILOVER_TIMEOUT, f"{name} did not answer as master after the emergency "
                                     "transition", delay=30.0)
            await asyncio.sleep(reconciler.poll)
        recovered = await master.call("pool.recover_slaves")
    finally:
        await master.close()
    ctx.event("Normal", "Applied", f"{name} is the pool master; recover_slaves re-pointed {len(recovered)} host(s)")
    await ctx.checkpoint({"masterUnreachableSince": None, "supportersLostMasterSince": None})
    message = f"failed over from {old} to {name}"
    return Outcome(conditions=[*st.progressing(Reason.MASTER_FAILED_OVER, message),
                               st.ConditionState(st.ConditionType.REACHABLE, "True", st.Reason.CONNECTED,
                                                 f"pool master {chosen}")],
                   fields={"masterUnreachableSince": None, "supportersLostMasterSince": None, "master": name},
                   requeue_after=1.0)
