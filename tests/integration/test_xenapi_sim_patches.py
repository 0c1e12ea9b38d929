"""The pool_patch API of the lab XenAPI simulator (stackops_lab/xenapi/calls_patch.py): a lab pool presenting
itself as XenServer 6.5 (host software_version product_version) patches the 6.x way — PUT /pool_patch_upload,
PATCH_ALREADY_EXISTS, precheck / apply with PATCH_PRECHECK_FAILED_* and PATCH_APPLY_FAILED, pool_apply stopping at
the first error (xapi_pool_patch.ml at 28c904d) — while a current pool serves pool_patch as xapi does today, over
pool_update. Driven with plain HTTP PUT and the official SDK (`XenAPI` from PyPI).
"""
from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Iterator

import pytest
import XenAPI

from support.xenapi import FAST, failure, login

from stackops_lab.xenapi import XenHostSpec, XenLab
from stackops_lab.xenapi.calls_update import updates_of
from stackops_lab.xenapi.update_file import UpdateFile

PRECHECK = "PATCH_PRECHECK_FAILED_"


@pytest.fixture(scope="module")
def lab() -> Iterator[XenLab]:
    """A XenServer 6.5 pool: xen1 (master), xen2, xen3, one running guest each."""
    specs = [XenHostSpec(name, product_version="6.5.0", platform_version="1.9.0") for name in ("xen1", "xen2", "xen3")]
    with XenLab(hosts=specs, pools=[["xen1", "xen2", "xen3"]], vms_per_host=1, timings=FAST) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def session(lab: XenLab) -> Iterator[XenAPI.Session]:
    session = login(lab, "xen1")
    yield session
    session.xenapi.session.logout()


def hosts(session: XenAPI.Session) -> dict[str, str]:
    return {record["name_label"]: ref for ref, record in session.xenapi.host.get_all_records().items()}


def upload(lab: XenLab, session: XenAPI.Session, content: bytes) -> tuple[str, str, list[str]]:
    """PUT /pool_patch_upload as `xe patch-upload` does: the task's status, result and error_info."""
    x = session.xenapi
    task = x.task.create("patch upload", "")
    connection = http.client.HTTPConnection(urllib.parse.urlsplit(lab.url("xen1")).netloc, timeout=30)
    connection.request("PUT", "/pool_patch_upload?" + urllib.parse.urlencode(
        {"session_id": session._session, "task_id": task}), body=content)
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200 and response.getheader("task-id") == task
    outcome = (x.task.get_status(task), x.task.get_result(task), x.task.get_error_info(task))
    x.task.destroy(task)
    return outcome


def uploaded(lab: XenLab, session: XenAPI.Session, patch: UpdateFile) -> str:
    status, result, errors = upload(lab, session, patch.to_bytes())
    assert (status, errors) == ("success", []), errors
    return result


def test_a_6x_pool_takes_patches_and_refuses_the_update_api(lab: XenLab, session: XenAPI.Session) -> None:
    x = session.xenapi
    patch = UpdateFile("XS65ESP1001", version="1.0", after_apply_guidance=["restartHost"])
    ref = uploaded(lab, session, patch)
    record = x.pool_patch.get_record(ref)
    assert {k: record[k] for k in ("uuid", "name_label", "version", "pool_applied", "host_patches",
                                   "after_apply_guidance", "pool_update")} == {
        "uuid": patch.uuid, "name_label": "XS65ESP1001", "version": "1.0", "pool_applied": False,
        "host_patches": [], "after_apply_guidance": ["restartHost"], "pool_update": "OpaqueRef:NULL"}
    assert upload(lab, session, patch.to_bytes()) == ("failure", "", ["PATCH_ALREADY_EXISTS", patch.uuid])
    assert upload(lab, session, b"MZ\x90\x00") == ("failure", "", ["INVALID_PATCH"])
    assert failure(x.pool_update.introduce, x.VDI.get_all()[0]) == ["MESSAGE_METHOD_UNKNOWN",
                                                                    "pool_update.introduce"]
    # cleaned, the same patch uploads again into its old record
    x.pool_patch.pool_clean(ref)
    assert failure(x.pool_patch.precheck, ref, hosts(session)["xen1"]) == ["CANNOT_FIND_PATCH"]
    assert uploaded(lab, session, patch) == ref
    x.pool_patch.destroy(ref)
    assert ref not in x.pool_patch.get_all()


