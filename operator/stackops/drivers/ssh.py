"""The SSH driver: commands on hosts over one pinned, reused connection per host.

- The host key is pinned by the spec. It is the only key paramiko knows for the host (no system `known_hosts`, no
  trust on first use), paramiko is made to negotiate its type, and a host presenting another key is refused
  before authentication, so no command runs on it (`HostKeyMismatch`).
- The client key comes from a Secret (`SecretStr`), ed25519, ecdsa or rsa, OpenSSH or PEM format, unencrypted.
  No agent, no `~/.ssh` keys, no password.
- A command is an argv. Its command line is built only with `shlex.join`, every argument quoted, behind
  `sudo -n --` when the target uses sudo; no caller string is ever parsed by the remote shell as code. Secrets
  belong in `input` (stdin), never in argv (argv shows in messages, logs and the host's process list).
- `run_script` sends a shell script on stdin to `sh -s -- ARGS…`: one round trip for a batched probe, with any
  spec value passed as a quoted positional parameter, not interpolated into the script.
- `SSHPool` keeps one live connection per (address, port, user, host key), shared by concurrent callers, and
  reconnects once, transparently, when the connection has died (host or sshd restarted). It counts round trips
  (one per command), mutations (commands run with `mutation=True`) and connects per address for tests and
  benchmarks. The key holds a digest of the private key, never the key. Which objects use a connection is kept by
  `holdings`: one no object uses any more (deleted, its address or key changed) is closed (`release`).
- A connection no command has used for `idle_seconds` (`stackops run --ssh-idle-seconds`, default 60 s, shorter
  than a KvmHost's default resync) is closed too, and its paramiko thread ends: hosts between resyncs hold no
  connection, no thread, no memory. One reaper thread per pool, running only while the pool keeps a connection,
  closes each as it comes due (`reap_idle`). At most `max_idle` connections (`--ssh-max-idle`, default 4) stay
  open idle at a time, the longest idle beyond that closed at once: a burst over many hosts (the operator's start, a
  resync round) does not keep one connection per host either. A connection a command or a connect is using is
  never closed for idleness; its idle time counts from the end of its last use. The next command to the host
  connects again.
- paramiko is blocking: every call runs in the pool's own bounded worker threads (workers.py), not in the
  event loop's small default executor shared with XenAPI and Kubernetes calls. Time a command waits there for a
  thread counts against its timeout (a command with timeout T that waited W gets T - W, or fails with
  `SSHTimeout` saying so). `urgent` commands (KvmHost's confirm of a guarded change, which the host reverts unless
  it comes in time) are taken before queued ordinary ones, by threads kept for them.

Errors are typed (`SSHError` subclasses) with a `reason` for status and `retry`/`delay` for the reconcile engine,
which maps them (reconcile/ssh.py: `reconcile_error`). The driver takes plain values (`SSHTarget`), no spec model;
reconcile/ssh.py's `target_for` builds one from a spec's `ssh` block.
"""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import math
import re
import select
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import paramiko
from pydantic import SecretStr

from .. import metrics
from .workers import Workers
from . import holdings

log = logging.getLogger(__name__)

SUDO_PREFIX = ("sudo", "-n", "--")
DEFAULT_COMMAND_TIMEOUT = 60.0
IDLE_POLL_SECONDS = 5.0  # how often an idle connection's paramiko thread wakes up (see SSHPool._connect)
CLOSE_JOIN_SECONDS = 1.0  # the longest a close waits for the connection's paramiko thread to end (it takes ms)
POST_AUTH_WAIT_SECONDS = 0.05  # the longest a new connection waits for the server's post-authentication messages
_READ_CHUNK = 65536
_DISPLAY_MAX = 300
_TAIL_LINES = 5
_TAIL_CHARS = 800
DEFAULT_IDLE_SECONDS = 60.0  # a connection no command has used for this long is closed (KvmHost resyncs: 300 s)
DEFAULT_MAX_IDLE = 4  # connections kept open while no command uses them, all hosts together (a thread each)
REAP_MIN_PAUSE_SECONDS = 0.5  # the reaper thread's shortest sleep
DEFAULT_WORKERS = 12  # threads running commands at once, all hosts together (bench/scale.py: 500 hosts' resync)
URGENT_WORKERS = 4  # more threads, for urgent commands only (KvmHost confirms)


# --------------------------------------------------------------------------------------------------------------
# Errors


class SSHError(Exception):
    """A failure talking to a host. `reason` is a CamelCase kstatus reason; `retry`/`delay` say whether trying
    again later can help. Messages name hosts, commands and public-key fingerprints, never a secret."""

    reason = "SSHError"
    retry = True
    delay = 30.0

    def __init__(self, message: str, *, host: str | None = None):
        super().__init__(message)
        self.host = host


class InvalidHostKey(SSHError):
    """The pinned host key in the spec is not a readable public key."""

    reason = "InvalidHostKey"
    retry = False


