"""The CloudStack API driver, on the `cs` client (`cs.AIOCloudStack`).

What it adds to `cs`:
- typed errors (`CloudStackError` and subclasses) carrying CloudStack's errorcode, cserrorcode and errortext, never
  a request URL (it holds the API key and signature);
- backoff: 429 (API limit) is retried for every command (CloudStack refuses before running it); transient errors
  (530, connection errors, timeouts) only for reads (`list*`, `queryAsyncJobResult`), because a mutation that got
  no clear answer may have run — the next level-based pass observes what happened instead;
- async jobs: `start` returns the job id, `job` reads one result, `wait` polls until done;
- paging (`fetch_list`, 500 a page) for every `list`; `page` reads one page and the listing's total count;
- a per-endpoint concurrency limit shared by every resource that uses the endpoint (`CloudStackPool`); the pool
  keeps one client per endpoint and keys, under a salted digest of the keys (never the keys), and closes a client
  no object uses any more (deleted, its endpoint changed, its keys rotated: `holdings`);
- secrets never in a URL: a request that carries one (a `SecretStr` value, or a parameter named in
  `SECRET_PARAMETERS`, the ones CloudStack marks `requestHasSensitiveInfo`) goes as a POST with a form body,
  every other one as a GET;
- the management server's version (`listCapabilities` → `cloudstackversion`), read once and kept for
  `version_ttl` seconds; a command or parameter that version does not have (`REQUIRES`) is refused with
  `CloudStackUnsupportedVersion` before anything is sent;
- counters of requests, retries and failures for tests and benchmarks.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import aiohttp
from cs import AIOCloudStack, CloudStackApiException, CloudStackException
from pydantic import SecretStr

from .. import metrics
from . import holdings

log = logging.getLogger(__name__)

PENDING, SUCCESS, FAILURE = 0, 1, 2

# Parameters whose value is a credential: the request goes as a POST (addHost's and addCluster's `password`).
SECRET_PARAMETERS = frozenset({"password"})

# What the operator sends that CloudStack did not always have: (command, parameter) → the first version with it,
# from `@Parameter(since = …)` in CloudStack's API command classes. Everything else the operator sends is older
# than the versions it supports (see the README).
REQUIRES: dict[tuple[str, str], str] = {
    ("registerTemplate", "templatetype"): "4.19.0",  # RegisterTemplateCmd: SYSTEM/ROUTING templates by type
}
_VERSION = re.compile(r"^(\d+(?:\.\d+)+)")


class CloudStackError(Exception):
    """A CloudStack API call failed. `errorcode` is CloudStack's (HTTP status) code, 0 when no answer came."""

    reason = "CloudStackError"

    def __init__(self, command: str, message: str, *, errorcode: int = 0, cserrorcode: int = 0):
        super().__init__(f"{command}: {message}")
        self.command = command
        self.errortext = message
        self.errorcode = errorcode
        self.cserrorcode = cserrorcode


class CloudStackAuthError(CloudStackError):
    """401: the keys are wrong, the signature did not verify or the request expired (clock skew)."""

    reason = "CloudStackUnauthorized"


class CloudStackRateLimited(CloudStackError):
    """429: the account's API limit was reached, and retries did not get through."""

    reason = "CloudStackRateLimited"


class CloudStackParameterError(CloudStackError):
    """430/431/432: CloudStack refused the parameters or the command."""

    reason = "CloudStackParameterError"


class CloudStackServerError(CloudStackError):
    """5xx: CloudStack failed to carry the command out (530 internal error, 533-536 resources)."""

    reason = "CloudStackServerError"


class CloudStackUnavailable(CloudStackError):
    """No answer: connection refused or reset, DNS, TLS, timeout."""

    reason = "CloudStackUnreachable"


class CloudStackJobFailed(CloudStackError):
    """An async job ended with jobstatus 2."""

    reason = "CloudStackJobFailed"

    def __init__(self, command: str, jobid: str, message: str, *, errorcode: int = 0, cserrorcode: int = 0):
        super().__init__(command, message, errorcode=errorcode, cserrorcode=cserrorcode)
        self.jobid = jobid


class CloudStackJobTimeout(CloudStackError):
    """An async job did not finish in time (it may still finish later)."""

    reason = "CloudStackJobTimeout"


