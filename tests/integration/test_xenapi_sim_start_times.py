"""The host's other_config "boot_time" and "agent_start_time" in the lab XenAPI simulator, through the official SDK:
xapi sets both at every start (dbsync_slave.ml refresh_localhost_info) — boot_time from /proc/stat btime (when the
machine powered on), agent_start_time when xapi started —, written by OCaml's string_of_float ("1510282722.").
The lab runs on a ManualClock: the times move only when the test moves the lab's clock."""
from __future__ import annotations

import re

import XenAPI
import pytest

from support.xenapi import FAST, advance_until, events, login

from stackops_lab.clock import ManualClock
from stackops_lab.xenapi import XenHostSpec, XenLab

OCAML_FLOAT = re.compile(r"^[0-9]+\.[0-9]*$")


def pool_lab() -> XenLab:
    names = ["xen1", "xen2", "xen3"]
    return XenLab(hosts=[XenHostSpec(n) for n in names], pools=[names], timings=FAST, clock=ManualClock(),
                  vms_per_host=1)


def start_times(session: XenAPI.Session, host: str) -> tuple[str, str]:
    other_config = session.xenapi.host.get_other_config(host)
    boot_time, agent_start_time = other_config["boot_time"], other_config["agent_start_time"]
    assert OCAML_FLOAT.match(boot_time) and OCAML_FLOAT.match(agent_start_time), other_config
    return boot_time, agent_start_time


def test_every_host_has_its_start_times_from_the_lab_creation() -> None:
    with pool_lab() as lab:
        session = login(lab, "xen1")
        created = events(lab, "lab.created")[0]["time"]
        for host in session.xenapi.host.get_all():
            boot_time, agent_start_time = start_times(session, host)
            assert float(boot_time) == pytest.approx(created, abs=0.01)
            assert float(boot_time) <= float(agent_start_time) <= lab.clock.time() + 0.01  # 12 digits: 10 ms


def test_a_reboot_moves_boot_time_and_agent_start_time_and_a_xapi_restart_only_agent_start_time() -> None:
    with pool_lab() as lab:
        session = login(lab, "xen1")
        xen2 = session.xenapi.host.get_by_name_label("xen2")[0]
        first_boot, first_start = start_times(session, xen2)
        session.xenapi.host.disable(xen2)
        session.xenapi.host.reboot(xen2)
        advance_until(lab, lambda: events(lab, "host.booted"), what="xen2 rebooted")
        advance_until(lab, lambda: lab.status("xen2")["serving"], what="xen2 serving")
        boot_time, agent_start_time = start_times(session, xen2)
        assert float(boot_time) > float(first_boot) and float(agent_start_time) > float(first_start)
        (booted,) = events(lab, "host.booted")
        assert float(boot_time) == pytest.approx(booted["time"], abs=0.01)
        assert float(agent_start_time) >= float(boot_time)

        lab.restart_xapi("xen2")
        advance_until(lab, lambda: start_times(session, xen2)[1] != agent_start_time, what="xen2's xapi restarted")
        assert lab.status("xen2")["serving"] is True
        restarted_boot, restarted_start = start_times(session, xen2)
        assert restarted_boot == boot_time  # the machine did not reboot: /proc/stat btime is the same
        assert float(restarted_start) >= float(agent_start_time) + FAST.xapi_restart - 0.01
        (restart,) = events(lab, "xapi.restart")
        assert float(restarted_start) == pytest.approx(restart["time"] + FAST.xapi_restart, abs=0.05)