class InvalidPrivateKey(SSHError):
    """The private key from the Secret is unreadable, encrypted or of an unsupported type."""

    reason = "InvalidPrivateKey"
    delay = 60.0


class HostKeyMismatch(SSHError):
    """The host presented a key other than the pinned one; nothing was sent to it (no authentication, no
    command)."""

    reason = "HostKeyMismatch"
    retry = False

    def __init__(self, message: str, *, host: str | None = None, presented: str = "", pinned: str = ""):
        super().__init__(message, host=host)
        self.presented = presented  # "ssh-ed25519 SHA256:…"
        self.pinned = pinned


class AuthenticationFailed(SSHError):
    """The host refused the client key for the user."""

    reason = "AuthenticationFailed"
    delay = 60.0


class Unreachable(SSHError):
    """No SSH session could be set up: name not resolved, connection refused or timed out, no route, or the
    SSH handshake failed."""

    reason = "Unreachable"
    delay = 30.0


class ConnectionLost(SSHError):
    """The connection died while a command was running; whether the command ran is unknown."""

    reason = "ConnectionLost"
    delay = 10.0


class SSHTimeout(SSHError):
    """A command did not finish within its timeout (its channel was closed; the remote process may still run
    until it next writes)."""

    reason = "SSHTimeout"


class CommandFailed(SSHError):
    """A command exited with a non-zero status (raised when `check=True`)."""

    reason = "CommandFailed"

    def __init__(self, message: str, *, host: str | None = None, argv: str = "", exit_status: int = -1,
                 stderr_tail: str = "", result: "CommandResult | None" = None):
        super().__init__(message, host=host)
        self.argv = argv  # display form (shlex-quoted)
        self.exit_status = exit_status
        self.stderr_tail = stderr_tail
        self.result = result


class SudoFailed(SSHError):
    """`sudo -n` refused to run the command (no password-less sudo for the user, sudo missing, a tty required);
    the command did not run."""

    reason = "SudoFailed"
    delay = 60.0


# --------------------------------------------------------------------------------------------------------------
# Targets, results, counters


def _parse_host_key(host_key: str, host: str) -> paramiko.PKey:
    parts = host_key.split()
    if len(parts) < 2:
        raise InvalidHostKey(f"{host}: the pinned host key is not of the form '<type> <base64>'", host=host)
    key_type, blob = parts[0], parts[1]
    try:
        key = paramiko.PKey.from_type_string(key_type, base64.b64decode(blob, validate=True))
    except Exception as error:  # noqa: BLE001 - binascii.Error, UnknownKeyType, SSHException, struct errors…
        raise InvalidHostKey(f"{host}: the pinned host key ({key_type}) is not a valid public key: "
                             f"{type(error).__name__}", host=host) from None
    if key.get_name() != key_type:
        raise InvalidHostKey(f"{host}: the pinned host key says {key_type} but holds a {key.get_name()} key",
                             host=host)
    return key


def load_private_key(secret: SecretStr, host: str = "") -> paramiko.PKey:
    """A paramiko key from OpenSSH or PEM text (ed25519, ecdsa, rsa; unencrypted). Errors never show the key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    text = secret.get_secret_value().replace("\r\n", "\n").strip() + "\n"
    data = text.encode("utf-8", errors="replace")
    where = f"{host}: " if host else ""
    loaded = None
    try:
        try:
            loaded = serialization.load_ssh_private_key(data, password=None)
        except ValueError:
            loaded = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted
        raise InvalidPrivateKey(f"{where}the SSH private key is encrypted; stackops needs an unencrypted key",
                                host=host or None) from None
    except Exception:  # noqa: BLE001 - the message of a parser error must not be shown: it may quote the key
        raise InvalidPrivateKey(f"{where}the SSH private key is not a readable OpenSSH or PEM private key",
                                host=host or None) from None
    # Built from the parsed key rather than re-parsed by paramiko: paramiko 5.1 misreads OpenSSH-format ecdsa keys
    # ("Invalid key curve identifier") and reads ed25519 keys only in OpenSSH format (not PKCS#8).
    try:
        if isinstance(loaded, rsa.RSAPrivateKey):
            return paramiko.RSAKey(key=loaded)
        if isinstance(loaded, ec.EllipticCurvePrivateKey):
            return paramiko.ECDSAKey(vals=(loaded, loaded.public_key()))
        if isinstance(loaded, ed25519.Ed25519PrivateKey):
            openssh = loaded.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                           serialization.NoEncryption())
            return paramiko.Ed25519Key(file_obj=io.StringIO(openssh.decode("ascii")))
    except Exception:  # noqa: BLE001 - see above
        raise InvalidPrivateKey(f"{where}the SSH private key ({type(loaded).__name__}) could not be used",
                                host=host or None) from None
    raise InvalidPrivateKey(f"{where}unsupported SSH private key type {type(loaded).__name__} "
                            f"(use ed25519, ecdsa or rsa)", host=host or None)


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to reach one host. The private key is excluded from repr and equality."""

    address: str
    port: int
    user: str
    host_key: str  # "ssh-ed25519 AAAA…", as in known_hosts without the host name
    private_key: SecretStr = field(repr=False, compare=False)
    sudo: bool = False
    connect_timeout: float = 10.0

    @property
    def key(self) -> tuple[str, int, str, str]:
        """The pool key: one connection per (address, port, user, host key)."""
        return (self.address, self.port, self.user, " ".join(self.host_key.split()[:2]))

    @property
    def display(self) -> str:
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.user}@{address}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH (and paramiko) file the host key under: `host` on port 22, `[host]:port` otherwise."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    def credential_id(self) -> str:
        """A digest identifying the private key (surrounding whitespace aside): one pooled connection per key, so
        two resources reaching the same host with different keys do not close each other's connection."""
        return hashlib.sha256(self.private_key.get_secret_value().strip().encode("utf-8", errors="replace")).hexdigest()


