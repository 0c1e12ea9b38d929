"""Every XenAPI error of the reference (/work/shared/reference/xenapi.md) that the XenPool reconciler can meet is
produced by the lab simulator, through the official SDK, with the exact ErrorDescription; the others are listed
with the reason the reconciler cannot meet them (decided from xapi's sources: ocaml/xapi/*.ml).

The reconciler's calls: session.login_with_password, session.slave_local_login_with_password,
<class>.get_all_records, VDI.get_SR, SR.get_by_uuid, Async.pool.enable_ha / Async.pool.disable_ha (+ task.get_status,
get_result, get_error_info, destroy), pool.set_ha_host_failures_to_tolerate, pool.set_ha_allow_overcommit,
pool.set_vswitch_controller, pool.join, pool.eject, pool.designate_new_master, pool.emergency_transition_to_master,
pool.recover_slaves, host.enable, host.set_name_label, VM.set_ha_restart_priority.

Environment failures (statefile, heartbeat network, xHA daemon, a pool held by xapi itself, a master rejecting a
joiner) are injected with stackops_lab.xenapi.faults. A test that looks at a state lasting only until the next
transition (an operation in progress, a host still booting or waiting in emergency mode) runs its lab on a
ManualClock: the lab's time moves only when the test moves it, so a loaded machine cannot race past what it looks
at, and durations are checked in the lab's time (audit log stamps).
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from support.xenapi import FAST, XENAPI_DOWN, advance_until, blocking, drive, events, failure, login
from support.wait import wait_for

from stackops_lab.clock import ManualClock
from stackops_lab.xenapi import XenHostSpec, XenLab, XenTimings
from stackops_lab.xenapi.faults import faults_of

MASTER = "127.0.1.10"
TIMEOUT = {"timeout": "30"}  # HA timeout 30 s: 0.3 lab seconds; xHA's join timeout (t + 60) 0.9 lab seconds

# error code → which reconciler call meets it
REACHABLE: dict[str, str] = {
    "SESSION_AUTHENTICATION_FAILED": "session.login_with_password / slave_local_login_with_password with refused "
                                     "credentials; pool.join's login to the master",
    "SESSION_INVALID": "any call with a session xapi forgot (expired, xapi restarted, master changed); the SDK logs "
                       "in again and retries",
    "HOST_IS_SLAVE": "session.login_with_password on a supporter (the driver reconnects to the address it names); "
                     "pool.join towards a supporter",
    "HOST_STILL_BOOTING": "any call to a host whose xapi is starting; host.enable forwarded to it; pool.join towards "
                          "a starting master",
    "HOST_OFFLINE": "pool.enable_ha with a member not live; host.enable / pool.eject / pool.designate_new_master of "
                    "a host not live",
    "HANDLE_INVALID": "a stale ref: VDI.get_SR, pool.enable_ha's SR, pool.eject, pool.designate_new_master, "
                      "host.enable, host.set_name_label, VM.set_ha_restart_priority, task.* after task.destroy",
    "INVALID_VALUE": "pool.set_ha_host_failures_to_tolerate(< 0); VM.set_ha_restart_priority(not restart, "
                     "best-effort or '')",
    "HA_IS_ENABLED": "pool.enable_ha with HA on; pool.join (HA on either side), pool.eject, "
                     "pool.designate_new_master, pool.emergency_transition_to_master while HA is on",
    "HA_NOT_ENABLED": "pool.disable_ha with HA off",
    "HA_ENABLE_IN_PROGRESS": "pool.enable_ha / disable_ha / designate_new_master while an enable runs",
    "HA_DISABLE_IN_PROGRESS": "pool.enable_ha / disable_ha / designate_new_master while a disable runs",
    "DESIGNATE_NEW_MASTER_IN_PROGRESS": "pool.designate_new_master / enable_ha / disable_ha while a designation runs",
    "OTHER_OPERATION_IN_PROGRESS": "pool.enable_ha / disable_ha / designate_new_master still blocked by an "
                                   "operation xapi runs itself once the retry budget is spent",
    "LICENCE_RESTRICTION": "pool.enable_ha with a member not licensed for HA",
    "CANNOT_CREATE_STATE_FILE": "pool.enable_ha([], …) (no heartbeat SR in the spec) when no SR can hold the "
                                "statefile",
    "HA_FAILED_TO_FORM_LIVESET": "Async.pool.enable_ha when a member cannot join the liveset (lost, cut off from "
                                 "the heartbeats)",
    "HA_HOST_CANNOT_ACCESS_STATEFILE": "Async.pool.enable_ha when a member cannot reach the statefile; any call to "
                                       "such a member booting with HA armed",
    "HA_HEARTBEAT_DAEMON_STARTUP_FAILED": "any call to a member booting with HA armed whose xHA daemon fails to "
                                          "start",
    "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN": "pool.set_ha_host_failures_to_tolerate beyond what the failover plan "
                                              "covers",
    "HOST_DISABLED_UNTIL_REBOOT": "host.enable of a host disabled until its next reboot",
    "JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS": "pool.join of a host that is the master of other hosts",
    "JOINING_HOST_CANNOT_HAVE_RUNNING_VMS": "pool.join of a host running guest VMs",
    "JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS": "pool.join of a host with a shared SR",
    "JOINING_HOST_CONNECTION_FAILED": "pool.join towards a master that does not answer",
    "JOINING_HOST_SERVICE_FAILED": "pool.join towards a master whose HTTP service rejects the joiner's login",
    "HOSTS_NOT_HOMOGENEOUS": "pool.join of a host of another build or CPU vendor",
    "POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION": "pool.join of a host of another API version",
    "OPERATION_NOT_ALLOWED": "pool.join of a clone; pool.eject of a host with running VMs; "
                             "pool.set_vswitch_controller without Open vSwitch",
    "INTERNAL_ERROR": "pool.eject of the master; pool.enable_ha with a timeout below 10 or not a number, or with "
                      "an xHA daemon that does not start",
    "UUID_INVALID": "SR.get_by_uuid of a heartbeat SR the pool does not have",
    "SR_HAS_NO_PBDS": "pool.enable_ha with a heartbeat SR not plugged on every host",
    "INVALID_IP_ADDRESS_SPECIFIED": "pool.set_vswitch_controller with an address that is not IPv4",
}

# error code of the reference → why the reconciler cannot meet it
NOT_REACHABLE: dict[str, str] = {
    "HA_TOO_FEW_HOSTS": "declared (api_errors.ml) but raised nowhere in current xapi: the three-host rule is "
                        "self-fencing, not an API error",
    "HA_HOST_CANNOT_SEE_PEERS": "declared but raised nowhere in current xapi",
    "HA_NOT_INSTALLED": "declared but raised nowhere: a missing HA cluster stack makes Host.preconfigure_ha "
                        "failwith 'cluster stack … not installed' (INTERNAL_ERROR)",
    "HA_NO_PLAN": "declared but raised nowhere: the planner reports a plan it cannot keep as "
                  "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN",
    "HA_SHOULD_BE_FENCED": "only in the pool-internal Host.local_assert_healthy (a supporter's xapi asking its "
                           "master at start-up), never answered to a client's call",
    "HA_LOST_STATEFILE": "raised by the pool-internal Host.ha_wait_for_shutdown_via_statefile during "
                         "pool.disable_ha (whose per-host errors are only logged) and by host.shutdown / "
                         "host.reboot's statefile pre-check: no reconciler call",
    "HA_HOST_IS_ARMED": "declared but not raised by the calls above: xapi refuses them on an armed host with "
                        "HA_IS_ENABLED (pool.emergency_transition_to_master checks Localdb ha_armed)",
    "HA_CONSTRAINT_VIOLATION_SR_NOT_SHARED": "raised by Agility.vm_assert_agile (VM.assert_agile, disks and VIFs "
                                             "of protected VMs); VM.set_ha_restart_priority and host.enable only "
                                             "check the failover plan (HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN)",
    "NOT_IN_EMERGENCY_MODE": "raised only by host.local_management_reconfigure outside emergency mode; "
                             "pool.emergency_transition_to_master also works on a supporter that sees its master",
    "LICENSE_DOES_NOT_SUPPORT_XHA": "declared but raised nowhere: pool.enable_ha checks the HA feature with "
                                    "Pool_features.assert_enabled, i.e. LICENCE_RESTRICTION ['HA']",
}

# REACHABLE codes xapi answers on the calls above that the reference does not list
BEYOND_REFERENCE = {"JOINING_HOST_CONNECTION_FAILED", "UUID_INVALID", "SR_HAS_NO_PBDS", "INVALID_IP_ADDRESS_SPECIFIED"}

# the reference's error codes, checked in: CI may lack the reference itself
REFERENCE_CODES = {
    "CANNOT_CREATE_STATE_FILE", "DESIGNATE_NEW_MASTER_IN_PROGRESS", "HANDLE_INVALID",
    "HA_CONSTRAINT_VIOLATION_SR_NOT_SHARED", "HA_DISABLE_IN_PROGRESS", "HA_ENABLE_IN_PROGRESS",
    "HA_FAILED_TO_FORM_LIVESET", "HA_HEARTBEAT_DAEMON_STARTUP_FAILED", "HA_HOST_CANNOT_ACCESS_STATEFILE",
    "HA_HOST_CANNOT_SEE_PEERS", "HA_HOST_IS_ARMED", "HA_IS_ENABLED", "HA_LOST_STATEFILE", "HA_NOT_ENABLED",
    "HA_NOT_INSTALLED", "HA_NO_PLAN", "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN", "HA_SHOULD_BE_FENCED",
    "HA_TOO_FEW_HOSTS", "HOSTS_NOT_HOMOGENEOUS", "HOST_DISABLED_UNTIL_REBOOT", "HOST_IS_SLAVE", "HOST_OFFLINE",
    "HOST_STILL_BOOTING", "INTERNAL_ERROR", "INVALID_VALUE", "JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS",
    "JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS", "JOINING_HOST_CANNOT_HAVE_RUNNING_VMS", "JOINING_HOST_SERVICE_FAILED",
    "LICENCE_RESTRICTION", "LICENSE_DOES_NOT_SUPPORT_XHA", "NOT_IN_EMERGENCY_MODE", "OPERATION_NOT_ALLOWED",
    "OTHER_OPERATION_IN_PROGRESS", "POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION", "SESSION_AUTHENTICATION_FAILED",
    "SESSION_INVALID",
}
REFERENCE = Path(os.environ.get("STACKOPS_XENAPI_REFERENCE", "/work/shared/reference/xenapi.md"))
INVENTORY_KEYS = {"INSTALLATION_UUID", "CONTROL_DOMAIN_UUID", "MANAGEMENT_INTERFACE", "MANAGEMENT_ADDRESS_TYPE",
                  "BUILD_NUMBER", "PRODUCT_VERSION"}  # /etc/xensource-inventory keys, not errors

COVERED: dict[str, list[str]] = {}


def covers(*codes: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the test as producing these error codes."""
    def mark(test: Callable[..., Any]) -> Callable[..., Any]:
        for code in codes:
            COVERED.setdefault(code, []).append(test.__name__)
        return test
    return mark


