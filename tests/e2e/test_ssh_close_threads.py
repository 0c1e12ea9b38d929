"""Closing a pooled SSH connection ends its paramiko thread before the close returns, with many hosts connecting
and closing at once (40 light lab hosts: an sshd each, more hosts than the pool keeps idle, as in a resync of a
fleet). The socket used to be closed under the thread's read: the read went on waiting (on a descriptor a new
connection may get) until the thread's 5 s poll, a thread each; bench/scale.py saw 47 Transport threads for 16
connections. Counted right after the commands, not sampled."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from pydantic import SecretStr
from stackops_lab.lighthosts import LightHost, LightHosts

from stackops.drivers.ssh import SSHPool, SSHTarget

HOSTS = 40


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LightHost]]:
    lab = LightHosts(Path(tmp_path_factory.mktemp("light")))
    try:
        yield lab.start(HOSTS)
    finally:
        lab.stop()


def test_a_closed_connections_thread_has_ended_when_the_close_returns(hosts: list[LightHost]) -> None:
    pool = SSHPool(max_idle=4)  # 40 hosts, 12 workers: connections closed as others open
    seen: list[paramiko.Transport] = []
    connect = pool._connect

    def noting(target: SSHTarget) -> paramiko.SSHClient:
        client = connect(target)
        seen.append(client.get_transport())
        return client

    pool._connect = noting  # type: ignore[method-assign]
    targets = [SSHTarget(address=h.address, port=22, user="root", host_key=h.host_key,
                         private_key=SecretStr(h.client_key_pem)) for h in hosts]

    async def everywhere() -> None:
        await asyncio.gather(*(pool.connection(t).run(["true"]) for t in targets))

    try:
        for _ in range(2):
            asyncio.run(everywhere())
        assert len(seen) == 2 * HOSTS and pool.open_connections() == 4
        open_ones = {id(host.client.get_transport()) for host in pool._hosts.values() if host.client is not None}
        left = [t for t in seen if t.is_alive() and id(t) not in open_ones]
        assert left == [], f"{len(left)} closed connections' paramiko threads outlived their close"
    finally:
        pool.shutdown()
