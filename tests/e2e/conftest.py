"""End-to-end fixtures: KVM lab hosts (real sshd, Open vSwitch and libvirtd in namespaces, see stackops_lab.hosts).

`lab_hosts` is shared by the whole session: two hosts, each with `name`, `address`, `host_key` (the public key
line to pin, "ssh-ed25519 AAAA…"), `client_key_path` / `client_key_pem` (root's login key, OpenSSH format),
`nics` (spare NICs to bond, ["eno49", "eno50"]) and `run(command)` (a shell command inside the host's
namespaces, for inspection). Tests that need hosts nobody else changed use `make_lab_hosts(count)`;
`make_lab_hosts(count, missing_packages=("cloudstack-agent",))` gives hosts without the agent, which they can install
from the lab's apt repository (`stackops_lab.aptrepo`).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from stackops.drivers.ssh import SSHPool
from stackops_lab.hosts import LabHost, LabHosts


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def lab_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LabHost]]:
    """Two KVM lab hosts for the session, removed at its end (namespaces, links, processes, files)."""
    manager = LabHosts(tmp_path_factory.mktemp("lab-hosts"))
    try:
        yield manager.create(2, _progress)
    finally:
        manager.destroy(_progress)


@pytest.fixture
def make_lab_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., list[LabHost]]]:
    """`make_lab_hosts(count, missing_packages=())`: fresh hosts of the test's own (a lab of their own), removed
    after the test; `missing_packages` (of the lab repository's) are not installed on them."""
    managers: list[LabHosts] = []

    def make(count: int = 2, missing_packages: Sequence[str] = ()) -> list[LabHost]:
        manager = LabHosts(Path(tmp_path_factory.mktemp("own-lab-hosts")))
        managers.append(manager)
        return manager.create(count, _progress, missing_packages=missing_packages)

    try:
        yield make
    finally:
        for manager in managers:
            manager.destroy(_progress)


@pytest.fixture
def pool() -> Iterator[SSHPool]:
    """The operator's SSH connections for one test (KvmHostReconciler(pool)), closed after it."""
    pool = SSHPool()
    yield pool
    pool.close_all()