# ------------------------------------------------------------------------------------------------ helpers


def pool_lab(count: int = 2, timings: XenTimings = FAST, extra: list[XenHostSpec] | None = None,
             manual: bool = False, **spec: Any) -> XenLab:
    """xen1 … xen<count> pooled (xen1 master, NFS shared), plus the `extra` standalone hosts; `manual`: on a
    ManualClock."""
    pooled = [XenHostSpec(f"xen{i + 1}", **spec) for i in range(count)]
    return XenLab(hosts=pooled + (extra or []), pools=[[h.name for h in pooled]], timings=timings,
                  clock=ManualClock() if manual else None)


def raw(session: XenAPI.Session, method: str, *params: Any) -> Any:
    """The envelope itself (XenAPI.Session is an xmlrpc ServerProxy: unknown names go straight out)."""
    return getattr(session, method)(*params)


def shared_sr(session: XenAPI.Session) -> str:
    return next(ref for ref, sr in session.xenapi.SR.get_all_records().items() if sr["shared"])


def host_ref(session: XenAPI.Session, name: str) -> str:
    (ref,) = session.xenapi.host.get_by_name_label(name)
    return ref


def pool_ref(session: XenAPI.Session) -> str:
    (ref,) = session.xenapi.pool.get_all()
    return ref


