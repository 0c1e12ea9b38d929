"""Waiting for a CloudStack host to reach `Maintenance` (CloudStack migrates its VMs away first), shared by the
KvmHost removal and the XenPool eject."""
from __future__ import annotations

import asyncio
import time

from ..drivers.cloudstack import CloudStackClient
from .. import status as st
from .base import ReconcileError

MAINTENANCE_TIMEOUT_SECONDS = 1800.0
MAINTENANCE_POLL_SECONDS = 2.0


async def wait_for_maintenance(client: CloudStackClient, host_id: str, name: str, *,
                               timeout: float = MAINTENANCE_TIMEOUT_SECONDS,
                               poll: float = MAINTENANCE_POLL_SECONDS) -> bool:
    """Until the host is in Maintenance; False when it is gone from CloudStack. ErrorInMaintenance (VMs that could
    not be migrated) and the timeout raise: the host is then not deleted."""
    deadline = time.monotonic() + timeout
    while True:
        hosts = await client.list("listHosts", id=host_id)
        if not hosts:
            return False
        state = hosts[0].get("resourcestate")
        if state == "Maintenance":
            return True
        if state == "ErrorInMaintenance":
            raise ReconcileError(st.Reason.MAINTENANCE_FAILED, f"CloudStack host {name} is in ErrorInMaintenance "
                                 "(its VMs could not be migrated away); not deleted", delay=60.0)
        if time.monotonic() > deadline:
            raise ReconcileError(st.Reason.MAINTENANCE_TIMEOUT, f"CloudStack host {name} did not reach Maintenance in "
                                 "time; not deleted yet", delay=60.0)
        await asyncio.sleep(poll)
