"""What maintenance a KvmHost is due, and why (pure): (spec, the probed host, CloudStack's record of it, the last
maintenance recorded in status, now) → the request, whether the host reboots, the package changes made on it
while it is empty — or nothing.

- A reboot: the host booted before `maintenance.restartAfter` (once that time has passed; a boot time that is not
  known counts as before) and no completed maintenance recorded that request (so a host is rebooted once per
  request, whatever its clock or the rounding of its boot time); or the host says it needs one (`rebootRequired`)
  and `rebootWhenRequired` is set.
- A package change: the installed cloudstack-agent is not the pinned version, the host is registered in
  CloudStack and `packageChanges` is UnderMaintenance (plan.agent_change; the host plan leaves it out).
- Nothing more for a generation whose maintenance failed: the failure stands (Stalled) until the spec changes.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from ...api.kvmhost import HostMaintenanceStatus, KvmHostSpec
from ..base import Action
from .observed import HostState
from .plan import agent_change


@dataclass(frozen=True)
class Due:
    """The maintenance a host is due: `request` says why (it is recorded and compared), `reboot` whether the host
    reboots, `changes` the package changes (`cloudstack-agent 4.19.1.0 → 4.20.0.0`)."""

    request: str
    reboot: bool
    changes: tuple[str, ...] = ()


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def restart_request(spec: KvmHostSpec) -> str:
    return f"restartAfter {spec.maintenance.restart_after}" if spec.maintenance.restart_after else ""


def uses_maintenance(spec: KvmHostSpec) -> bool:
    """Whether an agent version change on a registered host waits for maintenance (the host plan defers it)."""
    return spec.cloudstack is not None and spec.maintenance.package_changes == "UnderMaintenance"


def due(spec: KvmHostSpec, host: HostState, in_cloudstack: dict[str, Any] | None,
        last: HostMaintenanceStatus | None, now: datetime.datetime) -> Due | None:
    """The maintenance due now, or None. `in_cloudstack`: the host's CloudStack record (None: not registered, or
    not looked up)."""
    maintenance = spec.maintenance
    reasons: list[str] = []
    reboot = False
    restart = restart_request(spec)
    if maintenance.restart_after:
        wanted = parse_time(maintenance.restart_after)
        done = last is not None and last.phase == "Completed" and restart in last.request.split("; ")
        booted_before = host.boot_time is None or host.boot_time < wanted.timestamp()
        if wanted <= now and booted_before and not done:
            reasons.append(restart)
            reboot = True
    if maintenance.reboot_when_required and host.reboot_required:
        by = f" by {', '.join(host.reboot_required_by)}" if host.reboot_required_by else ""
        reasons.append(f"reboot required{by}")
        reboot = True
    changes: tuple[str, ...] = ()
    change = agent_change(spec, host)
    if change is not None and in_cloudstack is not None and uses_maintenance(spec):
        changes = (f"cloudstack-agent {change[0]} → {change[1]}",)
        reasons.append(changes[0])
    if not reasons:
        return None
    return Due(request="; ".join(reasons), reboot=reboot, changes=changes)


def group_of(spec: KvmHostSpec) -> str:
    """The maintenance group: `maintenance.group`, else the CloudStack cluster, else `default`."""
    if spec.maintenance.group:
        return spec.maintenance.group
    return spec.cloudstack.cluster if spec.cloudstack is not None else "default"


@dataclass(frozen=True)
class Maintain(Action):
    """The host's maintenance as a plan lists it (under Observe and in `stackops plan`); maintenance.py takes the
    steps."""

    request: str
    group: str
    reboot: bool
    changes: tuple[str, ...]
    cloudstack: bool

    disruptive = True
    operation = "change"

    def describe(self) -> str:
        steps = [f"take a maintenance slot of group {self.group}"]
        if self.cloudstack:
            steps.append("CloudStack maintenance (its VMs migrated away)")
        steps += [f"install {change}" for change in self.changes]
        if self.reboot:
            steps.append("reboot and wait for a clean probe")
        if self.cloudstack:
            steps.append("cancel the maintenance, Up and its state as before")
        steps.append("release the slot")
        return f"maintenance ({self.request}): " + ", ".join(steps)