@dataclass(frozen=True)
class CommandResult:
    exit_status: int  # -1: no exit status (killed by a signal)
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass(frozen=True)
class Counters:
    """What a pool did for one address: commands (round trips), mutations among them, SSH sessions set up."""

    round_trips: int = 0
    mutations: int = 0
    connects: int = 0


# --------------------------------------------------------------------------------------------------------------
# Command lines


def _check_argv(argv: Sequence[str]) -> list[str]:
    if isinstance(argv, (str, bytes)):
        raise TypeError("argv must be a sequence of arguments, not a command line")
    args = list(argv)
    if not args:
        raise ValueError("argv is empty")
    for arg in args:
        if not isinstance(arg, str):
            raise TypeError(f"argv items must be str, not {type(arg).__name__}")
        if "\0" in arg:
            raise ValueError("an argument contains a NUL character, which no command line can carry")
    return args


def build_command(argv: Sequence[str], *, sudo: bool = False) -> str:
    """The remote command line: `shlex.join(argv)`, behind `sudo -n --` with sudo. Nothing else is ever sent."""
    args = _check_argv(argv)
    return shlex.join([*SUDO_PREFIX, *args] if sudo else args)


def script_argv(args: Sequence[str] = ()) -> list[str]:
    """The argv that runs a script read from stdin with `args` as its positional parameters."""
    return ["sh", "-s", "--", *_check_argv(["sh", *args])[1:]]


def _drain(ready: Callable[[], bool], read: Callable[[int], bytes], into: bytearray) -> bool:
    """Append what a channel stream has ready to `into`; True when anything was read."""
    progressed = False
    while ready():
        chunk = read(_READ_CHUNK)
        if not chunk:
            break
        into += chunk
        progressed = True
    return progressed


def _display(text: str) -> str:
    return text if len(text) <= _DISPLAY_MAX else text[: _DISPLAY_MAX - 1] + "…"


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()][-_TAIL_LINES:]
    tail = "\n".join(lines)
    return tail if len(tail) <= _TAIL_CHARS else "…" + tail[-_TAIL_CHARS:]


_SUDO_REFUSALS = re.compile(
    r"^sudo: (a password is required|a terminal is required|sorry, you must have a tty|.*is not in the sudoers"
    r"|.*is not allowed to|.*may not run sudo|account validation failure|.*unknown user)",
    re.MULTILINE,
)
_SUDO_MISSING = re.compile(r"sudo: (command )?not found|sudo: No such file", re.IGNORECASE)


def sudo_refusal(exit_status: int, stderr: str) -> bool:
    """Whether a `sudo -n --` command failed in sudo itself (the command did not run)."""
    if exit_status == 1 and _SUDO_REFUSALS.search(stderr):
        return True
    return exit_status == 127 and bool(_SUDO_MISSING.search(stderr))


# --------------------------------------------------------------------------------------------------------------
# The pool


class _Retry(Exception):
    """Internal: the connection died before the command could have done anything; reconnect and try again."""


class _Host:
    """One pooled connection and its lock. The lock serialises connecting; commands share the transport. `uses`
    counts the commands (and connects) running on it and `idle_since` is when the last of them ended, both under
    the pool's lock: the pool closes a connection nothing uses once it has been idle for the pool's bound."""

    def __init__(self, key: tuple[str, int, str, str, str], max_sessions: int, now: float):
        self.key = key
        self.lock = threading.Lock()
        self.client: paramiko.SSHClient | None = None
        self.credential: str | None = None
        self.sessions = threading.BoundedSemaphore(max_sessions)
        self.uses = 0
        self.idle_since = now

    def close(self) -> None:
        with self.lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self.client is not None:
            transport = self.client.get_transport()
            try:
                if transport is not None and transport.is_active():
                    # wakes the transport's thread from its read at once (instead of up to IDLE_POLL_SECONDS
                    # later): it ends, and the host sees the connection end now
                    transport.sock.shutdown(socket.SHUT_RDWR)
                    if isinstance(transport, threading.Thread) and transport is not threading.current_thread():
                        # and it has ended before the descriptor is closed: closed under it, its read went on
                        # waiting (on a descriptor the next connection may get) until IDLE_POLL_SECONDS passed, a
                        # thread each (bench/scale.py: 47 Transport threads at once, 16 connections)
                        transport.join(CLOSE_JOIN_SECONDS)
            except OSError:
                pass  # not connected any more
            try:
                self.client.close()
            except Exception:  # noqa: BLE001 - closing a dead connection may fail; it is gone either way
                pass
        self.client = None
        self.credential = None