def start_task(session: XenAPI.Session, method: str, *args: Any) -> str:
    call: Any = session.xenapi.Async
    for part in method.split("."):
        call = getattr(call, part)
    return call(*args)


def task_done(session: XenAPI.Session, task: str, lab: XenLab | None = None, timeout: float = 30.0) -> None:
    """Until the task is no longer pending: on a ManualClock `lab`, moving its clock as far as the task waits."""
    def done() -> bool:
        return session.xenapi.task.get_status(task) != "pending"

    if lab is not None and lab.clock.manual:
        drive(lab, done, what="task done", timeout=timeout)
    else:
        wait_for(done, timeout=timeout, what="task done", ignoring=XENAPI_DOWN)


def task_error(session: XenAPI.Session, task: str, timeout: float = 30.0, lab: XenLab | None = None) -> list[str]:
    """What the reconciler reads of a failed task: task.get_status, get_error_info, then task.destroy."""
    task_done(session, task, lab, timeout)
    assert session.xenapi.task.get_status(task) == "failure"
    info = session.xenapi.task.get_error_info(task)
    session.xenapi.task.destroy(task)
    return info


def task_failure(session: XenAPI.Session, method: str, *args: Any, lab: XenLab | None = None) -> list[str]:
    return task_error(session, start_task(session, method, *args), lab=lab)


def task_success(session: XenAPI.Session, method: str, *args: Any, lab: XenLab | None = None) -> str:
    task = start_task(session, method, *args)
    task_done(session, task, lab)
    assert session.xenapi.task.get_status(task) == "success", session.xenapi.task.get_error_info(task)
    result = session.xenapi.task.get_result(task)
    session.xenapi.task.destroy(task)
    return result


def login_error(lab: XenLab, name: str) -> list[str] | None:
    """The ErrorDescription of a login on `name`, None if it is unreachable or logs in."""
    try:
        XenAPI.Session(lab.url(name)).xenapi.login_with_password(lab.username, lab.password)
    except XenAPI.Failure as error:
        return error.details
    except OSError:
        return None
    return None


# ------------------------------------------------------------------------------------------------ tables


def reference_codes(text: str) -> set[str]:
    return set(re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", text)) - INVENTORY_KEYS


def test_tables_cover_every_error_code_of_the_reference() -> None:
    assert not set(REACHABLE) & set(NOT_REACHABLE)
    assert BEYOND_REFERENCE <= set(REACHABLE) and not BEYOND_REFERENCE & REFERENCE_CODES
    assert (set(REACHABLE) | set(NOT_REACHABLE)) - BEYOND_REFERENCE == REFERENCE_CODES


def test_the_checked_in_codes_are_the_reference_s() -> None:
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} is not here; the checked-in list stands in for it")
    assert reference_codes(REFERENCE.read_text()) == REFERENCE_CODES


