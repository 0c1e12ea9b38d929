"""Dispatching XML-RPC calls as xapi does (ocaml/xapi/api_server.ml and the generated server):

- the method is `<class>.<call>`; `Async.<class>.<call>` answers at once with a task ref and runs the call
  in that task (precondition failures then land in task.error_info, not in the answer);
- an unknown method → MESSAGE_METHOD_UNKNOWN [method]; a wrong number of parameters (session included) →
  MESSAGE_PARAMETER_COUNT_MISMATCH [method, expected, received];
- a supporter answers HOST_IS_SLAVE [master address] to everything but the emergency calls
  (pool.emergency_transition_to_master, pool.emergency_reset_master, session.slave_local_login_with_password,
  session.local_logout, host.emergency_ha_disable);
- the session is checked next: unknown, logged out or expired → SESSION_INVALID [ref] (the SDK logs in again
  and retries);
- a host whose xapi is starting answers HOST_STILL_BOOTING to everything; one waiting to join the HA liveset
  at boot is in emergency mode and serves the emergency calls (so host.emergency_ha_disable can end a fence
  loop), answering the others its emergency_mode_error: HOST_STILL_BOOTING, or why its xHA daemon cannot start
  (faults.py: HA_HOST_CANNOT_ACCESS_STATEFILE, HA_HEARTBEAT_DAEMON_STARTUP_FAILED);
- environment faults a call meets before its own checks come from faults.py (XenFaults.before_call).

Calls that take time (pool.enable_ha, designate_new_master …) return `Slow`: the dispatcher releases the lock,
waits, and finishes the call; if the host was killed or its xapi restarted meanwhile, a synchronous caller's
connection is dropped without an answer, as a real client would see it. A handler that must wait for another
operation (xapi's Helpers.retry) calls `ctx.pause`, which releases the lock the same way.

Such waits are in the lab's time (Dispatcher.wait): on a `ManualClock` the call waits until a test advances the
clock past its end (`XenLab.waiting_calls` says when each waiting call goes on), so the call stays in progress,
however busy the machine is, until the test has looked.
"""

from __future__ import annotations

import logging
import threading
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stackops_lab.xenapi.classes import generic_calls, wire
from stackops_lab.xenapi.errors import (HOST_IS_SLAVE, INTERNAL_ERROR, MESSAGE_METHOD_UNKNOWN,
                                        MESSAGE_PARAMETER_COUNT_MISMATCH, SESSION_INVALID, TASK_CANCELLED,
                                        XapiError)
from stackops_lab.xenapi.faults import faults_of
from stackops_lab.xenapi.state import HostRec, Machine, PoolDB, SessionRec, TaskRec, new_ref, new_uuid, now

if TYPE_CHECKING:
    from stackops_lab.xenapi.simulator import XenLab

log = logging.getLogger(__name__)
DROP = object()  # close the connection without answering


class Dropped(Exception):
    """The host went down or its xapi restarted while a call waited: the caller gets no answer (DROP)."""


@dataclass
class Call:
    name: str
    handler: Callable[..., Any]
    arity: int  # parameters after the session
    session: bool = True
    emergency: bool = False
    optional: int = 0  # trailing parameters with defaults (datamodel versioned params)


CALLS: dict[str, Call] = {}


def register(name: str, handler: Callable[..., Any], arity: int, *, session: bool = True,
             emergency: bool = False, optional: int = 0) -> None:
    CALLS[name] = Call(name, handler, arity, session, emergency, optional)


