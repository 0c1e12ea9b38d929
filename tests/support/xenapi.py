"""Shared by the lab XenAPI simulator's tests: fast timings, an SDK login, the driver's view of the master, a call
expected to fail, the errors a poll (support.wait.wait_for) counts as "not yet", and for a lab on a ManualClock (a
test that looks at a state lasting only until the next transition): moving its clock until a condition holds, or as
far as the calls waiting on it need."""
from __future__ import annotations

import asyncio
import http.client
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from typing import Any

import pytest
import XenAPI
from pydantic import SecretStr

from stackops.drivers.xenapi import Endpoint, PoolSession
from stackops_lab.xenapi import XenLab, XenTimings

FAST = XenTimings(ha_enable=0.2, ha_disable=0.1, join=0.2, eject_reboot=0.3, master_transition=0.2, fence=0.2,
                  host_boot=0.2, xapi_restart=0.1, liveness=0.3, tick=0.02)


CALL_TIMEOUT = 30.0  # machine seconds; guards a ManualClock test against a hang only
XENAPI_DOWN = (XenAPI.Failure, OSError)  # what a host rebooting or restarting xapi answers: "not yet" to a poll


class GuardedTransport(xmlrpc.client.Transport):
    """Plain HTTP with a socket timeout: on a ManualClock lab a call that waits on the lab's clock (where the test
    expects an answer at once) would otherwise wait for ever — it fails instead."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        return connection


def login(lab: XenLab, name: str) -> XenAPI.Session:
    guarded = lab.clock.manual and lab.tls is None
    session = XenAPI.Session(lab.url(name), transport=GuardedTransport(CALL_TIMEOUT) if guarded else None)
    session.xenapi.login_with_password(lab.username, lab.password, "2.21", "stackops-tests")
    return session


def failure(call: Callable[..., Any], *args: Any) -> list[str]:
    """The ErrorDescription of a call that must fail."""
    with pytest.raises(XenAPI.Failure) as caught:
        call(*args)
    return caught.value.details


def events(lab: XenLab, name: str) -> list[dict[str, Any]]:
    return [event for event in lab.audit() if event["event"] == name]


def endpoint(lab: XenLab, **changes: object) -> Endpoint:
    """How the driver reaches the lab: its port and CA (a TLS lab's), a 5 s timeout, and `changes`."""
    settings: dict[str, object] = {"port": lab.port, "ca_pem": lab.ca_pem, "timeout": 5.0, **changes}
    return Endpoint(**settings)  # type: ignore[arg-type]


def master_of(lab: XenLab, names: list[str], ep: Endpoint) -> tuple[str, int]:
    """The master's address the driver finds from `names` (logged in with the lab's password), and how many hosts
    its pool has."""
    pool = PoolSession([lab.address(n) for n in names], lab.username, SecretStr(lab.password), ep)

    async def go() -> tuple[str, int]:
        try:
            return await pool.connect(), len(await pool.records("host"))
        finally:
            await pool.close()

    return asyncio.run(go())


# ------------------------------------------------------------------------------------------------ ManualClock labs
# On a ManualClock nothing time-based happens (transitions, HA ticks, the end of a Slow call) until the test moves
# the clock; what the test looks at in between cannot change under it, however busy the machine is.

STEP = 1e-6  # past a due time: `now + (due - now)` may fall a hair short of `due` in floating point


def advance_until(lab: XenLab, predicate: Callable[[], Any], what: str = "condition", limit: float = 30.0) -> Any:
    """Move the lab's clock a tick at a time (running the transitions and HA ticks that fall due) until
    `predicate` holds (a XenAPI failure or a refused connection counts as not yet); at most `limit` lab seconds.
    Calls waiting on the clock are woken on the way but finish in their own threads: use `drive` for those."""
    clock, tick = lab.clock, lab.timings.tick
    until = clock.monotonic() + limit
    while True:
        try:
            value = predicate()
        except XENAPI_DOWN:
            value = None
        if value:
            return value
        if clock.monotonic() >= until:
            raise AssertionError(f"{what}: not after {limit} lab seconds")
        lab.scheduler.advance(tick)


def drive(lab: XenLab, done: Callable[[], Any], what: str = "calls done", timeout: float = 30.0) -> Any:
    """Move the lab's clock to each point where a call waiting on it goes on (XenLab.waiting_calls), and no
    further, until `done()` is truthy: the lab's time passes exactly as the calls need. `timeout` (machine seconds)
    only guards against a hang."""
    deadline = time.monotonic() + timeout
    while True:
        value = done()
        if value:
            return value
        waiting = lab.waiting_calls()
        if waiting:
            lab.scheduler.advance(max(0.0, waiting[0] - lab.clock.monotonic()) + STEP)
        elif time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        else:
            time.sleep(0.005)  # a woken call is finishing in its thread, or one is on its way to the lab


def blocking(lab: XenLab, call: Callable[..., Any], *args: Any) -> Any:
    """Make a call that waits on the lab's clock (pool.enable_ha, disable_ha …) on a ManualClock lab: it runs in a
    thread while `drive` moves the clock as far as it waits. Returns its result, or raises what it raised."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call(*args)
        except BaseException as error:  # handed to the caller
            outcome["error"] = error

    thread = threading.Thread(target=run, name="xenapi-test-blocking-call", daemon=True)
    thread.start()
    drive(lab, lambda: not thread.is_alive(), what="the blocking call")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