def test_every_reachable_code_is_produced_by_a_test() -> None:
    assert set(COVERED) == set(REACHABLE), {code: COVERED.get(code) for code in set(COVERED) ^ set(REACHABLE)}


# ------------------------------------------------------------------------------------------------ sessions


@covers("SESSION_AUTHENTICATION_FAILED")
def test_session_authentication_failed() -> None:
    expected = ["SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"]
    with pool_lab(1, extra=[XenHostSpec("xen3", vms=0)]) as lab:
        assert failure(XenAPI.Session(lab.url("xen1")).xenapi.login_with_password, "root", "wrong") == expected
        assert failure(XenAPI.Session(lab.url("xen3")).slave_local_login_with_password, "root", "wrong") == expected
        assert failure(login(lab, "xen3").xenapi.pool.join, MASTER, "root", "wrong") == expected


@covers("SESSION_INVALID")
def test_session_invalid() -> None:
    with pool_lab(2) as lab:
        session = login(lab, "xen1")
        old = session.handle
        lab.expire_sessions()
        assert raw(session, "pool.get_all_records", old)["ErrorDescription"] == ["SESSION_INVALID", old]
        assert len(session.xenapi.pool.get_all_records()) == 1  # the SDK logged in again and retried
        again = session.handle
        lab.restart_xapi("xen1")  # a master's xapi restart forgets every session too
        wait_for(lambda: lab.status("xen1")["serving"], what="xapi back", timeout=10, ignoring=XENAPI_DOWN)
        assert raw(session, "VM.get_all_records", again)["ErrorDescription"] == ["SESSION_INVALID", again]


@covers("HOST_IS_SLAVE")
def test_host_is_slave() -> None:
    with pool_lab(2, extra=[XenHostSpec("xen3", vms=0)]) as lab:
        assert login_error(lab, "xen2") == ["HOST_IS_SLAVE", MASTER]
        assert failure(login(lab, "xen3").xenapi.pool.join, "127.0.1.11", "root", lab.password) == [
            "HOST_IS_SLAVE", MASTER]


@covers("HOST_STILL_BOOTING")
def test_host_still_booting() -> None:
    # on a ManualClock xapi stays starting (XenTimings.xapi_restart) until the test moves the clock: it does not
    with pool_lab(2, extra=[XenHostSpec("xen3", vms=0)], manual=True) as lab:
        master, joiner = login(lab, "xen1"), login(lab, "xen3")
        lab.restart_xapi("xen2")
        assert login_error(lab, "xen2") == ["HOST_STILL_BOOTING"]
        assert failure(master.xenapi.host.enable, host_ref(master, "xen2")) == ["HOST_STILL_BOOTING"]
        lab.restart_xapi("xen1")
        assert login_error(lab, "xen1") == ["HOST_STILL_BOOTING"]
        assert failure(joiner.xenapi.pool.join, MASTER, "root", lab.password) == ["HOST_STILL_BOOTING"]


@covers("HOST_OFFLINE")
def test_host_offline() -> None:
    with pool_lab(2) as lab:
        session = login(lab, "xen1")
        xen2 = host_ref(session, "xen2")
        lab.kill("xen2")
        wait_for(lambda: not session.xenapi.host_metrics.get_live(session.xenapi.host.get_metrics(xen2)),
                 what="xen2 not live", timeout=10, ignoring=XENAPI_DOWN)
        expected = ["HOST_OFFLINE", xen2]
        assert task_failure(session, "pool.enable_ha", [shared_sr(session)], TIMEOUT) == expected
        assert failure(session.xenapi.host.enable, xen2) == expected
        assert failure(session.xenapi.pool.eject, xen2) == expected
        assert failure(session.xenapi.pool.designate_new_master, xen2) == expected


@pytest.fixture(scope="module")
def idle_pool() -> Iterator[XenLab]:
    """A pool the tests only send failing calls to."""
    with pool_lab(2) as lab:
        yield lab


GONE = "OpaqueRef:00000000-0000-0000-0000-00000000dead"


STALE_REFS: list[tuple[str, tuple[Any, ...], str]] = [
    ("VDI.get_SR", (GONE,), "VDI"),
    ("pool.enable_ha", ([GONE], TIMEOUT), "SR"),
    ("pool.eject", (GONE,), "host"),
    ("pool.designate_new_master", (GONE,), "host"),
    ("pool.set_ha_host_failures_to_tolerate", (GONE, "1"), "pool"),
    ("host.enable", (GONE,), "host"),
    ("host.set_name_label", (GONE, "xen9"), "host"),
    ("VM.set_ha_restart_priority", (GONE, ""), "VM"),
    ("task.get_status", (GONE,), "task"),
]


@covers("HANDLE_INVALID")
@pytest.mark.parametrize(("call", "args", "cls"), STALE_REFS, ids=[call for call, _, _ in STALE_REFS])
def test_handle_invalid(idle_pool: XenLab, call: str, args: tuple[Any, ...], cls: str) -> None:
    method: Any = login(idle_pool, "xen1").xenapi
    for part in call.split("."):
        method = getattr(method, part)
    assert failure(method, *args) == ["HANDLE_INVALID", cls, GONE]