def api(name: str, arity: int, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def declare(handler: Callable[..., Any]) -> Callable[..., Any]:
        register(name, handler, arity, **options)
        return handler
    return declare


generic_calls(register)


@dataclass
class Slow:
    """A call that finishes `delay` seconds later with `then()` (run under the lock); `cleanup()` runs
    afterwards in every case (e.g. to clear pool.current_operations)."""

    delay: float
    then: Callable[[], Any]
    cleanup: Callable[[], None] | None = None


class Ctx:
    """What a call handler gets: the lab, the host serving the call, its pool database, the session and, for an
    Async call, its task (the key xapi files the call under in current_operations)."""

    def __init__(self, lab: XenLab, machine: Machine, session: SessionRec | None) -> None:
        self.lab = lab
        self.machine = machine
        self.session = session
        self.task_ref: str | None = None

    def pause(self, seconds: float) -> None:
        """Wait `seconds` with the lab unlocked, as a call blocked in xapi does; Dropped if the host went down or its
        xapi restarted meanwhile."""
        boot = self.machine.boot_id
        self.lab.dispatcher.wait(seconds)
        if self.machine.boot_id != boot or self.machine.power != "up":
            raise Dropped()
        self.check_cancelled()

    def set_cancellable(self) -> None:
        """TaskHelper.set_cancellable: the call's task (an Async call's) lists `cancel` in its allowed_operations."""
        task = self.db.find(TaskRec, self.task_ref) if self.task_ref is not None else None
        if task is not None:
            task.allowed_operations = ["cancel"]

    def check_cancelled(self) -> None:
        """TASK_CANCELLED [task] if task.cancel asked this call's task to stop (xapi's Helpers.retry and
        exn_if_cancelling, where a call waits for another operation; a slow call's own work is not cancelled)."""
        task = self.db.find(TaskRec, self.task_ref) if self.task_ref is not None else None
        if task is not None and "cancel" in task.current_operations.values():
            # TaskHelper.cancel: the task ends cancelled here, its error_info left empty
            task.status, task.finished, task.progress, task.allowed_operations = "cancelled", now(), 1.0, []
            raise XapiError(TASK_CANCELLED, task.ref)

    @property
    def db(self) -> PoolDB:
        assert self.machine.db is not None
        return self.machine.db

    @property
    def host(self) -> HostRec:
        return self.db.get(HostRec, self.machine.host_ref)

    def audit(self, event: str, **fields: Any) -> None:
        self.lab.audit_log.record(event, **{"on": self.machine.name, **fields})


def success(value: Any) -> dict[str, Any]:
    return {"Status": "Success", "Value": wire(value)}


def failure(description: list[str]) -> dict[str, Any]:
    return {"Status": "Failure", "ErrorDescription": [str(item) for item in description]}


def _changes(method: str) -> bool:
    """Whether a call may change something an event call reports: not a read, not an event call."""
    name = method.removeprefix("Async.")
    return not name.startswith("event.") and not name.partition(".")[2].startswith("get")


def task_result(value: Any) -> str:
    """task.result: the XML-RPC <value> of the call's result ("" for void)."""
    if value == "":
        return ""
    text = xmlrpc.client.dumps((wire(value),))
    return text[text.index("<value>"): text.rindex("</value>") + len("</value>")].replace("\n", "")


class Dispatcher:
    def __init__(self, lab: XenLab) -> None:
        self.lab = lab
        self.waits: dict[threading.Event, float] = {}  # calls waiting on a ManualClock → when they go on
        self.change_waiters: set[threading.Event] = set()  # event calls waiting for a change (events.py)

    def changed(self) -> None:
        """Something may have changed (a call, a task, a scheduled transition): wake the event calls waiting."""
        for woken in self.change_waiters:
            woken.set()

    def wait(self, seconds: float, woken: threading.Event | None = None) -> None:
        """Wait `seconds` of the lab's time with the lab unlocked (called, and returning, with the lock held): the
        scheduler wakes the call when the lab's clock gets that far (on a ManualClock, when a test advances it), or
        earlier whoever sets `woken`; Dropped if the lab stops first."""
        lock = self.lab.state.lock
        if not self.lab.running:
            raise Dropped()
        woken = woken or threading.Event()
        self.waits[woken] = self.lab.clock.monotonic() + max(0.0, seconds)

        def wake() -> None:
            self.waits.pop(woken, None)
            woken.set()

        # scheduled before the lock is released: a test that sees what the call did so far sees it waiting too
        self.lab.scheduler.call_later(seconds, wake)
        lock.release()
        try:
            woken.wait()
        finally:
            lock.acquire()
        self.waits.pop(woken, None)
        if not self.lab.running:
            raise Dropped()

    def wake_all(self) -> None:
        """The lab stops: calls waiting on a ManualClock end (Dropped) instead of waiting for ever."""
        with self.lab.state.lock:
            waiting, self.waits = list(self.waits), {}
        for woken in waiting:
            woken.set()

    def handle(self, machine: Machine, method: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
        """The answer envelope, or None to drop the connection (the host is down)."""
        lock = self.lab.state.lock
        lock.acquire()
        try:
            if machine.power != "up":
                return None
            try:
                result = self._call(machine, method, params)
            except XapiError as error:
                return failure(error.description)
            except Dropped:
                return None
            except Exception as error:  # an OCaml exception that is not an API error
                log.exception("%s failed on %s", method, machine.name)
                return failure([INTERNAL_ERROR, repr(error)])
            return None if result is DROP else success(result)
        finally:
            if _changes(method):
                self.changed()
            lock.release()

    def _call(self, machine: Machine, method: str, params: tuple[Any, ...]) -> Any:
        is_async = method.startswith("Async.")
        call = CALLS.get(method[len("Async."):] if is_async else method)
        # While xapi starts it answers HOST_STILL_BOOTING; waiting to join the HA liveset it is in
        # emergency mode and serves the emergency calls only.
        if machine.xapi != "running" and not (call is not None and call.emergency and machine.ha_joining_until):
            raise faults_of(self.lab).emergency_error(machine)
        if call is None or (is_async and not call.session):  # no Async.session.login_with_password
            raise XapiError(MESSAGE_METHOD_UNKNOWN, method)
        expected = call.arity + (1 if call.session else 0)
        if not expected - call.optional <= len(params) <= expected:
            raise XapiError(MESSAGE_PARAMETER_COUNT_MISMATCH, method, expected, len(params))
        if not call.emergency and not machine.is_master:
            raise XapiError(HOST_IS_SLAVE, machine.master_address)
        session = self.check_session(machine, params[0]) if call.session else None
        ctx = Ctx(self.lab, machine, session)
        args = params[1:] if call.session else params
        if is_async:
            return self.start_task(ctx, call, method, args)
        return self.run(ctx, call, args)

    def run(self, ctx: Ctx, call: Call, args: tuple[Any, ...]) -> Any:
        boot = ctx.machine.boot_id
        faults_of(self.lab).before_call(ctx, call.name, args)
        result = call.handler(ctx, *args)
        while isinstance(result, Slow):
            result = self._finish(ctx.machine, boot, result)
        return result

    def _finish(self, machine: Machine, boot: int, slow: Slow) -> Any:
        try:
            self.wait(slow.delay)
            if machine.boot_id != boot or machine.power != "up":
                return DROP
            return slow.then()
        finally:
            if slow.cleanup is not None:
                slow.cleanup()

    def check_session(self, machine: Machine, ref: Any) -> SessionRec:
        session = machine.local_sessions.get(ref) if isinstance(ref, str) else None
        if session is None and machine.is_master and machine.db is not None and isinstance(ref, str):
            session = machine.db.find(SessionRec, ref)
        if session is None:
            raise XapiError(SESSION_INVALID, ref)
        if self.lab.clock.monotonic() - session.idle_since > self.lab.timings.session_idle:
            machine.local_sessions.pop(session.ref, None)
            if machine.db is not None:
                machine.db.remove(session)
            raise XapiError(SESSION_INVALID, ref)
        session.idle_since = self.lab.clock.monotonic()
        session.last_active = now()
        return session

    def start_task(self, ctx: Ctx, call: Call, method: str, args: tuple[Any, ...]) -> str:
        task = ctx.db.add(TaskRec(ref=new_ref(), uuid=new_uuid(), name_label=method,
                                  resident_on=ctx.machine.host_ref))
        if ctx.session is not None:
            ctx.session.tasks.append(task.ref)
        ctx.task_ref = task.ref
        thread = threading.Thread(target=self._run_task, args=(ctx, call, args, task), daemon=True,
                                  name=f"xenapi-lab-task-{task.uuid[:8]}")
        thread.start()
        return task.ref

    def _run_task(self, ctx: Ctx, call: Call, args: tuple[Any, ...], task: TaskRec) -> None:
        with self.lab.state.lock:
            try:
                try:
                    result = self.run(ctx, call, args)
                except Dropped:
                    result = DROP
                if result is DROP:
                    raise XapiError(INTERNAL_ERROR, "xapi restarted while the task ran")
                outcome: tuple[str, str, list[str]] = ("success", task_result(result), [])
            except XapiError as error:
                outcome = ("cancelled" if error.code == TASK_CANCELLED else "failure", "", error.description)
            except Exception as error:
                log.exception("task %s failed", task.name_label)
                outcome = ("failure", "", [INTERNAL_ERROR, repr(error)])
            # TaskHelper.complete / failed: done, no longer cancellable (a task already cancelled stays as
            # TaskHelper.cancel left it); a task.destroy asked while it ran (current_operations "destroy") takes
            # effect now, as xapi's database GC does
            if task.status == "pending":
                task.status, task.result, task.error_info = outcome
                task.finished, task.progress, task.allowed_operations = now(), 1.0, []
            if "destroy" in task.current_operations.values() and ctx.machine.db is not None:
                ctx.machine.db.remove(task)
            self.changed()
