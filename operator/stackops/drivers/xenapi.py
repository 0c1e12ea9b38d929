"""The XenAPI driver, on the official `XenAPI` SDK (XML-RPC).

What it adds to the SDK:
- finding the pool master: log in to the members in turn; a supporter answers `HOST_IS_SLAVE [master address]`
  and the driver reconnects there (the SDK does not follow it); a master change during a session is followed the
  same way, once per call;
- typed errors (`XenAPIError` and subclasses) carrying xapi's error code and parameters — never the password;
- TLS verified with the CA bundle from a Secret; unverified only when the spec says `insecureSkipVerify`; plain
  HTTP only when the spec says `plainHTTP` (labs);
- timeouts on every connection, and calls run in the driver's own bounded threads (`WORKERS`, workers.py), so the
  operator's event loop never blocks and calls hanging on a dead host hold up no SSH command or Secret read; the
  wait for a thread counts against a task's timeout;
- `slave_local` sessions for the emergency calls a supporter serves while it has no master;
- counters of calls and logins for tests and benchmarks.
"""
from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
import threading
import urllib.parse
import xmlrpc.client
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable

import XenAPI
from pydantic import SecretStr

from .. import metrics
from .workers import Workers

DEFAULT_TIMEOUT = 30.0
DEFAULT_WORKERS = 8  # XenAPI calls at once, all pools together (each session makes one call at a time)
WORKERS = Workers("xenapi", DEFAULT_WORKERS)


def use_workers(size: int) -> None:
    """Run XenAPI calls in `size` threads (`stackops run --xenapi-workers`); before the first call."""
    global WORKERS
    WORKERS = Workers("xenapi", size)


class XenAPIError(Exception):
    """A XenAPI call failed. `code` is xapi's error code (e.g. `HA_IS_ENABLED`), `params` its parameters."""

    reason = "XenAPIError"

    def __init__(self, call: str, code: str, params: list[str] | None = None, message: str = ""):
        self.call = call
        self.code = code
        self.params = list(params or [])
        detail = message or " ".join([code, *self.params]).strip()
        super().__init__(f"{call}: {detail}")


class XenAuthError(XenAPIError):
    """SESSION_AUTHENTICATION_FAILED: the credentials in the Secret are refused."""

    reason = "AuthenticationFailed"


class XenUnreachable(XenAPIError):
    """No answer from the host: refused, reset, timed out, DNS."""

    reason = "Unreachable"


class XenTLSError(XenAPIError):
    """The host's certificate did not verify against the CA."""

    reason = "TLSVerificationFailed"


class XenNoMaster(XenAPIError):
    """No member answered as master (every live member points at a master that does not answer). `unreachable`:
    address → why (`supporter of <master>` for a live supporter)."""

    reason = "MasterUnreachable"
    unreachable: dict[str, str] = {}


def _failure(call: str, error: Exception) -> XenAPIError:
    if isinstance(error, XenAPI.Failure):
        details = [str(d) for d in error.details] or ["UNKNOWN"]
        if details[0] == "SESSION_AUTHENTICATION_FAILED":
            return XenAuthError(call, details[0], details[1:2])  # the user name, not the password
        return XenAPIError(call, details[0], details[1:])
    if isinstance(error, ssl.SSLError):
        return XenTLSError(call, "TLS", message=_tls_message(error))
    if isinstance(error, (socket.timeout, TimeoutError)):
        return XenUnreachable(call, "TIMEOUT", message="timed out")
    if isinstance(error, (OSError, http.client.HTTPException)):
        return XenUnreachable(call, "CONNECTION", message=f"{type(error).__name__}: {error}")
    if isinstance(error, xmlrpc.client.Fault):
        return XenAPIError(call, "XMLRPC_FAULT", message=f"XML-RPC fault {error.faultCode}: {error.faultString}")
    if isinstance(error, xmlrpc.client.ProtocolError):
        return XenUnreachable(call, "HTTP", message=f"HTTP {error.errcode} {error.errmsg}")
    return XenAPIError(call, type(error).__name__, message=str(error))