@covers("HANDLE_INVALID")
def test_a_destroyed_task_is_an_invalid_handle(idle_pool: XenLab) -> None:
    session = login(idle_pool, "xen1")
    task = start_task(session, "pool.disable_ha")  # fails: HA is off
    assert task_error(session, task) == ["HA_NOT_ENABLED"]
    assert failure(session.xenapi.task.get_error_info, task) == ["HANDLE_INVALID", "task", task]


@covers("INVALID_VALUE")
def test_invalid_value(idle_pool: XenLab) -> None:
    session = login(idle_pool, "xen1")
    assert failure(session.xenapi.pool.set_ha_host_failures_to_tolerate, pool_ref(session), "-1") == [
        "INVALID_VALUE", "ha_host_failures_to_tolerate", "-1"]
    vm = next(ref for ref, r in session.xenapi.VM.get_all_records().items() if not r["is_control_domain"])
    assert failure(session.xenapi.VM.set_ha_restart_priority, vm, "always") == [
        "INVALID_VALUE", "ha_restart_priority", "always"]


@covers("UUID_INVALID")
def test_uuid_invalid(idle_pool: XenLab) -> None:
    session = login(idle_pool, "xen1")
    assert failure(session.xenapi.SR.get_by_uuid, "no-such-sr") == ["UUID_INVALID", "SR", "no-such-sr"]


# ------------------------------------------------------------------------------------------------ HA


@covers("HA_IS_ENABLED")
def test_ha_is_enabled() -> None:
    with pool_lab(2, extra=[XenHostSpec("xen3", vms=0)]) as lab:
        session = login(lab, "xen1")
        nfs, xen2 = shared_sr(session), host_ref(session, "xen2")
        assert task_success(session, "pool.enable_ha", [nfs], TIMEOUT) == ""
        assert task_failure(session, "pool.enable_ha", [nfs], TIMEOUT) == ["HA_IS_ENABLED"]
        assert failure(session.xenapi.pool.eject, xen2) == ["HA_IS_ENABLED"]
        assert failure(session.xenapi.pool.designate_new_master, xen2) == ["HA_IS_ENABLED"]
        joiner = login(lab, "xen3")
        assert failure(joiner.xenapi.pool.join, MASTER, "root", lab.password) == ["HA_IS_ENABLED"]  # the pool's
        local = XenAPI.Session(lab.url("xen2"))
        local.slave_local_login_with_password("root", lab.password)
        assert failure(local.xenapi.pool.emergency_transition_to_master) == ["HA_IS_ENABLED"]
        assert task_success(session, "pool.disable_ha") == ""
        joiner.xenapi.pool.enable_ha([], TIMEOUT)  # its local SR can hold a statefile: it is alone
        assert failure(joiner.xenapi.pool.join, MASTER, "root", lab.password) == ["HA_IS_ENABLED"]  # the joiner's


@covers("HA_NOT_ENABLED")
def test_ha_not_enabled(idle_pool: XenLab) -> None:
    session = login(idle_pool, "xen1")
    assert failure(session.xenapi.pool.disable_ha) == ["HA_NOT_ENABLED"]
    assert task_failure(session, "pool.disable_ha") == ["HA_NOT_ENABLED"]


@covers("HA_ENABLE_IN_PROGRESS", "HA_DISABLE_IN_PROGRESS", "DESIGNATE_NEW_MASTER_IN_PROGRESS")
@pytest.mark.parametrize(("running", "code"), [
    ("pool.enable_ha", "HA_ENABLE_IN_PROGRESS"),
    ("pool.disable_ha", "HA_DISABLE_IN_PROGRESS"),
    ("pool.designate_new_master", "DESIGNATE_NEW_MASTER_IN_PROGRESS"),
], ids=["enable", "disable", "designate"])
def test_a_pool_operation_in_progress(running: str, code: str) -> None:
    # on a ManualClock the operation stays in progress until the test moves the clock
    with pool_lab(2, manual=True) as lab:
        session = login(lab, "xen1")
        nfs, xen2, pool = shared_sr(session), host_ref(session, "xen2"), pool_ref(session)
        if running == "pool.disable_ha":
            blocking(lab, session.xenapi.pool.enable_ha, [nfs], TIMEOUT)
        args = {"pool.enable_ha": ([nfs], TIMEOUT), "pool.designate_new_master": (xen2,)}.get(running, ())
        task = start_task(session, running, *args)
        wait_for(lambda: task in session.xenapi.pool.get_current_operations(pool), what="operation recorded",
                 timeout=10, ignoring=XENAPI_DOWN)
        assert failure(session.xenapi.pool.enable_ha, [nfs], TIMEOUT) == [code]
        assert failure(session.xenapi.pool.disable_ha) == [code]
        assert failure(session.xenapi.pool.designate_new_master, xen2) == [code]
        assert task_failure(session, "pool.enable_ha", [nfs], TIMEOUT) == [code]
        assert list(session.xenapi.pool.get_current_operations(pool)) == [task]  # the refused ones left nothing
        assert session.xenapi.task.get_status(task) == "pending"


