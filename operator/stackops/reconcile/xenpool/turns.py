"""The pure part of rolling maintenance: (spec, facts, now, the last roll) → which updates to upload, and each
host's turn — in order, the master first — with the updates it lacks and whether it reboots.

A host reboots when an update it lacks says `restartHost` in its `after_apply_guidance` (unknown until the update
is uploaded: the plan says so), when it reports updates waiting for a reboot (`rebootWhenRequired`), or when it
booted before `restartAfter` (its `boot_time`, which xapi sets at each boot: once rebooted, it is after). So a
converged pool plans nothing, and a host is never rebooted twice for the same request.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from ...api.xenpool import RollStatus, XenPoolSpec, XenUpdate
from .observed import PoolFacts
from .plan import Problem
from .reasons import Reason

RESTART_HOST = "restartHost"


@dataclass(frozen=True)
class Turn:
    """One host's turn."""

    name: str
    address: str
    master: bool
    updates: tuple[str, ...]  # names, in spec order
    reboot: bool | None  # None: decided by the guidance of updates not uploaded yet
    why: tuple[str, ...] = ()  # why it reboots

    @property
    def work(self) -> bool:
        return bool(self.updates) or self.reboot is not False


@dataclass
class Roll:
    request: str = ""
    uploads: list[XenUpdate] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    not_yet: str = ""  # why nothing starts now although there may be work later (restartAfter in the future)

    @property
    def work(self) -> bool:
        return bool(self.uploads) or any(t.work for t in self.turns)


def request_of(spec: XenPoolSpec) -> str:
    """What a roll is for, as status records it."""
    maintenance = spec.maintenance
    parts = []
    if maintenance.updates:
        parts.append("updates " + ", ".join(u.name for u in maintenance.updates))
    if maintenance.restart_after:
        parts.append(f"restart after {maintenance.restart_after}")
    if maintenance.reboot_when_required:
        parts.append("reboots the hosts ask for")
    return "; ".join(parts)


def parse_time(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def booted_before(boot_time: str, moment: datetime.datetime) -> bool | None:
    """Whether a host whose `boot_time` (epoch seconds as xapi writes it) is this booted before `moment`."""
    try:
        booted = datetime.datetime.fromtimestamp(float(boot_time), datetime.timezone.utc)
    except (TypeError, ValueError, OverflowError):
        return None
    return booted < moment


def plan_roll(spec: XenPoolSpec, facts: PoolFacts, now: datetime.datetime,
              last: RollStatus | None = None, generation: int | None = None) -> Roll:
    maintenance = spec.maintenance
    roll = Roll(request=request_of(spec))
    if not roll.request:
        return roll
    if last is not None and last.phase == "Failed" and last.request == roll.request and last.generation == generation:
        roll.problems.append(Problem(last.reason or Reason.ROLL_FAILED, last.message or "the roll failed"))
        return roll
    known = facts.updates or {}
    roll.uploads = [u for u in maintenance.updates if u.name not in known]
    restart = parse_time(maintenance.restart_after) if maintenance.restart_after else None
    if restart is not None and restart > now:
        roll.not_yet = f"restartAfter {maintenance.restart_after} has not come yet"
        restart = None
    members = {m.address: m for m in spec.members}
    hosts = [h for h in facts.hosts.values() if h.address in members]
    order = {m.address: i for i, m in enumerate(spec.members)}
    hosts.sort(key=lambda h: (h.ref != facts.master_ref, order[h.address]))
    for host in hosts:
        lacking = tuple(u.name for u in maintenance.updates if u.name not in host.updates)
        why: list[str] = []
        unknown = False
        for name in lacking:
            update = known.get(name)
            if update is None:
                unknown = True
            elif RESTART_HOST in update.guidance:
                why.append(f"{name} asks for a host restart")
        if maintenance.reboot_when_required and host.requiring_reboot:
            why.append(f"{', '.join(host.requiring_reboot)} wait(s) for a reboot")
        if restart is not None:
            before = booted_before(host.boot_time, restart)
            if before is None:
                roll.problems.append(Problem(Reason.BOOT_TIME_UNKNOWN, f"host {members[host.address].name} reports "
                                             "no boot_time: restartAfter cannot tell whether it rebooted"))
            elif before:
                why.append(f"booted before {maintenance.restart_after}")
        reboot: bool | None = True if why else (None if unknown else False)
        roll.turns.append(Turn(members[host.address].name, host.address, host.ref == facts.master_ref, lacking,
                               reboot, tuple(why)))
    return roll


def blockers(spec: XenPoolSpec, facts: PoolFacts, roll: Roll) -> list[str]:
    """What stops a roll from starting: every member in the pool, live and enabled; and room for N−1: the VMs of
    each host to be emptied fit on the others' free memory (largest first, each on the host with the most room)."""
    found = []
    for member in spec.members:
        host = facts.host_by_address(member.address)
        if host is None:
            found.append(f"{member.name} is not in the pool")
        elif not host.live:
            found.append(f"{member.name} is not live")
        elif not host.enabled:
            found.append(f"{member.name} is disabled")
    if found:
        return found
    for turn in roll.turns:
        host = facts.host_by_address(turn.address)
        if turn.reboot is False or host is None:
            continue
        room = sorted((h.memory_free for h in facts.hosts.values() if h.ref != host.ref and h.live and h.enabled),
                      reverse=True)
        for size in host.vm_memory:
            if not room or room[0] < size:
                need = sum(host.vm_memory) >> 20
                free = sum(h.memory_free for h in facts.hosts.values() if h.ref != host.ref) >> 20
                found.append(f"the VMs of {turn.name} ({need} MiB) do not fit on the other hosts ({free} MiB free, "
                             "no capacity for N-1)")
                break
            room[0] -= size
            room.sort(reverse=True)
    return found
