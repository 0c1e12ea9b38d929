"""Bounded worker threads for the drivers' blocking calls (paramiko, the XenAPI SDK, the Kubernetes client).

Each driver has its own `Workers` (an SSHPool its own, `xenapi.WORKERS`, `kube.WORKERS`), so a flood of one kind of
call — XenAPI calls hanging on a dead host, an API server that stopped answering — takes only that driver's
threads: SSH commands and Secret reads go on. asyncio's default executor, shared by everything and small
(min(32, CPUs + 4) threads), serves none of them.

- At most `size` threads run ordinary calls; more calls wait in a queue, first in first out.
- Urgent calls (`urgent=True`) are taken before every queued ordinary call, and `reserved` more threads run only
  urgent calls: an urgent call never waits for an ordinary one, only for urgent calls beyond the reserved threads.
  KvmHost's confirm of a guarded change is one (the host reverts the change unless the confirm arrives in time).
- Threads start when calls need them, and a thread that found no call for `idle_seconds` (60 s by default) ends:
  a quiet operator keeps none of them. They are daemon threads: a call hanging on a dead peer does not hold the
  process at exit.
- A call whose caller stopped waiting (its coroutine was cancelled) while it was queued is not run.
- The call runs in a copy of the caller's context (contextvars), as with `asyncio.to_thread`.

A queue wait counts against a call's timeout where the driver has one: the driver notes the time before it submits
the call and takes the wait off the timeout in the thread (ssh.SSHConnection.run, xenapi.PoolSession.task).
"""
from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, TypeVar

T = TypeVar("T")

_Job = tuple[Future, Callable[..., Any], tuple[Any, ...], contextvars.Context]
DEFAULT_IDLE_SECONDS = 60.0  # a thread with nothing to do for this long ends


class Workers:
    """`size` threads for ordinary calls and `reserved` more for urgent ones; the rest waits in a queue."""

    def __init__(self, name: str, size: int, *, reserved: int = 0, idle_seconds: float = DEFAULT_IDLE_SECONDS):
        if size < 1 or reserved < 0 or not idle_seconds > 0:
            raise ValueError(f"{name} workers: size must be at least 1, reserved at least 0, idle_seconds positive")
        self.name = name
        self.size = size
        self.reserved = reserved
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # ordinary threads wait here (they take urgent calls too)
        self._urgent_work = threading.Condition(self._lock)  # reserved threads wait here
        self._ordinary: deque[_Job] = deque()
        self._urgent: deque[_Job] = deque()
        self._threads = 0
        self._reserved_threads = 0
        self._idle = 0
        self._idle_reserved = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"<Workers {self.name} size={self.size} reserved={self.reserved}>"

    async def run(self, func: Callable[..., T], *args: Any, urgent: bool = False) -> T:
        """`func(*args)` in one of the threads; its result or exception."""
        return await asyncio.wrap_future(self.submit(func, *args, urgent=urgent))

    def submit(self, func: Callable[..., Any], *args: Any, urgent: bool = False) -> Future:
        future: Future = Future()
        job: _Job = (future, func, args, contextvars.copy_context())
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the {self.name} workers are shut down")
            if urgent:
                self._urgent.append(job)
                self._urgent_work.notify()
            else:
                self._ordinary.append(job)
            self._work.notify()
            self._grow()
        return future

    def queued(self) -> int:
        """Calls waiting for a thread."""
        with self._lock:
            return len(self._urgent) + len(self._ordinary)

    def threads(self) -> int:
        """Threads running now (busy or waiting for a call)."""
        with self._lock:
            return self._threads + self._reserved_threads

    def shutdown(self) -> None:
        """Queued calls are cancelled, idle threads end, running calls finish; no call is taken afterwards."""
        with self._lock:
            self._closed = True
            jobs = [*self._urgent, *self._ordinary]
            self._urgent.clear()
            self._ordinary.clear()
            self._work.notify_all()
            self._urgent_work.notify_all()
        for future, *_ in jobs:
            future.cancel()

    # -- internals (under the lock)

    def _grow(self) -> None:
        """A thread more when the idle ones are fewer than the calls they could take: a reserved one for urgent
        calls while there are fewer reserved threads than `reserved`, else an ordinary one up to `size`."""
        if self._urgent and self._idle_reserved < len(self._urgent) and self._reserved_threads < self.reserved:
            self._start(reserved=True)
        elif self._idle + self._idle_reserved < len(self._urgent) + len(self._ordinary) and self._threads < self.size:
            self._start(reserved=False)

    def _start(self, *, reserved: bool) -> None:
        if reserved:
            self._reserved_threads += 1
            number = self._reserved_threads
        else:
            self._threads += 1
            number = self._threads
        kind = "urgent" if reserved else "worker"
        thread = threading.Thread(target=self._loop, args=(reserved,), name=f"{self.name}-{kind}-{number}",
                                  daemon=True)
        thread.start()

    def _take(self, reserved: bool) -> _Job | None:
        """The next call for this thread, urgent ones first; None once shut down or after `idle_seconds` without a
        call (the thread ends; a later call starts another)."""
        with self._lock:
            waited = False
            while True:
                if self._urgent:
                    return self._urgent.popleft()
                if not reserved and self._ordinary:
                    return self._ordinary.popleft()
                if self._closed or waited:
                    if reserved:
                        self._reserved_threads -= 1
                    else:
                        self._threads -= 1
                    return None
                if reserved:
                    self._idle_reserved += 1
                    waited = not self._urgent_work.wait(self.idle_seconds)
                    self._idle_reserved -= 1
                else:
                    self._idle += 1
                    waited = not self._work.wait(self.idle_seconds)
                    self._idle -= 1

    def _loop(self, reserved: bool) -> None:
        while True:
            job = self._take(reserved)
            if job is None:
                return
            future, func, args, context = job
            del job
            if not future.set_running_or_notify_cancel():
                continue  # the caller stopped waiting while it was queued
            try:
                result = context.run(func, *args)
            except BaseException as error:  # noqa: BLE001 - handed to the caller, as concurrent.futures does
                future.set_exception(error)
            else:
                future.set_result(result)
            del future, func, args, context