@covers("OTHER_OPERATION_IN_PROGRESS")
def test_other_operation_in_progress() -> None:
    # on a ManualClock: the calls wait (lab time) for the retry budget, the held operation outlasts them
    with pool_lab(2, manual=True) as lab:
        faults = faults_of(lab)
        faults.retry_budget = 0.5  # xapi waits up to 2 h for the other operation
        key = faults.hold_pool_operation("xen1", "cert_refresh", seconds=120.0)
        session = login(lab, "xen1")
        nfs, xen2, pool = shared_sr(session), host_ref(session, "xen2"), pool_ref(session)
        assert session.xenapi.pool.get_current_operations(pool) == {key: "cert_refresh"}
        expected = ["OTHER_OPERATION_IN_PROGRESS", "pool", pool, "cert_refresh", key]
        started = lab.clock.monotonic()
        assert task_failure(session, "pool.enable_ha", [nfs], TIMEOUT, lab=lab) == expected
        assert lab.clock.monotonic() - started >= faults.retry_budget  # it waited the budget out first
        assert failure(blocking, lab, session.xenapi.pool.disable_ha) == expected  # before HA_NOT_ENABLED
        assert failure(blocking, lab, session.xenapi.pool.designate_new_master, xen2) == expected
        assert lab.clock.monotonic() - started < 120.0
        assert session.xenapi.pool.get_current_operations(pool) == {key: "cert_refresh"}


def test_a_pool_operation_waits_for_one_xapi_runs_itself() -> None:
    with pool_lab(2, manual=True) as lab:
        session = login(lab, "xen1")
        nfs = shared_sr(session)
        faults_of(lab).hold_pool_operation("xen1", "exchange_certificates_on_join", seconds=1.0)
        assert task_success(session, "pool.enable_ha", [nfs], TIMEOUT, lab=lab) == ""
        assert session.xenapi.pool.get_ha_enabled(pool_ref(session)) is True
        # in the lab's time: the enable went on once the held operation ended, then took its own time
        log = [e for e in lab.audit() if e["event"] in ("pool.operation_held", "pool.operation_released",
                                                        "ha.enabled")]
        assert [e["event"] for e in log] == ["pool.operation_held", "pool.operation_released", "ha.enabled"]
        held, released, enabled = log
        assert released["t"] - held["t"] == pytest.approx(1.0, abs=1e-3)
        assert enabled["t"] - released["t"] >= FAST.ha_enable


@covers("LICENCE_RESTRICTION")
def test_licence_restriction() -> None:
    hosts = [XenHostSpec("xen1"), XenHostSpec("xen2", ha_licensed=False)]
    with XenLab(hosts=hosts, pools=[["xen1", "xen2"]], timings=FAST) as lab:
        session = login(lab, "xen1")
        assert failure(session.xenapi.pool.enable_ha, [shared_sr(session)], TIMEOUT) == ["LICENCE_RESTRICTION", "HA"]
        assert task_failure(session, "pool.enable_ha", [], TIMEOUT) == ["LICENCE_RESTRICTION", "HA"]


@covers("CANNOT_CREATE_STATE_FILE")
def test_cannot_create_state_file() -> None:
    # two hosts with local storage only: no SR has a plugged PBD on every host
    with XenLab(hosts=[XenHostSpec("xen1"), XenHostSpec("xen2")], pools=[["xen1", "xen2"]], shared_srs=[],
                timings=FAST) as lab:
        session = login(lab, "xen1")
        assert task_failure(session, "pool.enable_ha", [], TIMEOUT) == ["CANNOT_CREATE_STATE_FILE"]
        assert failure(session.xenapi.pool.enable_ha, [], TIMEOUT) == ["CANNOT_CREATE_STATE_FILE"]
        assert session.xenapi.pool.get_ha_enabled(pool_ref(session)) is False


@covers("SR_HAS_NO_PBDS")
def test_sr_has_no_pbds(idle_pool: XenLab) -> None:
    session = login(idle_pool, "xen1")
    local = next(ref for ref, sr in session.xenapi.SR.get_all_records().items() if not sr["shared"])
    assert task_failure(session, "pool.enable_ha", [local], TIMEOUT) == ["SR_HAS_NO_PBDS", local]


def assert_ha_rolled_back(lab: XenLab, session: XenAPI.Session) -> None:
    assert session.xenapi.pool.get_ha_enabled(pool_ref(session)) is False
    assert set(lab.pool_of("xen1")["ha_armed"].values()) == {False}
    assert session.xenapi.pool.get_current_operations(pool_ref(session)) == {}


@covers("HA_FAILED_TO_FORM_LIVESET")
def test_ha_failed_to_form_liveset() -> None:
    with pool_lab(3, manual=True) as lab:
        session = login(lab, "xen1")
        nfs = shared_sr(session)
        faults_of(lab).heartbeat_partitioned.add("xen3")
        started = lab.clock.monotonic()
        assert task_failure(session, "pool.enable_ha", [nfs], TIMEOUT, lab=lab) == ["HA_FAILED_TO_FORM_LIVESET"]
        (failed,) = events(lab, "ha.enable_failed")
        # in the lab's time: the enable's own work, then xHA's enable_join_timeout (t + 60 s, scaled)
        assert failed["t"] - started >= FAST.boot_join_seconds(30)
        assert failed["t"] - started == pytest.approx(FAST.ha_enable + FAST.boot_join_seconds(30), abs=1e-3)
        assert_ha_rolled_back(lab, session)
        faults_of(lab).heartbeat_partitioned.clear()
        assert task_success(session, "pool.enable_ha", [nfs], TIMEOUT, lab=lab) == ""


