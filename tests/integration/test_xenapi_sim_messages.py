"""The lab XenAPI simulator's class-specific messages beyond the generated field calls, driven through the official
SDK (`XenAPI` from PyPI): task.cancel / task.destroy on the tasks Async calls create. The lab runs on a
ManualClock, so a slow call's task stays pending until the test moves the clock (support.xenapi.drive).
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import XenAPI

from stackops_lab.clock import ManualClock
from support.xenapi import FAST, blocking, drive, failure, login

from stackops_lab.xenapi import XenHostSpec, XenLab


@pytest.fixture(scope="module")
def lab() -> Iterator[XenLab]:
    """xen1 (master) + xen2 in a pool with NFS, two running guests each."""
    with XenLab(hosts=[XenHostSpec("xen1"), XenHostSpec("xen2")], pools=[["xen1", "xen2"]], password="s3cret",
                timings=FAST, clock=ManualClock()) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def session(lab: XenLab) -> Iterator[XenAPI.Session]:
    session = login(lab, "xen1")
    yield session
    session.xenapi.session.logout()


def test_a_pending_task_is_cancelled_where_its_call_waits_and_a_finished_one_stays(lab: XenLab,
                                                                                  session: XenAPI.Session) -> None:
    api = session.xenapi
    pool = api.pool.get_all()[0]
    task = api.Async.pool.enable_ha([], {"timeout": "180"})
    record = api.task.get_record(task)
    assert (record["status"], record["allowed_operations"]) == ("pending", ["cancel"])
    assert task in api.task.get_all_records()
    api.task.cancel(task)
    assert list(api.task.get_current_operations(task).values()) == ["cancel"]
    drive(lab, lambda: api.task.get_status(task) != "pending", what="the cancelled task")
    record = api.task.get_record(task)
    assert (record["status"], record["error_info"], record["progress"]) == ("cancelled", ["TASK_CANCELLED", task], 1.0)
    assert record["allowed_operations"] == []
    assert api.pool.get_ha_enabled(pool) is False and api.pool.get_current_operations(pool) == {}
    # a finished task: cancel changes nothing (xapi raises no error), destroy removes it
    done = api.Async.host.get_servertime(api.host.get_all()[0])
    drive(lab, lambda: api.task.get_status(done) == "success", what="the servertime task")
    api.task.cancel(done)
    assert api.task.get_status(done) == "success"
    api.task.destroy(done)
    api.task.destroy(task)
    assert failure(api.task.get_record, done) == ["HANDLE_INVALID", "task", done]
    assert failure(api.task.cancel, done) == ["HANDLE_INVALID", "task", done]


def test_destroying_a_pending_task_removes_it_once_it_finishes(lab: XenLab, session: XenAPI.Session) -> None:
    api = session.xenapi
    task = api.Async.pool.enable_ha([], {"timeout": "180"})
    api.task.destroy(task)
    assert api.task.get_status(task) == "pending"
    drive(lab, lambda: task not in api.task.get_all(), what="the destroyed task gone")
    assert api.pool.get_ha_enabled(api.pool.get_all()[0]) is True
    blocking(lab, api.pool.disable_ha)
    created = api.task.create("backup", "a client's own task")
    assert (api.task.get_status(created), api.task.get_name_label(created)) == ("pending", "backup")
    api.task.destroy(created)
