"""An OpenSSH server for the tests that need a real one (`/usr/sbin/sshd`, Debian package `openssh-server`):
test_ssh.py (the SSH driver) and test_pooled_connections.py (pooled connections closed through the handlers).

Each server runs on 127.0.0.1 on a free port with its own host keys (ed25519, ecdsa, rsa), an AuthorizedKeysFile
holding generated client keys, no PAM, as `sshd -D -e -f <config>` in a mount namespace of its own whose /run is a
private tmpfs holding the /run/sshd sshd wants: the machine's /run is neither needed nor touched. `new_server()`
starts one (or skips the test where sshd cannot run); `stop()` kills it with its sessions."""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr

from stackops.drivers.ssh import SSHTarget

SSHD = "/usr/sbin/sshd"
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
# In the new mount namespace: a private /run with /run/sshd (privilege separation), then sshd itself.
LAUNCH = 'mount -t tmpfs -o mode=0755,size=4m stackops-sshd /run && mkdir -m 0755 /run/sshd && exec "$0" "$@"'
START_TIMEOUT_SECONDS = 60  # far above what sshd needs to start on a loaded machine
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
HOST_KEY_TYPES = ("ed25519", "ecdsa", "rsa")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, key_type: str, *extra: str) -> tuple[str, str]:
    """A new key pair: (private key text, public key 'type base64')."""
    subprocess.run([SSH_KEYGEN, "-q", "-t", key_type, "-N", "", "-C", "", "-f", str(path), *extra], check=True)
    public = path.with_name(path.name + ".pub").read_text().split()
    return path.read_text(), f"{public[0]} {public[1]}"


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class SSHServer:
    """One sshd instance; `restart()` kills it with every session it serves and starts it again on its port."""

    directory: Path
    port: int = field(default_factory=free_port)
    host_keys: dict[str, str] = field(default_factory=dict)  # type → "type base64"
    client_keys: dict[str, str] = field(default_factory=dict)  # type → private key text
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    def setup(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o755)  # authorized_keys is read with the logging-in user's privileges
        for key_type in HOST_KEY_TYPES:
            _, self.host_keys[key_type] = keygen(self.directory / f"host_{key_type}", key_type)
        authorized = []
        for key_type, extra in (("ed25519", ()), ("ecdsa", ()), ("rsa", ("-b", "3072", "-m", "PEM"))):
            self.client_keys[key_type], public = keygen(self.directory / f"client_{key_type}", key_type, *extra)
            authorized.append(public)
        keys_file = self.directory / "authorized_keys"
        keys_file.write_text("\n".join(authorized) + "\n")
        os.chmod(keys_file, 0o644)
        host_key_lines = "\n".join(f"HostKey {self.directory}/host_{t}" for t in HOST_KEY_TYPES)
        (self.directory / "sshd_config").write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
{host_key_lines}
PidFile {self.directory}/sshd.pid
AuthorizedKeysFile {keys_file}
UsePAM no
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowAgentForwarding no
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
LogLevel VERBOSE
""")
        self.log_path = self.directory / "sshd.log"

    def start(self) -> None:
        assert self.log_path is not None
        log = open(self.log_path, "ab")
        # unshare and sh exec: the process is sshd itself (stop() kills it and its sessions by its pid)
        self.process = subprocess.Popen(
            [UNSHARE, "--mount", "--propagation", "private", "sh", "-c", LAUNCH,
             SSHD, "-D", "-e", "-f", str(self.directory / "sshd_config")],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.settimeout(2)
                    if s.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not come up on port {self.port}: {self.log()}")

    def stop(self) -> None:
        """Kill sshd and all its session processes (as a host reboot would)."""
        if self.process is None:
            return
        pids = [self.process.pid, *descendants(self.process.pid)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def target(self, *, user: str | None = None, key_type: str = "ed25519", host_key: str | None = None,
               private_key: str | None = None, sudo: bool = False, port: int | None = None,
               connect_timeout: float = 5.0) -> SSHTarget:
        return SSHTarget(
            address="127.0.0.1", port=port or self.port, user=user or pwd.getpwuid(os.getuid()).pw_name,
            host_key=host_key or self.host_keys["ed25519"],
            private_key=SecretStr(private_key or self.client_keys[key_type]), sudo=sudo,
            connect_timeout=connect_timeout,
        )


def new_server() -> SSHServer:
    if not os.path.exists(SSHD):
        pytest.skip(f"{SSHD} is missing: install the Debian package openssh-server")
    if os.geteuid() != 0:
        pytest.skip("sshd needs root here (privilege separation, a mount namespace for its /run/sshd)")
    if not os.path.exists(UNSHARE):
        pytest.skip(f"{UNSHARE} is missing: install the Debian package util-linux")
    server = SSHServer(Path(tempfile.mkdtemp(prefix="stackops-sshd-")))
    server.setup()
    server.start()
    return server

