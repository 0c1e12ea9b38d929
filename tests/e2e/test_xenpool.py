"""The XenPool reconciler against the lab XenAPI (per-host XML-RPC endpoints, one pool database per pool), in
process: a standalone member is joined and HA enabled with the explicit timeout; the HA dance around a join, and
an operator that dies in the middle of it; the three-host rule; a cloned host; drift under Observe."""
from __future__ import annotations

import datetime
from typing import Any

import pytest
from pydantic import SecretStr
from support.xenpool import FAST, SECRET, Driver, condition, lab, lab_time_runs, ready, spec_for

from stackops.reconcile.base import ReconcileError
from stackops.reconcile.xenpool import XenPoolReconciler
from stackops.reconcile.xenpool.actions import DisableHA
from stackops_lab.clock import ManualClock
from stackops_lab.xenapi import XenLab

def events(xen: XenLab, name: str) -> list[dict[str, Any]]:
    return [e for e in xen.audit() if e.get("event") == name]


def test_a_standalone_member_is_joined_and_ha_enabled_with_the_explicit_timeout() -> None:
    names = ["xen1", "xen2", "xen3"]
    with lab(names, [["xen1", "xen2"], ["xen3"]]) as xen:
        driver = Driver(xen, spec_for(xen, names))
        outcome = driver.converge()
        assert ready(outcome), outcome.conditions
        pool = xen.pool_of("xen1")
        assert sorted(pool["members"]) == names and pool["ha_enabled"]
        assert pool["ha_configuration"].get("timeout") == "180"
        assert outcome.fields["master"] == "xen1" and outcome.fields["hostCount"] == 3
        assert outcome.fields["ha"]["enabled"] and outcome.fields["ha"]["timeoutSeconds"] == 180
        assert outcome.fields["vmsWithHARestartPriority"] == []
        assert [e["event"] for e in xen.audit() if e["event"] in ("pool.join", "ha.enabled")] == \
            ["pool.join", "ha.enabled"], "joined first, HA after"
        # converged: another pass changes nothing
        before = len([e for e in xen.audit() if not e["event"].startswith("session")])
        again = driver.run()
        assert ready(again) and again.applied == []
        assert len([e for e in xen.audit() if not e["event"].startswith("session")]) == before


def test_join_inside_the_ha_dance_survives_an_operator_dying_in_the_middle() -> None:
    names = ["xen1", "xen2", "xen3", "xen4"]
    with lab(names, [["xen1", "xen2", "xen3"], ["xen4"]]) as xen:
        first = Driver(xen, spec_for(xen, names[:3]))
        assert ready(first.converge())
        assert xen.pool_of("xen1")["ha_enabled"]

        class Crash(Exception):
            pass

        class DiesAfterDisablingHA(XenPoolReconciler):
            async def execute(self, ctx, conn, action, facts):  # noqa: ANN001, ANN201
                await super().execute(ctx, conn, action, facts)
                if isinstance(action, DisableHA):
                    raise Crash("SIGKILL")

        dying = Driver(xen, spec_for(xen, names), DiesAfterDisablingHA(change_timeout=30, poll_seconds=0.1))
        dying.status = dict(first.status)
        with pytest.raises(Crash):
            dying.run()
        assert not xen.pool_of("xen1")["ha_enabled"], "HA was disabled when the operator died"
        record = dying.status["pendingOperation"]
        assert record["operation"] == "Join" and record["host"] == "xen4"
        assert record["haConfiguration"]["timeout"] == "180"

        # a new operator, with the spec changed meanwhile: it finishes the join, restores HA as recorded, then
        # applies the new timeout through the usual disable/enable
        restarted = Driver(xen, spec_for(xen, names, ha={"timeoutSeconds": 240, "heartbeatSR": {"type": "nfs"}}))
        restarted.status = dict(dying.status)
        outcome = restarted.converge()
        assert ready(outcome), outcome.conditions
        assert restarted.status.get("pendingOperation") is None
        pool = xen.pool_of("xen1")
        assert sorted(pool["members"]) == names and pool["ha_enabled"]
        assert pool["ha_configuration"]["timeout"] == "240"
        enabled = [e.get("configuration", {}).get("timeout") for e in events(xen, "ha.enabled")]
        assert enabled[-2:] == ["180", "240"], "HA came back as recorded before the spec's new timeout"
        assert any(r == "ResumingHADance" for _, r, _ in restarted.events)


