"""An update apply that takes time in the lab XenAPI simulator (XenTimings.update_apply), on a ManualClock so the
apply stays under way until the test moves the clock: as in xapi, a second apply of the same update on the host
meanwhile is refused OTHER_OPERATION_IN_PROGRESS — ["Applying the update", update] from the pool_update.apply
extension's lock (7.1+), ["Pool_patch", patch, message] while 6.x's host_patch says applied false —, the host shows
the update only once the apply has ended, and an apply after that is UPDATE_ALREADY_APPLIED / PATCH_ALREADY_APPLIED.
"""
from __future__ import annotations

import dataclasses
import http.client
import re
import urllib.parse

import pytest
import XenAPI
from support.wait import wait_for
from support.xenapi import FAST, drive, failure, login

from stackops_lab.clock import ManualClock
from stackops_lab.xenapi import XenHostSpec, XenLab
from stackops_lab.xenapi.update_file import UpdateFile

NAMES = ["xen1", "xen2"]


def put(lab: XenLab, path: str, query: dict[str, str], body: bytes) -> None:
    connection = http.client.HTTPConnection(urllib.parse.urlsplit(lab.url("xen1")).netloc, timeout=30)
    connection.request("PUT", f"{path}?" + urllib.parse.urlencode(query), body=body)
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200


def uploaded(lab: XenLab, session: XenAPI.Session, update: UpdateFile, legacy: bool) -> str:
    """The pool_patch (6.x, PUT /pool_patch_upload) or pool_update (PUT /import_raw_vdi, introduce) ref."""
    x = session.xenapi
    task = x.task.create("upload", "")
    if legacy:
        put(lab, "/pool_patch_upload", {"session_id": session._session, "task_id": task}, update.to_bytes())
    else:
        sr = x.pool.get_default_SR(x.pool.get_all()[0])
        put(lab, "/import_raw_vdi", {"session_id": session._session, "sr_id": sr, "task_id": task}, update.to_bytes())
    assert x.task.get_status(task) == "success", x.task.get_error_info(task)
    ref = re.search(r"OpaqueRef:[^<]+", x.task.get_result(task))
    assert ref is not None
    x.task.destroy(task)
    return ref.group(0) if legacy else x.pool_update.introduce(ref.group(0))


@pytest.mark.parametrize("legacy", [False, True], ids=["pool_update", "pool_patch-6.x"])
def test_a_second_apply_while_one_runs_is_refused_and_the_host_has_the_update_only_once_it_ends(legacy: bool) -> None:
    version = dict(product_version="6.5.0", platform_version="1.9.0") if legacy else {}
    hosts = [XenHostSpec(n, **version) for n in NAMES]  # type: ignore[arg-type]
    timings = dataclasses.replace(FAST, update_apply=60.0)
    with XenLab(hosts=hosts, pools=[NAMES], vms_per_host=0, timings=timings, clock=ManualClock()) as lab:
        session = login(lab, "xen1")
        x = session.xenapi
        cls = x.pool_patch if legacy else x.pool_update
        ref = uploaded(lab, session, UpdateFile("XS82E090", after_apply_guidance=["restartHost"]), legacy)
        (host,) = x.host.get_by_name_label("xen2")

        def patches() -> list[bool]:  # 6.x: the host_patch records of xen2, applied or not
            return [r["applied"] for r in x.host_patch.get_all_records().values() if r["host"] == host]

        task = x.Async.pool_patch.apply(ref, host) if legacy else x.Async.pool_update.apply(ref, host)
        wait_for(lambda: lab.waiting_calls(), timeout=30, what="the apply under way")
        refused = failure(cls.apply, ref, host)
        if legacy:
            assert refused[:3] == ["OTHER_OPERATION_IN_PROGRESS", "Pool_patch", ref], refused
            assert "Applying the same patch on xen2 is in progress" in refused[3]
            assert patches() == [False], "written applied false before the patch runs"
        else:
            assert refused == ["OTHER_OPERATION_IN_PROGRESS", "Applying the update", ref]
            assert x.host.get_updates(host) == [] and x.pool_update.get_hosts(ref) == []
        assert x.task.get_status(task) == "pending"

        drive(lab, lambda: x.task.get_status(task) != "pending", what="the apply done")
        assert x.task.get_status(task) == "success", x.task.get_error_info(task)
        if legacy:
            assert patches() == [True]
            assert failure(cls.apply, ref, host) == ["PATCH_ALREADY_APPLIED", ref]
        else:
            assert x.host.get_updates(host) == [ref] and x.host.get_updates_requiring_reboot(host) == [ref]
            assert failure(cls.apply, ref, host) == ["UPDATE_ALREADY_APPLIED", ref]
        session.xenapi.session.logout()
