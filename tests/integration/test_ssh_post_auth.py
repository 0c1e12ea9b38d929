"""A new SSH connection against a real OpenSSH server (tests/support/sshd.py) opens its first channel only once
the server's post-authentication messages came (`hostkeys-00@openssh.com`), acknowledged at once: sshd sends them
with Nagle on, and a channel confirmation queued behind them waited for the client's delayed acknowledgement
(about 40 ms of every new connection; bench figures in the README). The order is recorded, not timed: the test
waits as long as the server takes."""
from __future__ import annotations

import asyncio
from typing import Any

import paramiko
import pytest
from support.sshd import SSHServer

from stackops.drivers import ssh
from stackops.drivers.ssh import SSHPool


def test_the_first_channel_opens_after_the_servers_post_auth_messages(sshd: SSHServer,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh, "POST_AUTH_WAIT_SECONDS", 60.0)  # however slow the machine: the order is the test
    order: list[str] = []
    parse, open_channel = paramiko.Transport._parse_global_request, paramiko.Transport.open_channel

    def global_request(self: paramiko.Transport, message: Any) -> Any:
        order.append("server's global request")
        return parse(self, message)

    def channel(self: paramiko.Transport, *args: Any, **kwargs: Any) -> Any:
        order.append("channel open")
        return open_channel(self, *args, **kwargs)

    monkeypatch.setattr(paramiko.Transport, "_parse_global_request", global_request)
    monkeypatch.setattr(paramiko.Transport, "open_channel", channel)
    pool = SSHPool()
    try:
        result = asyncio.run(pool.connection(sshd.target()).run(["true"]))
    finally:
        pool.shutdown()
    assert result.exit_status == 0
    assert order[:2] == ["server's global request", "channel open"]