def _tls_message(error: ssl.SSLError) -> str:
    """Why the handshake failed: OpenSSL's verify message (unknown CA, self-signed, name mismatch) if any."""
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return f"TLS: certificate verify failed: {error.verify_message}"
    return f"TLS: {getattr(error, 'reason', None) or error}"


class _Transport(xmlrpc.client.Transport):
    def __init__(self, timeout: float):
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        return connection


class _SafeTransport(xmlrpc.client.SafeTransport):
    def __init__(self, timeout: float, context: ssl.SSLContext):
        super().__init__(context=context)
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        return connection


@dataclass(frozen=True)
class Endpoint:
    """How to reach the XenAPI of a pool's hosts."""

    port: int = 443
    plain_http: bool = False
    ca_pem: str | None = None
    insecure: bool = False
    timeout: float = DEFAULT_TIMEOUT

    def url(self, address: str) -> str:
        scheme = "http" if self.plain_http else "https"
        host = f"[{address}]" if ":" in address else address
        default = 80 if self.plain_http else 443
        return f"{scheme}://{host}/" if self.port == default else f"{scheme}://{host}:{self.port}/"

    def context(self) -> ssl.SSLContext:
        if self.insecure:
            return ssl._create_unverified_context()  # noqa: S323 - only when the spec says insecureSkipVerify
        # the certificate must name the address connected to (xapi's own certificates carry it as an IP SAN)
        return ssl.create_default_context(cadata=self.ca_pem) if self.ca_pem else ssl.create_default_context()

    def transport(self) -> xmlrpc.client.Transport:
        if self.plain_http:
            return _Transport(self.timeout)
        return _SafeTransport(self.timeout, self.context())

    def http(self, address: str, timeout: float) -> http.client.HTTPConnection:
        """A plain HTTP(S) connection to a host's xapi, for its HTTP handlers (`/import_raw_vdi`)."""
        if self.plain_http:
            return http.client.HTTPConnection(address, self.port, timeout=timeout)
        return http.client.HTTPSConnection(address, self.port, timeout=timeout, context=self.context())


@dataclass
class Counters:
    calls: int = 0
    logins: int = 0
    by_call: dict[str, int] = field(default_factory=dict)


