"""The resync scheduler (handlers/resync.py): one loop for every object instead of a kopf timer per object, paused
with kopf's peering. Its clock is the test's: nothing here waits for real time to pass."""
from __future__ import annotations

import asyncio
import datetime
from typing import Any

import kopf
import pytest
from kopf._core.engines.peering import Peer

from stackops.api.kinds import KINDS, KVMHOST, XENPOOL
from stackops.handlers import Deps, build, resync
from stackops.handlers.peering import conflicting_peers, peering_check
from stackops.handlers.resync import Resync, resync_in


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def body(uid: str, due_in: float | None, interval: int = 600, **meta: Any) -> dict[str, Any]:
    """An object whose resync falls due in `due_in` seconds (None: never reconciled yet)."""
    status = {}
    if due_in is not None:
        last = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=interval - due_in)
        status["lastReconcileTime"] = last.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"uid": uid, "namespace": "ns", "name": f"obj-{uid}", **meta},
            "spec": {"resyncIntervalSeconds": interval}, "status": status}


def started(schedule: Resync, clock: Clock, at: float) -> list[str]:
    """The passes `start_due` starts when the clock reads `at` (run to their end)."""
    calls: list[str] = []

    async def run_pass(kind: Any, namespace: str, name: str, uid: str, retry: int) -> None:
        calls.append(uid)

    async def go() -> None:
        schedule.run_pass = run_pass
        clock.now = at
        schedule.start_due()
        await asyncio.gather(*schedule.running.values())

    asyncio.run(go())
    return calls


def test_objects_are_resynced_when_they_fall_due_and_in_that_order() -> None:
    clock = Clock()
    schedule = Resync(clock)
    for uid, due_in in (("b", 200), ("a", 100), ("c", 300), ("late", -50)):
        schedule.note(KVMHOST, body(uid, due_in))
    assert started(schedule, clock, 1000.0) == ["late"], "overdue (the operator was down): at once"
    assert started(schedule, clock, 1150.0) == ["a"]
    assert started(schedule, clock, 1400.0) == ["b", "c"]
    assert schedule.next_due() is None


def test_paused_deleted_and_never_reconciled_objects_are_not_scheduled() -> None:
    schedule = Resync(Clock())
    schedule.note(KVMHOST, body("new", None))
    schedule.note(KVMHOST, body("deleting", 10, deletionTimestamp="2026-12-07T00:00:00Z"))
    schedule.note(KVMHOST, body("paused", 10, annotations={"stackops.io/paused": "true"}))
    assert schedule.next_due() is None
    schedule.note(KVMHOST, body("x", 10))
    assert schedule.next_due() is not None
    schedule.note(KVMHOST, body("x", 10, annotations={"stackops.io/paused": "true"}))  # paused later: dropped
    assert schedule.next_due() is None
    schedule.note(KVMHOST, body("y", 10))
    schedule.forget("y")  # its DELETED event
    assert schedule.next_due() is None


def test_a_watch_event_reschedules_an_object_rather_than_adding_a_second_resync() -> None:
    clock = Clock()
    schedule = Resync(clock)
    schedule.note(KVMHOST, body("x", 100))
    schedule.note(KVMHOST, body("x", 500))  # its pass ran meanwhile (a spec change): due later
    assert started(schedule, clock, 1200.0) == []
    assert started(schedule, clock, 1600.0) == ["x"]


def test_a_pass_that_asks_for_a_retry_comes_back_after_its_delay_not_its_interval() -> None:
    """A host unreachable: the pass writes status (lastReconcileTime advances, and its watch event says: due in
    600 s) and asks for a retry in 30 s. The retry wins, with the retry count; a pass that succeeds ends it."""
    clock = Clock()
    schedule = Resync(clock)
    retries: list[int] = []
    answers = [30.0, None]

    async def run_pass(kind: Any, namespace: str, name: str, uid: str, retry: int) -> float | None:
        retries.append(retry)
        return answers.pop(0)

    async def go() -> None:
        schedule.run_pass = run_pass
        schedule.note(KVMHOST, body("x", 0))
        schedule.start_due()
        await asyncio.gather(*schedule.running.values())
        schedule.note(KVMHOST, body("x", 600))  # the status the failed pass wrote
        assert schedule.next_due()[1].at == pytest.approx(clock.now + 30)
        clock.now += 30
        schedule.start_due()
        await asyncio.gather(*schedule.running.values())
        schedule.note(KVMHOST, body("x", 600))
        assert schedule.next_due()[1].at == pytest.approx(clock.now + 600, abs=2)

    asyncio.run(go())
    assert retries == [0, 1]


def test_an_object_whose_pass_runs_is_not_started_again() -> None:
    clock = Clock()
    schedule = Resync(clock)
    release = asyncio.Event
    calls: list[str] = []

    async def go() -> None:
        gate = release()

        async def run_pass(kind: Any, namespace: str, name: str, uid: str, retry: int) -> None:
            calls.append(uid)
            await gate.wait()

        schedule.run_pass = run_pass
        schedule.note(KVMHOST, body("x", 0))
        schedule.start_due()
        await asyncio.sleep(0)
        schedule.note(KVMHOST, body("x", 0))  # an event while its pass runs, still due
        schedule.start_due()
        gate.set()
        await asyncio.gather(*schedule.running.values())

    asyncio.run(go())
    assert calls == ["x"]