def test_two_hosts_with_ha_stall_and_nothing_changes() -> None:
    names = ["xen1", "xen2"]
    with lab(names, [names]) as xen:
        driver = Driver(xen, spec_for(xen, names))
        outcome = driver.run()
        stalled = condition(outcome, "Stalled")
        assert stalled.status == "True" and stalled.reason == "TooFewHostsForHA"
        assert not xen.pool_of("xen1")["ha_enabled"] and not events(xen, "ha.enabled")


def test_a_cloned_host_is_not_joined() -> None:
    names = ["xen1", "xen2", "xen3", "xen4"]
    with lab(names, [["xen1", "xen2", "xen3"], ["xen4"]]) as xen:
        xen.clone("xen4", from_host="xen1")
        outcome = Driver(xen, spec_for(xen, names)).run()
        stalled = condition(outcome, "Stalled")
        assert stalled.status == "True" and stalled.reason == "DuplicateHostUUID", outcome.conditions
        assert not events(xen, "pool.join")


def test_observe_lists_the_ha_restart_priorities_and_clear_removes_them() -> None:
    names = ["xen1", "xen2", "xen3"]
    with lab(names, [names]) as xen:
        driver = Driver(xen, spec_for(xen, names, managementPolicy="Observe"))
        observed = driver.run()
        assert condition(observed, "Ready").reason == "DriftObserved"
        listed = observed.fields["vmsWithHARestartPriority"]
        assert listed and not events(xen, "ha.enabled")
        managed = Driver(xen, spec_for(xen, names))
        outcome = managed.converge()
        assert ready(outcome) and outcome.fields["vmsWithHARestartPriority"] == []
        assert len(events(xen, "vm.ha_restart_priority")) == len(listed)


def test_wrong_password_is_reported_without_it() -> None:
    names = ["xen1", "xen2", "xen3"]
    with lab(names, [names]) as xen:
        driver = Driver(xen, spec_for(xen, names))
        driver.secrets[SECRET]["password"] = SecretStr("not-the-password")
        with pytest.raises(ReconcileError) as refused:
            driver.run()
        assert refused.value.reason == "AuthenticationFailed" and "not-the-password" not in str(refused.value)


def test_master_killed_under_observe_is_never_failed_over() -> None:
    """Observe is read-only, failover included: past the delay, the operator only reports."""
    names = ["xen1", "xen2", "xen3"]
    with lab(names, [names]) as xen:
        spec = spec_for(xen, names, ha={"enabled": False}, managementPolicy="Observe",
                        masterFailover={"policy": "EmergencyTransition", "delaySeconds": 30})
        driver = Driver(xen, spec)
        driver.run()
        xen.kill("xen1")
        long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=600)
        driver.status["masterUnreachableSince"] = long_ago.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        # with HA off, the lab's supporters answer HOST_IS_SLAVE [the dead master] at once: every pass reports
        for _ in range(3):
            outcome = driver.run()
            assert condition(outcome, "Ready").reason == "MasterUnreachable", outcome.conditions
            assert "Observe" in condition(outcome, "Ready").message
        assert xen.pool_of("xen2")["master"] == "xen1"
        assert not events(xen, "master.changed")
        assert not any(r == "MasterFailover" for _, r, _ in driver.events)


def test_master_killed_with_ha_on_is_left_to_xenserver() -> None:
    """The lab's time stands still (a manual clock) from the kill until the test moves it past the HA timeout: the
    pass right after the kill sees the master lost and HA not yet recovered, whatever the machine's load."""
    names = ["xen1", "xen2", "xen3"]
    with lab(names, [names], clock=ManualClock()) as xen:
        spec = spec_for(xen, names, masterFailover={"policy": "EmergencyTransition", "delaySeconds": 30})
        driver = Driver(xen, spec)
        with lab_time_runs(xen):
            assert ready(driver.converge())
        xen.kill("xen1")
        outcome = driver.run()
        assert condition(outcome, "Ready").reason == "MasterLostHAWillRecover", outcome.conditions
        assert xen.pool_of("xen2")["master"] == "xen1" and not events(xen, "master.changed")
        assert not any(r == "MasterFailover" for _, r, _ in driver.events)
        xen.scheduler.advance(FAST.ha_seconds(180) + 10 * FAST.tick)  # past the HA timeout: XenServer elects
        assert xen.pool_of("xen2")["master"] in ("xen2", "xen3")
        assert [e["reason"] for e in events(xen, "master.changed")] == ["ha"], "XenServer's HA elected it"
        killed, elected = events(xen, "host.killed")[-1], events(xen, "master.changed")[-1]
        assert elected["t"] - killed["t"] >= FAST.ha_seconds(180), "not before the HA timeout"
        assert not any(r == "MasterFailover" for _, r, _ in driver.events)
