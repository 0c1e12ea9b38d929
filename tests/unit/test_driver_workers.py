"""The drivers' worker threads: one bounded set per driver, urgent calls first, a XenAPI task's timeout counting the
wait for a thread (SSH: test_ssh_queue.py).

Threads are held with events the test sets, the clock that measures queue waits is the test's. `SAFETY` only keeps
broken code from hanging a test: it never decides a result."""
from __future__ import annotations

import asyncio
import base64
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from stackops.drivers import xenapi
from stackops.api.references import NeededSecret
from stackops.drivers.secrets import SecretReader
from stackops.drivers.workers import Workers
from stackops.drivers.xenapi import Endpoint, LocalSession, PoolSession, XenAPIError

SAFETY = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    """Let the tasks just created run up to their first wait (handing their call to the workers)."""
    for _ in range(5):
        await asyncio.sleep(0)


# -- the worker threads themselves -----------------------------------------------------------------------------------


def test_urgent_calls_are_taken_before_queued_ordinary_ones() -> None:
    workers = Workers("t", 1)
    order: list[str] = []
    running, release = threading.Event(), threading.Event()

    def hold() -> None:
        order.append("a")
        running.set()
        release.wait(SAFETY)

    futures = [workers.submit(hold)]
    assert running.wait(SAFETY)
    futures += [workers.submit(order.append, "b"), workers.submit(order.append, "c"),
                workers.submit(order.append, "confirm", urgent=True)]
    assert workers.queued() == 3
    release.set()
    for future in futures:
        future.result(SAFETY)
    assert order == ["a", "confirm", "b", "c"]
    workers.shutdown()


def test_reserved_threads_run_an_urgent_call_while_every_ordinary_thread_is_busy() -> None:
    workers = Workers("t", 1, reserved=1)
    order: list[str] = []
    running, release = threading.Event(), threading.Event()

    def hold() -> None:
        order.append("a")
        running.set()
        release.wait(SAFETY)
        order.append("a done")

    held = workers.submit(hold)
    assert running.wait(SAFETY)
    queued = workers.submit(order.append, "b")
    workers.submit(order.append, "confirm", urgent=True).result(SAFETY)
    assert order == ["a", "confirm"], "the urgent call did not wait for the ordinary ones"
    release.set()
    held.result(SAFETY)
    queued.result(SAFETY)
    assert order == ["a", "confirm", "a done", "b"]
    workers.shutdown()


def test_at_most_size_calls_run_and_the_rest_queue() -> None:
    workers = Workers("t", 2)
    started, release = threading.Semaphore(0), threading.Event()

    def hold(n: int) -> int:
        started.release()
        release.wait(SAFETY)
        return n

    futures = [workers.submit(hold, n) for n in range(5)]
    assert started.acquire(timeout=SAFETY) and started.acquire(timeout=SAFETY)
    assert workers.queued() == 3 and workers._threads == 2
    release.set()
    assert [f.result(SAFETY) for f in futures] == [0, 1, 2, 3, 4]
    workers.shutdown()


def test_a_call_given_up_while_queued_is_not_run_and_shutdown_cancels_the_queue() -> None:
    workers = Workers("t", 1)
    ran: list[str] = []
    running, release = threading.Event(), threading.Event()

    def hold() -> None:
        running.set()
        release.wait(SAFETY)

    held = workers.submit(hold)
    assert running.wait(SAFETY)
    given_up = workers.submit(ran.append, "given up")
    assert given_up.cancel()
    left = workers.submit(ran.append, "left in the queue")
    workers.shutdown()
    assert left.cancelled()
    release.set()
    held.result(SAFETY)
    assert ran == []
    with pytest.raises(RuntimeError):
        workers.submit(ran.append, "after shutdown")


# -- one set per driver ----------------------------------------------------------------------------------------------


class FakeCore:
    def __init__(self) -> None:
        self.reads: list[str] = []

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        self.reads.append(f"{namespace}/{name}")
        return SimpleNamespace(data={"password": base64.b64encode(b"s3cret").decode()}, string_data=None,
                               metadata=SimpleNamespace(annotations=None))


def test_a_saturated_xenapi_pool_does_not_delay_a_secret_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """64 XenAPI calls hang on a dead host: more than any thread pool they could share with Secret reads."""
    release = threading.Event()
    hanging: list[str] = []
    returned: list[str] = []

    def dead_host(self: LocalSession, name: str, *args: Any) -> Any:
        hanging.append(name)
        release.wait(SAFETY)
        release.set()  # (broken code only: the others need not wait SAFETY each)
        returned.append(name)
        return "late"

    monkeypatch.setattr(LocalSession, "_call_sync", dead_host)
    core = FakeCore()

    async def main() -> None:
        session = LocalSession("192.0.2.20", "root", SecretStr("pw"), Endpoint())
        calls = [asyncio.create_task(session.call("host.get_all")) for _ in range(64)]
        await settle()
        try:
            values = await SecretReader(core).read("lab", [NeededSecret("spec.credentialsSecretRef", "xen", ("password",))])
            assert values["xen"]["password"].get_secret_value() == "s3cret"
            assert returned == [], "the Secret read waited for the hanging XenAPI calls"
        finally:
            release.set()
            assert await asyncio.gather(*calls) == ["late"] * 64

    asyncio.run(main())
    assert core.reads == ["lab/xen"]


def test_a_xenapi_task_timeout_counts_the_wait_for_a_worker() -> None:
    session = PoolSession(["192.0.2.20"], "root", SecretStr("pw"), Endpoint())
    clock = Clock()
    calls: list[str] = []

    async def call(name: str, *args: Any) -> Any:
        calls.append(name)
        if name.startswith("Async."):
            clock.now += 11.0  # the call waited 11s for a XenAPI worker before it started the task
            return "OpaqueRef:task"
        if name == "task.get_status":
            return "success" if calls.count(name) > 2 else "pending"
        return "done" if name == "task.get_result" else None

    session.call = call  # type: ignore[method-assign]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        real_time = loop.time
        loop.time = clock  # type: ignore[method-assign]
        try:
            with pytest.raises(XenAPIError) as timed_out:
                await session.task("pool.enable_ha", [], {}, timeout=10.0, poll=0.0)
        finally:
            loop.time = real_time  # type: ignore[method-assign]
        assert timed_out.value.code == "TASK_TIMEOUT"

    asyncio.run(main())
    assert calls == ["Async.pool.enable_ha", "task.get_status", "task.destroy"]


# -- sizes -----------------------------------------------------------------------------------------------------------


def test_the_sizes_are_options_of_stackops_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from stackops.cli import parser
    from stackops.drivers import kube

    defaults = parser().parse_args(["run"])
    assert (defaults.ssh_workers, defaults.xenapi_workers, defaults.kube_workers) == (12, 8, 4)
    args = parser().parse_args(["run", "--ssh-workers=64", "--xenapi-workers=4", "--kube-workers=2"])
    assert (args.ssh_workers, args.xenapi_workers, args.kube_workers) == (64, 4, 2)
    with pytest.raises(SystemExit):
        parser().parse_args(["run", "--xenapi-workers=0"])
    monkeypatch.setattr(xenapi, "WORKERS", xenapi.WORKERS)  # put back afterwards
    monkeypatch.setattr(kube, "WORKERS", kube.WORKERS)
    xenapi.use_workers(4)
    kube.use_workers(2)
    assert (xenapi.WORKERS.size, kube.WORKERS.size) == (4, 2)