def test_no_resync_starts_while_the_peering_pauses_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resync, "PAUSE_RECHECK_SECONDS", 0)
    log: list[str] = []
    answers = [False, False, True]
    schedule = Resync()

    async def may_act() -> bool:
        answer = answers.pop(0) if answers else True
        log.append(f"may act: {answer}")
        return answer

    async def go() -> None:
        done = asyncio.Event()

        async def run_pass(kind: Any, namespace: str, name: str, uid: str, retry: int) -> None:
            log.append(f"pass {uid}")
            done.set()

        schedule.note(KVMHOST, body("x", -1))
        schedule.start(run_pass, may_act)
        await asyncio.wait_for(done.wait(), 60)  # a hang guard only
        await schedule.stop()

    asyncio.run(go())
    assert log == ["may act: False", "may act: False", "may act: True", "pass x"]


def test_resync_in() -> None:
    assert resync_in(body("x", 100)) == pytest.approx(100, abs=2)
    assert resync_in(body("x", -5)) == pytest.approx(-5, abs=2)
    assert resync_in(body("x", None)) is None
    assert resync_in({"spec": {}, "status": {"lastReconcileTime": "2000-01-01T00:00:00Z"}}) is None


NOW = datetime.datetime(2026, 12, 7, 12, 0, 0, tzinfo=datetime.timezone.utc)
PEERS = {
    "me": {"priority": 0, "lifetime": 60, "lastseen": "2026-12-07T11:59:50+00:00"},
    "same-alive": {"priority": 0, "lifetime": 60, "lastseen": "2026-12-07T11:59:30+00:00"},
    "higher-alive": {"priority": 10, "lifetime": 60, "lastseen": "2026-12-07T11:59:30+00:00"},
    "higher-dead": {"priority": 10, "lifetime": 60, "lastseen": "2026-12-07T11:58:00+00:00"},
    "lower-alive": {"priority": -5, "lifetime": 60, "lastseen": "2026-12-07T11:59:30+00:00"},
    "never-seen": {"priority": 0, "lifetime": 60},
}


def test_conflicting_peers_follow_kopfs_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """The peers for which kopf pauses the operator (another live peer of the same or a higher priority), checked
    against kopf's own reading of each peer (its Peer class: priority and is_dead)."""
    found = conflicting_peers(PEERS, "me", 0, now=NOW)
    assert sorted(found) == ["higher-alive", "never-seen", "same-alive"]

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime.datetime:  # type: ignore[override]
            return NOW

    monkeypatch.setattr("kopf._core.engines.peering.datetime.datetime", Frozen)
    kopfs = [name for name, info in PEERS.items()
             if name != "me" and not (peer := Peer(identity=name, **info)).is_dead and peer.priority >= 0]
    assert sorted(kopfs) == sorted(found)


class Peerings:
    def __init__(self, status: dict | None = None, error: Exception | None = None) -> None:
        self.status, self.error, self.reads = status, error, 0

    def get_cluster_custom_object(self, group: str, version: str, plural: str, name: str) -> dict:
        self.reads += 1
        if self.error:
            raise self.error
        return {"status": self.status}


def test_peering_check() -> None:
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    alone = Peerings({"me": {"priority": 0, "lifetime": 60, "lastseen": now}})
    contested = Peerings({"me": {"priority": 0, "lifetime": 60, "lastseen": now},
                          "other": {"priority": 0, "lifetime": 60, "lastseen": now}})
    broken = Peerings(error=ConnectionError("refused"))

    async def go() -> list[bool]:
        answers = []
        for api in (alone, contested, broken):
            answers.append(await peering_check(api, "stackops", [], "me", lambda: 0)())
        cached = peering_check(alone, "stackops", [], "me", lambda: 0, cache_seconds=3600)
        answers += [await cached(), await cached()]
        answers.append(await peering_check(broken, None, [], "me", lambda: 0)())  # standalone
        return answers

    assert asyncio.run(go()) == [True, False, False, True, True, True]
    assert alone.reads == 2, "a burst of due objects reads the peering once"


def test_no_kopf_timer_keeps_an_object_in_memory() -> None:
    """Resync without a kopf timer (a task and the latest body per object for as long as it exists): an event
    handler per kind feeds the one scheduler."""
    deps = Deps(reconcilers={k.kind: object() for k in (KVMHOST, XENPOOL)}, secrets=None)  # type: ignore[arg-type]
    registry = kopf.OperatorRegistry()
    from stackops.handlers import resources
    deps.resync = Resync()
    for kind in (KVMHOST, XENPOOL):
        resources.register_kind(registry, kind, deps)
    assert list(registry._spawning.get_all_handlers()) == []
    assert {h.id for h in registry._watching.get_all_handlers()} == {"resync"}
    everything = Deps(reconcilers={k.kind: object() for k in KINDS}, secrets=None)  # type: ignore[arg-type]
    registry, _ = build(everything, custom_api=object(), identity="me")
    assert {h.id for h in registry._activities.get_all_handlers()} >= {"prepare", "resync"}
    with pytest.raises(ValueError, match="identity"):  # one of its own would make kopf's keep-alive a rival peer
        build(everything, custom_api=object())
