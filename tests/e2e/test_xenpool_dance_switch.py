"""The HA dance of a membership change (a fourth host joined) survives an operator killed while xapi switches HA, in
process against the lab XenAPI: the operator dies right after xapi started pool.disable_ha (before the join) or
pool.enable_ha (after it); the lab holds that switch under way until the restarted operator has asked for the same
switch twice (xapi refuses it meanwhile: HA_DISABLE_IN_PROGRESS / HA_ENABLE_IN_PROGRESS). The restarted operator's
pass waits for the switch instead of failing, and the pool ends with four members and HA as recorded, HA switched
off and on once each."""
from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from support.xenpool import FAST, Hold, Killed, KilledDriver, ready, spec_for

from stackops_lab.xenapi import XenHostSpec, XenLab

NAMES = ["xen1", "xen2", "xen3", "xen4"]
@pytest.mark.parametrize("call,timing", [("pool.disable_ha", "ha_disable"), ("pool.enable_ha", "ha_enable")])
def test_an_operator_killed_while_ha_switches_in_the_dance_waits_for_the_switch(
        call: str, timing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from stackops.drivers.xenapi import PoolSession

    hosts = [XenHostSpec(n, vms=0 if n == "xen4" else None) for n in NAMES]  # as support.xenpool.lab has them
    timings = dataclasses.replace(FAST)  # this lab's own: the hold changes it
    with XenLab(hosts=hosts, pools=[NAMES[:3]], timings=timings, vms_per_host=1) as xen:
        driver = KilledDriver(xen, spec_for(xen, NAMES[:3]))
        assert ready(driver.converge())
        assert xen.pool_of("xen1")["ha_enabled"]
        since = len(xen.audit())

        original = PoolSession.task
        killed: list[str] = []

        async def task(self: PoolSession, name: str, *args: Any, **kwargs: Any) -> Any:
            if name == call and not killed:
                await self.call(f"Async.{name}", *args)  # xapi starts the switch
                killed.append(name)
                raise Killed(f"{name} under way")  # the process dies: no task.destroy, nothing else
            return await original(self, name, *args, **kwargs)

        monkeypatch.setattr(PoolSession, "task", task)
        hold = Hold(xen, call, timing)
        driver.spec = spec_for(xen, NAMES)
        outcome = driver.run()  # dies in the dance; the restarted operator's pass must not fail
        for _ in range(6):
            if ready(outcome):
                break
            outcome = driver.run()

        assert killed == [call] and driver.deaths == 1
        assert hold.calls >= 3, "the restarted operator met the switch under way and asked again"
        assert ready(outcome), outcome.conditions
        pool = xen.pool_of("xen1")
        assert sorted(pool["members"]) == NAMES
        assert pool["ha_enabled"] and pool["ha_configuration"]["timeout"] == "180", "HA as recorded"
        switched = [e["event"] for e in xen.audit()[since:] if e["event"] in ("ha.disabled", "ha.enabled")]
        assert switched == ["ha.disabled", "ha.enabled"], "HA switched off and on once each"
        assert driver.status.get("pendingOperation") is None
