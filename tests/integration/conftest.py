"""Fixtures the integration tests share (their helpers are in tests/support/)."""
from __future__ import annotations

import shutil
from typing import Iterator

import pytest
from support.sshd import SSHServer, new_server


@pytest.fixture(scope="module")
def sshd() -> Iterator[SSHServer]:
    """A real OpenSSH server of the module's own (tests/support/sshd.py), stopped and removed after its tests."""
    server = new_server()
    yield server
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)