def _transport(sock: socket.socket, **options: object) -> paramiko.Transport:
    """paramiko's Transport, noting when the server's first global request arrives (`post_auth`: sshd sends
    `hostkeys-00@openssh.com` once the session's process is ready after authentication; see
    `_wait_post_auth`)."""
    transport = paramiko.Transport(sock, **options)  # type: ignore[arg-type]
    heard = threading.Event()
    parse = transport._handler_table[paramiko.common.MSG_GLOBAL_REQUEST]  # per instance, as paramiko allows

    def note(message: paramiko.Message) -> None:
        heard.set()
        parse(message)

    transport._handler_table[paramiko.common.MSG_GLOBAL_REQUEST] = note
    transport.post_auth = heard  # type: ignore[attr-defined]
    return transport


def _wait_post_auth(transport: paramiko.Transport, sock: socket.socket) -> None:
    """Before the first channel of a new connection: acknowledge at once (TCP_QUICKACK) and wait (at most
    POST_AUTH_WAIT_SECONDS) for the server's post-authentication messages.

    sshd leaves Nagle on for sessions without a terminal: its small post-authentication packets wait for the
    client's acknowledgement of the one before, and a channel opened meanwhile has its confirmation held behind
    them until the client's delayed acknowledgement (40 ms on Linux). Acknowledging at once and opening the channel
    once they came takes a new connection's first command from about 70 ms to 30 ms (lab light hosts)."""
    if hasattr(socket, "TCP_QUICKACK"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except OSError:
            return
    heard = getattr(transport, "post_auth", None)
    if heard is not None:
        heard.wait(POST_AUTH_WAIT_SECONDS)


def _open_socket(target: SSHTarget) -> socket.socket:
    """The TCP connection, with Nagle off (otherwise each command waits ~40 ms for a delayed ACK: a channel open
    follows the previous channel's small close packet) and TCP keepalive on (a silently dead peer is noticed)."""
    where = target.display
    timeout = target.connect_timeout
    try:
        sock = socket.create_connection((target.address, target.port), timeout=timeout)
    except socket.gaierror as error:
        raise Unreachable(f"cannot resolve {target.address}: {error.strerror or error}", host=where) from None
    except (socket.timeout, TimeoutError):
        raise Unreachable(f"cannot connect to {where}: timed out after {timeout:g}s", host=where) from None
    except ConnectionRefusedError:
        raise Unreachable(f"cannot connect to {where}: connection refused", host=where) from None
    except OSError as error:
        raise Unreachable(f"cannot connect to {where}: {error.strerror or type(error).__name__}",
                          host=where) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    return sock


class SSHPool:
    """One live SSH connection per (address, port, user, host key), shared and reused while in use, closed once
    idle for `idle_seconds`; thread-safe."""

    def __init__(self, *, max_workers: int = DEFAULT_WORKERS, urgent_workers: int = URGENT_WORKERS,
                 max_sessions: int = 8, keepalive_seconds: float = 30.0, idle_seconds: float = DEFAULT_IDLE_SECONDS,
                 max_idle: int = DEFAULT_MAX_IDLE, clock: Callable[[], float] | None = None):
        """`max_workers` threads run commands (all hosts together; more wait in a queue) and `urgent_workers` more
        run only urgent ones; `max_sessions` bounds the commands running at once on one connection (OpenSSH's
        `MaxSessions` defaults to 10); `keepalive_seconds` keeps idle connections through NAT and firewalls;
        `idle_seconds`: a connection no command has used for this long is closed (`reap_idle`), by `clock`
        (`time.monotonic` unless a test gives its own); `max_idle`: at most this many connections are kept open
        while no command uses them, the longest idle beyond that are closed at once."""
        if not (0 < idle_seconds < math.inf):
            raise ValueError("idle_seconds must be a positive number of seconds")
        if max_idle < 0:
            raise ValueError("max_idle must be 0 or more")
        self._hosts: dict[tuple[str, int, str, str, str], _Host] = {}
        self._counters: dict[str, Counters] = {}
        self._lock = threading.Lock()
        self._max_sessions = max_sessions
        self._keepalive = keepalive_seconds
        self._workers = Workers("ssh", max_workers, reserved=urgent_workers)
        self.idle_seconds = float(idle_seconds)
        self.max_idle = max_idle
        self._clock = clock or (lambda: time.monotonic())
        self._reaper: threading.Thread | None = None  # runs while the pool keeps a connection
        self._reaper_wake = threading.Condition(self._lock)
        self._shut = False

    # -- public API

    def connection(self, target: SSHTarget) -> "SSHConnection":
        """A handle on the target's pooled connection; it connects on first use. The running pass's object holds
        the connection (`holdings`)."""
        holdings.note(self, self._key(target))
        return SSHConnection(self, target)

    def counters(self, address: str) -> Counters:
        with self._lock:
            return self._counters.get(address, Counters())

    def reset_counters(self, address: str | None = None) -> None:
        with self._lock:
            if address is None:
                self._counters.clear()
            else:
                self._counters.pop(address, None)

    def close(self, target: SSHTarget) -> None:
        """Close the target's connection (the next command reconnects)."""
        with self._lock:
            host = self._hosts.pop(self._key(target), None)
            self._reaper_wake.notify_all()  # none left: the reaper ends
        if host is not None:
            host.close()

    def release(self, key: tuple[str, int, str, str, str]) -> None:
        """Close the connection kept under `key` (address, port, user, host key, key digest) and forget it: no
        object uses it any more (`holdings`)."""
        with self._lock:
            host = self._hosts.pop(key, None)
            self._reaper_wake.notify_all()
        if host is not None:
            log.info("ssh %s@%s:%s: closed, no object uses this connection any more", key[2], key[0], key[1])
            host.close()

    def close_all(self) -> None:
        with self._lock:
            hosts = list(self._hosts.values())
            self._hosts.clear()
            self._reaper_wake.notify_all()
        for host in hosts:
            host.close()

    def shutdown(self) -> None:
        """Close every connection and stop the worker threads (the pool is unusable afterwards)."""
        with self._lock:
            self._shut = True
            self._reaper_wake.notify_all()
        self.close_all()
        self._workers.shutdown()

    def reap_idle(self, now: float | None = None) -> int:
        """Close every connection that no command uses and none has used for `idle_seconds` by `now` (the pool's
        clock unless given); the number closed. The next command to such a host connects again. The pool's reaper
        thread calls this when the next connection comes due; a test calls it with the time it set."""
        now = self._clock() if now is None else now
        with self._lock:
            due = [key for key, host in self._hosts.items()
                   if host.uses == 0 and now - host.idle_since >= self.idle_seconds]
            hosts = [self._hosts.pop(key) for key in due]
            if hosts:
                self._reaper_wake.notify_all()  # the reaper thread looks again (and ends once none is left)
        for host in hosts:
            log.debug("ssh %s@%s:%s: closed, idle for %.0fs", host.key[2], host.key[0], host.key[1],
                      now - host.idle_since)
            host.close()
        return len(hosts)

    def open_connections(self) -> int:
        """Connections the pool keeps (in use or idle, live or not yet noticed dead)."""
        with self._lock:
            return sum(1 for host in self._hosts.values() if host.client is not None)

    def is_connected(self, target: SSHTarget) -> bool:
        with self._lock:
            host = self._hosts.get(self._key(target))
        client = host.client if host is not None else None
        transport = client.get_transport() if client is not None else None
        return bool(transport is not None and transport.is_active())

    # -- internals

    def _count(self, address: str, *, round_trips: int = 0, mutations: int = 0, connects: int = 0) -> None:
        with self._lock:
            old = self._counters.get(address, Counters())
            self._counters[address] = Counters(old.round_trips + round_trips, old.mutations + mutations,
                                               old.connects + connects)

    @staticmethod
    def _key(target: SSHTarget) -> tuple[str, int, str, str, str]:
        return (*target.key, target.credential_id())

    def _use(self, target: SSHTarget) -> _Host:
        """The target's pooled connection (not necessarily connected yet), in use until `_used`: it is not closed
        for idleness meanwhile. Counted under the pool's lock, so the reaper never takes a connection being handed
        out."""
        key = self._key(target)
        with self._lock:
            host = self._hosts.get(key)
            if host is None:
                host = self._hosts[key] = _Host(key, self._max_sessions, self._clock())
            host.uses += 1
            if self._reaper is None and not self._shut:
                self._reaper = threading.Thread(target=self._reap_loop, name="ssh-idle-reaper", daemon=True)
                self._reaper.start()
        return host

    def _used(self, host: _Host) -> None:
        """A use of `host` ended: its idle time counts from now. One the pool dropped meanwhile (`close`,
        `release`) and no other command uses is closed now, so that a reconnect made on it does not stay open. With
        more than `max_idle` connections idle, the longest idle are closed."""
        closing: list[_Host] = []
        with self._lock:
            host.uses -= 1
            host.idle_since = self._clock()
            if host.uses == 0 and self._hosts.get(host.key) is not host:
                closing.append(host)
            elif host.uses == 0:
                idle = [h for h in self._hosts.values() if h.uses == 0 and h.client is not None]
                if len(idle) > self.max_idle:
                    idle.sort(key=lambda h: h.idle_since)
                    closing = [self._hosts.pop(h.key) for h in idle[: len(idle) - self.max_idle]]
        for old in closing:
            old.close()

    def _reap_loop(self) -> None:
        """The reaper thread: closes connections as they come due (`reap_idle`), sleeping until the next one is due;
        it ends when the pool keeps no connection (the next use starts it again)."""
        while True:
            self.reap_idle()
            with self._lock:
                if not self._hosts or self._shut:
                    self._reaper = None
                    return
                now = self._clock()
                due = min((host.idle_since + self.idle_seconds for host in self._hosts.values() if host.uses == 0),
                          default=now + self.idle_seconds)  # a connection in use is due at least that late
                self._reaper_wake.wait(max(due - now, REAP_MIN_PAUSE_SECONDS))

    def _transport(self, target: SSHTarget, host: _Host) -> paramiko.Transport:
        """The live transport for the target, connecting (again) if there is none or it died."""
        credential = target.credential_id()
        with host.lock:
            client = host.client
            if client is not None:
                transport = client.get_transport()
                if transport is not None and transport.is_active() and host.credential == credential:
                    return transport
                reason = "private key changed" if host.credential != credential else "connection lost"
                log.info("ssh %s: reconnecting (%s)", target.display, reason)
                host._close_locked()
            client = self._connect(target)
            host.client, host.credential = client, credential
            self._count(target.address, connects=1)
            transport = client.get_transport()
            assert transport is not None
            return transport

    def _connect(self, target: SSHTarget) -> paramiko.SSHClient:
        where = target.display
        pinned = _parse_host_key(target.host_key, where)
        pkey = load_private_key(target.private_key, where)
        client = paramiko.SSHClient()
        # The pinned key is the only one known for the host; set before connect, it also makes paramiko offer
        # its type first in the host key algorithm negotiation.
        client.get_host_keys().add(target.known_hosts_name, pinned.get_name(), pinned)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        timeout = target.connect_timeout
        started = time.monotonic()
        sock = _open_socket(target)
        try:
            client.connect(
                target.address, port=target.port, username=target.user, pkey=pkey, password=None, sock=sock,
                timeout=timeout, banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
                allow_agent=False, look_for_keys=False, compress=False, transport_factory=_transport,
            )
        except paramiko.BadHostKeyException as error:
            client.close()
            presented = f"{error.key.get_name()} {error.key.fingerprint}"
            expected = f"{error.expected_key.get_name()} {error.expected_key.fingerprint}"
            raise HostKeyMismatch(
                f"{where} presented host key {presented}, but the pinned host key is {expected}; refusing to "
                f"authenticate or run anything (if the host was reinstalled, pin its new key)",
                host=where, presented=presented, pinned=expected) from None
        except paramiko.AuthenticationException:
            client.close()
            raise AuthenticationFailed(
                f"{where} refused the SSH key ({pkey.get_name()} {pkey.fingerprint}) for user {target.user}",
                host=where) from None
        except (paramiko.SSHException, EOFError, OSError) as error:
            client.close()
            sock.close()
            if isinstance(error, (socket.timeout, TimeoutError)):
                detail = f"timed out after {timeout:g}s"
            elif isinstance(error, OSError):
                detail = error.strerror or type(error).__name__
            else:
                detail = str(error) or type(error).__name__
            raise Unreachable(f"SSH handshake with {where} failed: {detail}", host=where) from None
        transport = client.get_transport()
        assert transport is not None
        _wait_post_auth(transport, sock)
        if self._keepalive:
            transport.set_keepalive(int(self._keepalive))
        # paramiko's transport thread reads with a 0.1 s socket timeout (Transport._active_check_timeout) only to
        # notice a close and to send keepalives: ten wake-ups a second per idle connection, which with hundreds of
        # pooled connections took a third of a core and starved the event loop of the GIL (bench/scale.py). Once
        # connected, it wakes every IDLE_POLL_SECONDS instead: incoming data still wakes it at once; keepalives and
        # a close are noticed up to that much later (close() itself does not wait for the thread).
        transport.sock.settimeout(IDLE_POLL_SECONDS)
        log.debug("ssh %s: connected in %.0f ms (host key %s)", where, (time.monotonic() - started) * 1000,
                  pinned.fingerprint)
        return client

    def _invalidate(self, host: _Host, transport: paramiko.Transport) -> None:
        with host.lock:
            if host.client is not None and host.client.get_transport() is transport:
                host._close_locked()

    def _execute(self, target: SSHTarget, argv: Sequence[str], stdin: bytes | None, timeout: float,
                 mutation: bool, label: str | None, queued_at: float | None = None) -> CommandResult:
        """Blocking: one command, one round trip (plus one reconnect if the pooled connection was dead). `timeout`
        counts from `queued_at` (when the command was handed to the workers: the wait for a thread is taken off it)
        and, besides that wait, from when the connection is ready; connecting has its own timeout."""
        command = build_command(argv, sudo=target.sudo)
        display = _display(label or command)
        where = target.display
        waited = max(0.0, time.monotonic() - queued_at) if queued_at is not None else 0.0
        if waited >= timeout:
            raise SSHTimeout(f"{display} on {where} was not run: it waited {waited:.1f}s for a free SSH worker, "
                             f"its whole timeout of {timeout:g}s (every worker was busy with other commands)",
                             host=where)
        host = self._use(target)
        try:
            for attempt in (1, 2):
                transport = self._transport(target, host)  # bounded by the connect timeout
                try:
                    return self._exec_once(target, host, transport, command, display, stdin, timeout - waited,
                                           mutation, retry_allowed=attempt == 1, waited=waited)
                except _Retry:
                    self._invalidate(host, transport)
                    log.info("ssh %s: connection lost before the command started; reconnecting", where)
                    continue
            raise ConnectionLost(f"{where}: connection lost twice before {display} could start", host=where)
        finally:
            self._used(host)

    def _connect_now(self, target: SSHTarget) -> None:
        """Blocking: make sure the target's connection is up (a use, like a command)."""
        host = self._use(target)
        try:
            self._transport(target, host)
        finally:
            self._used(host)

    def _exec_once(self, target: SSHTarget, host: _Host, transport: paramiko.Transport, command: str,
                   display: str, stdin: bytes | None, timeout: float, mutation: bool,
                   retry_allowed: bool, waited: float = 0.0) -> CommandResult:
        """`timeout`: what is left of the command's timeout after `waited` in the workers' queue."""
        where = target.display
        deadline = time.monotonic() + timeout

        def remaining() -> float:
            return deadline - time.monotonic()

        def timed_out() -> SSHTimeout:
            if waited:
                return SSHTimeout(f"{display} on {where} did not finish within {timeout + waited:g}s, {waited:.1f}s "
                                  f"of which it waited for a free SSH worker", host=where)
            return SSHTimeout(f"{display} on {where} did not finish within {timeout:g}s", host=where)

        if not host.sessions.acquire(timeout=max(0.0, remaining())):
            raise timed_out()
        try:
            try:
                channel = self._open_session(transport, target, remaining)
            except (paramiko.SSHException, EOFError, OSError) as error:
                if retry_allowed and remaining() > 0:
                    raise _Retry() from error
                if not transport.is_active():
                    raise ConnectionLost(f"{where}: connection lost before {display} could start",
                                         host=where) from None
                raise ConnectionLost(f"{where}: could not open a session for {display}: {error}",
                                     host=where) from None
            try:
                self._count(target.address, round_trips=1, mutations=1 if mutation else 0)
                log.debug("ssh %s: %s%s", where, display, f" (stdin {len(stdin)} bytes)" if stdin else "")
                started = time.monotonic()
                channel.settimeout(max(0.001, remaining()))
                try:
                    channel.exec_command(command)
                except (paramiko.SSHException, EOFError, OSError) as error:
                    if retry_allowed and not mutation and not transport.is_active() and remaining() > 0:
                        raise _Retry() from error
                    raise ConnectionLost(f"{where}: connection lost while starting {display}", host=where) from None
                stdout, stderr = self._communicate(channel, stdin, deadline, timed_out)
                if not channel.status_event.wait(max(0.0, remaining())):
                    raise timed_out()
                exit_status = channel.exit_status
                if exit_status == -1 and not transport.is_active():
                    raise ConnectionLost(f"{where}: connection lost while {display} was running; whether it "
                                         f"completed is unknown", host=where)
                log.debug("ssh %s: exit %d in %.0f ms", where, exit_status, (time.monotonic() - started) * 1000)
                return CommandResult(exit_status, stdout.decode("utf-8", errors="replace"),
                                     stderr.decode("utf-8", errors="replace"))
            finally:
                channel.close()
        finally:
            host.sessions.release()

    @staticmethod
    def _open_session(transport: paramiko.Transport, target: SSHTarget,
                      remaining: Callable[[], float]) -> paramiko.Channel:
        """A session channel. The server refuses one (OpenSSH: "open failed: Connect failed") while it still counts
        sessions that this side has closed but it has not yet seen closed (its MaxSessions, default 10), and a busy
        server may not answer within the connect timeout; both pass by themselves while the connection is alive,
        so it is asked again, with backoff, until the command's time is up — the connection is fine and other
        commands use it (dropping it would cut their commands off). A second timeout is taken for a dead
        connection that does not know it yet: the caller reconnects."""
        pause = 0.02
        timeouts = 0
        while True:
            try:
                return transport.open_session(timeout=max(0.001, min(remaining(), target.connect_timeout)))
            except paramiko.ChannelException as error:
                if error.code != paramiko.common.OPEN_FAILED_CONNECT_FAILED or not transport.is_active() \
                        or remaining() <= pause:
                    raise
            except paramiko.SSHException as error:
                timeouts += 1
                if "Timeout opening channel" not in str(error) or timeouts > 1 or not transport.is_active() \
                        or remaining() <= pause:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    @staticmethod
    def _communicate(channel: paramiko.Channel, stdin: bytes | None, deadline: float,
                     timed_out) -> tuple[bytes, bytes]:
        """Feed stdin and read stdout and stderr until EOF, without deadlocking on full windows."""
        writer_error: list[BaseException] = []
        if not stdin:
            channel.shutdown_write()
        elif len(stdin) <= channel.out_window_size:
            channel.sendall(stdin)  # fits the peer's window: does not block
            channel.shutdown_write()
        else:
            def feed() -> None:
                try:
                    channel.sendall(stdin)
                    channel.shutdown_write()
                except Exception as error:  # noqa: BLE001 - the command may exit without reading all input
                    writer_error.append(error)

            threading.Thread(target=feed, name="ssh-stdin", daemon=True).start()
        out, err = bytearray(), bytearray()
        readable = select.poll()  # not select.select: hundreds of connections take descriptors above its 1023
        readable.register(channel.fileno(), select.POLLIN)
        while True:
            progressed = _drain(channel.recv_ready, channel.recv, out)
            progressed = _drain(channel.recv_stderr_ready, channel.recv_stderr, err) or progressed
            if channel.eof_received or channel.closed:
                if not progressed and not channel.recv_ready() and not channel.recv_stderr_ready():
                    return bytes(out), bytes(err)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise timed_out()
            readable.poll(left * 1000)


# --------------------------------------------------------------------------------------------------------------
# What reconcilers use


class SSHConnection:
    """Commands on one host through the pool's shared connection. Async: paramiko runs in worker threads."""

    def __init__(self, pool: SSHPool, target: SSHTarget):
        self._pool = pool
        self.target = target

    def __repr__(self) -> str:
        return f"SSHConnection({self.target.display}, sudo={self.target.sudo})"

    async def _call(self, func, *args, urgent: bool = False):
        return await self._pool._workers.run(func, *args, urgent=urgent)

    async def connect(self) -> None:
        """Set up the connection now (host key check and authentication) instead of at the first command."""
        with metrics.remote_call("ssh"):
            await self._call(self._pool._connect_now, self.target)

    async def run(self, argv: Sequence[str], *, input: bytes | str | None = None,
                  timeout: float = DEFAULT_COMMAND_TIMEOUT, check: bool = True, mutation: bool = False,
                  label: str | None = None, urgent: bool = False) -> CommandResult:
        """Run argv (every argument quoted, sudo-wrapped if the target says so): one round trip. `input` goes to
        stdin (the place for secrets). `timeout` includes the wait for a free worker. `check`: raise CommandFailed
        on a non-zero exit. `mutation`: the command changes the host (counted). `label` replaces the command line in
        messages and logs. `urgent`: run before queued ordinary commands, on threads kept for urgent ones."""
        _check_argv(argv)
        data = input.encode("utf-8") if isinstance(input, str) else input
        with metrics.remote_call("ssh"):
            result = await self._call(self._pool._execute, self.target, argv, data, float(timeout), mutation, label,
                                      time.monotonic(), urgent=urgent)
            return self._checked(argv, label, result, check)

    async def run_script(self, script: str, *, args: Sequence[str] = (), timeout: float = DEFAULT_COMMAND_TIMEOUT,
                         check: bool = True, mutation: bool = False, label: str = "script",
                         urgent: bool = False) -> CommandResult:
        """Run a shell script sent on stdin to `sh -s -- ARGS…` (sudo-wrapped if the target says so) in one round
        trip. Values from the spec go in `args` ($1…, "$@"), never into the script text. `timeout` and `urgent` as
        for `run`."""
        argv = script_argv(args)
        display = f"sh -s ({label})" + (f" {shlex.join(list(args))}" if args else "")
        data = script.encode("utf-8")
        with metrics.remote_call("ssh"):
            result = await self._call(self._pool._execute, self.target, argv, data, float(timeout), mutation,
                                      display, time.monotonic(), urgent=urgent)
            return self._checked(argv, display, result, check)

    def _checked(self, argv: Sequence[str], label: str | None, result: CommandResult, check: bool) -> CommandResult:
        where = self.target.display
        display = _display(label or shlex.join(list(argv)))
        if self.target.sudo and sudo_refusal(result.exit_status, result.stderr):
            raise SudoFailed(f"sudo -n refused to run {display} as root on {where}: {_tail(result.stderr)} "
                             f"(the user needs password-less sudo)", host=where)
        if check and result.exit_status != 0:
            tail = _tail(result.stderr) or _tail(result.stdout)
            status = ("was killed by a signal" if result.exit_status == -1
                      else f"exited with status {result.exit_status}")
            raise CommandFailed(f"{display} {status} on {where}" + (f": {tail}" if tail else ""),
                                host=where, argv=display, exit_status=result.exit_status, stderr_tail=tail,
                                result=result)
        return result

    @property
    def counters(self) -> Counters:
        return self._pool.counters(self.target.address)

    def close(self) -> None:
        self._pool.close(self.target)