class CloudStackUnsupportedVersion(CloudStackError):
    """The management server's version lacks a command or parameter the operator needs; nothing was sent."""

    reason = "UnsupportedCloudStackVersion"

    def __init__(self, command: str, message: str, *, minimum: str = "", version: str = ""):
        super().__init__(command, message)
        self.minimum = minimum
        self.version = version


def version_parts(version: str) -> tuple[int, ...] | None:
    """`4.19.1.0` → (4, 19, 1, 0); a suffix (`-SNAPSHOT`) is ignored; None when there is no version number."""
    match = _VERSION.match(version.strip())
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def older(version: str, minimum: str) -> bool:
    """Whether `version` comes before `minimum` (4.18.1.0 < 4.19.0 == 4.19.0.0); an unreadable version does."""
    have, need = version_parts(version), version_parts(minimum)
    assert need is not None, minimum
    if have is None:
        return True
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) < need + (0,) * (width - len(need))


def unsupported(command: str, params: Mapping[str, Any], version: str) -> CloudStackUnsupportedVersion | None:
    """The refusal for a request that `version` cannot carry out as meant, or None."""
    for (name, parameter), minimum in REQUIRES.items():
        if name == command and parameter in params and older(version, minimum):
            return CloudStackUnsupportedVersion(
                command, f"parameter {parameter} needs CloudStack {minimum} or later; the management server "
                f"runs {version or 'an unknown version'} (not sent)", minimum=minimum, version=version)
    return None


def carries_secret(params: Mapping[str, Any]) -> bool:
    """Whether a request holds a credential, and so must go as a POST."""
    return any(isinstance(value, SecretStr) or name.lower() in SECRET_PARAMETERS for name, value in params.items())


def _typed(command: str, errorcode: int, cserrorcode: int, text: str) -> CloudStackError:
    if errorcode == 401:
        return CloudStackAuthError(command, text or "unauthorized", errorcode=401, cserrorcode=cserrorcode)
    if errorcode == 429:
        return CloudStackRateLimited(command, text or "API limit exceeded", errorcode=429, cserrorcode=cserrorcode)
    if errorcode in (430, 431, 432):
        return CloudStackParameterError(command, text, errorcode=errorcode, cserrorcode=cserrorcode)
    if errorcode >= 500:
        return CloudStackServerError(command, text, errorcode=errorcode, cserrorcode=cserrorcode)
    return CloudStackError(command, text or f"HTTP {errorcode}", errorcode=errorcode, cserrorcode=cserrorcode)


def _from_cs(command: str, error: Exception) -> CloudStackError:
    """Translate what `cs` or aiohttp raised; the message never carries the request URL."""
    if isinstance(error, CloudStackApiException):
        body = error.error if isinstance(error.error, dict) else {}
        status = getattr(error.response, "status", None) or getattr(error.response, "status_code", 0) or 0
        code = int(body.get("errorcode", status) or 0)
        return _typed(command, code, int(body.get("cserrorcode", 0) or 0), str(body.get("errortext", "")))
    if isinstance(error, CloudStackException):
        status = getattr(error.response, "status", None) or getattr(error.response, "status_code", 0) or 0
        return _typed(command, int(status), 0, "unexpected answer (is the endpoint a CloudStack API URL?)")
    if isinstance(error, asyncio.TimeoutError):
        return CloudStackUnavailable(command, "timed out")
    if isinstance(error, aiohttp.ClientConnectorError):
        return CloudStackUnavailable(command, f"cannot connect to {error.host}:{error.port}: {error.os_error}")
    if isinstance(error, aiohttp.ClientError):
        return CloudStackUnavailable(command, type(error).__name__)
    return CloudStackUnavailable(command, f"{type(error).__name__}: {error}")


def is_read(command: str) -> bool:
    return command.startswith("list") or command == "queryAsyncJobResult"


@dataclass
class Counters:
    """What the driver did, for tests and benchmarks."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    failures: int = 0
    posts: int = 0
    by_command: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """One async job's state as `queryAsyncJobResult` reports it."""

    jobid: str
    status: int
    result: dict[str, Any]
    resultcode: int = 0

    @classmethod
    def parse(cls, jobid: str, answer: dict[str, Any]) -> "Job":
        """An AsyncJobResponse: `queryAsyncJobResult`'s answer, or one entry of `listAsyncJobs`."""
        return cls(jobid=jobid, status=int(answer.get("jobstatus", PENDING)), result=answer.get("jobresult") or {},
                   resultcode=int(answer.get("jobresultcode", 0) or 0))

    @property
    def done(self) -> bool:
        return self.status != PENDING

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS and self.resultcode == 0