def test_6x_prechecks_and_pool_apply_stopping_at_the_first_error(lab: XenLab, session: XenAPI.Session) -> None:
    x = session.xenapi
    by_name = hosts(session)
    base = UpdateFile("XS65ESP1002", after_apply_guidance=["restartHost"], server_version="6.5.0")
    follow = UpdateFile("XS65ESP1003", requires=[base.uuid])
    base_ref, follow_ref = uploaded(lab, session, base), uploaded(lab, session, follow)
    for host in by_name.values():
        assert x.pool_patch.precheck(base_ref, host) == ""
        assert failure(x.pool_patch.precheck, follow_ref, host) == [PRECHECK + "PREREQUISITE_MISSING", follow_ref,
                                                                    base.uuid]
    knobs = updates_of(lab)
    knobs.fail_precheck[("xen2", base.uuid)] = [PRECHECK + "UNKNOWN_ERROR", base_ref, "backup files exist"]
    try:
        assert failure(x.pool_patch.pool_apply, base_ref) == [PRECHECK + "UNKNOWN_ERROR", base_ref,
                                                              "backup files exist"]
    finally:
        del knobs.fail_precheck[("xen2", base.uuid)]
    applied = {x.host_patch.get_host(hp) for hp in x.pool_patch.get_host_patches(base_ref)}
    assert applied == {by_name["xen1"]}  # xen1 before the error kept it, xen3 was never tried
    assert x.pool_patch.get_pool_applied(base_ref) is False
    assert failure(x.pool_patch.apply, base_ref, by_name["xen1"]) == ["PATCH_ALREADY_APPLIED", base_ref]
    assert failure(x.pool_patch.destroy, base_ref) == ["PATCH_IS_APPLIED"]
    x.pool_patch.pool_apply(base_ref)
    assert x.pool_patch.get_pool_applied(base_ref) is True
    assert len(x.pool_patch.get_host_patches(base_ref)) == 3
    assert x.pool_patch.precheck(follow_ref, by_name["xen3"]) == ""
    knobs.fail_apply[("xen3", follow.uuid)] = "patch script exited 1"
    try:
        assert failure(x.pool_patch.apply, follow_ref, by_name["xen3"]) == ["PATCH_APPLY_FAILED",
                                                                            "patch script exited 1"]
    finally:
        del knobs.fail_apply[("xen3", follow.uuid)]
    assert x.pool_patch.apply(follow_ref, by_name["xen3"]) == ""
    assert len(x.host.get_patches(by_name["xen3"])) == 2
    # 6.x has no updates_requiring_reboot: a client reads the guidance
    assert x.host.get_updates_requiring_reboot(by_name["xen3"]) == []


def test_6x_precheck_failures_carry_the_patch_ref(lab: XenLab, session: XenAPI.Session) -> None:
    x = session.xenapi
    xen1 = hosts(session)["xen1"]
    wrong = uploaded(lab, session, UpdateFile("XS62ESP1", server_version="6.2.0"))
    assert failure(x.pool_patch.precheck, wrong, xen1) == [PRECHECK + "WRONG_SERVER_VERSION", wrong, "6.5.0",
                                                           "6.2.0"]
    big = uploaded(lab, session, UpdateFile("XS65ESP1009", installation_size=5 * 2 ** 30))
    assert failure(x.pool_patch.precheck, big, xen1) == [PRECHECK + "OUT_OF_SPACE", big, str(4 * 2 ** 30),
                                                         str(5 * 2 ** 30)]
    quiet = uploaded(lab, session, UpdateFile("XS65ESP1010", requires_no_running_vms=True))
    assert failure(x.pool_patch.precheck, quiet, xen1) == [PRECHECK + "VM_RUNNING", quiet]
    assert failure(x.pool_patch.apply, quiet, xen1) == [PRECHECK + "VM_RUNNING", quiet]


def test_a_current_pool_serves_pool_patch_over_pool_update() -> None:
    with XenLab(hosts=[XenHostSpec("xen1"), XenHostSpec("xen2")], pools=[["xen1", "xen2"]], vms_per_host=1,
                timings=FAST) as current:
        session = login(current, "xen1")
        x = session.xenapi
        by_name = hosts(session)
        update = UpdateFile("XS82E601", after_apply_guidance=["restartHost"])
        patch = uploaded(current, session, update)
        update_ref = x.pool_patch.get_pool_update(patch)
        assert x.pool_update.get_uuid(update_ref) == update.uuid
        assert x.VDI.get_name_label(x.pool_update.get_vdi(update_ref)) == "Imported VDI"
        assert x.pool_patch.precheck(patch, by_name["xen1"]) == ""
        assert x.pool_patch.apply(patch, by_name["xen1"]) == ""
        assert x.pool_update.get_hosts(update_ref) == [by_name["xen1"]]
        assert x.host.get_updates_requiring_reboot(by_name["xen1"]) == [update_ref]
        # current xapi's pool_apply calls apply on every host: the first already has it
        assert failure(x.pool_patch.pool_apply, patch) == ["UPDATE_ALREADY_APPLIED", update_ref]
        x.pool_patch.apply(patch, by_name["xen2"])
        x.pool_patch.pool_clean(patch)
        assert x.pool_update.get_vdi(update_ref) == "OpaqueRef:NULL"
        assert failure(x.pool_patch.destroy, patch) == ["UPDATE_IS_APPLIED"]
        session.xenapi.session.logout()