class PoolSession:
    """A session with the pool master, found among `addresses`. Methods run the SDK in a thread.

    The password goes to `addresses` only (the members the credentials may be sent to): a supporter's
    `HOST_IS_SLAVE` naming another address is not followed (the members are tried in turn instead)."""

    def __init__(self, addresses: list[str], username: str, password: SecretStr, endpoint: Endpoint,
                 *, originator: str = "stackops"):
        self.addresses = list(addresses)
        self.username = username
        self._password = password
        self.endpoint = endpoint
        self.originator = originator
        self.master_address: str | None = None
        self._session: Any = None
        self.counters = Counters()
        self.unreachable: dict[str, str] = {}  # address → why, from the last search for the master
        self._lock = threading.RLock()  # one XML-RPC connection: one call at a time

    def __repr__(self) -> str:
        return f"<PoolSession master={self.master_address}>"

    # ------------------------------------------------------------------ sync core (runs in a thread)

    def _open(self, address: str) -> Any:
        session = XenAPI.Session(self.endpoint.url(address), transport=self.endpoint.transport())
        self.counters.logins += 1
        session.xenapi.login_with_password(self.username, self._password.get_secret_value(), "2.0", self.originator)
        return session

    def _connect(self) -> None:
        """Log in to the master: try the last master first, then every member, following HOST_IS_SLAVE."""
        self._close()
        self.unreachable = {}
        not_followed: set[str] = set()
        tried: set[str] = set()
        queue = [a for a in [self.master_address, *self.addresses] if a]
        while queue:
            address = queue.pop(0)
            if address in tried:
                continue
            tried.add(address)
            try:
                self._session = self._open(address)
                self.master_address = address
                return
            except XenAPI.Failure as error:
                details = [str(d) for d in error.details]
                if details and details[0] == "HOST_IS_SLAVE" and len(details) > 1:
                    # `supporter of <master>` as the supporter said it (the failover asks supporters about that
                    # address); a master outside the members is noted, never logged in to
                    self.unreachable[address] = f"supporter of {details[1]}"
                    if details[1] in self.addresses:
                        queue.insert(0, details[1])
                    else:
                        not_followed.add(details[1])
                    continue
                failure = _failure("session.login_with_password", error)
                if isinstance(failure, XenAuthError):
                    raise failure from None
                # a host still booting or in HA emergency mode: another member may be the master
                self.unreachable[address] = " ".join(details) or str(failure)
            except Exception as error:  # noqa: BLE001 - typed below
                failure = _failure("session.login_with_password", error)
                if isinstance(failure, XenTLSError):
                    detail = str(failure).split(": ", 1)[-1]  # which host presented what
                    raise XenTLSError(failure.call, failure.code, [address], message=f"{address}: {detail}") from None
                self.unreachable[address] = str(failure).split(": ", 1)[-1]
        where = ", ".join(f"{a} ({why})" for a, why in self.unreachable.items())
        if not_followed:
            where += (f"; not logged in to {', '.join(sorted(not_followed))}: not a member address (the password "
                      "goes to members only)")
        lost = XenNoMaster("session.login_with_password", "NO_MASTER", message=f"no pool master answered: {where}")
        lost.unreachable = dict(self.unreachable)
        raise lost

    def _close(self) -> None:
        if self._session is not None:
            try:
                self._session.xenapi.session.logout()
            except Exception:  # noqa: BLE001 - a dead session needs no logout
                pass
            self._session = None

    def call_sync(self, name: str, *args: Any) -> Any:
        with self._lock, metrics.remote_call("xenapi"):
            return self._call(name, *args)

    def _call(self, name: str, *args: Any) -> Any:
        self.counters.calls += 1
        self.counters.by_call[name] = self.counters.by_call.get(name, 0) + 1
        for attempt in range(2):
            if self._session is None:
                self._connect()
            method: Callable[..., Any] = self._session.xenapi
            for part in name.split("."):
                method = getattr(method, part)
            try:
                return method(*args)
            except XenAPI.Failure as error:
                details = [str(d) for d in error.details]
                if details and details[0] == "HOST_IS_SLAVE" and attempt == 0:  # the master moved
                    moved = details[1] if len(details) > 1 else None
                    self.master_address = moved if moved in self.addresses else None  # else: search the members
                    self._session = None
                    continue
                raise _failure(name, error) from None
            except Exception as error:  # noqa: BLE001
                failure = _failure(name, error)
                if isinstance(failure, XenUnreachable) and attempt == 0:
                    self._session = None  # the master may have died: look for the master again
                    self.master_address = None
                    continue
                raise failure from None
        raise AssertionError("unreachable")

    def _put(self, path: str, query: dict[str, str], body: BinaryIO, size: int, timeout: float) -> str:
        """PUT `body` to one of the master's HTTP handlers inside a xapi task; returns the task's ref. The session
        travels in a cookie (never in a URL: URLs end up in logs)."""
        with self._lock:
            if self._session is None:
                self._connect()
            address, session_ref = self.master_address, self._session._session
            task = self._call("task.create", f"stackops {path}", "upload")
        assert address is not None
        connection = self.endpoint.http(address, timeout)
        try:
            connection.putrequest("PUT", f"{path}?{urllib.parse.urlencode({**query, 'task_id': task})}")
            connection.putheader("Cookie", f"session_id={session_ref}")
            connection.putheader("Content-Length", str(size))
            connection.endheaders()
            while chunk := body.read(1 << 20):
                connection.send(chunk)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as error:
            self._drop(task)
            raise XenUnreachable(f"PUT {path}", "UPLOAD_FAILED", message=f"{address}: {error}") from None
        finally:
            connection.close()
        if response.status >= 300:
            self._drop(task)
            raise XenAPIError(f"PUT {path}", "UPLOAD_FAILED", [str(response.status)],
                              message=f"{address} answered HTTP {response.status}")
        return str(task)

    def _drop(self, task: str) -> None:
        """A task the upload will not follow: destroyed (if the master still answers)."""
        try:
            self.call_sync("task.destroy", task)
        except XenAPIError:
            pass

    async def upload(self, path: str, query: dict[str, str], body: BinaryIO, size: int, *,
                     timeout: float = 900.0, poll: float = 0.5) -> str:
        """Upload a file to a handler such as `/import_raw_vdi` (7.1+ updates) or `/pool_patch_upload` (6.x) and
        return what its task answered (a VDI or pool_patch ref); a failed task raises its error."""
        deadline = asyncio.get_running_loop().time() + timeout
        task = await WORKERS.run(self._put, path, query, body, size, timeout)
        result = str(await self._follow(task, f"PUT {path}", deadline, timeout, poll))
        if result.startswith("<value>"):  # task.result holds the XML-RPC <value> of the answer
            (value,), _ = xmlrpc.client.loads(f"<params><param>{result}</param></params>")
            return str(value)
        return result

    # ------------------------------------------------------------------ async API

    async def call(self, name: str, *args: Any) -> Any:
        """`await pool.call("pool.enable_ha", srs, {"timeout": "180"})`."""
        return await WORKERS.run(self.call_sync, name, *args)

    def _locked_connect(self) -> None:
        with self._lock, metrics.remote_call("xenapi"):
            self._connect()

    def _locked_close(self) -> None:
        with self._lock:
            self._close()

    async def connect(self) -> str:
        await WORKERS.run(self._locked_connect)
        assert self.master_address is not None
        return self.master_address

    async def close(self) -> None:
        await WORKERS.run(self._locked_close)

    async def task(self, name: str, *args: Any, timeout: float = 900.0, poll: float = 0.5) -> Any:
        """`Async.<name>`: start the call as a xapi task and wait for it (long calls such as `pool.enable_ha` outlast
        one HTTP request). A failed task raises its error like a direct call would. `timeout` counts from this
        call, its waits for a XenAPI worker included."""
        deadline = asyncio.get_running_loop().time() + timeout
        task = await self.call(f"Async.{name}", *args)
        return await self._follow(task, name, deadline, timeout, poll)

    async def _follow(self, task: str, name: str, deadline: float, timeout: float, poll: float) -> Any:
        """Wait for a xapi task, then destroy it: its result, or its error raised as the call's."""
        try:
            while True:
                status = await self.call("task.get_status", task)
                if status == "success":
                    return await self.call("task.get_result", task)
                if status in ("failure", "cancelled"):
                    info = [str(i) for i in (await self.call("task.get_error_info", task)) or ["TASK_FAILED"]]
                    raise XenAPIError(name, info[0], info[1:])
                if asyncio.get_running_loop().time() > deadline:
                    raise XenAPIError(name, "TASK_TIMEOUT", message=f"task still {status} after {timeout:.0f}s")
                await asyncio.sleep(poll)
        finally:
            try:
                await self.call("task.destroy", task)
            except XenAPIError:
                pass

    async def records(self, cls: str) -> dict[str, dict[str, Any]]:
        return await self.call(f"{cls}.get_all_records")

    def local(self, address: str) -> "LocalSession":
        """A `slave_local` session on one host, for the emergency calls; a member address only."""
        if address not in self.addresses:
            raise ValueError(f"{address} is not a member address of this session")
        return LocalSession(address, self.username, self._password, self.endpoint)


class LocalSession:
    """`session.slave_local_login_with_password` on one host (a supporter without a reachable master)."""

    def __init__(self, address: str, username: str, password: SecretStr, endpoint: Endpoint):
        self.address = address
        self.username = username
        self._password = password
        self.endpoint = endpoint

    def call_sync(self, name: str, *args: Any) -> Any:
        with metrics.remote_call("xenapi"):
            return self._call_sync(name, *args)

    def _call_sync(self, name: str, *args: Any) -> Any:
        session = XenAPI.Session(self.endpoint.url(self.address), transport=self.endpoint.transport())
        try:
            session.slave_local_login_with_password(self.username, self._password.get_secret_value())
            method: Callable[..., Any] = session.xenapi
            for part in name.split("."):
                method = getattr(method, part)
            return method(*args)
        except Exception as error:  # noqa: BLE001
            raise _failure(name, error) from None
        finally:
            try:
                session.logout()  # the SDK sends session.local_logout for a slave_local session
            except Exception:  # noqa: BLE001
                pass

    async def call(self, name: str, *args: Any) -> Any:
        return await WORKERS.run(self.call_sync, name, *args)
