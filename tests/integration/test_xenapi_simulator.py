"""The lab XenAPI simulator at the protocol level, driven through the official SDK (`XenAPI` from PyPI):
envelopes, sessions, HOST_IS_SLAVE, pool HA enable/disable and its guards, async tasks, VM restart priority,
the vswitch controller, host enable/disable, the audit log and the CLI. Needs no Kubernetes.

What xapi does, and the simulator must do too, is cited from xapi's source in the simulator's modules
(stackops_lab/xenapi/*.py). Membership is in test_xenapi_sim_pool.py, liveness and HA failover in
test_xenapi_sim_ha.py.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from support.xenapi import FAST, XENAPI_DOWN, drive, events, failure, login
from support.wait import wait_for

from stackops_lab.clock import ManualClock
from stackops_lab.xenapi import XenHostSpec, XenLab

REPO = Path(__file__).resolve().parents[2]


def raw(session: XenAPI.Session, method: str, *params: Any) -> Any:
    """The envelope itself: XenAPI.Session is an xmlrpc ServerProxy; names it does not handle go straight out."""
    return getattr(session, method)(*params)


def shared_sr(session: XenAPI.Session) -> str:
    return next(ref for ref, sr in session.xenapi.SR.get_all_records().items() if sr["shared"])


@pytest.fixture
def lab() -> Iterator[XenLab]:
    """xen1 (master) + xen2 in a pool with NFS; xen3 standalone (local storage only)."""
    with XenLab(hosts=[XenHostSpec("xen1"), XenHostSpec("xen2"), XenHostSpec("xen3")], pools=[["xen1", "xen2"]],
                password="s3cret", timings=FAST) as simulator:
        yield simulator


# ------------------------------------------------------------------------------------------------ sessions


def test_every_host_has_its_own_endpoint_and_supporters_name_the_master(lab: XenLab) -> None:
    assert [lab.address(n) for n in ("xen1", "xen2", "xen3")] == ["127.0.1.10", "127.0.1.11", "127.0.1.12"]
    assert lab.url("xen2") == f"http://127.0.1.11:{lab.port}"
    session = login(lab, "xen1")
    hosts = session.xenapi.host.get_all_records()
    assert sorted(h["name_label"] for h in hosts.values()) == ["xen1", "xen2"]
    pool = session.xenapi.pool.get_all()[0]
    assert hosts[session.xenapi.pool.get_master(pool)]["address"] == "127.0.1.10"

    supporter = XenAPI.Session(lab.url("xen2"))
    assert failure(supporter.xenapi.login_with_password, "root", "s3cret") == ["HOST_IS_SLAVE", "127.0.1.10"]
    # the SDK does not follow it: the client reconnects to the address it names
    again = XenAPI.Session(f"http://{'127.0.1.10'}:{lab.port}/")
    again.xenapi.login_with_password("root", "s3cret")
    assert failure(XenAPI.Session(lab.url("xen1")).xenapi.login_with_password, "root", "wrong") == [
        "SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"]
    standalone = login(lab, "xen3")
    assert [h["name_label"] for h in standalone.xenapi.host.get_all_records().values()] == ["xen3"]
    assert standalone.API_version == "2.21"
    session.xenapi.session.logout()
    assert [e["on"] for e in events(lab, "session.login")].count("xen1") >= 2


def test_envelopes_are_xenapi_structs_never_faults(lab: XenLab) -> None:
    session = login(lab, "xen1")
    answer = raw(session, "pool.get_all_records", session.handle)
    assert answer["Status"] == "Success" and set(answer) == {"Status", "Value"}
    (pool,) = answer["Value"].values()
    assert pool["ha_enabled"] is False and pool["ha_host_failures_to_tolerate"] == "0"  # ints are strings
    assert pool["master"].startswith("OpaqueRef:") and pool["ha_configuration"] == {}
    metrics = session.xenapi.host_metrics.get_all_records()
    assert {m["live"] for m in metrics.values()} == {True}
    vms = session.xenapi.VM.get_all_records()
    assert sum(vm["is_control_domain"] for vm in vms.values()) == 2
    guests = [vm for vm in vms.values() if not vm["is_control_domain"]]
    assert len(guests) == 4 and {vm["power_state"] for vm in guests} == {"Running"}
    assert sorted(vm["ha_restart_priority"] for vm in guests) == ["", "", "restart", "restart"]

    assert raw(session, "pool.no_such_call", session.handle) == {
        "Status": "Failure", "ErrorDescription": ["MESSAGE_METHOD_UNKNOWN", "pool.no_such_call"]}
    assert raw(session, "pool.get_record", session.handle)["ErrorDescription"] == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "pool.get_record", "2", "1"]
    assert failure(session.xenapi.host.get_record, "OpaqueRef:nope") == ["HANDLE_INVALID", "host", "OpaqueRef:nope"]
    assert failure(session.xenapi.SR.get_by_uuid, "nope") == ["UUID_INVALID", "SR", "nope"]
    assert raw(session, "pool.get_all", "OpaqueRef:forged") == {
        "Status": "Failure", "ErrorDescription": ["SESSION_INVALID", "OpaqueRef:forged"]}
    host = session.xenapi.host.get_by_name_label("xen1")[0]
    session.xenapi.host.set_name_label(host, "xen1-renamed")
    assert session.xenapi.host.get_name_label(host) == "xen1-renamed"
    assert failure(session.xenapi.host.set_name_label, host, 7) == ["FIELD_TYPE_ERROR", "value"]


def test_an_expired_session_is_invalid_and_the_sdk_logs_in_again(lab: XenLab) -> None:
    session = login(lab, "xen1")
    old = session.handle
    lab.expire_sessions()
    assert raw(session, "pool.get_all", old)["ErrorDescription"] == ["SESSION_INVALID", old]
    assert len(session.xenapi.pool.get_all()) == 1  # SESSION_INVALID → the SDK logged in again and retried
    assert session.handle != old


# ------------------------------------------------------------------------------------------------ HA


def test_enable_ha_records_the_configuration_and_guards_membership_changes(lab: XenLab) -> None:
    session = login(lab, "xen1")
    pool = session.xenapi.pool.get_all()[0]
    nfs = shared_sr(session)
    session.xenapi.pool.enable_ha([nfs], {"timeout": "180"})
    record = session.xenapi.pool.get_record(pool)
    assert record["ha_enabled"] is True and record["ha_configuration"] == {"timeout": "180"}
    (statefile,) = record["ha_statefiles"]
    assert session.xenapi.VDI.get_SR(statefile) == nfs and session.xenapi.VDI.get_type(statefile) == "ha_statefile"
    (event,) = events(lab, "ha.enabled")
    assert event["configuration"] == {"timeout": "180"} and event["timeout"] == 180
    assert lab.pool_of("xen2")["ha_armed"] == {"xen1": True, "xen2": True}

    assert failure(session.xenapi.pool.enable_ha, [nfs], {"timeout": "180"}) == ["HA_IS_ENABLED"]
    xen2 = session.xenapi.host.get_by_name_label("xen2")[0]
    assert failure(session.xenapi.pool.eject, xen2) == ["HA_IS_ENABLED"]
    assert failure(session.xenapi.pool.designate_new_master, xen2) == ["HA_IS_ENABLED"]
    joiner = login(lab, "xen3")
    assert failure(joiner.xenapi.pool.join, "127.0.1.10", "root", "s3cret") == ["HA_IS_ENABLED"]
    local = XenAPI.Session(lab.url("xen2"))
    local.slave_local_login_with_password("root", "s3cret")
    assert failure(local.xenapi.pool.emergency_transition_to_master) == ["HA_IS_ENABLED"]
    assert failure(local.xenapi.pool.emergency_reset_master, "127.0.1.10") == ["HA_IS_ENABLED"]

    session.xenapi.pool.disable_ha()
    assert session.xenapi.pool.get_ha_enabled(pool) is False
    assert failure(session.xenapi.pool.disable_ha) == ["HA_NOT_ENABLED"]
    assert [e["configuration"] for e in events(lab, "ha.disabled")] == [{"timeout": "180"}]


def test_enable_ha_preconditions_follow_xapi(lab: XenLab) -> None:
    session = login(lab, "xen1")
    pool = session.xenapi.pool.get_all()[0]
    nfs = shared_sr(session)
    local = next(ref for ref, sr in session.xenapi.SR.get_all_records().items() if not sr["shared"])
    assert failure(session.xenapi.pool.enable_ha, [local], {"timeout": "180"}) == ["SR_HAS_NO_PBDS", local]
    assert failure(session.xenapi.pool.enable_ha, ["OpaqueRef:x"], {}) == ["HANDLE_INVALID", "SR", "OpaqueRef:x"]
    assert failure(session.xenapi.pool.enable_ha, [nfs], {"timeout": "5"}) == [
        "INTERNAL_ERROR", 'Failure("constraint violation: timeout >= 10")']
    # as in xapi, the configuration was written before the timeout was checked; HA stays off
    assert session.xenapi.pool.get_ha_configuration(pool) == {"timeout": "5"}
    assert session.xenapi.pool.get_ha_enabled(pool) is False
    assert failure(session.xenapi.pool.enable_ha, [nfs], {"timeout": "soon"}) == [
        "INTERNAL_ERROR", 'Failure("int_of_string")']
    assert failure(session.xenapi.pool.set_ha_host_failures_to_tolerate, pool, "-1") == [
        "INVALID_VALUE", "ha_host_failures_to_tolerate", "-1"]
    assert session.xenapi.pool.ha_compute_max_host_failures_to_tolerate() == "1"

    lab.kill("xen2")
    xen2 = session.xenapi.host.get_by_name_label("xen2")[0]
    wait_for(lambda: not session.xenapi.host_metrics.get_live(session.xenapi.host.get_metrics(xen2)),
             what="xen2 not live", timeout=10, ignoring=XENAPI_DOWN)
    assert failure(session.xenapi.pool.enable_ha, [nfs], {"timeout": "180"}) == ["HOST_OFFLINE", xen2]
    # a standalone host's own local SR qualifies (every host of its pool has a plugged PBD)
    alone = login(lab, "xen3")
    alone.xenapi.pool.enable_ha([], {"timeout": "60"})
    assert alone.xenapi.pool.get_ha_enabled(alone.xenapi.pool.get_all()[0]) is True


def test_async_enable_ha_is_a_task_and_blocks_other_ha_operations() -> None:
    # on a ManualClock the enable stays in progress until the test moves the clock past XenTimings.ha_enable
    with XenLab(hosts=[XenHostSpec("xen1"), XenHostSpec("xen2")], pools=[["xen1", "xen2"]], timings=FAST,
                clock=ManualClock()) as lab:
        session = login(lab, "xen1")
        pool = session.xenapi.pool.get_all()[0]
        nfs = shared_sr(session)
        task = session.xenapi.Async.pool.enable_ha([nfs], {"timeout": "120"})
        assert task.startswith("OpaqueRef:")
        record = session.xenapi.task.get_record(task)
        assert record["status"] == "pending" and record["name_label"] == "Async.pool.enable_ha"
        # the task's thread records the operation (pool.current_operations) once it runs
        wait_for(lambda: task in session.xenapi.pool.get_current_operations(pool), what="the enable in progress",
                 timeout=10, ignoring=XENAPI_DOWN)
        assert failure(session.xenapi.pool.enable_ha, [nfs], {"timeout": "120"}) == ["HA_ENABLE_IN_PROGRESS"]
        assert failure(session.xenapi.pool.disable_ha) == ["HA_ENABLE_IN_PROGRESS"]
        assert session.xenapi.task.get_status(task) == "pending"
        assert session.xenapi.pool.get_ha_enabled(pool) is False
        started = lab.clock.monotonic()
        drive(lab, lambda: session.xenapi.task.get_status(task) != "pending", what="task done")
        assert session.xenapi.task.get_status(task) == "success" and session.xenapi.task.get_result(task) == ""
        (enabled,) = events(lab, "ha.enabled")
        assert enabled["t"] - started == pytest.approx(FAST.ha_enable, abs=1e-3)  # the enable took its time
        assert session.xenapi.pool.get_current_operations(pool) == {}
        failed = session.xenapi.Async.pool.enable_ha([nfs], {"timeout": "120"})
        wait_for(lambda: session.xenapi.task.get_status(failed) != "pending", what="second task done", timeout=10,
                 ignoring=XENAPI_DOWN)
        assert session.xenapi.task.get_error_info(failed) == ["HA_IS_ENABLED"]
        assert session.xenapi.task.get_status(failed) == "failure"
        session.xenapi.task.destroy(failed)
        assert failure(session.xenapi.task.get_status, failed) == ["HANDLE_INVALID", "task", failed]


# ------------------------------------------------------------------------------------------------ VMs, hosts


def test_ha_restart_priority_values(lab: XenLab) -> None:
    session = login(lab, "xen1")
    vm = next(ref for ref, r in session.xenapi.VM.get_all_records().items() if r["ha_restart_priority"] == "restart")
    assert failure(session.xenapi.VM.set_ha_restart_priority, vm, "always") == [
        "INVALID_VALUE", "ha_restart_priority", "always"]
    session.xenapi.VM.set_ha_restart_priority(vm, "")
    assert session.xenapi.VM.get_ha_restart_priority(vm) == ""
    assert session.xenapi.VM.get_ha_always_run(vm) is False
    session.xenapi.VM.set_ha_restart_priority(vm, "best-effort")
    assert [(e["value"], e["previous"]) for e in events(lab, "vm.ha_restart_priority")] == [
        ("", "restart"), ("best-effort", "")]


def test_vswitch_controller_persists_in_the_pool_database(lab: XenLab) -> None:
    session = login(lab, "xen1")
    pool = session.xenapi.pool.get_all()[0]
    session.xenapi.pool.set_vswitch_controller("192.0.2.5")
    (controller,) = session.xenapi.SDN_controller.get_all_records().values()
    assert (controller["protocol"], controller["address"], controller["port"]) == ("ssl", "192.0.2.5", "6632")
    assert session.xenapi.pool.get_vswitch_controller(pool) == "192.0.2.5"
    assert failure(session.xenapi.SDN_controller.introduce, "ssl", "192.0.2.6", "0") == [
        "OPERATION_NOT_ALLOWED", "SDN controller has been configured. Please forget it first."]
    assert failure(session.xenapi.pool.set_vswitch_controller, "not-an-ip") == [
        "INVALID_IP_ADDRESS_SPECIFIED", "address"]

    lab.restart_xapi("xen1")  # unlike `ovs-vsctl set-manager`, it survives a toolstack restart
    wait_for(lambda: lab.status("xen1")["serving"], what="xapi back", timeout=10, ignoring=XENAPI_DOWN)
    session = login(lab, "xen1")
    (controller,) = session.xenapi.SDN_controller.get_all_records().values()
    assert controller["address"] == "192.0.2.5"

    session.xenapi.pool.set_vswitch_controller("192.0.2.7")
    assert [c["address"] for c in session.xenapi.SDN_controller.get_all_records().values()] == ["192.0.2.7"]
    session.xenapi.pool.set_vswitch_controller("")
    assert session.xenapi.SDN_controller.get_all() == []
    ref = session.xenapi.SDN_controller.introduce("ssl", "192.0.2.8", "0")
    assert session.xenapi.SDN_controller.get_port(ref) == "6632"
    session.xenapi.SDN_controller.forget(ref)
    assert [e["address"] for e in events(lab, "sdn.controller")] == ["192.0.2.5", "192.0.2.7", "192.0.2.8"]


def test_vswitch_controller_needs_the_openvswitch_backend() -> None:
    with XenLab(hosts=[XenHostSpec("xen1", network_backend="bridge")], timings=FAST) as lab:
        session = login(lab, "xen1")
        assert failure(session.xenapi.pool.set_vswitch_controller, "192.0.2.5") == [
            "OPERATION_NOT_ALLOWED", "host not configured for vswitch operation"]


def test_host_disable_and_enable(lab: XenLab) -> None:
    session = login(lab, "xen1")
    xen2 = session.xenapi.host.get_by_name_label("xen2")[0]
    session.xenapi.host.disable(xen2)
    assert session.xenapi.host.get_enabled(xen2) is False
    lab.set_disabled_until_reboot("xen2")
    assert failure(session.xenapi.host.enable, xen2) == ["HOST_DISABLED_UNTIL_REBOOT", xen2]
    lab.set_disabled_until_reboot("xen2", False)
    session.xenapi.host.enable(xen2)
    assert session.xenapi.host.get_enabled(xen2) is True
    assert [(e["event"], e["host"]) for e in lab.audit() if e["event"] in ("host.enabled", "host.disabled")] == [
        ("host.disabled", "xen2"), ("host.enabled", "xen2")]


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_runs_the_lab_and_writes_its_state(tmp_path: Path) -> None:
    state_file = tmp_path / "xenapi.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO / "lab")])}
    process = subprocess.Popen([sys.executable, "-m", "stackops_lab.xenapi.cli", "--hosts", "3", "--pool-size", "2",
                                "--port", "0", "--password", "pw", "--state-file", str(state_file)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        assert line[0] == "ready" and len(line) == 4
        state = json.loads(state_file.read_text())
        assert state["pid"] == process.pid and state["password"] == "pw"
        assert state["pools"] == [{"master": "xen1", "members": ["xen1", "xen2"]},
                                  {"master": "xen3", "members": ["xen3"]}]
        assert line[1:] == [state["hosts"][n]["url"] for n in ("xen1", "xen2", "xen3")]
        assert oct(state_file.stat().st_mode & 0o777) == "0o600"
        session = XenAPI.Session(state["hosts"]["xen1"]["url"])
        session.xenapi.login_with_password("root", "pw")
        assert len(session.xenapi.host.get_all()) == 2
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert not state_file.exists()
    from stackops_lab.cli import parser
    args = parser().parse_args(["xenapi", "--hosts", "4", "--pool-size", "3"])
    assert (args.hosts, args.pool_size, args.port) == (4, 3, 8090)
