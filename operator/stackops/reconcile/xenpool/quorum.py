"""Whether a pool whose master does not answer the operator may be failed over: the supporters' own view (pure).

The operator not reaching the master proves nothing by itself: a partition between the operator and the master
alone, with the master alive and serving its supporters, would get a second master from an emergency transition
(split brain). So each live supporter — a member that answered `HOST_IS_SLAVE` — is asked from its dom0 whether
it reaches its master's management address (reach.py). The pool may be failed over only when a strict majority
of the live supporters cannot; a supporter whose view is unknown (no dom0 SSH, SSH failed, the probe could not
run) counts as not agreeing. The new master is one of the supporters that agree: the spec's `master` if it is
one, else the first in spec order.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...api.xenpool import XenPoolSpec
from .reasons import Reason


@dataclass(frozen=True)
class SupporterView:
    """One live supporter's answer. `reaches`: True (it connects to its master), False (it cannot: refused, timed
    out, no route), None (unknown: `detail` says why)."""

    address: str
    master: str  # the master address the supporter points at (HOST_IS_SLAVE)
    reaches: bool | None
    detail: str = ""


@dataclass(frozen=True)
class Verdict:
    """`chosen`: the supporter to make master once the delay has passed (a majority agrees the master is gone);
    None: no failover, `reason` and `message` say why."""

    chosen: str | None
    reason: str
    message: str


def decide(spec: XenPoolSpec, views: list[SupporterView]) -> Verdict:
    names = {m.address: m.name for m in spec.members}

    def listed(group: list[SupporterView]) -> str:
        return "; ".join(f"{names.get(v.address, v.address)}: {v.detail}" if v.detail
                         else names.get(v.address, v.address) for v in group)

    total = len(views)
    agree = [v for v in views if v.reaches is False]
    reach = [v for v in views if v.reaches is True]
    unknown = [v for v in views if v.reaches is None]
    if total == 0:
        return Verdict(None, reason=Reason.SUPPORTERS_VIEW_UNAVAILABLE, message="no live supporter answers: none can "
                       "confirm that the master is gone, so no supporter is made master")
    if 2 * len(agree) > total:
        order = [m.address for m in spec.members]
        candidates = sorted(agree, key=lambda v: order.index(v.address) if v.address in order else len(order))
        preferred = next((v for v in candidates if names.get(v.address) == spec.master), candidates[0])
        return Verdict(preferred.address, reason=Reason.MASTER_UNREACHABLE, message=f"{len(agree)} of {total} live "
                       f"supporter(s) cannot reach the master either ({listed(agree)})")
    counts = f"{len(agree)} of {total} live supporter(s) cannot reach the master, a majority must"
    if reach:
        return Verdict(None, reason=Reason.MASTER_UNREACHABLE_FROM_OPERATOR_ONLY,
                       message=f"the master answers its supporters but not the operator (a partition?): {counts}; "
                       f"still reaching it: {listed(reach)}" + (f"; unknown: {listed(unknown)}" if unknown else ""))
    return Verdict(None, reason=Reason.SUPPORTERS_VIEW_UNAVAILABLE, message="the supporters' own view of the master is "
                   f"needed before a failover: {counts}; unknown: {listed(unknown)}")
