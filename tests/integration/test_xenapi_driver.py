"""The XenAPI driver against the lab simulator: it finds the master from any member (following HOST_IS_SLAVE),
skips a member that answers but cannot serve (xapi still starting), stops at refused credentials, and reports
every member when no master answers."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from support.xenapi import FAST

from stackops.drivers.xenapi import Endpoint, PoolSession, XenAuthError, XenNoMaster
from stackops_lab.clock import ManualClock
from stackops_lab.xenapi import XenHostSpec, XenLab


@pytest.fixture
def lab() -> Iterator[XenLab]:
    """On a ManualClock: a host killed or restarting stays so (nothing here needs the lab's time to pass)."""
    with XenLab(hosts=[XenHostSpec(n) for n in ("xen1", "xen2", "xen3")], pools=[["xen1", "xen2", "xen3"]],
                timings=FAST, clock=ManualClock()) as simulator:
        yield simulator


def session(lab: XenLab, names: list[str], password: str | None = None) -> PoolSession:
    return PoolSession([lab.address(n) for n in names], lab.username, SecretStr(password or lab.password),
                       Endpoint(port=lab.port, plain_http=True, timeout=5))


def master_of(pool: PoolSession) -> str:
    async def go() -> str:
        try:
            return await pool.connect()
        finally:
            await pool.close()

    return asyncio.run(go())


def test_the_master_is_found_from_a_supporter(lab: XenLab) -> None:
    """xen3 names the master: the session goes there next, before xen2."""
    pool = session(lab, ["xen3", "xen2", "xen1"])
    assert master_of(pool) == lab.address("xen1")
    assert pool.unreachable == {lab.address("xen3"): f"supporter of {lab.address('xen1')}"}


def test_a_member_still_starting_is_skipped(lab: XenLab) -> None:
    lab.restart_xapi("xen2")  # starting until the clock moves past XenTimings.xapi_restart: it does not here
    pool = session(lab, ["xen2", "xen1"])
    assert master_of(pool) == lab.address("xen1")
    assert "HOST_STILL_BOOTING" in pool.unreachable[lab.address("xen2")]
    assert lab.status("xen2")["xapi"] == "starting"


def test_refused_credentials_stop_the_search(lab: XenLab) -> None:
    with pytest.raises(XenAuthError) as refused:
        master_of(session(lab, ["xen2", "xen1"], password="wrong"))
    assert "wrong" not in str(refused.value)


def test_no_master_names_every_member(lab: XenLab) -> None:
    lab.kill("xen1")
    with pytest.raises(XenNoMaster) as lost:
        master_of(session(lab, ["xen1", "xen2", "xen3"]))
    unreachable = lost.value.unreachable
    assert set(unreachable) == {lab.address(n) for n in ("xen1", "xen2", "xen3")}, unreachable
    assert unreachable[lab.address("xen2")] == f"supporter of {lab.address('xen1')}"


def test_a_supporter_naming_a_master_outside_the_members_is_not_followed(lab: XenLab) -> None:
    """The password goes to the session's addresses only (the members its Secret allows): xen2 and xen3 answer
    HOST_IS_SLAVE naming xen1, which is not among them, so xen1 never gets a login (issue 12, item 3)."""
    pool = session(lab, ["xen2", "xen3"])
    with pytest.raises(XenNoMaster) as lost:
        master_of(pool)
    assert lost.value.unreachable[lab.address("xen2")] == f"supporter of {lab.address('xen1')}"  # as failover reads it
    assert f"not logged in to {lab.address('xen1')}: not a member address" in str(lost.value)
    assert [e for e in lab.audit() if e["event"] == "session.login"] == []


def test_a_local_session_is_only_for_a_member(lab: XenLab) -> None:
    with pytest.raises(ValueError):
        session(lab, ["xen2", "xen3"]).local(lab.address("xen1"))
