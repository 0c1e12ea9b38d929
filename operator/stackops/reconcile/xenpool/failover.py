"""A pool whose master does not answer.

With HA on (as last observed: a supporter without a master cannot be asked), XenServer elects a new master itself
(after the HA timeout): the operator only reports. With HA off
the supporters keep pointing at the dead master; under `masterFailover.policy: EmergencyTransition`, once the
master has been unreachable for `delaySeconds` (counted from `status.masterUnreachableSince`, so an operator
restart does not reset it), the operator picks a live supporter — the spec's `master` if it is one, else the
first live member in spec order —, calls `pool.emergency_transition_to_master` there over a `slave_local`
session, waits for it to answer as master and calls `pool.recover_slaves` (what the seed author proposed).
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

SUPPORTER = "supporter of "


def _seconds_since(stamp: str) -> float:
    then = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return (datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()


def _unreachable(message: str) -> list[st.ConditionState]:
    return [st.ConditionState("Reachable", "False", "MasterUnreachable", message)]


async def master_lost(reconciler: Any, ctx: Context, session: PoolSession, spec: XenPoolSpec,
                      lost: XenNoMaster) -> Outcome:
    since = ctx.status.get("masterUnreachableSince")
    if not since:  # to the millisecond: the delay is counted from here
        since = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        await ctx.checkpoint({"masterUnreachableSince": since})
    by_address = {m.address: m.name for m in spec.members}
    dead = {why[len(SUPPORTER):] for why in lost.unreachable.values() if why.startswith(SUPPORTER)}
    live = [m.address for m in spec.members if lost.unreachable.get(m.address, "").startswith(SUPPORTER)]
    if not live:
        raise ReconcileError("MasterUnreachable", str(lost), delay=30.0, conditions=_unreachable(str(lost)))
    old = ", ".join(sorted(by_address.get(a, a) for a in dead)) or "the master"
    fields: dict[str, Any] = {"masterUnreachableSince": since}
    if (ctx.status.get("ha") or {}).get("enabled"):  # as last seen: a supporter without a master cannot tell
        message = f"master {old} does not answer since {since}; HA is on, so XenServer elects a new master"
        return Outcome(conditions=[*st.progressing("MasterLostHAWillRecover", message), *_unreachable(message)],
                       fields=fields, requeue_after=10.0)
    policy = spec.master_failover
    if policy.policy == "Disabled":
        message = (f"master {old} does not answer since {since} and HA is off; masterFailover.policy is Disabled: "
                   "recover it, or let the operator fail over (EmergencyTransition)")
        return Outcome(conditions=[*st.progressing("MasterUnreachable", message), *_unreachable(message)],
                       fields=fields, requeue_after=30.0)
    if spec.management_policy == "Observe":  # read-only: a failover is a change like any other
        message = (f"master {old} does not answer since {since} and HA is off; managementPolicy is Observe: the "
                   "operator does not fail over")
        return Outcome(conditions=[*st.progressing("MasterUnreachable", message), *_unreachable(message)],
                       fields=fields, requeue_after=30.0)
    waited = _seconds_since(since)
    if waited < policy.delay_seconds:
        left = policy.delay_seconds - waited
        message = f"master {old} does not answer since {since}; failing over in {left:.0f}s unless it returns"
        return Outcome(conditions=[*st.progressing("MasterUnreachable", message), *_unreachable(message)],
                       fields=fields, requeue_after=min(left, 30.0) + 0.5)
    chosen = next((m.address for m in spec.members if m.name == spec.master and m.address in live), live[0])
    name = by_address.get(chosen, chosen)
    ctx.event("Warning", "MasterFailover", f"master {old} unreachable since {since} with HA off: "
              f"emergency transition of {name} to master")
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
                raise ReconcileError("FailoverTimeout", f"{name} did not answer as master after the emergency "
                                     "transition", delay=30.0)
            await asyncio.sleep(reconciler.poll)
        recovered = await master.call("pool.recover_slaves")
    finally:
        await master.close()
    ctx.event("Normal", "Applied", f"{name} is the pool master; recover_slaves re-pointed {len(recovered)} host(s)")
    await ctx.checkpoint({"masterUnreachableSince": None})
    message = f"failed over from {old} to {name}"
    return Outcome(conditions=[*st.progressing("MasterFailedOver", message),
                               st.ConditionState("Reachable", "True", "Connected", f"pool master {chosen}")],
                   fields={"masterUnreachableSince": None, "master": name}, requeue_after=1.0)
