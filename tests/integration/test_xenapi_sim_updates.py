"""XenServer updates in the lab XenAPI simulator (stackops_lab/xenapi/calls_update.py), driven as a client does:
the update file (update_file.py) fetched by URL and SHA-256, uploaded with a plain HTTP PUT /import_raw_vdi,
pool_update.introduce / precheck / apply / pool_apply / pool_clean / destroy through the official SDK (`XenAPI`
from PyPI), with xapi's errors and parameters (xapi_pool_update.ml, python3/extensions/pool_update.precheck and
.apply). Precheck failures that depend on a host's dom0 (space, keys, an unknown error) come from the lab's knobs.
"""
from __future__ import annotations

import hashlib
import http.client
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
import XenAPI

from support.xenapi import FAST, failure, login

from stackops_lab.xenapi import XenHostSpec, XenLab
from stackops_lab.xenapi.calls_update import clear_reboot_required, updates_of
from stackops_lab.xenapi.update_file import UpdateFile, UpdateServer

NULL = "OpaqueRef:NULL"
PRECHECK = "UPDATE_PRECHECK_FAILED_"


@pytest.fixture(scope="module")
def lab() -> Iterator[XenLab]:
    """xen1 (master), xen2, xen3 in a pool with NFS, one running guest each."""
    with XenLab(hosts=[XenHostSpec("xen1"), XenHostSpec("xen2"), XenHostSpec("xen3")],
                pools=[["xen1", "xen2", "xen3"]], vms_per_host=1, timings=FAST) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def session(lab: XenLab) -> Iterator[XenAPI.Session]:
    session = login(lab, "xen1")
    yield session
    session.xenapi.session.logout()


def hosts(session: XenAPI.Session) -> dict[str, str]:
    """name_label → host ref."""
    return {record["name_label"]: ref for ref, record in session.xenapi.host.get_all_records().items()}


def put(lab: XenLab, query: dict[str, str], body: bytes) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(urllib.parse.urlsplit(lab.url("xen1")).netloc, timeout=30)
    connection.request("PUT", "/import_raw_vdi?" + urllib.parse.urlencode(query), body=body)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def upload(lab: XenLab, session: XenAPI.Session, content: bytes) -> str:
    """PUT the file into a new VDI on the default SR, as XenCenter does: the VDI ref from the task's result."""
    x = session.xenapi
    task = x.task.create("import update", "")
    response = put(lab, {"session_id": session._session, "sr_id": x.pool.get_default_SR(x.pool.get_all()[0]),
                         "task_id": task}, content)
    assert response.status == 200 and response.getheader("task-id") == task
    assert x.task.get_status(task) == "success"
    match = re.fullmatch(r"<value>(?:<string>)?(OpaqueRef:[^<]+)(?:</string>)?</value>", x.task.get_result(task))
    assert match, x.task.get_result(task)
    x.task.destroy(task)
    return match.group(1)


def introduce(lab: XenLab, session: XenAPI.Session, update: UpdateFile) -> str:
    return session.xenapi.pool_update.introduce(upload(lab, session, update.to_bytes()))


def test_an_update_fetched_by_url_uploads_into_a_vdi_and_is_introduced_once(lab: XenLab,
                                                                           session: XenAPI.Session) -> None:
    x = session.xenapi
    update = UpdateFile("XS82E100", version="2.0", name_description="Hotfix", installation_size=2 ** 20,
                        after_apply_guidance=["restartHost", "restartXAPI"])
    with UpdateServer() as server:
        url, sha256 = server.add(update)
        content = urllib.request.urlopen(url, timeout=30).read()
    assert hashlib.sha256(content).hexdigest() == sha256
    vdi = upload(lab, session, content)
    assert x.VDI.get_virtual_size(vdi) == str(len(content))
    assert x.VDI.get_name_label(vdi) == "Imported VDI"
    ref = x.pool_update.introduce(vdi)
    record = x.pool_update.get_record(ref)
    assert record == {"uuid": update.uuid, "name_label": "XS82E100", "name_description": "Hotfix",
                      "version": "2.0", "installation_size": str(2 ** 20), "key": update.key,
                      "after_apply_guidance": ["restartHost", "restartXAPI"], "vdi": vdi, "hosts": [],
                      "other_config": {}, "enforce_homogeneity": False}
    assert x.pool_update.get_by_uuid(update.uuid) == ref
    # its companion pool_patch, as xapi makes one
    patch = x.pool_patch.get_record(next(p for p, r in x.pool_patch.get_all_records().items()
                                         if r["pool_update"] == ref))
    assert patch["name_label"] == "XS82E100" and patch["uuid"][9:23] == "0000-0000-" + update.uuid[19:23]
    # the same VDI again: the same update; another upload of it: UPDATE_ALREADY_EXISTS
    assert x.pool_update.introduce(vdi) == ref
    again = upload(lab, session, content)
    assert failure(x.pool_update.introduce, again) == ["UPDATE_ALREADY_EXISTS", update.uuid]
    # not an update at all
    assert failure(x.pool_update.introduce, upload(lab, session, b"\x00" * 512)) == [
        "INVALID_UPDATE", "missing update document (update.xml) in the package."]


