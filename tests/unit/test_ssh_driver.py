"""The SSH driver's pure parts: command lines, targets, keys, errors, counters (no SSH server needed)."""
from __future__ import annotations

import asyncio
import base64
import shlex
import socket

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pydantic import SecretStr

from stackops.api.common import SSHSettings
from stackops.drivers import ssh
from stackops.drivers.ssh import CommandResult, Counters, SSHConnection, SSHPool, SSHTarget, build_command
from stackops.reconcile.ssh import reconcile_error, target_for

HOSTILE = [
    "; touch /tmp/canary", "$(touch /tmp/canary)", "`touch /tmp/canary`", "| touch /tmp/canary",
    "&& touch /tmp/canary", "> /tmp/canary", "x\ntouch /tmp/canary", "'", '"', "it's \"quoted\"", "a b  c", "",
    "*", "~", "$HOME", "\\", "-n", "--", "é ✓", "#", "!!", "{a,b}",
]


def ed25519_public(key: ed25519.Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def private_text(key, fmt: serialization.PrivateFormat, password: bytes | None = None) -> str:
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption).decode()


def make_target(**overrides) -> SSHTarget:
    values = dict(address="192.0.2.10", port=22, user="root",
                  host_key=ed25519_public(ed25519.Ed25519PrivateKey.generate()),
                  private_key=SecretStr(private_text(ed25519.Ed25519PrivateKey.generate(),
                                                     serialization.PrivateFormat.OpenSSH)))
    values.update(overrides)
    return SSHTarget(**values)


# -- command lines --------------------------------------------------------------------------------------------------


def test_every_argument_is_quoted() -> None:
    argv = ["printf", "%s\\n", *HOSTILE]
    line = build_command(argv)
    assert line == shlex.join(argv)
    assert shlex.split(line) == argv  # a POSIX shell parses it back into exactly these words


def test_sudo_prefix() -> None:
    assert build_command(["id", "-u"], sudo=True) == "sudo -n -- id -u"
    assert build_command(["echo", "a; b"], sudo=True) == "sudo -n -- echo 'a; b'"
    assert build_command(["-x"], sudo=True) == "sudo -n -- -x"  # '--' ends sudo's options
    assert shlex.split(build_command(HOSTILE, sudo=True)) == ["sudo", "-n", "--", *HOSTILE]


@pytest.mark.parametrize("bad, error", [
    ("echo hi", TypeError),  # a command line is not an argv
    (b"echo", TypeError),
    ([], ValueError),
    (["echo", 3], TypeError),
    (["echo", "a\0b"], ValueError),
])
def test_bad_argv_is_rejected(bad, error) -> None:
    with pytest.raises(error):
        build_command(bad)


def test_script_argv() -> None:
    assert ssh.script_argv() == ["sh", "-s", "--"]
    assert ssh.script_argv(["a b", "$(x)"]) == ["sh", "-s", "--", "a b", "$(x)"]
    assert build_command(ssh.script_argv(["a b"]), sudo=True) == "sudo -n -- sh -s -- 'a b'"
    with pytest.raises(ValueError):
        ssh.script_argv(["\0"])


@pytest.mark.parametrize("status, stderr, refused", [
    (1, "sudo: a password is required\n", True),
    (1, "sudo: a terminal is required to read the password; either use the -S option\n", True),
    (1, "bob is not in the sudoers file.  This incident will be reported.\n", False),
    (1, "sudo: bob is not in the sudoers file.  This incident will be reported.\n", True),
    (1, "Sorry, user bob is not allowed to execute '/bin/true' as root on h.\n", False),
    (1, "sudo: sorry, you must have a tty to run sudo\n", True),
    (127, "sh: 1: sudo: not found\n", True),
    (127, "bash: sudo: command not found\n", True),
    (1, "grep: no match\n", False),
    (2, "sudo: a password is required\n", False),
    (0, "", False),
])
def test_sudo_refusal(status: int, stderr: str, refused: bool) -> None:
    assert ssh.sudo_refusal(status, stderr) is refused


# -- targets ----------------------------------------------------------------------------------------------------------


