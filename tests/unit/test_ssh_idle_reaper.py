"""Idle SSH connections are closed: once no command has used a connection for the pool's `idle_seconds`, the pool
closes it (`reap_idle`), and never one a command or a connect is using; the idle time counts from the end of the
last use.

The time is the test's (the pool's injected clock, `reap_idle(now)`); the network is a stand-in recording connects
and closes, and commands labelled `hold` block until the test lets them go. `SAFETY` only keeps broken code from
hanging a test: it never decides a result."""
from __future__ import annotations

import asyncio
import threading

import pytest
from pydantic import SecretStr

from stackops.cli import parser
from stackops.drivers.ssh import DEFAULT_IDLE_SECONDS, CommandResult, SSHPool, SSHTarget

SAFETY = 30.0
IDLE = 60.0


def target(address: str = "192.0.2.10") -> SSHTarget:
    return SSHTarget(address=address, port=22, user="root", host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5",
                     private_key=SecretStr("unused: no connection is made"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeSocket:
    def shutdown(self, how: int) -> None:
        pass


class FakeTransport:
    def __init__(self) -> None:
        self.active = True
        self.sock = FakeSocket()

    def is_active(self) -> bool:
        return self.active


class FakeClient:
    def __init__(self, address: str) -> None:
        self.address = address
        self.transport = FakeTransport()

    def get_transport(self) -> FakeTransport:
        return self.transport

    def close(self) -> None:
        self.transport.active = False


class FakeNetwork:
    """Stands in for paramiko under an SSHPool: `_connect` makes a FakeClient (and blocks while `hold_connect` is
    clear, when told to), `_exec_once` records the command and blocks on `release` when its label is in `hold`."""

    def __init__(self, pool: SSHPool, monkeypatch: pytest.MonkeyPatch, hold: set[str] = frozenset(),
                 hold_connect: bool = False):
        self.clients: list[FakeClient] = []
        self.hold = hold
        self.running = threading.Event()
        self.release = threading.Event()
        self.connecting = threading.Event()
        self.connect_go = threading.Event()
        if not hold_connect:
            self.connect_go.set()
        monkeypatch.setattr(pool, "_connect", self.connect)
        monkeypatch.setattr(pool, "_exec_once", self.exec_once)

    def connect(self, target: SSHTarget) -> FakeClient:
        self.connecting.set()
        assert self.connect_go.wait(SAFETY)
        client = FakeClient(target.address)
        self.clients.append(client)
        return client

    def exec_once(self, target, host, transport, command, display, stdin, timeout, mutation, retry_allowed,
                  waited=0.0) -> CommandResult:
        assert transport.is_active(), "a command ran on a closed connection"
        if display in self.hold:
            self.running.set()
            assert self.release.wait(SAFETY)
        assert transport.is_active(), "the connection was closed while a command ran on it"
        return CommandResult(0, "", "")

    def open(self) -> list[str]:
        return [client.address for client in self.clients if client.transport.active]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pool(clock: Clock):
    pool = SSHPool(idle_seconds=IDLE, clock=clock)
    yield pool
    pool.shutdown()


def run(pool: SSHPool, address: str = "192.0.2.10", label: str = "true") -> None:
    asyncio.run(pool.connection(target(address)).run(["true"], label=label))


def test_a_connection_idle_for_the_bound_is_closed_and_the_next_command_connects_again(
        pool: SSHPool, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    network = FakeNetwork(pool, monkeypatch)
    run(pool)
    assert network.open() == ["192.0.2.10"] and pool.open_connections() == 1

    clock.now += IDLE - 0.5
    assert pool.reap_idle() == 0
    assert network.open() == ["192.0.2.10"] and pool.is_connected(target())

    clock.now += 0.5
    assert pool.reap_idle() == 1
    assert network.open() == [] and pool.open_connections() == 0 and not pool.is_connected(target())

    run(pool)
    assert network.open() == ["192.0.2.10"] and len(network.clients) == 2
    assert pool.counters("192.0.2.10").connects == 2


def test_a_use_restarts_the_idle_time(pool: SSHPool, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    network = FakeNetwork(pool, monkeypatch)
    run(pool)
    clock.now += IDLE - 1
    run(pool)
    clock.now += IDLE - 1
    assert pool.reap_idle() == 0
    assert network.open() == ["192.0.2.10"] and len(network.clients) == 1, "reused, not reconnected"
    clock.now += 1
    assert pool.reap_idle() == 1


def test_only_connections_due_are_closed(pool: SSHPool, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    network = FakeNetwork(pool, monkeypatch)
    run(pool, "192.0.2.10")
    clock.now += 30
    run(pool, "192.0.2.11")
    clock.now += IDLE - 30
    assert pool.reap_idle() == 1
    assert network.open() == ["192.0.2.11"]
    assert pool.reap_idle(now=clock.now + 30) == 1
    assert network.open() == []


def test_a_connection_a_command_runs_on_is_never_closed_and_its_idle_time_starts_when_the_command_ends(
        pool: SSHPool, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long command (a package install, a guarded apply's checkpoint) outlives the bound: the connection stays
    open under it, and is idle only from the command's end."""
    network = FakeNetwork(pool, monkeypatch, hold={"install packages"})

    async def main() -> None:
        long = asyncio.create_task(pool.connection(target()).run(["true"], label="install packages"))
        assert await asyncio.to_thread(network.running.wait, SAFETY)
        await pool.connection(target()).run(["true"], label="short")  # shares the connection, ends first
        clock.now += 10 * IDLE
        assert pool.reap_idle() == 0, "closed while a command ran on it"
        assert network.open() == ["192.0.2.10"]
        network.release.set()
        await long

    asyncio.run(main())
    assert network.open() == ["192.0.2.10"] and len(network.clients) == 1
    clock.now += IDLE - 1
    assert pool.reap_idle() == 0, "the idle time counts from the end of the last command"
    clock.now += 1
    assert pool.reap_idle() == 1
    assert network.open() == []


def test_a_connection_being_made_is_not_closed(pool: SSHPool, clock: Clock,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`SSHConnection.connect` (and a command's connect) is a use: the reaper neither closes nor drops the
    connection it is making, which would leave it open outside the pool."""
    network = FakeNetwork(pool, monkeypatch, hold_connect=True)

    async def main() -> None:
        connecting = asyncio.create_task(pool.connection(target()).connect())
        assert await asyncio.to_thread(network.connecting.wait, SAFETY)
        clock.now += 10 * IDLE
        assert pool.reap_idle() == 0
        network.connect_go.set()
        await connecting

    asyncio.run(main())
    assert network.open() == ["192.0.2.10"] and pool.is_connected(target())
    clock.now += IDLE
    assert pool.reap_idle() == 1
    assert network.open() == []


def test_a_connection_dropped_while_in_use_is_closed_when_its_last_command_ends(
        pool: SSHPool, monkeypatch: pytest.MonkeyPatch) -> None:
    """`release` (its object deleted) or `close` while another caller's command still runs: the command goes on,
    and the connection is closed when it ends instead of staying open outside the pool."""
    network = FakeNetwork(pool, monkeypatch, hold={"long"})

    async def main() -> None:
        long = asyncio.create_task(pool.connection(target()).run(["true"], label="long"))
        assert await asyncio.to_thread(network.running.wait, SAFETY)
        key = pool._key(target())
        host = pool._hosts[key]
        with pool._lock:
            del pool._hosts[key]  # as `release` does, without closing: the command is still running
        assert network.open() == ["192.0.2.10"]
        network.release.set()
        await long
        assert host.client is None

    asyncio.run(main())
    assert network.open() == []


def test_the_reaper_thread_runs_only_while_the_pool_keeps_a_connection(
        pool: SSHPool, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """One thread for all idle connections, none when there is none: no thread per connection is kept."""
    FakeNetwork(pool, monkeypatch)
    assert pool._reaper is None
    kept = pool.max_idle  # as many as the bound keeps idle: all of them wait for the reaper
    for n in range(kept):
        run(pool, f"192.0.2.{n}")
    reaper = pool._reaper
    assert reaper is not None and reaper.is_alive()
    assert [t for t in threading.enumerate() if t.name == "ssh-idle-reaper"] == [reaper]
    clock.now += IDLE
    assert pool.reap_idle() == kept
    reaper.join(SAFETY)
    assert not reaper.is_alive()
    run(pool)
    assert pool._reaper is not None and pool._reaper is not reaper


def test_the_idle_bound_is_a_flag_of_stackops_run() -> None:
    assert parser().parse_args(["run"]).ssh_idle_seconds == DEFAULT_IDLE_SECONDS == 60.0
    assert parser().parse_args(["run", "--ssh-idle-seconds", "15"]).ssh_idle_seconds == 15.0
    for bad in ("0", "-1", "inf", "nan"):
        with pytest.raises(SystemExit):
            parser().parse_args(["run", "--ssh-idle-seconds", bad])
    with pytest.raises(ValueError):
        SSHPool(idle_seconds=0)


def test_at_most_max_idle_connections_stay_open_the_longest_idle_closed_first(
        clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst over many hosts (the operator's start, a resync round) keeps no more idle connections than the
    bound, whatever the idle time."""
    pool = SSHPool(idle_seconds=IDLE, max_idle=2, clock=clock)
    try:
        network = FakeNetwork(pool, monkeypatch)
        for n in range(10, 15):
            clock.now += 1
            run(pool, f"192.0.2.{n}")
        assert network.open() == ["192.0.2.13", "192.0.2.14"]
        assert pool.open_connections() == 2
        clock.now += 1
        run(pool, "192.0.2.13")  # used again: now the most recent
        clock.now += 1
        run(pool, "192.0.2.20")
        assert network.open() == ["192.0.2.13", "192.0.2.20"]
    finally:
        pool.shutdown()


def test_connections_in_use_are_neither_counted_nor_closed_by_the_bound(
        clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = SSHPool(idle_seconds=IDLE, max_idle=1, clock=clock)
    try:
        network = FakeNetwork(pool, monkeypatch, hold={"long"})

        async def main() -> None:
            long = asyncio.create_task(pool.connection(target("192.0.2.1")).run(["true"], label="long"))
            assert await asyncio.to_thread(network.running.wait, SAFETY)
            for n in (2, 3, 4):
                await pool.connection(target(f"192.0.2.{n}")).run(["true"])
            assert sorted(network.open()) == ["192.0.2.1", "192.0.2.4"]
            clock.now += 1
            network.release.set()
            await long

        asyncio.run(main())
        assert network.open() == ["192.0.2.1"], "the long command's connection is now the most recently used"
    finally:
        pool.shutdown()


def test_max_idle_zero_closes_each_connection_when_its_commands_end(
        clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = SSHPool(idle_seconds=IDLE, max_idle=0, clock=clock)
    try:
        network = FakeNetwork(pool, monkeypatch)
        run(pool)
        run(pool)
        assert network.open() == [] and len(network.clients) == 2
    finally:
        pool.shutdown()


def test_the_idle_connections_bound_is_a_flag_of_stackops_run() -> None:
    assert parser().parse_args(["run"]).ssh_max_idle == 4
    assert parser().parse_args(["run", "--ssh-max-idle", "0"]).ssh_max_idle == 0
    with pytest.raises(SystemExit):
        parser().parse_args(["run", "--ssh-max-idle", "-1"])
    with pytest.raises(ValueError):
        SSHPool(max_idle=-1)