def test_upload_refusals_follow_import_raw_vdi(lab: XenLab, session: XenAPI.Session) -> None:
    x = session.xenapi
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    assert put(lab, {"session_id": "OpaqueRef:bogus", "sr_id": sr}, b"x").status == 403
    task = x.task.create("import", "")
    response = put(lab, {"session_id": session._session, "sr_id": sr, "task_id": task, "format": "vhd"}, b"x")
    assert response.status == 400
    assert x.task.get_status(task) == "failure"
    assert x.task.get_error_info(task) == ["INTERNAL_ERROR", "Importing a VHD directly into an SR not yet supported"]
    response = put(lab, {"session_id": session._session, "sr_id": sr, "format": "iso"}, b"x")
    assert response.status == 404
    assert x.task.get_error_info(response.getheader("task-id")) == ["INTERNAL_ERROR", "Unknown format iso"]
    response = put(lab, {"session_id": session._session, "sr_id": NULL}, b"x")
    assert response.status == 400
    assert x.task.get_error_info(response.getheader("task-id")) == ["INTERNAL_ERROR",
                                                                    "Not enough info supplied to import"]


def test_precheck_everywhere_then_apply_host_by_host_with_guidance(lab: XenLab, session: XenAPI.Session) -> None:
    x = session.xenapi
    by_name = hosts(session)
    base = UpdateFile("XS82E201", after_apply_guidance=["restartHost"], server_version="8.2.1")
    follow = UpdateFile("XS82E202", requires=["XS82E201"], livepatch="complete")
    early = UpdateFile("XS82E203")
    refs = {u.name_label: introduce(lab, session, u) for u in (base, follow, early)}
    x.pool_update.apply(refs["XS82E203"], by_name["xen2"])  # one already applied on a host
    # precheck on every host before any host is touched
    for host in by_name.values():
        assert x.pool_update.precheck(refs["XS82E201"], host) == "ok"
        assert failure(x.pool_update.precheck, refs["XS82E202"], host) == [
            PRECHECK + "PREREQUISITE_MISSING", "XS82E202", "XS82E201"]
        assert x.pool_update.precheck(refs["XS82E203"], host) == "ok"
    assert failure(x.pool_update.apply, refs["XS82E203"], by_name["xen2"]) == [
        "UPDATE_ALREADY_APPLIED", refs["XS82E203"]]
    for name in ("xen1", "xen2", "xen3"):
        host = by_name[name]
        x.pool_update.apply(refs["XS82E201"], host)
        assert x.pool_update.precheck(refs["XS82E202"], host) == "ok_livepatch_complete"
        x.pool_update.apply(refs["XS82E202"], host)
        if name != "xen2":
            x.pool_update.apply(refs["XS82E203"], host)
        record = x.host.get_record(host)
        assert sorted(record["updates"]) == sorted(refs.values())
        assert record["updates_requiring_reboot"] == [refs["XS82E201"]]  # restartHost only
        assert record["enabled"] is True  # apply neither disables nor reboots
    for ref in refs.values():
        assert sorted(x.pool_update.get_hosts(ref)) == sorted(by_name.values())
        assert failure(x.pool_update.pool_apply, ref) == ["UPDATE_ALREADY_APPLIED_IN_POOL", ref]
        assert failure(x.pool_update.destroy, ref) == ["UPDATE_IS_APPLIED"]
    # a host_patch per host and update, listed by the host and the patch
    assert len(x.host.get_patches(by_name["xen1"])) >= 3
    # the reboot (host.reboot's implementation calls this when the host boots) clears the sentinel
    with lab.state.lock:
        machine = lab.state.machine("xen1")
        assert machine.db is not None
        clear_reboot_required(machine.db, machine.host_ref)
    assert x.host.get_updates_requiring_reboot(by_name["xen1"]) == []
    assert x.host.get_updates_requiring_reboot(by_name["xen2"]) == [refs["XS82E201"]]
    # cleaning removes the VDI: the update stays applied, a precheck can no longer find it
    vdi = x.pool_update.get_vdi(refs["XS82E203"])
    x.pool_update.pool_clean(refs["XS82E203"])
    x.pool_update.pool_clean(refs["XS82E203"])
    assert x.pool_update.get_vdi(refs["XS82E203"]) == NULL
    assert vdi not in x.VDI.get_all()
    assert failure(x.pool_update.precheck, refs["XS82E203"], by_name["xen1"]) == ["CANNOT_FIND_UPDATE"]


