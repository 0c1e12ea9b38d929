"""The SSH driver against a real OpenSSH server (support.sshd: `/usr/sbin/sshd` on 127.0.0.1 in a mount namespace
of its own, with generated host and client keys).
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from support.sshd import HOST_KEY_TYPES, START_TIMEOUT_SECONDS, SSHServer, free_port, keygen, new_server

from stackops.drivers import ssh
from stackops.drivers.ssh import SSHPool, SSHTarget
from stackops.reconcile.ssh import reconcile_error


@pytest.fixture
def own_sshd() -> Iterator[SSHServer]:
    """A server of the test's own, for tests that kill it."""
    server = new_server()
    yield server
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def pool() -> Iterator[SSHPool]:
    pool = SSHPool()
    yield pool
    pool.shutdown()


@pytest.fixture
def canary(sshd: SSHServer) -> Iterator[Path]:
    path = sshd.directory / f"canary-{secrets.token_hex(4)}"
    yield path
    path.unlink(missing_ok=True)


def run(coroutine):
    return asyncio.run(coroutine)


# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa", "rsa"])
def test_connect_and_run_with_each_client_key_type(sshd: SSHServer, pool: SSHPool, key_type: str) -> None:
    conn = pool.connection(sshd.target(key_type=key_type))
    result = run(conn.run(["sh", "-c", 'echo out; echo err >&2; exit 0']))
    assert (result.exit_status, result.stdout, result.stderr) == (0, "out\n", "err\n")
    assert pool.counters("127.0.0.1") == ssh.Counters(round_trips=1, mutations=0, connects=1)


@pytest.mark.parametrize("pinned_type", HOST_KEY_TYPES)
def test_pinned_host_key_type_is_negotiated(sshd: SSHServer, pool: SSHPool, pinned_type: str) -> None:
    """The server has ed25519, ecdsa and rsa host keys; whichever is pinned is the one paramiko negotiates."""
    target = sshd.target(host_key=sshd.host_keys[pinned_type])
    result = run(pool.connection(target).run(["true"]))
    assert result.ok


def test_host_key_mismatch_runs_nothing(sshd: SSHServer, pool: SSHPool, canary: Path, tmp_path: Path) -> None:
    _, other = keygen(tmp_path / "other", "ed25519")
    before = sshd.log().count("Accepted publickey")
    conn = pool.connection(sshd.target(host_key=other))
    with pytest.raises(ssh.HostKeyMismatch) as caught:
        run(conn.run(["touch", str(canary)], mutation=True))
    message = str(caught.value)
    assert caught.value.reason == "HostKeyMismatch" and caught.value.retry is False
    assert message.count("SHA256:") == 2, message
    assert "PRIVATE KEY" not in message and sshd.client_keys["ed25519"] not in message
    assert not canary.exists()
    # not even authenticated: the connection was dropped after the key exchange
    assert sshd.log().count("Accepted publickey") == before
    assert pool.counters("127.0.0.1") == ssh.Counters(0, 0, 0)


def test_host_key_of_another_type_is_a_mismatch(tmp_path: Path, pool: SSHPool, canary: Path) -> None:
    """A server without the pinned key's type presents another type: refused as well."""
    server = SSHServer(Path(tempfile.mkdtemp(prefix="stackops-sshd-")))
    try:
        server.setup()
        config = server.directory / "sshd_config"
        config.write_text("\n".join(line for line in config.read_text().splitlines()
                                    if not line.startswith("HostKey ") or line.endswith("host_ed25519")) + "\n")
        server.start()
        _, ecdsa_key = keygen(tmp_path / "other", "ecdsa")
        with pytest.raises(ssh.HostKeyMismatch, match="ssh-ed25519 SHA256:.*ecdsa-sha2-nistp256 SHA256:"):
            run(pool.connection(server.target(host_key=ecdsa_key)).run(["touch", str(canary)]))
        assert not canary.exists()
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


