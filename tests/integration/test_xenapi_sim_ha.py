"""Liveness and HA failover in the lab XenAPI simulator, through the official SDK: dead hosts turn
not-live, a two-host HA pool fences itself when one host dies (the seeds' pitfall) and its hosts come back
disabled, a three-host HA pool elects a new master, and without HA only
pool.emergency_transition_to_master + pool.recover_slaves bring a pool back from a dead master.

HA timeouts are scaled by XenTimings.ha_time_scale (0.01): timeout=20 takes 0.2 s, a boot-join 0.8 s. A test that
looks at a state lasting only until the next transition (a host not yet declared dead, a fenced host down, a host
waiting in emergency mode) runs its lab on a ManualClock and moves the lab's time itself."""
from __future__ import annotations

import pytest
import XenAPI

from support.xenapi import FAST, XENAPI_DOWN, advance_until, blocking, events, failure, login
from support.wait import wait_for

from stackops_lab.clock import ManualClock
from stackops_lab.xenapi import XenHostSpec, XenLab


def enable_ha(session: XenAPI.Session, timeout: str = "20") -> None:
    nfs = next(ref for ref, sr in session.xenapi.SR.get_all_records().items() if sr["shared"])
    session.xenapi.pool.enable_ha([nfs], {"timeout": timeout})


def pool_lab(count: int, manual: bool = False) -> XenLab:
    names = [f"xen{i + 1}" for i in range(count)]
    return XenLab(hosts=[XenHostSpec(n) for n in names], pools=[names], timings=FAST,
                  clock=ManualClock() if manual else None)


def test_without_ha_a_dead_host_turns_not_live() -> None:
    with pool_lab(2, manual=True) as lab:
        session = login(lab, "xen1")
        lab.kill("xen2")
        with pytest.raises(ConnectionRefusedError):
            XenAPI.Session(lab.url("xen2")).xenapi.login_with_password("root", lab.password)
        xen2 = session.xenapi.host.get_by_name_label("xen2")[0]
        metrics = session.xenapi.host.get_metrics(xen2)
        lab.scheduler.advance(FAST.liveness - FAST.tick)
        assert session.xenapi.host_metrics.get_live(metrics) is True  # not yet: the liveness delay
        advance_until(lab, lambda: not session.xenapi.host_metrics.get_live(metrics), what="xen2 not live")
        (killed,), (dead,) = events(lab, "host.killed"), events(lab, "host.dead")
        assert dead["t"] - killed["t"] >= FAST.liveness and dead["reason"] == "liveness"
        assert failure(session.xenapi.host.disable, xen2) == ["HOST_OFFLINE", xen2]
        lab.revive("xen2")
        advance_until(lab, lambda: session.xenapi.host_metrics.get_live(metrics), what="xen2 live again")
        assert session.xenapi.host.get_enabled(xen2) is True  # no HA: a crash does not disable it
        assert failure(XenAPI.Session(lab.url("xen2")).xenapi.login_with_password, "root", lab.password) == [
            "HOST_IS_SLAVE", "127.0.1.10"]


def test_two_host_ha_pool_fences_itself_and_hosts_come_back_disabled() -> None:
    with pool_lab(2, manual=True) as lab:
        blocking(lab, enable_ha, login(lab, "xen1"))
        lab.kill("xen1")
        (fenced,) = advance_until(lab, lambda: events(lab, "host.fenced"), what="xen2 fences")
        assert (fenced["host"], fenced["reason"]) == ("xen2", "isolated")
        assert lab.status("xen2")["power"] == "down"  # the lab's time stands still: it stays down
        (killed,) = events(lab, "host.killed")
        assert fenced["t"] - killed["t"] >= FAST.ha_seconds(20)  # once xen1 was silent for the HA timeout
        # alone it can never form a liveset: it keeps fencing (the seeds' two-host pitfall)
        advance_until(lab, lambda: [e for e in events(lab, "host.fenced") if e["reason"] == "boot-join"],
                      what="fence loop")
        lab.revive("xen1")
        advance_until(lab, lambda: events(lab, "ha.liveset_formed"), what="both hosts up together")
        session = advance_until(lab, lambda: login(lab, "xen1"), what="xen1 master again")
        hosts = session.xenapi.host.get_all_records()
        assert {h["name_label"]: h["enabled"] for h in hosts.values()} == {"xen1": False, "xen2": False}
        pool = session.xenapi.pool.get_all()[0]
        assert session.xenapi.pool.get_ha_enabled(pool) is True
        advance_until(lab, lambda: all(session.xenapi.host_metrics.get_live(h["metrics"]) for h in hosts.values()),
                      what="both live")
        for ref in hosts:
            session.xenapi.host.enable(ref)  # `xe host-enable` after the crash
        assert {h["enabled"] for h in session.xenapi.host.get_all_records().values()} == {True}