class CloudStackClient:
    """One endpoint + account. Every method is a coroutine; concurrency is bounded by the endpoint's semaphore."""

    def __init__(self, endpoint: str, api_key: str, secret_key: SecretStr, *, verify: bool | str = True,
                 timeout: float = 30.0, limit: asyncio.Semaphore | None = None, attempts: int = 6,
                 backoff: float = 0.5, max_backoff: float = 20.0, poll_interval: float = 1.0,
                 version_ttl: float = 300.0):
        self.endpoint = endpoint
        self._api_key = api_key
        self._secret = secret_key
        self._verify = verify
        self._timeout = timeout
        self._limit = limit or asyncio.Semaphore(8)
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.poll_interval = poll_interval
        self.version_ttl = version_ttl
        self.counters = Counters()
        self._cs: dict[str, AIOCloudStack] = {}  # by HTTP method: "get", "post"
        self._version: tuple[str, float] | None = None  # (version, when read)

    def __repr__(self) -> str:
        return f"<CloudStackClient {self.endpoint}>"

    async def _client(self, method: str) -> AIOCloudStack:
        client = self._cs.get(method)
        if client is None:
            client = AIOCloudStack(endpoint=self.endpoint, key=self._api_key, secret=self._secret.get_secret_value(),
                                   timeout=int(self._timeout), verify=self._verify, fetch_result=False,
                                   method=method)
            await client.__aenter__()
            self._cs[method] = client
        return client

    async def close(self) -> None:
        clients, self._cs = list(self._cs.values()), {}
        for client in clients:
            await client.close()

    async def _once(self, command: str, params: dict[str, Any], fetch_list: bool) -> Any:
        method = "post" if carries_secret(params) else "get"
        plain = {name: value.get_secret_value() if isinstance(value, SecretStr) else value
                 for name, value in params.items()}
        client = await self._client(method)
        self.counters.requests += 1
        self.counters.posts += method == "post"
        self.counters.by_command[command] = self.counters.by_command.get(command, 0) + 1
        async with self._limit:
            with metrics.remote_call("cloudstack"):
                try:
                    return await asyncio.wait_for(
                        getattr(client, command)(fetch_list=fetch_list, **plain), self._timeout * 4)
                except (CloudStackException, aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
                    raise _from_cs(command, error) from None

    async def version(self) -> str:
        """The management server's version (`listCapabilities` → `cloudstackversion`), read again after
        `version_ttl` seconds; "" when it does not say."""
        if self._version is None or time.monotonic() - self._version[1] >= self.version_ttl:
            answer = await self.call("listCapabilities")
            capability = answer.get("capability") if isinstance(answer.get("capability"), dict) else {}
            self._version = (str(capability.get("cloudstackversion") or ""), time.monotonic())
        return self._version[0]

    async def request(self, command: str, *, fetch_list: bool = False, **params: Any) -> Any:
        """One command with backoff: 429 always retried, transient errors only for reads. A command or parameter
        the server's version lacks (`REQUIRES`) raises CloudStackUnsupportedVersion and is not sent."""
        if any(name == command and parameter in params for name, parameter in REQUIRES):
            refusal = unsupported(command, params, await self.version())
            if refusal is not None:
                self.counters.failures += 1
                raise refusal
        for attempt in range(1, self.attempts + 1):
            try:
                return await self._once(command, params, fetch_list)
            except CloudStackError as error:
                retry = isinstance(error, CloudStackRateLimited) or (
                    is_read(command) and isinstance(error, (CloudStackUnavailable, CloudStackServerError)))
                if isinstance(error, CloudStackRateLimited):
                    self.counters.rate_limited += 1
                if not retry or attempt == self.attempts:
                    self.counters.failures += 1
                    raise
                self.counters.retries += 1
                delay = min(self.backoff * 2 ** (attempt - 1), self.max_backoff) * (0.5 + random.random())
                log.debug("%s: %s; retry %d in %.1fs", command, error.errortext, attempt, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def call(self, command: str, **params: Any) -> dict[str, Any]:
        """A synchronous command; returns the inside of `<command>response`."""
        result = await self.request(command, **params)
        return result if isinstance(result, dict) else {}

    async def list(self, command: str, **params: Any) -> list[dict[str, Any]]:
        """A `list*` command, every page."""
        result = await self.request(command, fetch_list=True, **params)
        return list(result) if isinstance(result, list) else []

    async def page(self, command: str, page: int, pagesize: int, **params: Any) -> tuple[list[dict[str, Any]], int]:
        """One page of a `list*` command (BaseListCmd: `page` from 1, `pagesize` at most 500): its items and the
        total count CloudStack reports for the whole listing."""
        result = await self.request(command, page=page, pagesize=pagesize, **params)
        if not isinstance(result, dict):
            return [], 0
        items = next((value for key, value in result.items() if key != "count" and isinstance(value, list)), [])
        return list(items), int(result.get("count", 0) or 0)

    async def start(self, command: str, **params: Any) -> str:
        """Start an async command; returns its job id."""
        result = await self.call(command, **params)
        jobid = result.get("jobid")
        if not jobid:
            raise CloudStackError(command, "answered without a job id")
        return str(jobid)

    async def job(self, jobid: str) -> Job:
        return Job.parse(jobid, await self.call("queryAsyncJobResult", jobid=jobid))

    async def wait(self, jobid: str, *, command: str = "job", timeout: float = 600.0) -> dict[str, Any]:
        """Poll a job until it ends; its result object, or CloudStackJobFailed / CloudStackJobTimeout."""
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(jobid)
            if job.done:
                if not job.ok:
                    raise CloudStackJobFailed(command, jobid, str(job.result.get("errortext", "job failed")),
                                              errorcode=int(job.result.get("errorcode", 0) or 0),
                                              cserrorcode=int(job.result.get("cserrorcode", 0) or 0))
                return job.result
            if time.monotonic() >= deadline:
                raise CloudStackJobTimeout(command, f"job {jobid} still running after {timeout:.0f}s")
            await asyncio.sleep(self.poll_interval)

    async def run(self, command: str, *, timeout: float = 600.0, **params: Any) -> dict[str, Any]:
        """Start an async command and wait for it."""
        return await self.wait(await self.start(command, **params), command=command, timeout=timeout)


class CloudStackPool:
    """One client per (endpoint, API key, secret key), sharing one concurrency limit per endpoint. The keys are kept
    by the client only (it signs with them); the pool's own key holds a salted digest of them."""

    def __init__(self, *, per_endpoint: int = 8, **options: Any):
        self.per_endpoint = per_endpoint
        self._options = options
        self._clients: dict[tuple[str, str], CloudStackClient] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._salt = os.urandom(16)

    def key(self, endpoint: str, api_key: str, secret_key: SecretStr) -> tuple[str, str]:
        """(endpoint, digest of the keys): a rotated key is another client."""
        keys = f"{api_key}\0{secret_key.get_secret_value()}".encode("utf-8", errors="replace")
        return (endpoint, hmac.new(self._salt, keys, hashlib.sha256).hexdigest())

    def get(self, endpoint: str, api_key: str, secret_key: SecretStr, **options: Any) -> CloudStackClient:
        """The client for the endpoint and keys; the running pass's object holds it (`holdings`)."""
        key = self.key(endpoint, api_key, secret_key)
        client = self._clients.get(key)
        if client is None:
            limit = self._limits.setdefault(endpoint, asyncio.Semaphore(self.per_endpoint))
            client = CloudStackClient(endpoint, api_key, secret_key, limit=limit, **{**self._options, **options})
            self._clients[key] = client
        holdings.note(self, key)
        return client

    def release(self, key: tuple[str, str]) -> Any:
        """Drop the client kept under `key` now (with its keys) and return its closing: no object uses it."""
        client = self._clients.pop(key, None)
        if client is None:
            return None
        if not any(endpoint == key[0] for endpoint, _ in self._clients):
            self._limits.pop(key[0], None)
        log.info("a CloudStack client closed: no object uses its endpoint and keys any more")
        return client.close()

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        self._limits.clear()
