"""Pool membership in the lab XenAPI simulator, through the official SDK: pool.join (and its pre-join checks,
a cloned host among them), pool.eject, pool.designate_new_master, and making a cloned host unique
(new inventory UUIDs, state DB removed, xapi restarted)."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import XenAPI

from support.xenapi import FAST, XENAPI_DOWN, advance_until, drive, failure, login
from support.wait import wait_for

from stackops_lab.clock import ManualClock
from stackops_lab.xenapi import XenHostSpec, XenLab

MASTER = "127.0.1.10"


def host_named(session: XenAPI.Session, name: str) -> str:
    (ref,) = session.xenapi.host.get_by_name_label(name)
    return ref


@pytest.fixture
def lab() -> Iterator[XenLab]:
    """xen1 (master) + xen2 pooled with NFS; xen3 and xen4 standalone, xen4 without guest VMs."""
    hosts = [XenHostSpec("xen1"), XenHostSpec("xen2"), XenHostSpec("xen3"), XenHostSpec("xen4", vms=0)]
    with XenLab(hosts=hosts, pools=[["xen1", "xen2"]], timings=FAST) as simulator:
        yield simulator


def test_join_makes_the_host_a_supporter(lab: XenLab) -> None:
    joiner = login(lab, "xen4")
    assert failure(joiner.xenapi.pool.join, MASTER, "root", "wrong") == [
        "SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"]
    assert failure(joiner.xenapi.pool.join, "127.0.1.11", "root", lab.password) == ["HOST_IS_SLAVE", MASTER]
    assert failure(joiner.xenapi.pool.join, "127.0.1.99", "root", lab.password) == ["JOINING_HOST_CONNECTION_FAILED"]
    xen4_uuid = lab.inventory("xen4")["INSTALLATION_UUID"]
    joiner.xenapi.pool.join(MASTER, "root", lab.password)

    master = login(lab, "xen1")
    xen4 = host_named(master, "xen4")
    assert master.xenapi.host.get_uuid(xen4) == xen4_uuid
    wait_for(lambda: master.xenapi.host_metrics.get_live(master.xenapi.host.get_metrics(xen4)), what="xen4 live",
             timeout=10, ignoring=XENAPI_DOWN)
    nfs = next(ref for ref, sr in master.xenapi.SR.get_all_records().items() if sr["shared"])
    assert xen4 in {master.xenapi.PBD.get_host(pbd) for pbd in master.xenapi.SR.get_PBDs(nfs)}
    assert failure(XenAPI.Session(lab.url("xen4")).xenapi.login_with_password, "root", lab.password) == [
        "HOST_IS_SLAVE", MASTER]
    pool = lab.pool_of("xen1")
    assert pool["members"] == ["xen1", "xen2", "xen4"] and pool["master"] == "xen1"
    (event,) = [e for e in lab.audit() if e["event"] == "pool.join"]
    assert (event["host"], event["master"]) == ("xen4", "xen1")


def test_join_pre_checks(lab: XenLab) -> None:
    with_vms = login(lab, "xen3")
    assert failure(with_vms.xenapi.pool.join, MASTER, "root", lab.password) == ["JOINING_HOST_CANNOT_HAVE_RUNNING_VMS"]
    lab.halt_vms("xen3")
    with_vms.xenapi.pool.set_vswitch_controller("192.0.2.9")
    assert failure(with_vms.xenapi.pool.join, MASTER, "root", lab.password) == [
        "OPERATION_NOT_ALLOWED", "SDN controller differs"]
    # xen4 becomes master of xen3: now it cannot join another pool
    with_vms.xenapi.pool.set_vswitch_controller("")
    login(lab, "xen3").xenapi.pool.join("127.0.1.13", "root", lab.password)
    wait_for(lambda: lab.pool_of("xen4")["live"].get("xen3"), what="xen3 in xen4's pool", timeout=10,
             ignoring=XENAPI_DOWN)
    assert failure(login(lab, "xen4").xenapi.pool.join, MASTER, "root", lab.password) == [
        "JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS"]


def test_a_pool_with_shared_storage_cannot_join() -> None:
    with XenLab(hosts=[XenHostSpec("xen1"), XenHostSpec("xen2", vms=0)], pools=[["xen1"], ["xen2"]],
                timings=FAST) as lab:
        assert failure(login(lab, "xen2").xenapi.pool.join, MASTER, "root", lab.password) == [
            "JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS"]


def test_a_clone_cannot_join_its_original_until_made_unique(lab: XenLab) -> None:
    lab.clone("xen4", from_host="xen1")
    assert lab.inventory("xen4")["INSTALLATION_UUID"] == lab.inventory("xen1")["INSTALLATION_UUID"]
    clone = login(lab, "xen4")
    (me,) = clone.xenapi.host.get_all_records().values()
    assert me["name_label"] == "xen1" and me["uuid"] == lab.inventory("xen1")["INSTALLATION_UUID"]
    assert failure(clone.xenapi.pool.join, MASTER, "root", lab.password) == [
        "OPERATION_NOT_ALLOWED", "Host cannot become slave of itself"]

    # the seeds' procedure: stop xapi, new UUIDs in /etc/xensource-inventory, delete the state DB, start xapi
    inventory = lab.inventory("xen4")
    inventory.update(INSTALLATION_UUID=str(uuid.uuid4()), CONTROL_DOMAIN_UUID=str(uuid.uuid4()))
    lab.write_inventory("xen4", inventory)
    lab.remove_state_db("xen4")
    lab.restart_xapi("xen4")
    wait_for(lambda: lab.status("xen4")["serving"], what="xapi on xen4", timeout=10, ignoring=XENAPI_DOWN)
    unique = login(lab, "xen4")
    host, record = next(iter(unique.xenapi.host.get_all_records().items()))
    assert record["uuid"] == inventory["INSTALLATION_UUID"]
    assert unique.xenapi.VM.get_uuid(record["control_domain"]) == inventory["CONTROL_DOMAIN_UUID"]
    unique.xenapi.host.set_name_label(host, "xen4")
    unique.xenapi.host.set_hostname_live(host, "xen4")
    unique.xenapi.pool.join(MASTER, "root", lab.password)
    master = login(lab, "xen1")
    assert master.xenapi.host.get_uuid(host_named(master, "xen4")) == inventory["INSTALLATION_UUID"]


def test_restart_xapi_keeping_the_database_adds_a_host_record_for_a_new_uuid(lab: XenLab) -> None:
    fresh = str(uuid.uuid4())
    lab.set_inventory_uuid("xen3", fresh)
    lab.restart_xapi("xen3")
    wait_for(lambda: lab.status("xen3")["serving"], what="xapi on xen3", timeout=10, ignoring=XENAPI_DOWN)
    session = login(lab, "xen3")
    uuids = sorted(h["uuid"] for h in session.xenapi.host.get_all_records().values())
    assert fresh in uuids and len(uuids) == 2  # dbsync's create_localhost: the old record stays behind


def test_eject() -> None:
    # on a ManualClock the ejected host stays down (XenTimings.eject_reboot) until the test moves the clock
    hosts = [XenHostSpec("xen1"), XenHostSpec("xen2")]
    with XenLab(hosts=hosts, pools=[["xen1", "xen2"]], timings=FAST, clock=ManualClock()) as lab:
        master = login(lab, "xen1")
        xen1, xen2 = host_named(master, "xen1"), host_named(master, "xen2")
        assert failure(master.xenapi.pool.eject, xen2) == ["OPERATION_NOT_ALLOWED", "VM resident on host"]
        assert failure(master.xenapi.pool.eject, xen1) == ["INTERNAL_ERROR", "Xapi_pool.Cannot_eject_master"]
        for vm in master.xenapi.host.get_resident_VMs(xen2):
            if not master.xenapi.VM.get_is_control_domain(vm):
                master.xenapi.VM.hard_shutdown(vm)
        master.xenapi.pool.eject(xen2)
        assert master.xenapi.host.get_by_name_label("xen2") == []
        assert lab.status("xen2")["power"] == "down"
        with pytest.raises(ConnectionRefusedError):
            login(lab, "xen2")
        ejected = advance_until(lab, lambda: login(lab, "xen2"), what="xen2 back as a standalone host")
        hosts_of = ejected.xenapi.host.get_all_records()
        assert [h["uuid"] for h in hosts_of.values()] == [lab.inventory("xen2")["INSTALLATION_UUID"]]
        assert not any(sr["shared"] for sr in ejected.xenapi.SR.get_all_records().values())
        assert lab.pool_of("xen2")["uuid"] != lab.pool_of("xen1")["uuid"]
        names = [(e["event"], e.get("host")) for e in lab.audit() if e["event"] in ("pool.eject", "host.reboot")]
        assert names == [("pool.eject", "xen2"), ("host.reboot", "xen2")]
        (reboot,) = [e for e in lab.audit() if e["event"] == "host.reboot"]
        (booted,) = [e for e in lab.audit() if e["event"] == "host.booted" and e["host"] == "xen2"]
        assert booted["t"] - reboot["t"] >= FAST.eject_reboot  # down that long, in the lab's time


def test_designate_new_master() -> None:
    # on a ManualClock the transition stays in progress until the test moves the clock past
    # XenTimings.master_transition: the second call meets it in progress however busy the machine is
    with XenLab(hosts=[XenHostSpec("xen1"), XenHostSpec("xen2")], pools=[["xen1", "xen2"]], timings=FAST,
                clock=ManualClock()) as lab:
        master = login(lab, "xen1")
        xen2 = host_named(master, "xen2")
        pool = master.xenapi.pool.get_all()[0]
        task = master.xenapi.Async.pool.designate_new_master(xen2)
        # the task's thread records the operation (pool.current_operations) once it runs
        wait_for(lambda: task in master.xenapi.pool.get_current_operations(pool), what="the designation in progress",
                 timeout=10, ignoring=XENAPI_DOWN)
        assert failure(master.xenapi.pool.designate_new_master, xen2) == ["DESIGNATE_NEW_MASTER_IN_PROGRESS"]
        assert master.xenapi.task.get_status(task) == "pending" and lab.pool_of("xen1")["master"] == "xen1"
        drive(lab, lambda: lab.pool_of("xen1")["master"] == "xen2", what="the designation committed")
        new = advance_until(lab, lambda: login(lab, "xen2"), what="xen2 serving as master")
        assert new.xenapi.task.get_status(task) == "success"
        pool = new.xenapi.pool.get_all()[0]
        assert new.xenapi.host.get_name_label(new.xenapi.pool.get_master(pool)) == "xen2"
        advance_until(lab, lambda: lab.status("xen1")["serving"], what="xen1 back")
        assert failure(XenAPI.Session(lab.url("xen1")).xenapi.login_with_password, "root", lab.password) == [
            "HOST_IS_SLAVE", "127.0.1.11"]
        (event,) = [e for e in lab.audit() if e["event"] == "master.changed"]
        assert (event["old"], event["new"], event["reason"]) == ("xen1", "xen2", "designate")
