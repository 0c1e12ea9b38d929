"""Checking a KVM host for real before adding it, the way CloudStack's LibvirtServerDiscoverer finds it usable.

CloudStack SSHes to the host (port 22) as `username` — with `password` when given, otherwise (4.18+) with
the management server's own key — checks it is a KVM host and sets the agent up. The simulator checks what
a lab host can show: libvirtd answers on TCP 16509, the SSH login works, /etc/cloudstack/agent/
agent.properties exists; and reads the host's `hostname` for the host's name. Any host key is accepted
(CloudStack does not pin host keys).

A failed login is CloudStack's DiscoveredWithErrorException("Authentication error"); any other failure makes
the discoverer return nothing ("Cannot find the server resources at <url>").
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

LIBVIRT_PORT = 16509
SSH_PORT = 22
AGENT_PROPERTIES = "/etc/cloudstack/agent/agent.properties"


@dataclass
class Probe:
    ok: bool
    hostname: str = ""
    reason: str = ""
    auth_failed: bool = False


def probe(address: str, username: str | None, password: str | None, key_path: str | None,
          timeout: float = 10.0) -> Probe:
    """Check the host at `address` (blocking; call without holding the state lock)."""
    import paramiko  # imported here: it is slow to import and only addHost needs it
    try:
        with socket.create_connection((address, LIBVIRT_PORT), timeout=timeout):
            pass
    except OSError as error:
        return Probe(False, reason=f"libvirtd does not answer on {address}:{LIBVIRT_PORT}: {error}")
    if not username:
        return Probe(False, reason="no username given")
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        try:
            client.connect(address, port=SSH_PORT, username=username, password=password or None,
                           key_filename=None if password else key_path, look_for_keys=False, allow_agent=False,
                           timeout=timeout, banner_timeout=timeout, auth_timeout=timeout)
        except paramiko.AuthenticationException as error:
            return Probe(False, reason=f"SSH login as {username} failed: {error}", auth_failed=True)
        except paramiko.SSHException as error:
            if not password and not key_path:
                return Probe(False, reason=f"no password and no management key: {error}", auth_failed=True)
            return Probe(False, reason=f"SSH to {address}:{SSH_PORT} failed: {error}")
        except (OSError, ValueError) as error:
            return Probe(False, reason=f"SSH to {address}:{SSH_PORT} failed: {error}")
        command = f"test -f {AGENT_PROPERTIES} && hostname"
        _, stdout, stderr = client.exec_command(command, timeout=timeout)
        output = stdout.read().decode(errors="replace").strip()
        status = stdout.channel.recv_exit_status()
        stderr.read()
        if status != 0:
            return Probe(False, reason=f"{AGENT_PROPERTIES} is missing on {address} (exit {status})")
        return Probe(True, hostname=output.splitlines()[-1] if output else address)
    finally:
        client.close()