def test_three_host_ha_pool_elects_a_new_master() -> None:
    with pool_lab(3) as lab:
        session = login(lab, "xen1")
        enable_ha(session)
        protected = sorted(vm["name_label"] for vm in session.xenapi.VM.get_all_records().values()
                           if vm["resident_on"] == session.xenapi.pool.get_master(session.xenapi.pool.get_all()[0])
                           and not vm["is_control_domain"])
        lab.kill("xen1")
        (changed,) = wait_for(lambda: events(lab, "master.changed"), what="HA elects a master", timeout=10,
                              ignoring=XENAPI_DOWN)
        assert (changed["old"], changed["new"], changed["reason"]) == ("xen1", "xen2", "ha")
        assert events(lab, "host.fenced") == []
        new = wait_for(lambda: login(lab, "xen2"), what="xen2 serving as master", timeout=10, ignoring=XENAPI_DOWN)
        xen1 = new.xenapi.host.get_by_name_label("xen1")[0]
        assert new.xenapi.host_metrics.get_live(new.xenapi.host.get_metrics(xen1)) is False
        assert failure(XenAPI.Session(lab.url("xen3")).xenapi.login_with_password, "root", lab.password) == [
            "HOST_IS_SLAVE", "127.0.1.11"]
        vms = {vm["name_label"]: vm for vm in new.xenapi.VM.get_all_records().values()}
        assert protected == ["xen1-vm1", "xen1-vm2"]
        assert vms["xen1-vm1"]["power_state"] == "Running" and vms["xen1-vm1"]["resident_on"] != xen1  # "restart"
        assert vms["xen1-vm2"]["power_state"] == "Halted"  # unprotected
        lab.revive("xen1")
        wait_for(lambda: lab.status("xen1")["serving"], what="xen1 back", timeout=10, ignoring=XENAPI_DOWN)
        assert lab.status("xen1")["role"] == "slave" and lab.status("xen1")["master_address"] == "127.0.1.11"
        assert new.xenapi.host.get_enabled(xen1) is False
        wait_for(lambda: new.xenapi.host_metrics.get_live(new.xenapi.host.get_metrics(xen1)), what="xen1 live",
                 timeout=10, ignoring=XENAPI_DOWN)


def test_without_ha_a_dead_master_needs_an_emergency_transition() -> None:
    with pool_lab(3, manual=True) as lab:
        lab.kill("xen1")
        lab.scheduler.advance(FAST.liveness + 5 * FAST.tick)  # well past the liveness delay, in the lab's time
        for name in ("xen2", "xen3"):  # the supporters keep naming their dead master
            assert failure(XenAPI.Session(lab.url(name)).xenapi.login_with_password, "root", lab.password) == [
                "HOST_IS_SLAVE", "127.0.1.10"]
        assert events(lab, "host.dead") == []  # a dead master updates nothing
        local = XenAPI.Session(lab.url("xen2"))
        local.slave_local_login_with_password("root", lab.password)
        assert failure(local.xenapi.pool.get_all) == ["HOST_IS_SLAVE", "127.0.1.10"]  # only emergency calls
        local.xenapi.pool.emergency_transition_to_master()
        session = advance_until(lab, lambda: login(lab, "xen2"), what="xen2 master")
        assert failure(XenAPI.Session(lab.url("xen3")).xenapi.login_with_password, "root", lab.password) == [
            "HOST_IS_SLAVE", "127.0.1.10"]
        recovered = session.xenapi.pool.recover_slaves()
        assert [session.xenapi.host.get_name_label(ref) for ref in recovered] == ["xen3"]
        advance_until(lab, lambda: lab.status("xen3")["serving"], what="xen3 restarted")
        assert failure(XenAPI.Session(lab.url("xen3")).xenapi.login_with_password, "root", lab.password) == [
            "HOST_IS_SLAVE", "127.0.1.11"]
        xen1 = session.xenapi.host.get_by_name_label("xen1")[0]
        advance_until(lab, lambda: not session.xenapi.host_metrics.get_live(session.xenapi.host.get_metrics(xen1)),
                      what="the old master not live")
        lab.revive("xen1")  # it finds another master in its database and becomes its supporter
        advance_until(lab, lambda: lab.status("xen1")["serving"] and lab.status("xen1")["role"] == "slave",
                      what="xen1 back")
        assert failure(XenAPI.Session(lab.url("xen1")).xenapi.login_with_password, "root", lab.password) == [
            "HOST_IS_SLAVE", "127.0.1.11"]
        assert [(e["new"], e["reason"]) for e in events(lab, "master.changed")] == [("xen2", "emergency")]


def test_emergency_ha_disable_breaks_a_fence_loop() -> None:
    with pool_lab(2, manual=True) as lab:
        blocking(lab, enable_ha, login(lab, "xen1"), "30")
        lab.kill("xen2")
        advance_until(lab, lambda: events(lab, "host.fenced"), what="xen1 fences")
        local = XenAPI.Session(lab.url("xen1"))
        advance_until(lab, lambda: local.slave_local_login_with_password("root", lab.password) or True,
                      what="xen1 booting (emergency mode)")
        # the lab's time stands still: xen1 waits for a liveset (and would fence again) until the clock moves
        assert lab.status("xen1")["xapi"] == "starting" and lab.status("xen1")["ha_armed"] is True
        local.xenapi.host.emergency_ha_disable(False)
        session = advance_until(lab, lambda: login(lab, "xen1"), what="xen1 serving without HA")
        assert session.xenapi.pool.get_ha_enabled(session.xenapi.pool.get_all()[0]) is False
        assert failure(local.xenapi.host.emergency_ha_disable, False) == ["HA_NOT_ENABLED"]