@covers("HA_HOST_CANNOT_ACCESS_STATEFILE")
def test_ha_host_cannot_access_statefile_when_enabling() -> None:
    with pool_lab(2) as lab:
        session = login(lab, "xen1")
        faults_of(lab).statefile_inaccessible.add("xen2")
        assert task_failure(session, "pool.enable_ha", [shared_sr(session)], TIMEOUT) == [
            "HA_HOST_CANNOT_ACCESS_STATEFILE"]
        assert_ha_rolled_back(lab, session)
        assert [e["error"] for e in events(lab, "ha.enable_failed")] == [["HA_HOST_CANNOT_ACCESS_STATEFILE"]]


def boot_with_ha_armed(lab: XenLab, name: str, fault: str) -> None:
    """HA on in the pool (a ManualClock lab); then `fault` strikes `name`, which crashes and boots again, armed."""
    session = login(lab, "xen1")
    blocking(lab, session.xenapi.pool.enable_ha, [shared_sr(session)], {"timeout": "20"})
    getattr(faults_of(lab), fault).add(name)
    lab.kill(name)
    lab.revive(name)


@covers("HA_HOST_CANNOT_ACCESS_STATEFILE", "HA_HEARTBEAT_DAEMON_STARTUP_FAILED")
@pytest.mark.parametrize(("fault", "code"), [
    ("statefile_inaccessible", "HA_HOST_CANNOT_ACCESS_STATEFILE"),
    ("ha_daemon_fails", "HA_HEARTBEAT_DAEMON_STARTUP_FAILED"),
], ids=["statefile", "daemon"])
def test_a_host_booting_with_ha_armed_stays_in_emergency_mode(fault: str, code: str) -> None:
    with pool_lab(3, manual=True) as lab:
        boot_with_ha_armed(lab, "xen3", fault)
        advance_until(lab, lambda: login_error(lab, "xen3") == [code], what=f"xen3 answering {code}")
        local = XenAPI.Session(lab.url("xen3"))
        local.slave_local_login_with_password("root", lab.password)  # emergency calls are served
        # three boot-join timeouts of the lab's time: it retries, neither joins nor fences
        lab.scheduler.advance(3 * FAST.boot_join_seconds(20))
        assert login_error(lab, "xen3") == [code]
        assert lab.status("xen3")["power"] == "up" and events(lab, "host.fenced") == []
        if fault == "statefile_inaccessible":
            faults_of(lab).statefile_inaccessible.clear()  # storage back: it joins the liveset
        else:
            local.xenapi.host.emergency_ha_disable(False)  # the way out of a daemon that does not start
        advance_until(lab, lambda: login_error(lab, "xen3") == ["HOST_IS_SLAVE", MASTER],
                      what="xen3 a supporter again")


@covers("HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN")
def test_ha_operation_would_break_failover_plan() -> None:
    # three hosts of capacity 2 run 3 protected VMs: the plan covers one host failure, not two
    with pool_lab(3, vm_capacity=2) as lab:
        session = login(lab, "xen1")
        pool = pool_ref(session)
        session.xenapi.pool.enable_ha([shared_sr(session)], TIMEOUT)
        session.xenapi.pool.set_ha_host_failures_to_tolerate(pool, "1")
        assert session.xenapi.pool.get_ha_plan_exists_for(pool) == "1"
        assert failure(session.xenapi.pool.set_ha_host_failures_to_tolerate, pool, "2") == [
            "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN"]
        session.xenapi.pool.set_ha_allow_overcommit(pool, True)  # then xapi lets the pool be overcommitted
        session.xenapi.pool.set_ha_host_failures_to_tolerate(pool, "2")
        assert session.xenapi.pool.get_ha_overcommitted(pool) is True


# ------------------------------------------------------------------------------------------------ hosts


@covers("HOST_DISABLED_UNTIL_REBOOT")
def test_host_disabled_until_reboot() -> None:
    with pool_lab(2) as lab:
        session = login(lab, "xen1")
        xen2 = host_ref(session, "xen2")
        session.xenapi.host.disable(xen2)
        lab.set_disabled_until_reboot("xen2")
        assert failure(session.xenapi.host.enable, xen2) == ["HOST_DISABLED_UNTIL_REBOOT", xen2]


# ------------------------------------------------------------------------------------------------ membership


