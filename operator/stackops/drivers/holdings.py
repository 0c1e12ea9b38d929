"""Which pooled connections and clients each object holds, so that each is closed once no object needs it.

- The pools (`SSHPool.connection`, `CloudStackPool.get`) report what they hand out (`note`) to the object whose
  pass is running: the handler marks the pass with `Holdings.held_by(uid)` (a context variable, inherited by the
  tasks the pass starts). No kind has code of its own for this, and no call site can forget it.
- When a pass ends, what it used is what the object holds. What it held before and did not use this time is
  released: its address, port, user or host key changed, a credential in its Secret was rotated (the pools key
  what they keep by a fingerprint of the credential, never the credential, so a new credential is a new key), a
  member left the spec, or the pass stopped before it got that far (the next pass that needs it connects again).
- When the object is deleted — whatever its deletionPolicy, and with an invalid spec too — everything it holds is
  released (`forget`).
- Released means closed and dropped from its pool, with the credential it holds, once no other object holds it: a
  connection two objects share (a host reached with the same key by a KvmHost and a CloudStackRelease, one
  CloudStack Secret behind many KvmHosts) stays open for the other. A use counts from the moment the pool hands the
  thing out, so another object's pass that is still running keeps it open too.

Outside a handler's pass (`stackops plan`, tests of the drivers) nothing is noted and nothing released.

Holding is not keeping open: the SSH pool also closes a connection no command has used for its idle bound, or
beyond its count of idle connections (drivers/ssh.py), whoever holds it; the next command connects again, and a
release of what the pool closed that way finds nothing left to close.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
from collections.abc import AsyncIterator, Hashable, Iterable
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Pool(Protocol):
    def release(self, key: Hashable) -> Any:
        """Drop what the pool keeps under `key` at once (the next request for it makes a new one) and close it, or
        return what finishes closing it (an awaitable); nothing when the pool keeps nothing there."""


Handle = tuple[Pool, Hashable]

_PASS: contextvars.ContextVar[tuple["Holdings", str] | None] = contextvars.ContextVar("stackops_pass", default=None)


def note(pool: Pool, key: Hashable) -> None:
    """A pool hands out what it keeps under `key`: the object of the running pass holds it."""
    current = _PASS.get()
    if current is not None:
        holdings, uid = current
        holdings.use(uid, pool, key)


class Holdings:
    """The registry: object uid → the (pool, key) pairs it holds. Used from the event loop only."""

    def __init__(self) -> None:
        self._held: dict[str, set[Handle]] = {}  # what each object holds, this pass's uses included
        self._used: dict[str, set[Handle]] = {}  # what the running pass of each object has used so far

    def use(self, uid: str, pool: Pool, key: Hashable) -> None:
        handle = (pool, key)
        self._held.setdefault(uid, set()).add(handle)
        if uid in self._used:
            self._used[uid].add(handle)

    def held(self, uid: str) -> set[Handle]:
        return set(self._held.get(uid, ()))

    def holders(self, pool: Pool, key: Hashable) -> list[str]:
        return sorted(uid for uid, held in self._held.items() if (pool, key) in held)

    @contextlib.asynccontextmanager
    async def held_by(self, uid: str) -> AsyncIterator[None]:
        """One pass over object `uid` (passes of one object do not overlap: the handler's lock). What the pools
        hand out meanwhile is the object's; at the end, what it held and did not use is released."""
        self._used[uid] = set()
        token = _PASS.set((self, uid))
        try:
            yield
        finally:
            _PASS.reset(token)
            used = self._used.pop(uid, set())
            stale = self._held.pop(uid, set()) - used
            if used:
                self._held[uid] = used
            await self._release(stale)

    async def forget(self, uid: str) -> None:
        """Object `uid` is gone: release everything it holds."""
        self._used.pop(uid, None)
        await self._release(self._held.pop(uid, set()))

    async def _release(self, handles: Iterable[Handle]) -> None:
        closing = []
        for pool, key in handles:  # all dropped before the first wait: nothing held meanwhile is closed after
            if any((pool, key) in held for held in self._held.values()):
                continue
            try:
                pending = pool.release(key)
            except Exception as error:  # noqa: BLE001 - closing a dead connection may fail; it is dropped anyway
                _failed(pool, error)
                continue
            if inspect.isawaitable(pending):
                closing.append((pool, pending))
        if closing:  # finished even when the pass is cancelled: what is dropped must not stay open for good
            await asyncio.shield(_finish(closing))


async def _finish(closing: list[tuple[Pool, Any]]) -> None:
    for pool, pending in closing:
        try:
            await pending
        except Exception as error:  # noqa: BLE001 - see above
            _failed(pool, error)


def _failed(pool: Pool, error: Exception) -> None:
    log.warning("closing a pooled %s connection failed: %s", type(pool).__name__, type(error).__name__)