def test_precheck_failures_carry_xapis_parameters(lab: XenLab, session: XenAPI.Session) -> None:
    x = session.xenapi
    xen1 = hosts(session)["xen1"]
    knobs = updates_of(lab)
    wrong = introduce(lab, session, UpdateFile("XS71E001", server_version="7.1.2"))
    assert failure(x.pool_update.precheck, wrong, xen1) == [PRECHECK + "WRONG_SERVER_VERSION", "XS71E001",
                                                             "8.2.1", "7.1.2"]
    big = introduce(lab, session, UpdateFile("XS82E301", installation_size=8 * 2 ** 30))
    assert failure(x.pool_update.precheck, big, xen1) == [PRECHECK + "OUT_OF_SPACE", "XS82E301", str(4 * 2 ** 30),
                                                           str(8 * 2 ** 30)]
    knobs.dom0_free["xen1"] = 16 * 2 ** 30
    assert x.pool_update.precheck(big, xen1) == "ok"
    unsigned_key = introduce(lab, session, UpdateFile("XS82E302", key="RPM-GPG-KEY-other"))
    assert failure(x.pool_update.precheck, unsigned_key, xen1) == [PRECHECK + "GPGKEY_NOT_IMPORTED", "XS82E302"]
    older = introduce(lab, session, UpdateFile("XS82E303"))
    newer = introduce(lab, session, UpdateFile("XS82E304", conflicts=["XS82E303"], livepatch="incomplete"))
    assert x.pool_update.precheck(newer, xen1) == "ok_livepatch_incomplete"
    x.pool_update.apply(older, xen1)
    assert failure(x.pool_update.precheck, newer, xen1) == [PRECHECK + "CONFLICT_PRESENT", "XS82E304", "XS82E303"]
    assert failure(x.pool_update.apply, newer, xen1) == [PRECHECK + "CONFLICT_PRESENT", "XS82E304", "XS82E303"]
    assert xen1 not in x.pool_update.get_hosts(newer)


def test_a_precheck_failure_injected_on_one_host_and_pool_apply(lab: XenLab, session: XenAPI.Session) -> None:
    x = session.xenapi
    by_name = hosts(session)
    update = UpdateFile("XS82E401")
    ref = introduce(lab, session, update)
    knobs = updates_of(lab)
    knobs.fail_precheck[("xen3", update.uuid)] = [PRECHECK + "UNKNOWN_ERROR", "XS82E401", "rpm database locked"]
    try:
        assert x.pool_update.precheck(ref, by_name["xen1"]) == "ok"
        assert failure(x.pool_update.precheck, ref, by_name["xen3"]) == [PRECHECK + "UNKNOWN_ERROR", "XS82E401",
                                                                         "rpm database locked"]
        # pool_apply tries every host, then names those that failed
        assert failure(x.pool_update.pool_apply, ref) == ["UPDATE_POOL_APPLY_FAILED", by_name["xen3"]]
        assert sorted(x.pool_update.get_hosts(ref)) == sorted([by_name["xen1"], by_name["xen2"]])
    finally:
        del knobs.fail_precheck[("xen3", update.uuid)]
    knobs.fail_apply[("xen3", "*")] = "Error: Transaction check error"
    try:
        assert x.pool_update.precheck(ref, by_name["xen3"]) == "ok"
        assert failure(x.pool_update.apply, ref, by_name["xen3"]) == ["UPDATE_APPLY_FAILED",
                                                                      "Error: Transaction check error"]
    finally:
        del knobs.fail_apply[("xen3", "*")]
    x.pool_update.pool_apply(ref)
    assert len(x.pool_update.get_hosts(ref)) == 3


def test_an_update_applied_nowhere_is_destroyed_with_its_patch(lab: XenLab, session: XenAPI.Session) -> None:
    x = session.xenapi
    update = UpdateFile("XS82E501")
    ref = introduce(lab, session, update)
    vdi = x.pool_update.get_vdi(ref)
    x.pool_update.destroy(ref)
    assert ref not in x.pool_update.get_all()
    assert all(r["pool_update"] != ref for r in x.pool_patch.get_all_records().values())
    # the VDI stays until cleaned; introduced again, it is a new update record
    assert vdi in x.VDI.get_all()
    assert x.pool_update.get_record(x.pool_update.introduce(vdi))["uuid"] == update.uuid


def test_a_host_whose_xapi_is_down_cannot_be_prechecked() -> None:
    with XenLab(hosts=[XenHostSpec("xen1"), XenHostSpec("xen2")], pools=[["xen1", "xen2"]], vms_per_host=0,
                timings=FAST) as two:
        session = login(two, "xen1")
        x = session.xenapi
        by_name = hosts(session)
        ref = introduce(two, session, UpdateFile("XS82E701"))
        two.stop_xapi("xen2")
        assert failure(x.pool_update.precheck, ref, by_name["xen2"]) == ["HOST_OFFLINE", by_name["xen2"]]
        assert failure(x.pool_update.pool_apply, ref) == ["UPDATE_POOL_APPLY_FAILED", by_name["xen2"]]
        assert x.pool_update.get_hosts(ref) == [by_name["xen1"]]
        session.xenapi.session.logout()