def test_target_from_settings() -> None:
    host_key = ed25519_public(ed25519.Ed25519PrivateKey.generate())
    settings = SSHSettings.model_validate({"user": "stack", "port": 2222, "hostKey": host_key, "sudo": True,
                                           "connectTimeoutSeconds": 7, "privateKeySecretRef": {"name": "k"}})
    secret = SecretStr("-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n-----END OPENSSH PRIVATE KEY-----\n")
    target = target_for("10.0.0.5", settings, secret)
    assert (target.address, target.port, target.user, target.host_key, target.sudo, target.connect_timeout) == (
        "10.0.0.5", 2222, "stack", host_key, True, 7.0)
    assert target.private_key is secret
    assert "xyz" not in repr(target) and "PRIVATE" not in repr(target)
    assert target.key == ("10.0.0.5", 2222, "stack", host_key)
    assert target.display == "stack@10.0.0.5:2222"


def test_target_defaults_from_settings() -> None:
    host_key = ed25519_public(ed25519.Ed25519PrivateKey.generate())
    settings = SSHSettings.model_validate({"hostKey": host_key, "privateKeySecretRef": {"name": "k"}})
    target = target_for("h.example.com", settings, SecretStr("x"))
    assert (target.port, target.user, target.sudo, target.connect_timeout) == (22, "root", False, 10.0)


def test_known_hosts_name() -> None:
    assert make_target(port=22).known_hosts_name == "192.0.2.10"
    assert make_target(port=2222).known_hosts_name == "[192.0.2.10]:2222"
    assert make_target(address="fd00::1", port=2222).known_hosts_name == "[fd00::1]:2222"
    assert make_target(address="fd00::1").display == "root@[fd00::1]:22"


def test_target_equality_ignores_the_private_key() -> None:
    a = make_target(private_key=SecretStr("one"))
    b = SSHTarget(a.address, a.port, a.user, a.host_key, SecretStr("two"))
    assert a == b and hash(a) == hash(b) and a.key == b.key
    assert a.credential_id() != b.credential_id()
    assert "one" not in a.credential_id()


# -- keys -------------------------------------------------------------------------------------------------------------


