"""The event class (ocaml/xapi/xapi_event.ml): event.from, and the deprecated event.register / unregister / next,
event.get_current_id and event.inject.

xapi's database counts its writes (a generation) and keeps, per row, the generations it was created, last modified
and deleted at. The lab keeps the same facts in a Journal per pool database, by comparing each object's record with
the one it last saw (a sweep, made by each event call: the lab's code changes records in place): a new object is
created at the next generation, a changed one modified at it, a missing one deleted. Relations count as changes of
both sides (adding a VBD modifies its VM's record, as xapi's database touches the referenced row); sessions
generate no events (datamodel gen_events=false). event.from compares only the classes its subscriptions name (a
sweep of 600 VMs with their devices takes ~0.2 s, of the VMs alone ~0.07 s): a change to an object of another
class is dated when a call first looks at that class, not when it happened as in xapi.

event.from(classes, token, timeout):
- classes: "*", a class name ("VM", matched lower-case) or "class/ref" for one object;
- token: "" (from the start: every object is an `add`), or the token of the last answer, "%020d,%020d" (database
  generation, message generation); anything else → EVENT_FROM_TOKEN_PARSE_FAILURE [token];
- answers {"events": [...], "valid_ref_counts": {class: count} (every table but message, ints on the wire),
  "token": ...}: for the matching objects changed since the token an event {id (the generation), timestamp
  "0.0", class (lower-case), operation add|mod|del, ref, snapshot (the record now; none for del)}, adds first,
  then mods, then dels; an object created and deleted since the token gives none;
- with no matching change it waits (xapi's wait2) until a change or until `timeout` seconds of the lab's clock
  have passed, then answers what it has, possibly nothing (the token unchanged). A timeout of 0 answers at once.
  A change is any call that is not a read or an event call, a task finishing, or a scheduled transition; the
  waiting call is on the lab's clock like any other (XenLab.waiting_calls). Logging the session out meanwhile →
  SESSION_INVALID [session].

event.register(classes) adds subscriptions to the session's single Event.next subscription (created at the
current generation), unregister removes them; event.next() → SESSION_NOT_REGISTERED ["trackid=<md5 of the
session ref>"] without one, else the events since the last next (waiting for one), each with a timestamp and
with a snapshot for add and mod. event.get_current_id → the current generation; event.inject(class, ref) marks
the object modified and answers the token just before that change (HANDLE_INVALID [class, ref] if it is not one).
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stackops_lab.clock import Clock
from stackops_lab.scheduler import Scheduler
from stackops_lab.xenapi.classes import RawInt, relation_index, to_record
from stackops_lab.xenapi.dispatch import Ctx, api
from stackops_lab.xenapi.errors import FIELD_TYPE_ERROR, HANDLE_INVALID, SESSION_INVALID, XapiError
from stackops_lab.xenapi.state import RECORD_TYPES, PoolDB, SessionRec

EVENT_CLASSES = [name for name in RECORD_TYPES if name != "session"]  # datamodel gen_events
FOREVER = 24 * 3600.0  # xapi: event.from with no timeout waits a day


@dataclass
class Row:
    snapshot: dict[str, Any]
    created: int
    modified: int


@dataclass
class Journal:
    """One pool database's generations: per class and ref its last record and when it was created and modified,
    and the deleted objects (created, deleted)."""

    generation: int = 0
    rows: dict[str, dict[str, Row]] = field(default_factory=lambda: {name: {} for name in EVENT_CLASSES})
    deleted: dict[str, dict[str, tuple[int, int]]] = field(
        default_factory=lambda: {name: {} for name in EVENT_CLASSES})
    subscriptions: dict[str, NextSubscription] = field(default_factory=dict)  # event.register, by session

    def bump(self) -> int:
        self.generation += 1
        return self.generation

    def sweep(self, db: PoolDB, classes: list[str] | None = None) -> None:
        """Compare the records of `classes` (all by default: those an event call's subscriptions name) with what
        the journal last saw."""
        index = relation_index(db)
        for name in EVENT_CLASSES if classes is None else classes:
            rows, table = self.rows[name], db.tables[name]
            for ref, record in table.items():
                snapshot = to_record(db, record, index)
                row = rows.get(ref)
                if row is None:
                    generation = self.bump()
                    rows[ref] = Row(snapshot, generation, generation)
                    self.deleted[name].pop(ref, None)
                elif row.snapshot != snapshot:
                    row.snapshot, row.modified = snapshot, self.bump()
            for ref in [ref for ref in rows if ref not in table]:
                self.deleted[name][ref] = (rows.pop(ref).created, self.bump())


_JOURNALS: weakref.WeakKeyDictionary[PoolDB, Journal] = weakref.WeakKeyDictionary()


def journal_of(db: PoolDB) -> Journal:
    journal = _JOURNALS.get(db)
    if journal is None:
        journal = _JOURNALS[db] = Journal()
    return journal


@dataclass
class Subscription:
    """Subscription.of_string: "*" (all), "class" or "class/ref" (lower-cased class)."""

    cls: str
    ref: str | None = None

    @classmethod
    def parse(cls, text: Any) -> Subscription:
        if not isinstance(text, str):
            raise XapiError(FIELD_TYPE_ERROR, "classes")
        name, _, ref = text.partition("/")
        return cls(name.lower(), ref if _ else None)

    def matches(self, name: str, ref: str) -> bool:
        return self.cls == "*" or (self.cls == name.lower() and self.ref in (None, ref))


def _subscriptions(classes: Any) -> list[Subscription]:
    if not isinstance(classes, list):
        raise XapiError(FIELD_TYPE_ERROR, "classes")
    return [Subscription.parse(text) for text in classes]


def _parse_token(token: Any) -> tuple[int, int]:
    if token == "":
        return 0, 0
    parts = token.split(",") if isinstance(token, str) else []
    try:
        if len(parts) == 2:
            return int(parts[0]), int(parts[1])
    except ValueError:
        pass
    raise XapiError("EVENT_FROM_TOKEN_PARSE_FAILURE", token)


def _token(last: int, messages: int) -> str:
    return f"{last:020d},{messages:020d}"


def _event(name: str, op: str, ref: str, generation: int, snapshot: dict[str, Any] | None,
           timestamp: str = "0.0") -> dict[str, Any]:
    event: dict[str, Any] = {"id": "0" if name == "message" else str(generation), "timestamp": timestamp,
                             "class": name.lower(), "operation": op, "ref": ref}
    if snapshot is not None:
        event["snapshot"] = snapshot
    return event


def collect(journal: Journal, subs: list[Subscription], since: int, since_messages: int,
            timestamp: str = "0.0") -> tuple[list[dict[str, Any]], int, int]:
    """xapi's collect_events: the events of the matching objects changed after `since` (messages: after
    `since_messages`), and the last generation among them (the new token's parts)."""
    adds: list[tuple[int, dict[str, Any]]] = []
    mods: list[tuple[int, dict[str, Any]]] = []
    dels: list[tuple[int, dict[str, Any]]] = []
    last, last_messages = since, since_messages
    for name in EVENT_CLASSES:
        after = since_messages if name == "message" else since
        top = after
        for ref, row in journal.rows[name].items():
            if row.modified > after and any(sub.matches(name, ref) for sub in subs):
                top = max(top, row.modified)
                if row.created > after:
                    adds.append((row.created, _event(name, "add", ref, row.created, row.snapshot, timestamp)))
                else:
                    mods.append((row.modified, _event(name, "mod", ref, row.modified, row.snapshot, timestamp)))
        for ref, (created, deleted) in journal.deleted[name].items():
            if deleted > after and any(sub.matches(name, ref) for sub in subs):
                top = max(top, deleted)
                if created <= after:
                    dels.append((deleted, _event(name, "del", ref, deleted, None, timestamp)))
        if name == "message":
            last_messages = top
        else:
            last = max(last, top)
    ordered = [event for group in (adds, mods, dels) for _, event in sorted(group, key=lambda item: item[0])]
    return ordered, last, last_messages


def _wait_for_change(ctx: Ctx, seconds: float) -> None:
    """Wait up to `seconds` of the lab's clock for a change (Dispatcher.changed); SESSION_INVALID if the
    session was logged out meanwhile."""
    dispatcher = ctx.lab.dispatcher
    woken = threading.Event()
    dispatcher.change_waiters.add(woken)
    try:
        dispatcher.wait(seconds, woken)
    finally:
        dispatcher.change_waiters.discard(woken)
    session = ctx.session
    if session is not None and ctx.db.find(SessionRec, session.ref) is None \
            and session.ref not in ctx.machine.local_sessions:
        raise XapiError(SESSION_INVALID, session.ref)


@api("event.from", 3)
def event_from(ctx: Ctx, classes: Any, token: Any, timeout: Any) -> dict[str, Any]:
    subs = _subscriptions(classes)
    since, since_messages = _parse_token(token)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise XapiError(FIELD_TYPE_ERROR, "timeout")
    clock = ctx.lab.clock
    deadline = clock.monotonic() + (float(timeout) if timeout >= 0 else FOREVER)
    tables = [name for name in EVENT_CLASSES if any(sub.cls in ("*", name.lower()) for sub in subs)]
    while True:
        journal = journal_of(ctx.db)
        journal.sweep(ctx.db, tables)
        events, last, last_messages = collect(journal, subs, since, since_messages)
        remaining = deadline - clock.monotonic()
        if events or remaining <= 0:
            break
        since, since_messages = last, last_messages
        _wait_for_change(ctx, remaining)
    counts = {name.lower(): RawInt(len(table)) for name, table in ctx.db.tables.items() if name != "message"}
    return {"events": events, "valid_ref_counts": counts, "token": _token(last, last_messages)}


@dataclass
class NextSubscription:
    last: int
    subs: list[Subscription] = field(default_factory=list)


@api("event.register", 1)
def register(ctx: Ctx, classes: Any) -> str:
    subs = _subscriptions(classes)
    assert ctx.session is not None
    journal = journal_of(ctx.db)
    journal.sweep(ctx.db)
    subscription = journal.subscriptions.setdefault(ctx.session.ref, NextSubscription(journal.generation))
    subscription.subs = subs + subscription.subs
    return ""


@api("event.unregister", 1)
def unregister(ctx: Ctx, classes: Any) -> str:
    subs = _subscriptions(classes)
    assert ctx.session is not None
    journal = journal_of(ctx.db)
    journal.sweep(ctx.db)
    subscription = journal.subscriptions.setdefault(ctx.session.ref, NextSubscription(journal.generation))
    subscription.subs = [sub for sub in subscription.subs if sub not in subs]
    return ""


@api("event.next", 0)
def next_events(ctx: Ctx) -> list[dict[str, Any]]:
    assert ctx.session is not None
    ref = ctx.session.ref
    while True:
        journal = journal_of(ctx.db)
        subscription = journal.subscriptions.get(ref)
        if subscription is None:
            raise XapiError("SESSION_NOT_REGISTERED", f"trackid={hashlib.md5(ref.encode()).hexdigest()}")
        journal.sweep(ctx.db)
        timestamp = f"{ctx.lab.clock.time():.6f}"
        events, _, _ = collect(journal, subscription.subs, subscription.last, subscription.last, timestamp)
        subscription.last = journal.generation
        if events:
            return events
        _wait_for_change(ctx, FOREVER)


@api("event.get_current_id", 0)
def get_current_id(ctx: Ctx) -> int:
    journal = journal_of(ctx.db)
    journal.sweep(ctx.db)
    return journal.generation


@api("event.inject", 2)
def inject(ctx: Ctx, name: Any, ref: Any) -> str:
    journal = journal_of(ctx.db)
    journal.sweep(ctx.db)
    row = journal.rows.get(name, {}).get(ref) if isinstance(name, str) and isinstance(ref, str) else None
    if row is None:
        raise XapiError(HANDLE_INVALID, name, ref)
    row.modified = journal.bump()
    return _token(row.modified - 1, 0)


class ChangeScheduler(Scheduler):
    """The lab's scheduler: each transition it runs counts as a change for the calls waiting on one."""

    def __init__(self, lock: threading.RLock, name: str, clock: Clock, changed: Callable[[], None]) -> None:
        super().__init__(lock, name, clock)
        self._changed = changed

    def _call(self, due: float, callback: Callable[[], None]) -> None:
        super()._call(due, callback)
        with self._lock:
            self._changed()

