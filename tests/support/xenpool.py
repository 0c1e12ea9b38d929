"""Shared by the XenPool tests that drive the reconciler in process: a lab of XenServer hosts, a spec for it, and a
driver that runs passes the way the handler does (status kept between passes, checkpoints applied at once)."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import SecretStr
from support.credentials import secret

from stackops.api.xenpool import XenPoolSpec
from stackops.drivers.cloudstack import CloudStackPool
from stackops.reconcile.base import Context, Outcome, ReconcileError
from stackops.reconcile.xenpool import XenPoolReconciler
from stackops_lab.clock import Clock
from stackops_lab.xenapi import XenHostSpec, XenLab, XenTimings
from stackops_lab.xenapi.faults import faults_of

SECRET = "xen-root"
CLOUDSTACK = "lab-cloudstack"
FAST = XenTimings(ha_enable=0.2, ha_disable=0.1, join=0.3, eject_reboot=0.5, master_transition=0.3)


def lab(names: list[str], pools: list[list[str]], clock: Clock | None = None) -> XenLab:
    """Hosts alone in their pool run no VMs (a host that joins must not). With a `ManualClock`, the lab's time
    moves only when the test moves it (`lab.scheduler.advance`, or `lab_time_runs`)."""
    alone = {p[0] for p in pools if len(p) == 1}  # standalone: fresh installs without shared SRs or VMs
    return XenLab(hosts=[XenHostSpec(n, vms=0 if n in alone else None) for n in names],
                  pools=[p for p in pools if len(p) > 1], timings=FAST, vms_per_host=1, clock=clock)


@contextmanager
def lab_time_runs(xen: XenLab) -> Iterator[None]:
    """While the block runs, a thread moves the manual clock of `xen` along with the machine's (for passes that
    wait for the lab's transitions, e.g. a convergence); outside it, the lab's time stands still."""
    done = threading.Event()

    def pump() -> None:
        last = time.monotonic()
        while not done.is_set():
            now = time.monotonic()
            xen.scheduler.advance(now - last)
            last = now
            done.wait(0.005)

    thread = threading.Thread(target=pump, name="lab-time", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def spec_for(xen: XenLab, names: list[str], **changes: Any) -> XenPoolSpec:
    data: dict[str, Any] = {
        "members": [{"name": n, "address": xen.address(n)} for n in names],
        "credentialsSecretRef": {"name": SECRET},
        "tls": {"plainHTTP": True},
        "xenapiPort": xen.port,
        "ha": {"timeoutSeconds": 180, "heartbeatSR": {"type": "nfs"}},
    }
    data.update(changes)
    return XenPoolSpec.model_validate(data)


class Driver:
    """`cloudstack`: a lab CloudStack (`CloudStackSimulator`) whose keys go in Secret `CLOUDSTACK`; each pass gets
    a CloudStack client pool of its own (clients belong to one event loop)."""

    def __init__(self, xen: XenLab, spec: XenPoolSpec, reconciler: XenPoolReconciler | None = None,
                 cloudstack: Any = None, ssh: Any = None):
        self.reconciler = reconciler or XenPoolReconciler(change_timeout=30, poll_seconds=0.1)
        self.reconciler.ssh = ssh or self.reconciler.ssh
        self.spec = spec
        self.generation = 1  # metadata.generation: a test that changes the spec as a user would raises it
        self.status: dict[str, Any] = {}
        self.events: list[tuple[str, str, str]] = []
        # the password may go to every lab XenServer host and the lab CloudStack (addHost), as the lab's Secret says
        allowed = [xen.address(n) for n in xen.hosts] + ([cloudstack.endpoint] if cloudstack is not None else [])
        self.secrets = {SECRET: secret({"username": xen.username, "password": xen.password}, *allowed)}
        self.cloudstack = cloudstack
        if cloudstack is not None:
            self.secrets[CLOUDSTACK] = {"url": SecretStr(cloudstack.endpoint), "apiKey": SecretStr(cloudstack.api_key),
                                        "secretKey": SecretStr(cloudstack.secret_key),
                                        "allowPlainHTTP": SecretStr("true")}

    def _call(self, method: Callable[[Context], Awaitable[Any]]) -> Any:
        async def once() -> Any:
            pool = CloudStackPool(poll_interval=0.1) if self.cloudstack is not None else None
            self.reconciler.cloudstack = pool
            try:
                return await method(self.context())
            finally:
                if pool is not None:
                    await pool.close()

        return asyncio.run(once())

    def finalize(self) -> None:
        self._call(self.reconciler.finalize)

    def context(self) -> Context:
        async def checkpoint(fields: dict[str, Any]) -> None:
            self.status.update(fields)

        return Context(namespace="lab", name="pool", generation=self.generation, spec=self.spec, status=self.status,
                       secrets=self.secrets, event=lambda *e: self.events.append(e),
                       logger=logging.getLogger("e2e"), checkpoint=checkpoint)

    def run(self) -> Outcome:
        outcome: Outcome = self._call(self.reconciler.reconcile)
        self.status.update(outcome.fields)
        return outcome

    def converge(self, passes: int = 6, pause: float = 0.0) -> Outcome:
        """Passes until Ready; `pause` caps the sleep before a requeued pass (things in CloudStack take time)."""
        outcome = self.run()
        for _ in range(passes):
            if ready(outcome):
                break
            if pause:
                time.sleep(min(outcome.requeue_after or pause, pause))
            outcome = self.run()
        return outcome


def ready(outcome: Outcome) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in outcome.conditions)


def condition(outcome: Outcome, type_: str) -> Any:
    return next(c for c in outcome.conditions if c.type == type_)


# ---------------------------------------------------------------------------------------------------- crashes

HELD = 120.0  # lab seconds: a held call lasts until released, however busy the machine is


class Killed(BaseException):
    """The operator process dies: nothing in the operator catches it."""


class Hold:
    """The first `call` that reaches the lab lasts HELD (its lab timing `timing` raised for it); the third one (the
    restarted operator asking again after a refusal) lets it end. Counts the calls."""

    def __init__(self, xen: XenLab, call: str, timing: str) -> None:
        self.call, self.timing, self.calls = call, timing, 0
        self.usual = getattr(xen.timings, timing)
        self.faults = faults_of(xen)
        self._before_call = self.faults.before_call
        self.faults.before_call = self.before_call  # type: ignore[method-assign]

    def before_call(self, ctx: Any, name: str, args: tuple[Any, ...]) -> None:  # under the lab's lock
        if name == self.call:
            self.calls += 1
            if self.calls == 1:
                setattr(ctx.lab.timings, self.timing, HELD)
            elif self.calls == 3:
                setattr(ctx.lab.timings, self.timing, self.usual)
                for woken, when in list(ctx.lab.dispatcher.waits.items()):
                    if when - ctx.lab.clock.monotonic() > HELD / 2:
                        woken.set()
        self._before_call(ctx, name, args)


class KilledDriver(Driver):
    """A pass the operator dies in is followed by a new operator's pass (a fresh reconciler)."""

    deaths = 0

    def run(self) -> Any:
        try:
            return super().run()
        except Killed:
            self.deaths += 1
            self.reconciler = XenPoolReconciler(change_timeout=30, poll_seconds=0.1)
            return super().run()


def roll(driver: Driver, passes: int = 40, pause: float = 0.5) -> Any:
    """Passes until Ready, as the handler makes them: a retryable failure (RollBlocked while CloudStack reconnects a
    host on a busy machine, HOST_OFFLINE while a host boots) is asked again; one that is not is raised."""
    last: Any = None
    for _ in range(passes):
        try:
            last = driver.run()
        except ReconcileError as error:
            if not error.retry:
                raise
            last = error
        else:
            if ready(last):
                return last
        time.sleep(min(getattr(last, "requeue_after", None) or pause, pause))
    raise AssertionError(f"not Ready after {passes} passes: {last}; {driver.status.get('maintenance')}")
