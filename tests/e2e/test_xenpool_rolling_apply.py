"""A roll whose operator is killed while an update is being applied, in process against the lab XenAPI (a 7.1+ pool
through pool_update, a 6.x one through pool_patch): the operator dies right after xapi started the first apply
(xen1's, the master's turn, at step Updating); the lab holds that apply under way (XenTimings.update_apply) until
the restarted operator has asked for it twice — xapi refuses a second apply of the same update on the host
meanwhile (OTHER_OPERATION_IN_PROGRESS, the extension's lock / 6.x's host_patch not yet applied). The resumed roll
waits for it instead of failing, and ends with every host at the update level, applied and rebooted once, no VM
stopped, HA back."""
from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import XenAPI
from support.xenpool import FAST, Hold, Killed, KilledDriver, ready, roll, spec_for

from stackops_lab.xenapi import XenHostSpec, XenLab
from stackops_lab.xenapi.update_file import UpdateFile, UpdateServer

NAMES = ["xen1", "xen2", "xen3"]
def applied_updates(xen: XenLab, legacy: bool) -> dict[str, list[str]]:
    """Per host, the names of the updates (6.x: patches) it has applied, as the master tells it."""
    session = XenAPI.Session(xen.url("xen1"))
    session.xenapi.login_with_password(xen.username, xen.password, "2.0", "test")
    try:
        x = session.xenapi
        hosts = {r: h["name_label"] for r, h in x.host.get_all_records().items()}
        found: dict[str, list[str]] = {n: [] for n in hosts.values()}
        if legacy:
            patches = {r: p["name_label"] for r, p in x.pool_patch.get_all_records().items()}
            for record in x.host_patch.get_all_records().values():
                if record["applied"]:
                    found[hosts[record["host"]]].append(patches[record["pool_patch"]])
        else:
            names = {r: u["name_label"] for r, u in x.pool_update.get_all_records().items()}
            for ref, host in x.host.get_all_records().items():
                found[hosts[ref]] = [names[u] for u in host["updates"]]
        return found
    finally:
        session.xenapi.session.logout()


@pytest.mark.parametrize("legacy", [False, True], ids=["pool_update", "pool_patch-6.x"])
def test_an_operator_killed_while_an_update_is_applied_waits_for_that_apply(
        legacy: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from stackops.drivers.xenapi import PoolSession

    call = "pool_patch.apply" if legacy else "pool_update.apply"
    version = dict(product_version="6.5.0", platform_version="1.9.0", api_version=(2, 4)) if legacy else {}
    hosts = [XenHostSpec(n, **version) for n in NAMES]  # type: ignore[arg-type]
    timings = dataclasses.replace(FAST)  # this lab's own: the hold changes it
    with XenLab(hosts=hosts, pools=[NAMES], timings=timings, vms_per_host=1) as xen, UpdateServer() as server:
        driver = KilledDriver(xen, spec_for(xen, NAMES))
        assert ready(driver.converge(passes=10, pause=0.5))
        since = len(xen.audit())

        original = PoolSession.task
        killed: list[str] = []

        async def task(self: PoolSession, name: str, *args: Any, **kwargs: Any) -> Any:
            if name == call and not killed:
                await self.call(f"Async.{name}", *args)  # xapi starts the apply
                killed.append(name)
                raise Killed(f"{name} under way")  # the process dies: no task.destroy, nothing else
            return await original(self, name, *args, **kwargs)

        monkeypatch.setattr(PoolSession, "task", task)
        hold = Hold(xen, call, "update_apply")
        update = UpdateFile("XS65ESP1" if legacy else "XS82E070", after_apply_guidance=["restartHost"])
        url, sha256 = server.add(update)
        driver.spec = spec_for(xen, NAMES, maintenance={
            "updates": [{"name": update.name_label, "url": url, "sha256": sha256}], "hostTimeoutSeconds": 120})
        roll(driver)

        assert killed == [call] and driver.deaths == 1
        assert hold.calls >= 3, "the restarted operator met the apply under way and asked again"
        audit = xen.audit()[since:]
        assert [e["host"] for e in audit if e["event"] == "host.reboot"] == NAMES, "each host rebooted once"
        applied = [e["host"] for e in audit if e["event"] == call]  # host uuids, as each apply ended
        assert len(applied) == len(NAMES) and len(set(applied)) == len(NAMES), "each host's apply ran once"
        assert applied_updates(xen, legacy) == {n: [update.name_label] for n in NAMES}
        assert {vm: c["stops"] for vm, c in xen.vm_counts().items() if c["stops"]} == {}
        record = driver.status["maintenance"]
        assert record["phase"] == "Completed" and [h["step"] for h in record["hosts"]] == ["Done"] * len(NAMES)
        assert xen.pool_of("xen1")["ha_enabled"]
