"""A host's turn as CloudStack sees it: `prepareHostForMaintenance` before the host is touched (CloudStack moves its
VMs to Up and Enabled peers; a peer already in maintenance is refused by CloudStack itself), and once the host is
back and Up again, `cancelHostMaintenance` (→ Enabled)."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from ... import status as st
from ...drivers.cloudstack import CloudStackError
from ..base import ReconcileError
from .cluster import ClusterLink

MAINTENANCE = ("PrepareForMaintenance", "ErrorInPrepareForMaintenance", "Maintenance", "ErrorInMaintenance")


async def host_at(link: ClusterLink, address: str) -> dict[str, Any] | None:
    if await link.load() is None:
        return None
    return next((h for h in await link.hosts() if h.get("ipaddress") == address), None)


async def blockers(link: ClusterLink, addresses: dict[str, str]) -> list[str]:
    """What in CloudStack stops a roll from starting: a pool host that is not Up and Enabled, or a host of the
    cluster in (or preparing for) maintenance. `addresses`: address → member name."""
    if await link.load() is None:
        return []
    found = []
    for host in await link.hosts():
        name = addresses.get(str(host.get("ipaddress")), str(host.get("name")))
        if host.get("resourcestate") in MAINTENANCE:
            found.append(f"CloudStack host {name} is in {host.get('resourcestate')}")
        elif host.get("ipaddress") in addresses and (host.get("state") != "Up" or host.get("resourcestate") != "Enabled"):
            found.append(f"CloudStack host {name} is {host.get('state')} and {host.get('resourcestate')}")
    return found


async def drain(link: ClusterLink, address: str, name: str, timeout: float, poll: float) -> bool:
    """The host in CloudStack maintenance, its VMs moved away by CloudStack; False when CloudStack does not know
    the host (nothing to drain there)."""
    deadline = time.monotonic() + timeout
    try:
        host = await host_at(link, address)
        if host is None:
            return False
        if host.get("resourcestate") not in MAINTENANCE or host.get("resourcestate") == "ErrorInMaintenance":
            await link.client.run("prepareHostForMaintenance", id=host["id"], timeout=timeout)
            link.ctx.event("Normal", "Applied", f"put CloudStack host {host.get('name')} ({name}) into maintenance")
        while True:
            current = await host_at(link, address)
            state = current.get("resourcestate") if current else None
            if current is None or state == "Maintenance":
                return current is not None
            if state == "ErrorInMaintenance":
                raise ReconcileError(st.Reason.MAINTENANCE_FAILED, f"CloudStack could not move the VMs off host {name} "
                                     "(ErrorInMaintenance)", retry=False)
            if time.monotonic() > deadline:
                raise ReconcileError(st.Reason.MAINTENANCE_TIMEOUT, f"CloudStack host {name} did not reach "
                                     f"Maintenance in {timeout:.0f}s (it is {state})", retry=False)
            await asyncio.sleep(poll)
    except CloudStackError as error:
        raise ReconcileError(st.Reason.MAINTENANCE_FAILED, f"putting CloudStack host {name} into maintenance: "
                             f"{error}", retry=False) from None


async def give_back(link: ClusterLink, address: str, name: str, timeout: float, poll: float) -> None:
    """Once CloudStack sees the host Up again: its maintenance cancelled, and Enabled."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            host = await host_at(link, address)
            if host is None or host.get("resourcestate") == "Enabled" and host.get("state") == "Up":
                return
            if host.get("state") == "Up" and host.get("resourcestate") in MAINTENANCE:
                await link.client.run("cancelHostMaintenance", id=host["id"], timeout=timeout)
                link.ctx.event("Normal", "Applied", f"cancelled the maintenance of CloudStack host {host.get('name')} "
                               f"({name})")
                continue
            if time.monotonic() > deadline:
                raise ReconcileError(st.Reason.MAINTENANCE_TIMEOUT, f"CloudStack host {name} is "
                                     f"{host.get('state')} and {host.get('resourcestate')} {timeout:.0f}s after its "
                                     "return", retry=False)
            await asyncio.sleep(poll)
    except CloudStackError as error:
        raise ReconcileError(st.Reason.MAINTENANCE_FAILED, f"cancelling the maintenance of CloudStack host {name}: "
                             f"{error}", retry=False) from None


async def all_up(link: ClusterLink, addresses: dict[str, str], timeout: float, poll: float) -> None:
    """Every pool host Up in CloudStack again before the next turn. Once the cluster is Managed again after the
    master's turn, CloudStack reconnects its hosts one by one (the master's agent may be back before the direct
    agent scan reaches the others), and it refuses to prepare a Disconnected host for maintenance ("Unable to
    prepare for maintenance host"). `addresses`: address → member name."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            if await link.load() is None:
                return
            waiting = [f"{addresses[h['ipaddress']]} is {h.get('state')}" for h in await link.hosts()
                       if h.get("ipaddress") in addresses and h.get("state") != "Up"]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise ReconcileError(st.Reason.MAINTENANCE_TIMEOUT, "CloudStack hosts not Up again "
                                     f"{timeout:.0f}s after the cluster was Managed: " + "; ".join(waiting),
                                     retry=False)
            await asyncio.sleep(poll)
    except CloudStackError as error:
        raise ReconcileError(st.Reason.MAINTENANCE_FAILED, f"listing the CloudStack hosts: {error}",
                             retry=False) from None


async def cancel_quietly(link: ClusterLink, address: str) -> str | None:
    """After a failed step: the host out of maintenance when CloudStack can take it back; what failed, else."""
    try:
        host = await host_at(link, address)
        if host is not None and host.get("resourcestate") in MAINTENANCE:
            await link.client.run("cancelHostMaintenance", id=host["id"], timeout=120.0)
    except CloudStackError as error:
        return str(error)
    return None
