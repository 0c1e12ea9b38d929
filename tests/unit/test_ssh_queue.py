"""SSH commands and the SSH workers: the wait for a thread counts against a command's timeout, and KvmHost's confirm
of a guarded change runs before queued commands.

Threads are held with events the test sets, the clock that measures queue waits is the test's. `SAFETY` only keeps
broken code from hanging a test: it never decides a result."""
from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest
from pydantic import SecretStr

from stackops.drivers import ssh
from stackops.drivers.ssh import CommandResult, SSHPool, SSHTarget, SSHTimeout
from stackops.reconcile.kvmhost import KvmHostReconciler

SAFETY = 30.0
CHECKPOINT = "20260101T000000Z-0a1b2c3d"


def target(address: str = "192.0.2.10") -> SSHTarget:
    return SSHTarget(address=address, port=22, user="root", host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5",
                     private_key=SecretStr("unused: no connection is made"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeHosts:
    """Stands in for the network under an SSHPool: records each command as it starts (its label and the timeout
    it got); commands labelled in `hold` block until `release` is set; CONFIRM answers `state confirmed`."""

    def __init__(self, pool: SSHPool, monkeypatch: pytest.MonkeyPatch, hold: set[str]):
        self.started: list[tuple[str, float]] = []
        self.finished: list[str] = []
        self.hold = hold
        self.running = threading.Event()
        self.release = threading.Event()
        monkeypatch.setattr(pool, "_transport", lambda target, host: object())
        monkeypatch.setattr(pool, "_exec_once", self.exec_once)

    def exec_once(self, target, host, transport, command, display, stdin, timeout, mutation, retry_allowed,
                  waited=0.0) -> CommandResult:
        self.started.append((display, timeout))
        if display in self.hold:
            self.running.set()
            self.release.wait(SAFETY)
        self.finished.append(display)
        return CommandResult(0, "state confirmed\napplied 0\n" if "confirm" in display else "", "")


async def settle() -> None:
    """Let the tasks just created run up to their first wait (handing their command to the workers)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_the_wait_for_a_worker_is_taken_off_an_ssh_commands_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(ssh, "time", SimpleNamespace(monotonic=clock, sleep=time.sleep))
    pool = SSHPool(max_workers=1)
    hosts = FakeHosts(pool, monkeypatch, hold={"first"})

    async def main() -> None:
        first = asyncio.create_task(pool.connection(target()).run(["true"], timeout=60, label="first"))
        assert await asyncio.to_thread(hosts.running.wait, SAFETY)
        second = asyncio.create_task(pool.connection(target("192.0.2.11")).run(["true"], timeout=60, label="second"))
        late = asyncio.create_task(pool.connection(target("192.0.2.12")).run(["true"], timeout=20, label="late"))
        await settle()  # both queued behind `first`
        clock.now += 25.0
        hosts.release.set()
        await first
        await second
        with pytest.raises(SSHTimeout) as timed_out:
            await late
        assert "waited 25.0s for a free SSH worker" in str(timed_out.value)
        assert "was not run" in str(timed_out.value)

    asyncio.run(main())
    assert hosts.started == [("first", 60.0), ("second", 35.0)], "`late` waited all its 20s and never started"
    pool.shutdown()


def test_a_confirm_runs_before_queued_commands_when_every_ssh_worker_is_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    """KvmHost confirms a guarded change (which the host reverts unless the confirm arrives in time) while the
    only ordinary worker is held by one command and two more wait: the confirm does not queue behind them."""
    pool = SSHPool(max_workers=1)
    hosts = FakeHosts(pool, monkeypatch, hold={"install packages"})
    reconciler = KvmHostReconciler(pool)
    confirm = f"sh -s (confirm checkpoint {CHECKPOINT}) {CHECKPOINT}"

    async def main() -> None:
        busy = [asyncio.create_task(pool.connection(target(f"192.0.2.{n}")).run(["true"], label=label))
                for n, label in ((30, "install packages"), (31, "b"), (32, "c"))]
        assert await asyncio.to_thread(hosts.running.wait, SAFETY)
        await settle()
        try:
            result = await reconciler.reconnect_and_confirm(target(), CHECKPOINT, time.monotonic() + 60)
            assert result is not None and result.state == "confirmed"
            assert hosts.finished == [confirm], "the confirm waited for ordinary commands"
        finally:
            hosts.release.set()
            await asyncio.gather(*busy)

    asyncio.run(main())
    assert [label for label, _ in hosts.started] == ["install packages", confirm, "b", "c"]
    pool.shutdown()


def test_the_ssh_worker_count_is_the_pools() -> None:
    pool = SSHPool(max_workers=64)
    assert (pool._workers.size, pool._workers.reserved) == (64, ssh.URGENT_WORKERS)
    pool.shutdown()