def test_wrong_client_key_is_authentication_failed(sshd: SSHServer, pool: SSHPool, tmp_path: Path) -> None:
    wrong, _ = keygen(tmp_path / "wrong", "ed25519")
    with pytest.raises(ssh.AuthenticationFailed) as caught:
        run(pool.connection(sshd.target(private_key=wrong)).run(["true"]))
    assert caught.value.reason == "AuthenticationFailed"
    assert "SHA256:" in str(caught.value) and "PRIVATE KEY" not in str(caught.value)
    assert pool.counters("127.0.0.1").connects == 0


def test_closed_port_is_unreachable_quickly(sshd: SSHServer, pool: SSHPool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Quickly: on the refusal itself, after one attempt, without waiting for a timeout or trying again."""
    attempts: list[SSHTarget] = []
    open_socket = ssh._open_socket
    monkeypatch.setattr(ssh, "_open_socket", lambda target: attempts.append(target) or open_socket(target))
    with pytest.raises(ssh.Unreachable, match="connection refused"):
        run(pool.connection(sshd.target(port=free_port())).run(["true"]))
    assert len(attempts) == 1, "connected once: no retry"


def test_silent_server_is_unreachable_after_the_connect_timeout(sshd: SSHServer, pool: SSHPool,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A port that accepts but never speaks SSH (a hung host) fails after connect_timeout, not later: every
    timeout of the handshake is the connect timeout (none of paramiko's longer defaults)."""
    handshakes: list[dict] = []
    connect = paramiko.SSHClient.connect

    def recording_connect(self: paramiko.SSHClient, *args, **kwargs):
        handshakes.append(kwargs)
        return connect(self, *args, **kwargs)

    monkeypatch.setattr(paramiko.SSHClient, "connect", recording_connect)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(ssh.Unreachable, match="SSH handshake with .* failed"):
            run(pool.connection(sshd.target(port=listener.getsockname()[1], connect_timeout=1)).run(["true"]))
        elapsed = time.monotonic() - started
        assert elapsed >= 0.9, "it waited for the server's banner"
        assert elapsed < 60, "hang guard only (the bound is far above any timeout involved)"
        assert [{key: handshake[key] for key in ("timeout", "banner_timeout", "auth_timeout", "channel_timeout")}
                for handshake in handshakes] == [dict.fromkeys(("timeout", "banner_timeout", "auth_timeout",
                                                                "channel_timeout"), 1.0)]
        assert pool.counters("127.0.0.1").connects == 0
    finally:
        listener.close()
        for s in accepted:
            s.close()


def test_command_timeout(sshd: SSHServer, pool: SSHPool) -> None:
    conn = pool.connection(sshd.target())
    started = time.monotonic()
    with pytest.raises(ssh.SSHTimeout, match="did not finish within 1s"):
        run(conn.run(["sleep", "30"], timeout=1))
    # Hang guard, far above the 1 s timeout: a driver that waited for the command instead would get here only
    # once `sleep 30` had ended (and, without the timeout, would not raise at all).
    assert time.monotonic() - started < 25
    assert run(conn.run(["echo", "still usable"])).stdout == "still usable\n"
    assert pool.counters("127.0.0.1").connects == 1


HOSTILE = [
    "; touch {canary}",
    "$(touch {canary})",
    "`touch {canary}`",
    "| touch {canary}",
    "&& touch {canary}",
    "|| touch {canary}",
    "> {canary}",
    "< /etc/passwd",
    "x\ntouch {canary}",
    "x\rtouch {canary}",
    "'; touch {canary}; '",
    '"; touch {canary}; "',
    "it's \"quoted\"",
    "a b  c\t d",
    "",
    " ",
    "*",
    "~",
    "$HOME ${PATH} $1 $@",
    "\\",
    "\\'",
    "#not a comment",
    "-n",
    "--",
    "é ✓ 漢字",
    "{a,b}",
    "!!",
    "& touch {canary} &",
]


@pytest.mark.parametrize("sudo", [False, True], ids=["root", "sudo"])
def test_shell_metacharacters_arrive_verbatim(sshd: SSHServer, pool: SSHPool, canary: Path, sudo: bool,
                                              request: pytest.FixtureRequest) -> None:
    if sudo:
        user = request.getfixturevalue("sudo_user")
        target = sshd.target(user=user, sudo=True)
    else:
        target = sshd.target()
    args = [a.replace("{canary}", str(canary)) for a in HOSTILE]
    conn = pool.connection(target)
    result = run(conn.run(["printf", r"%s\0", *args]))
    assert result.stdout.split("\0")[:-1] == args
    assert not canary.exists()
    # the same values as a script's positional parameters
    script = 'for a in "$@"; do printf "%s\\0" "$a"; done\n'
    result = run(conn.run_script(script, args=args))
    assert result.stdout.split("\0")[:-1] == args
    assert not canary.exists()


def test_run_script_is_one_round_trip(sshd: SSHServer, pool: SSHPool) -> None:
    conn = pool.connection(sshd.target())
    script = """
set -e
echo "@@one"; uname -s
echo "@@two"; printf '%s\\n' "$1"
echo "@@three"; cat /etc/hostname >/dev/null; echo done
"""
    result = run(conn.run_script(script, args=["a; b"], label="probe"))
    assert result.stdout == f"@@one\n{os.uname().sysname}\n@@two\na; b\n@@three\ndone\n"
    assert pool.counters("127.0.0.1") == ssh.Counters(round_trips=1, mutations=0, connects=1)


def test_input_goes_to_stdin(sshd: SSHServer, pool: SSHPool) -> None:
    conn = pool.connection(sshd.target())
    assert run(conn.run(["cat"], input="secret value\n")).stdout == "secret value\n"
    big = os.urandom(3 * 1024 * 1024)  # larger than the SSH window: fed from a thread while reading
    result = run(conn.run(["sha256sum"], input=big))
    assert result.stdout.split()[0] == hashlib.sha256(big).hexdigest()
    # a command that does not read its stdin does not hang
    assert run(conn.run(["true"], input=big)).ok


def test_large_output_on_both_streams(sshd: SSHServer, pool: SSHPool) -> None:
    conn = pool.connection(sshd.target())
    result = run(conn.run(["sh", "-c", "head -c 5000000 /dev/zero | tr '\\0' o; head -c 3000000 /dev/zero | "
                                       "tr '\\0' e >&2"]))
    assert len(result.stdout) == 5_000_000 and len(result.stderr) == 3_000_000


def test_connection_is_reused_and_shared(sshd: SSHServer, pool: SSHPool) -> None:
    conn = pool.connection(sshd.target())
    for i in range(20):
        assert run(conn.run(["echo", str(i)])).stdout == f"{i}\n"

    async def many() -> list[str]:
        other = pool.connection(sshd.target())  # another handle, same target: same connection
        results = await asyncio.gather(*(other.run(["echo", str(i)]) for i in range(30)))
        return [r.stdout for r in results]

    assert run(many()) == [f"{i}\n" for i in range(30)]
    assert pool.counters("127.0.0.1") == ssh.Counters(round_trips=50, mutations=0, connects=1)


def test_no_file_descriptor_leak(sshd: SSHServer, pool: SSHPool) -> None:
    conn = pool.connection(sshd.target())
    run(conn.run(["true"]))
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(30):
        run(conn.run(["true"]))
    assert len(os.listdir("/proc/self/fd")) <= before + 2


def test_reconnect_after_sshd_restart(own_sshd: SSHServer, pool: SSHPool) -> None:
    conn = pool.connection(own_sshd.target())
    assert run(conn.run(["echo", "before"])).stdout == "before\n"
    own_sshd.restart()
    assert run(conn.run(["echo", "after"])).stdout == "after\n"
    assert pool.counters("127.0.0.1") == ssh.Counters(round_trips=2, mutations=0, connects=2)


def test_reconnect_when_the_dead_connection_is_not_yet_noticed(own_sshd: SSHServer, pool: SSHPool,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The pooled transport looks alive but is dead: opening the session fails, the pool reconnects and runs the
    command once."""
    conn = pool.connection(own_sshd.target())
    run(conn.run(["true"]))
    own_sshd.restart()
    monkeypatch.setattr(paramiko.Transport, "is_active", lambda self: True)
    assert run(conn.run(["echo", "again"])).stdout == "again\n"
    assert pool.counters("127.0.0.1") == ssh.Counters(round_trips=2, mutations=0, connects=2)


def test_restarts_in_a_row(own_sshd: SSHServer, pool: SSHPool) -> None:
    conn = pool.connection(own_sshd.target())
    run(conn.run(["true"]))
    for round in range(3):
        own_sshd.restart()
        assert run(conn.run(["echo", str(round)], mutation=True)).stdout == f"{round}\n"
    assert pool.counters("127.0.0.1") == ssh.Counters(round_trips=4, mutations=3, connects=4)


def test_connection_lost_mid_command(own_sshd: SSHServer, pool: SSHPool) -> None:
    """A connection dying under a running command is reported, not retried: whether it ran is unknown."""
    conn = pool.connection(own_sshd.target())
    run(conn.run(["true"]))
    running = own_sshd.directory / f"running-{secrets.token_hex(4)}"

    def kill_once_running() -> None:  # the server dies while the command runs, however long it takes to start
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not running.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        own_sshd.stop()

    killer = threading.Thread(target=kill_once_running, daemon=True)
    killer.start()
    # The command would outlive the test; its timeout is far above what noticing the lost connection takes, so
    # only a connection loss that went unnoticed ends in SSHTimeout (and fails the test).
    with pytest.raises(ssh.ConnectionLost, match="whether it completed is unknown"):
        run(conn.run(["sh", "-c", 'touch "$1" && exec sleep 300', "sh", str(running)], timeout=120,
                     mutation=True))
    killer.join()
    assert running.exists()
    assert pool.counters("127.0.0.1") == ssh.Counters(round_trips=2, mutations=1, connects=1)


def test_server_down_is_unreachable(own_sshd: SSHServer, pool: SSHPool) -> None:
    conn = pool.connection(own_sshd.target())
    run(conn.run(["true"]))
    own_sshd.stop()
    with pytest.raises(ssh.Unreachable):
        run(conn.run(["true"]))


def test_counters(sshd: SSHServer, pool: SSHPool, canary: Path) -> None:
    conn = pool.connection(sshd.target())
    run(conn.run(["touch", str(canary)], mutation=True))
    run(conn.run(["rm", str(canary)], mutation=True))
    run(conn.run(["true"]))
    run(conn.run_script("true\n", mutation=True))
    assert conn.counters == ssh.Counters(round_trips=4, mutations=3, connects=1)
    pool.reset_counters("127.0.0.1")
    assert conn.counters == ssh.Counters()
    run(conn.run(["true"]))
    assert conn.counters == ssh.Counters(round_trips=1, mutations=0, connects=0)


def test_command_failed(sshd: SSHServer, pool: SSHPool) -> None:
    conn = pool.connection(sshd.target())
    with pytest.raises(ssh.CommandFailed) as caught:
        run(conn.run(["sh", "-c", "for i in 1 2 3 4 5 6 7; do echo line$i >&2; done; exit 3", "a b"]))
    error = caught.value
    assert error.exit_status == 3 and error.reason == "CommandFailed"
    assert error.argv.startswith("sh -c 'for i in") and error.argv.endswith("'a b'")
    assert error.stderr_tail == "line3\nline4\nline5\nline6\nline7"
    result = run(conn.run(["sh", "-c", "exit 4"], check=False))
    assert result.exit_status == 4 and not result.ok
    reconcile = reconcile_error(error)
    assert reconcile.reason == "CommandFailed" and str(reconcile) == str(error)


def test_private_key_rotation_reconnects(sshd: SSHServer, pool: SSHPool) -> None:
    run(pool.connection(sshd.target(key_type="ed25519")).run(["true"]))
    run(pool.connection(sshd.target(key_type="ed25519")).run(["true"]))
    run(pool.connection(sshd.target(key_type="rsa")).run(["true"]))
    assert pool.counters("127.0.0.1").connects == 2


def test_two_keys_to_one_host_do_not_close_each_others_connection(sshd: SSHServer, pool: SSHPool) -> None:
    """Two resources reaching one host with different Secrets (a KvmHost and the CloudStackRelease built there):
    one connection each, used at the same time, none closed under the other's running command."""
    first, second = sshd.target(key_type="ed25519"), sshd.target(key_type="rsa")

    async def both() -> list[ssh.CommandResult]:
        runs = [pool.connection(t).run(["sh", "-c", "sleep 0.3; echo ok"]) for t in (first, second) * 3]
        return list(await asyncio.gather(*runs))

    assert [r.stdout.strip() for r in run(both())] == ["ok"] * 6
    assert pool.counters("127.0.0.1").connects == 2
    assert pool.is_connected(first) and pool.is_connected(second)


def test_explicit_connect_and_close(sshd: SSHServer, pool: SSHPool) -> None:
    target = sshd.target()
    conn = pool.connection(target)
    run(conn.connect())
    assert pool.is_connected(target)
    assert pool.counters("127.0.0.1") == ssh.Counters(round_trips=0, mutations=0, connects=1)
    conn.close()
    assert not pool.is_connected(target)
    run(conn.run(["true"]))
    assert pool.counters("127.0.0.1").connects == 2


# -- sudo ---------------------------------------------------------------------------------------------------------


def _make_user(sudoers: bool) -> Iterator[str]:
    if not shutil.which("sudo") or not shutil.which("useradd") or os.geteuid() != 0:
        pytest.skip("needs root, sudo and useradd to create a temporary sudo user")
    name = f"sot{secrets.token_hex(4)}"
    subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh", name],
                   check=True)
    # '*': no password, yet not locked ('!'), which OpenSSH without PAM would refuse
    subprocess.run(["usermod", "-p", "*", name], check=True)
    sudoers_file = Path(f"/etc/sudoers.d/{name}")
    if sudoers:
        sudoers_file.write_text(f"{name} ALL=(ALL) NOPASSWD: ALL\n")
        os.chmod(sudoers_file, 0o440)
    try:
        yield name
    finally:
        sudoers_file.unlink(missing_ok=True)
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", name], check=False)


@pytest.fixture(scope="module")
def sudo_user() -> Iterator[str]:
    yield from _make_user(sudoers=True)


@pytest.fixture
def unprivileged_user() -> Iterator[str]:
    yield from _make_user(sudoers=False)


def test_sudo_runs_as_root(sshd: SSHServer, pool: SSHPool, sudo_user: str) -> None:
    plain = pool.connection(sshd.target(user=sudo_user))
    assert run(plain.run(["id", "-un"])).stdout == f"{sudo_user}\n"
    conn = pool.connection(sshd.target(user=sudo_user, sudo=True))
    assert run(conn.run(["id", "-u"])).stdout == "0\n"
    assert run(conn.run_script("id -u\nid -un\n")).stdout == "0\nroot\n"
    assert run(conn.run(["cat"], input="via sudo\n")).stdout == "via sudo\n"


def test_sudo_refused(sshd: SSHServer, pool: SSHPool, unprivileged_user: str, canary: Path) -> None:
    conn = pool.connection(sshd.target(user=unprivileged_user, sudo=True))
    with pytest.raises(ssh.SudoFailed) as caught:
        run(conn.run(["touch", str(canary)], check=False))
    assert caught.value.reason == "SudoFailed"
    assert not canary.exists()
