"""Idle SSH connections against a real OpenSSH server (tests/support/sshd.py): once idle for the pool's bound, each
connection is closed and its paramiko thread ends, so a pool's threads do not grow with the hosts it has reached;
a command running on a connection keeps it open past the bound.

The pool's clock is the test's: the bound passes when the test says so (`reap_idle`). The threads are joined, not
sampled; `SAFETY` only keeps broken code from hanging a test."""
from __future__ import annotations

import asyncio
import dataclasses
import secrets
import threading
from collections.abc import Iterator

import paramiko
import pytest
from support.sshd import SSHServer

from stackops.drivers.ssh import SSHPool, SSHTarget

SAFETY = 30.0
IDLE = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pool(clock: Clock) -> Iterator[SSHPool]:
    pool = SSHPool(idle_seconds=IDLE, max_idle=6, clock=clock)  # the six targets below stay open until idle
    yield pool
    pool.shutdown()


def targets(sshd: SSHServer) -> list[SSHTarget]:
    """Six pooled connections to the one server: three client keys, two names for it."""
    return [dataclasses.replace(sshd.target(key_type=key_type), address=address)
            for key_type in ("ed25519", "ecdsa", "rsa") for address in ("127.0.0.1", "localhost")]


def transport(pool: SSHPool, target: SSHTarget) -> paramiko.Transport:
    host = pool._hosts[pool._key(target)]
    assert host.client is not None
    found = host.client.get_transport()
    assert found is not None
    return found


def test_idle_connections_are_closed_and_their_threads_end(sshd: SSHServer, pool: SSHPool, clock: Clock) -> None:
    reached = targets(sshd)

    async def everywhere() -> None:
        await asyncio.gather(*(pool.connection(t).run(["true"]) for t in reached))

    asyncio.run(everywhere())
    transports = [transport(pool, t) for t in reached]
    assert len({id(t) for t in transports}) == 6 and all(t.is_alive() for t in transports)
    assert pool.open_connections() == 6
    threads = threading.active_count()

    clock.now += IDLE - 1
    assert pool.reap_idle() == 0
    assert all(t.is_alive() and t.is_active() for t in transports)

    clock.now += 1
    assert pool.reap_idle() == 6
    for thread in transports:
        thread.join(SAFETY)
    assert not any(t.is_alive() for t in transports), "a closed connection's paramiko thread still runs"
    assert pool.open_connections() == 0
    assert threading.active_count() <= threads - 6

    # the next command connects again
    assert asyncio.run(pool.connection(reached[0]).run(["echo", "again"])).stdout == "again\n"
    assert pool.counters("127.0.0.1").connects == 4


def test_a_command_running_past_the_bound_keeps_its_connection(sshd: SSHServer, pool: SSHPool, clock: Clock,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The command waits for a file the test makes once it has tried to close the connection: it finishes on the
    connection it started on, and the connection is idle from then."""
    go = sshd.directory / f"go-{secrets.token_hex(4)}"
    running = threading.Event()
    communicate = SSHPool._communicate

    def started(channel, stdin, deadline, timed_out):  # the command was sent: it runs on the host now
        running.set()
        return communicate(channel, stdin, deadline, timed_out)

    monkeypatch.setattr(SSHPool, "_communicate", staticmethod(started))
    target = sshd.target()
    script = 'while [ ! -e "$1" ]; do sleep 0.05; done; echo finished'

    async def main() -> str:
        command = asyncio.create_task(pool.connection(target).run(["sh", "-c", script, "sh", str(go)], timeout=SAFETY))
        assert await asyncio.to_thread(running.wait, SAFETY)
        held = transport(pool, target)
        clock.now += 10 * IDLE
        assert pool.reap_idle() == 0, "closed while a command ran on it"
        assert held.is_active()
        go.touch()
        return (await command).stdout

    try:
        assert asyncio.run(main()) == "finished\n"
    finally:
        go.unlink(missing_ok=True)
    held = transport(pool, target)
    clock.now += IDLE - 1
    assert pool.reap_idle() == 0
    clock.now += 1
    assert pool.reap_idle() == 1
    held.join(SAFETY)
    assert not held.is_alive()
    assert pool.counters("127.0.0.1").connects == 1
