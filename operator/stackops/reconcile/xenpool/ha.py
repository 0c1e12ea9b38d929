"""Pool HA switched on or off (pool.enable_ha / pool.disable_ha, each a xapi task), by the HA dance of membership
changes, the spec's HA actions and the rolling maintenance alike.

xapi runs one HA switch at a time and refuses another meanwhile (HA_ENABLE_IN_PROGRESS / HA_DISABLE_IN_PROGRESS).
An operator that died while a switch ran finds it still under way on restart: the switch is waited for (asked
again until xapi takes it or HA is as wanted), and a refusal after which the pool has HA as wanted (HA_IS_ENABLED /
HA_NOT_ENABLED: the earlier switch has just ended) is no failure.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ...drivers.xenapi import PoolSession, XenAPIError


async def enable(session: PoolSession, sr_uuid: str, configuration: dict[str, str], *, timeout: float,
                 poll: float) -> None:
    """HA on with `configuration`, its statefile on the SR `sr_uuid` (empty: xapi picks one)."""
    async def change() -> None:
        srs = [await session.call("SR.get_by_uuid", sr_uuid)] if sr_uuid else []
        await session.task("pool.enable_ha", srs, configuration, timeout=timeout, poll=poll)

    await switch_ha(session, True, change, timeout=timeout, poll=poll)


async def disable(session: PoolSession, *, timeout: float, poll: float) -> None:
    await switch_ha(session, False, lambda: session.task("pool.disable_ha", timeout=timeout, poll=poll),
                    timeout=timeout, poll=poll)


async def switch_ha(session: PoolSession, enabled: bool, change: Callable[[], Awaitable[Any]], *, timeout: float,
                    poll: float) -> None:
    """`change()`, asked again while xapi says the same switch is in progress (up to `timeout`); a refusal after
    which the pool has HA as wanted is taken as done."""
    busy = "HA_ENABLE_IN_PROGRESS" if enabled else "HA_DISABLE_IN_PROGRESS"
    deadline = time.monotonic() + timeout
    while True:
        try:
            await change()
            return
        except XenAPIError as error:
            if await ha_enabled(session) == enabled:
                return
            if error.code != busy or time.monotonic() > deadline:
                raise
        await asyncio.sleep(poll)


async def ha_enabled(session: PoolSession) -> bool:
    """pool.ha_enabled as the master has it now (one call)."""
    return any(bool(pool.get("ha_enabled")) for pool in (await session.records("pool")).values())