PRIVATE_KEYS = {
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "ecdsa-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ecdsa-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ecdsa-p521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}
FORMATS = {
    "openssh": serialization.PrivateFormat.OpenSSH,
    "pem": serialization.PrivateFormat.TraditionalOpenSSL,
    "pkcs8": serialization.PrivateFormat.PKCS8,
}


@pytest.mark.parametrize("kind, fmt", [(kind, fmt) for kind in PRIVATE_KEYS for fmt in FORMATS
                                       if (kind, fmt) != ("ed25519", "pem")])  # ed25519 has no traditional PEM
def test_private_keys_load(kind: str, fmt: str) -> None:
    key = PRIVATE_KEYS[kind]()
    text = private_text(key, FORMATS[fmt])
    loaded = ssh.load_private_key(SecretStr(text.replace("\n", "\r\n") + "\n\n"))  # as a Secret may hold it
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert f"{loaded.get_name()} {loaded.get_base64()}" == public.decode()
    assert loaded.can_sign()
    # it signs what the public key verifies
    signature = loaded.sign_ssh_data(b"data")
    signature.rewind()
    verifier = paramiko.PKey.from_type_string(loaded.get_name(), loaded.asbytes())
    assert verifier.verify_ssh_sig(b"data", signature)


@pytest.mark.parametrize("fmt", ["openssh", "pkcs8"])
def test_encrypted_private_key_is_refused(fmt: str) -> None:
    text = private_text(ed25519.Ed25519PrivateKey.generate(), FORMATS[fmt], password=b"pw")
    with pytest.raises(ssh.InvalidPrivateKey, match="encrypted") as caught:
        ssh.load_private_key(SecretStr(text), "root@h:22")
    assert text not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("text", [
    "not a key",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0IG1hdGVyaWFs\n-----END OPENSSH PRIVATE KEY-----\n",
    "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0IG1hdGVyaWFs\n-----END RSA PRIVATE KEY-----\n",
    "",
])
def test_unreadable_private_key_message_shows_no_key(text: str) -> None:
    with pytest.raises(ssh.InvalidPrivateKey) as caught:
        ssh.load_private_key(SecretStr(text), "root@h:22")
    message = str(caught.value)
    assert "c2VjcmV0" not in message and "not a key" not in message
    assert caught.value.reason == "InvalidPrivateKey"
    assert caught.value.__suppress_context__


def test_pinned_host_key_parsing() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    parsed = ssh._parse_host_key(ed25519_public(key), "h")
    assert parsed.get_name() == "ssh-ed25519"
    rsa_public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    assert ssh._parse_host_key(rsa_public, "h").get_name() == "ssh-rsa"
    ecdsa_public = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    assert ssh._parse_host_key(ecdsa_public, "h").get_name() == "ecdsa-sha2-nistp384"
    with pytest.raises(ssh.InvalidHostKey):
        ssh._parse_host_key("ssh-ed25519", "h")
    with pytest.raises(ssh.InvalidHostKey):
        ssh._parse_host_key("ssh-ed25519 !!!notbase64", "h")
    with pytest.raises(ssh.InvalidHostKey):  # the blob is an rsa key
        ssh._parse_host_key("ssh-ed25519 " + rsa_public.split()[1], "h")
    with pytest.raises(ssh.InvalidHostKey):
        ssh._parse_host_key("ssh-dss " + base64.b64encode(b"\0\0\0\x07ssh-dss").decode(), "h")


# -- errors -----------------------------------------------------------------------------------------------------------


def test_error_reasons_and_retry() -> None:
    classes = [ssh.HostKeyMismatch, ssh.AuthenticationFailed, ssh.Unreachable, ssh.SSHTimeout, ssh.CommandFailed,
               ssh.SudoFailed, ssh.ConnectionLost, ssh.InvalidHostKey, ssh.InvalidPrivateKey]
    for cls in classes:
        assert issubclass(cls, ssh.SSHError)
        assert cls.reason == cls.__name__
        error = cls("message")
        reconcile = reconcile_error(error)
        assert (reconcile.reason, str(reconcile), reconcile.retry, reconcile.delay) == (
            cls.__name__, "message", cls.retry, cls.delay)
    assert ssh.HostKeyMismatch.retry is False and ssh.InvalidHostKey.retry is False
    assert ssh.Unreachable.retry is True


def test_checked_results() -> None:
    pool = SSHPool()
    try:
        conn = SSHConnection(pool, make_target())
        ok = CommandResult(0, "out", "")
        assert conn._checked(["true"], None, ok, True) is ok
        failed = CommandResult(2, "", "".join(f"line {i}\n" for i in range(10)))
        assert conn._checked(["false"], None, failed, False) is failed
        with pytest.raises(ssh.CommandFailed) as caught:
            conn._checked(["rm", "-rf", "/tmp/a b"], None, failed, True)
        error = caught.value
        assert error.argv == "rm -rf '/tmp/a b'" and error.exit_status == 2 and error.result is failed
        assert error.stderr_tail == "line 5\nline 6\nline 7\nline 8\nline 9"
        assert str(error) == ("rm -rf '/tmp/a b' exited with status 2 on root@192.0.2.10:22: "
                              "line 5\nline 6\nline 7\nline 8\nline 9")
        # stdout stands in for an empty stderr; a signal has no status
        with pytest.raises(ssh.CommandFailed, match="was killed by a signal.*: why"):
            conn._checked(["x"], None, CommandResult(-1, "why\n", ""), True)
        # a label hides the command line
        with pytest.raises(ssh.CommandFailed, match=r"^sh -s \(probe\) exited"):
            conn._checked(["sh", "-s", "--", "secret-ish"], "sh -s (probe)", CommandResult(1, "", ""), True)
        # sudo refusals are raised even with check=False: the command did not run
        sudo_conn = SSHConnection(pool, make_target(user="stack", sudo=True))
        refused = CommandResult(1, "", "sudo: a password is required\n")
        with pytest.raises(ssh.SudoFailed, match="password-less sudo"):
            sudo_conn._checked(["id"], None, refused, False)
        assert conn._checked(["id"], None, refused, False) is refused  # without sudo it is the command's own
    finally:
        pool.shutdown()


def test_long_command_lines_are_shortened_in_messages() -> None:
    pool = SSHPool()
    try:
        conn = SSHConnection(pool, make_target())
        with pytest.raises(ssh.CommandFailed) as caught:
            conn._checked(["echo", "x" * 5000], None, CommandResult(1, "", "y" * 5000), True)
        assert len(str(caught.value)) < 1500
    finally:
        pool.shutdown()


# -- pool -------------------------------------------------------------------------------------------------------------


def test_counters() -> None:
    pool = SSHPool()
    try:
        assert pool.counters("a") == Counters(0, 0, 0)
        pool._count("a", round_trips=1, mutations=1)
        pool._count("a", round_trips=1, connects=1)
        pool._count("b", round_trips=5)
        assert pool.counters("a") == Counters(round_trips=2, mutations=1, connects=1)
        pool.reset_counters("a")
        assert pool.counters("a") == Counters() and pool.counters("b").round_trips == 5
        pool.reset_counters()
        assert pool.counters("b") == Counters()
    finally:
        pool.shutdown()


def test_closed_port_is_unreachable_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quickly: on the refusal itself, after one attempt, without waiting for a timeout or trying again."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    attempts: list[ssh.SSHTarget] = []
    open_socket = ssh._open_socket
    monkeypatch.setattr(ssh, "_open_socket", lambda target: attempts.append(target) or open_socket(target))
    pool = SSHPool()
    try:
        conn = pool.connection(make_target(address="127.0.0.1", port=port))
        with pytest.raises(ssh.Unreachable, match="connection refused") as caught:
            asyncio.run(conn.run(["true"]))
        assert len(attempts) == 1, "connected once: no retry"
        assert caught.value.reason == "Unreachable" and caught.value.retry
        assert pool.counters("127.0.0.1") == Counters()
    finally:
        pool.shutdown()


def test_argv_is_checked_before_connecting() -> None:
    pool = SSHPool()
    try:
        conn = pool.connection(make_target(address="127.0.0.1", port=1))
        with pytest.raises(TypeError):
            asyncio.run(conn.run("rm -rf /"))  # type: ignore[arg-type]
    finally:
        pool.shutdown()


def test_paramiko_knows_the_types_we_pin() -> None:
    for name in ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"):
        assert any(name in cls.identifiers() for cls in paramiko.key_classes), name


class _BusyTransport:
    """A transport whose server refuses sessions `refusals` times, as OpenSSH does at MaxSessions."""

    def __init__(self, refusals: int, code: int = paramiko.common.OPEN_FAILED_CONNECT_FAILED) -> None:
        self.refusals, self.code, self.opened = refusals, code, 0

    def open_session(self, timeout: float) -> str:
        if self.refusals:
            self.refusals -= 1
            raise paramiko.ChannelException(self.code, "Connect failed")
        self.opened += 1
        return "channel"

    def is_active(self) -> bool:
        return True


def test_a_session_refused_at_the_servers_session_limit_is_asked_for_again() -> None:
    transport = _BusyTransport(refusals=3)
    channel = SSHPool._open_session(transport, make_target(), lambda: 60.0)
    assert (channel, transport.refusals, transport.opened) == ("channel", 0, 1)


def test_a_session_the_busy_server_is_slow_to_open_is_asked_for_again_on_the_same_connection() -> None:
    class SlowTransport(_BusyTransport):
        def open_session(self, timeout: float) -> str:
            if self.refusals:
                self.refusals -= 1
                raise paramiko.SSHException("Timeout opening channel.")
            return super().open_session(timeout)

    transport = SlowTransport(refusals=1)
    assert SSHPool._open_session(transport, make_target(), lambda: 60.0) == "channel"
    assert transport.opened == 1
    # twice: perhaps a dead connection that does not know it yet; the caller reconnects
    with pytest.raises(paramiko.SSHException, match="Timeout opening channel"):
        SSHPool._open_session(SlowTransport(refusals=2), make_target(), lambda: 60.0)


def test_other_refusals_and_a_spent_budget_are_not_asked_again() -> None:
    prohibited = _BusyTransport(refusals=1, code=paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED)
    with pytest.raises(paramiko.ChannelException):
        SSHPool._open_session(prohibited, make_target(), lambda: 60.0)
    spent = _BusyTransport(refusals=1)
    with pytest.raises(paramiko.ChannelException):
        SSHPool._open_session(spent, make_target(), lambda: 0.0)
