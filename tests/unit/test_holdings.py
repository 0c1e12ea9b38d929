"""The registry of pooled things each object holds (`drivers/holdings.py`), with pools that record what they close,
and the CloudStack pool's key (a digest of the credentials, never the credentials)."""
from __future__ import annotations

import asyncio
from collections.abc import Hashable

import pytest
from pydantic import SecretStr

from stackops.drivers import holdings
from stackops.drivers.cloudstack import CloudStackPool
from stackops.drivers.holdings import Holdings


class RecordingPool:
    """A pool that hands out keys and records, in order, what it was asked to drop and what finished closing."""

    def __init__(self, *, awaitable: bool = False, fail: bool = False) -> None:
        self.dropped: list[Hashable] = []
        self.closed: list[Hashable] = []
        self.awaitable = awaitable
        self.fail = fail

    def get(self, key: Hashable) -> Hashable:
        holdings.note(self, key)
        return key

    def release(self, key: Hashable):  # noqa: ANN201 - None or a coroutine, as the protocol allows
        self.dropped.append(key)
        if self.fail:
            raise OSError("already gone")
        if not self.awaitable:
            self.closed.append(key)
            return None

        async def close() -> None:
            await asyncio.sleep(0)
            self.closed.append(key)
        return close()


def test_what_a_pass_stops_using_is_closed_at_its_end() -> None:
    pool, registry = RecordingPool(), Holdings()

    async def scenario() -> None:
        async with registry.held_by("kvm1"):
            pool.get("old-address")
            pool.get("cloudstack")
        assert pool.closed == [] and registry.holders(pool, "old-address") == ["kvm1"]
        async with registry.held_by("kvm1"):  # the address changed
            pool.get("new-address")
            pool.get("cloudstack")
            assert pool.closed == []  # nothing closes while the pass runs
        assert pool.closed == ["old-address"]
        assert registry.held("kvm1") == {(pool, "new-address"), (pool, "cloudstack")}

    asyncio.run(scenario())


def test_deleting_an_object_closes_all_it_held_but_what_another_object_holds() -> None:
    pool, registry = RecordingPool(awaitable=True), Holdings()

    async def scenario() -> None:
        async with registry.held_by("kvm1"):
            pool.get("host-a")
            pool.get("shared")
        async with registry.held_by("kvm2"):
            pool.get("shared")
        await registry.forget("kvm1")
        assert pool.closed == ["host-a"]
        assert registry.holders(pool, "shared") == ["kvm2"]
        await registry.forget("kvm2")
        assert sorted(pool.closed) == ["host-a", "shared"]
        await registry.forget("kvm2")  # a second delete event: nothing left to close
        assert len(pool.closed) == 2

    asyncio.run(scenario())


def test_a_running_pass_keeps_what_it_was_handed_open() -> None:
    """Object B starts using a connection object A held; A is deleted before B's pass ends: it stays open."""
    pool, registry = RecordingPool(), Holdings()

    async def scenario() -> None:
        async with registry.held_by("a"):
            pool.get("host")
        got, finish = asyncio.Event(), asyncio.Event()

        async def pass_of_b() -> None:
            async with registry.held_by("b"):
                pool.get("host")
                got.set()
                await finish.wait()

        running = asyncio.create_task(pass_of_b())
        await got.wait()
        await registry.forget("a")
        assert pool.closed == []
        finish.set()
        await running
        assert registry.holders(pool, "host") == ["b"]

    asyncio.run(scenario())


def test_tasks_a_pass_starts_report_to_its_object() -> None:
    pool, registry = RecordingPool(), Holdings()

    async def scenario() -> None:
        async def member(address: str) -> None:
            await asyncio.sleep(0)
            pool.get(address)

        async with registry.held_by("xen"):
            await asyncio.gather(member("dom0-1"), member("dom0-2"))
        assert registry.held("xen") == {(pool, "dom0-1"), (pool, "dom0-2")}
        async with registry.held_by("xen"):  # dom0-2 left the spec
            await asyncio.gather(member("dom0-1"))
        assert pool.closed == ["dom0-2"]

    asyncio.run(scenario())


def test_outside_a_pass_nothing_is_noted() -> None:
    pool, registry = RecordingPool(), Holdings()

    async def scenario() -> None:
        pool.get("plan-tool")
        async with registry.held_by("kvm1"):
            pass
        await registry.forget("kvm1")

    asyncio.run(scenario())
    assert pool.dropped == [] and registry.holders(pool, "plan-tool") == []


def test_a_failing_close_is_logged_and_the_rest_still_closed(caplog: pytest.LogCaptureFixture) -> None:
    failing, fine, registry = RecordingPool(fail=True), RecordingPool(awaitable=True), Holdings()

    async def scenario() -> None:
        async with registry.held_by("kvm1"):
            failing.get("dead")
            fine.get("alive")
        await registry.forget("kvm1")

    asyncio.run(scenario())
    assert failing.dropped == ["dead"] and fine.closed == ["alive"]
    assert "closing a pooled RecordingPool connection failed: OSError" in caplog.text


def test_everything_released_is_dropped_before_the_first_close_is_awaited() -> None:
    """A pass that starts while the closes run must get new connections, never one about to be closed."""
    pool, registry = RecordingPool(awaitable=True), Holdings()

    async def scenario() -> None:
        async with registry.held_by("kvm1"):
            pool.get("one")
            pool.get("two")
        closing = asyncio.create_task(registry.forget("kvm1"))
        await asyncio.sleep(0)  # the first close is awaited now
        assert sorted(pool.dropped) == ["one", "two"] and pool.closed == []
        await closing

    asyncio.run(scenario())


def test_cloudstack_pool_keys_by_a_digest_and_releases_a_rotated_client() -> None:
    async def scenario() -> None:
        pool, registry = CloudStackPool(), Holdings()
        old, new = SecretStr("OLD-SECRET-KEY-value"), SecretStr("NEW-SECRET-KEY-value")
        async with registry.held_by("svt"):
            first = pool.get("https://cs.example/client/api", "API-KEY", old)
            assert pool.get("https://cs.example/client/api", "API-KEY", old) is first
        assert "OLD-SECRET-KEY-value" not in repr(list(pool._clients))
        assert "API-KEY" not in repr(list(pool._clients))
        async with registry.held_by("svt"):  # the Secret's keys were rotated
            second = pool.get("https://cs.example/client/api", "API-KEY", new)
        assert second is not first
        assert list(pool._clients.values()) == [second]
        await registry.forget("svt")
        assert pool._clients == {} and pool._limits == {}

    asyncio.run(scenario())