JOIN_REFUSALS: list[tuple[str, list[XenHostSpec], list[list[str]], list[str]]] = [
    ("JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS", [XenHostSpec("xen3", vms=0), XenHostSpec("xen4", vms=0)],
     [["xen3", "xen4"]], ["JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS"]),
    ("JOINING_HOST_CANNOT_HAVE_RUNNING_VMS", [XenHostSpec("xen3")], [], ["JOINING_HOST_CANNOT_HAVE_RUNNING_VMS"]),
    ("JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS", [XenHostSpec("xen3", vms=0)], [["xen3"]],
     ["JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS"]),
    ("HOSTS_NOT_HOMOGENEOUS", [XenHostSpec("xen3", vms=0, product_version="8.2.0")], [],
     ["HOSTS_NOT_HOMOGENEOUS", "Software version differs"]),
    ("HOSTS_NOT_HOMOGENEOUS", [XenHostSpec("xen3", vms=0, cpu_vendor="AuthenticAMD")], [],
     ["HOSTS_NOT_HOMOGENEOUS", "CPUs differ"]),
    ("POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION", [XenHostSpec("xen3", vms=0, api_version=(2, 20))], [],
     ["POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION", "2.20", "2.21"]),
]


@covers(*{code for code, _, _, _ in JOIN_REFUSALS})
@pytest.mark.parametrize(("code", "joiners", "pools", "expected"), JOIN_REFUSALS,
                         ids=[f"{code}-{i}" for i, (code, _, _, _) in enumerate(JOIN_REFUSALS)])
def test_join_refused(code: str, joiners: list[XenHostSpec], pools: list[list[str]], expected: list[str]) -> None:
    with XenLab(hosts=[XenHostSpec("xen1"), XenHostSpec("xen2"), *joiners], pools=[["xen1", "xen2"], *pools],
                timings=FAST) as lab:
        assert failure(login(lab, "xen3").xenapi.pool.join, MASTER, "root", lab.password) == expected
        assert lab.pool_of("xen1")["members"] == ["xen1", "xen2"]


@covers("JOINING_HOST_CONNECTION_FAILED", "JOINING_HOST_SERVICE_FAILED")
def test_join_cannot_reach_the_master_s_service() -> None:
    with pool_lab(2, extra=[XenHostSpec("xen3", vms=0)]) as lab:
        joiner = login(lab, "xen3")
        assert failure(joiner.xenapi.pool.join, "127.0.1.99", "root", lab.password) == [
            "JOINING_HOST_CONNECTION_FAILED"]
        faults_of(lab).join_service_rejects.add("xen1")
        assert failure(joiner.xenapi.pool.join, MASTER, "root", lab.password) == ["JOINING_HOST_SERVICE_FAILED"]
        assert failure(joiner.xenapi.pool.join, MASTER, "root", "wrong") == ["JOINING_HOST_SERVICE_FAILED"]
        faults_of(lab).join_service_rejects.clear()
        joiner.xenapi.pool.join(MASTER, "root", lab.password)
        wait_for(lambda: lab.pool_of("xen1")["live"].get("xen3"), what="xen3 joined", timeout=10, ignoring=XENAPI_DOWN)


@covers("OPERATION_NOT_ALLOWED")
def test_operation_not_allowed() -> None:
    with pool_lab(2, extra=[XenHostSpec("xen3", vms=0)]) as lab:
        lab.clone("xen3", from_host="xen1")  # a VM-template copy of the master: same INSTALLATION_UUID
        assert failure(login(lab, "xen3").xenapi.pool.join, MASTER, "root", lab.password) == [
            "OPERATION_NOT_ALLOWED", "Host cannot become slave of itself"]
        session = login(lab, "xen1")
        assert failure(session.xenapi.pool.eject, host_ref(session, "xen2")) == [
            "OPERATION_NOT_ALLOWED", "VM resident on host"]
    with XenLab(hosts=[XenHostSpec("xen1", network_backend="bridge")], timings=FAST) as lab:
        assert failure(login(lab, "xen1").xenapi.pool.set_vswitch_controller, "192.0.2.5") == [
            "OPERATION_NOT_ALLOWED", "host not configured for vswitch operation"]


@covers("INVALID_IP_ADDRESS_SPECIFIED")
def test_invalid_ip_address_specified(idle_pool: XenLab) -> None:
    assert failure(login(idle_pool, "xen1").xenapi.pool.set_vswitch_controller, "controller.example") == [
        "INVALID_IP_ADDRESS_SPECIFIED", "address"]


@covers("INTERNAL_ERROR")
def test_internal_error() -> None:
    with pool_lab(2) as lab:
        session = login(lab, "xen1")
        nfs = shared_sr(session)
        assert failure(session.xenapi.pool.eject, host_ref(session, "xen1")) == [
            "INTERNAL_ERROR", "Xapi_pool.Cannot_eject_master"]
        assert task_failure(session, "pool.enable_ha", [nfs], {"timeout": "5"}) == [
            "INTERNAL_ERROR", 'Failure("constraint violation: timeout >= 10")']
        assert task_failure(session, "pool.enable_ha", [nfs], {"timeout": "soon"}) == [
            "INTERNAL_ERROR", 'Failure("int_of_string")']
        faults_of(lab).ha_daemon_fails.add("xen2")  # Xha_error MTC_EXIT_SYSTEM_ERROR, which xapi does not map
        assert task_failure(session, "pool.enable_ha", [nfs], TIMEOUT) == ["INTERNAL_ERROR", "Xha_scripts.Xha_error(2)"]
        assert_ha_rolled_back(lab, session)
