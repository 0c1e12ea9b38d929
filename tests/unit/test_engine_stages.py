"""The engine's stages (reconcile/engine.py), with a kind over a dict: each stage's actions in order with one Event
each, an intent written before a stage and cleared after it (kept when the stage fails), what follows a stage
(`next`, `replan`, `report`, `stop`), the connection closed whatever happens, Observe applying nothing, and no kind
running a loop of its own."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator

import pytest

from stackops import status as st
from stackops.api.kinds import KINDS
from stackops.api.kvmhost import KvmHostSpec
from stackops.reconcile.base import Action, Context, Outcome, PartialApply, ReconcileError
from stackops.reconcile.engine import Engine, Plan, Stage
from support.specs import MINIMAL


@dataclass(frozen=True)
class Put(Action):
    key: str
    value: int
    event_reason = "Put"

    def describe(self) -> str:
        return f"put {self.key}={self.value}"


class Dict(Engine[list, dict, Plan]):
    """Wants `wanted`; `stages(missing)` turns the missing keys into stages."""

    kind = "KvmHost"

    def __init__(self, actual: dict, wanted: dict, stages: Any, fail_on: str = ""):
        self.actual, self.wanted, self.stages, self.fail_on = actual, wanted, stages, fail_on
        self.log: list[str] = []

    @contextlib.asynccontextmanager
    async def connect(self, ctx: Context) -> AsyncIterator[list]:
        self.log.append("connect")
        try:
            yield self.log
        finally:
            self.log.append("close")

    async def observe(self, ctx: Context, conn: list) -> dict:
        conn.append("observe")
        return dict(self.actual)

    def plan(self, ctx: Context, facts: dict) -> Plan:
        missing = [Put(k, v) for k, v in sorted(self.wanted.items()) if facts.get(k) != v]
        return Plan(self.stages(missing) if missing else [])

    async def execute(self, ctx: Context, conn: list, action: Action, facts: dict) -> None:
        assert isinstance(action, Put)
        if action.key == self.fail_on:
            raise ReconcileError("PutFailed", f"cannot put {action.key}")
        conn.append(f"put {action.key}")
        self.actual[action.key] = action.value

    def report(self, ctx: Context, facts: dict, plan: Plan, applied: list[Action]) -> Outcome:
        return Outcome(st.ready("Converged") if not plan.stages else st.progressing("Converging", "more"),
                       drift=plan.actions)


def context(policy: str = "Manage", status: dict | None = None) -> tuple[Context, list, dict]:
    events: list = []
    status = dict(status or {})

    async def checkpoint(fields: dict) -> None:
        events.append(("checkpoint", dict(fields)))
        status.update(fields)

    spec = KvmHostSpec.model_validate({**MINIMAL["KvmHost"], "managementPolicy": policy})
    ctx = Context(namespace="lab", name="kvm1", generation=1, spec=spec, status=status, secrets={},
                  event=lambda *e: events.append(e), logger=logging.getLogger("test"), checkpoint=checkpoint)
    return ctx, events, status


def test_one_stage_runs_in_order_with_an_event_each_then_observes_and_reports() -> None:
    kind = Dict({}, {"a": 1, "b": 2}, lambda missing: [Stage("puts", tuple(missing))])
    ctx, events, _ = context()
    outcome = asyncio.run(kind.reconcile(ctx))
    assert kind.log == ["connect", "observe", "put a", "put b", "observe", "close"]
    assert events == [("Normal", "Put", "put a=1"), ("Normal", "Put", "put b=2")]
    assert [a.describe() for a in outcome.applied] == ["put a=1", "put b=2"] and outcome.drift == []


def test_an_intent_is_written_before_its_stage_and_cleared_after() -> None:
    kind = Dict({}, {"a": 1}, lambda missing: [Stage("dance", tuple(missing), intent={"pending": {"op": "a"}})])
    ctx, events, status = context()
    asyncio.run(kind.reconcile(ctx))
    assert events == [("checkpoint", {"pending": {"op": "a"}}), ("Normal", "Put", "put a=1"),
                      ("checkpoint", {"pending": None})]
    assert status == {"pending": None}


def test_a_failed_stage_keeps_its_intent_and_says_what_was_done() -> None:
    kind = Dict({}, {"a": 1, "b": 2, "c": 3}, lambda missing: [Stage("dance", tuple(missing), intent={"p": 1})],
                fail_on="b")
    ctx, events, status = context()
    with pytest.raises(PartialApply) as failed:
        asyncio.run(kind.reconcile(ctx))
    assert [a.describe() for a in failed.value.applied] == ["put a=1"] and failed.value.reason == "PutFailed"
    assert status == {"p": 1}, "the next pass finds the unfinished stage"
    assert events[-1] == ("Warning", "PutFailed", "put b=2 failed: cannot put b")
    assert kind.log[-1] == "close"


def test_a_stage_that_fails_outright_keeps_what_earlier_stages_did() -> None:
    kind = Dict({}, {"a": 1, "b": 2}, lambda missing: [Stage(m.key, (m,), then="replan") for m in missing],
                fail_on="b")
    kind.run_stage = refuse_b(kind.run_stage)  # type: ignore[method-assign]
    ctx, _, _ = context()
    with pytest.raises(PartialApply) as failed:
        asyncio.run(kind.reconcile(ctx))
    assert [a.describe() for a in failed.value.applied] == ["put a=1"] and failed.value.reason == "Refused"


def refuse_b(run_stage: Any) -> Any:
    """A stage whose own step refuses before any action (as a guarded apply that cannot checkpoint)."""
    async def run(ctx: Context, conn: list, stage: Stage, facts: dict) -> list[Action]:
        if stage.name == "b":
            raise ReconcileError("Refused", "no checkpoint could be written")
        return await run_stage(ctx, conn, stage, facts)
    return run


@pytest.mark.parametrize("then, log", [
    ("next", ["observe", "put a", "put b", "observe"]),  # both stages on the first facts, then the report
    ("replan", ["observe", "put a", "observe", "put b", "observe"]),  # observed and planned again between them
    ("report", ["observe", "put a", "observe"]),  # the rest waits for the next pass
    ("stop", ["observe", "put a"]),  # the report on the facts the stage started from
])
def test_what_follows_a_stage(then: str, log: list[str]) -> None:
    kind = Dict({}, {"a": 1, "b": 2}, lambda missing: [Stage(m.key, (m,), then=then) for m in missing])
    ctx, _, _ = context()
    asyncio.run(kind.reconcile(ctx))
    assert kind.log[1:-1] == log


def test_observe_applies_nothing_and_reports_the_plan_as_drift_once() -> None:
    kind = Dict({}, {"a": 1}, lambda missing: [Stage("puts", tuple(missing))])
    ctx, events, _ = context("Observe")
    outcome = asyncio.run(kind.reconcile(ctx))
    assert kind.actual == {} and [a.describe() for a in outcome.drift] == ["put a=1"]
    assert [e[1] for e in events] == ["DriftDetected"]
    ctx, events, _ = context("Observe", status={"drift": [a.record() for a in outcome.drift]})
    asyncio.run(kind.reconcile(ctx))
    assert events == [], "the same drift is not announced again"


def test_a_converged_resource_plans_nothing_and_does_nothing() -> None:
    kind = Dict({"a": 1}, {"a": 1}, lambda missing: [Stage("puts", tuple(missing))])
    ctx, events, _ = context()
    outcome = asyncio.run(kind.reconcile(ctx))
    assert kind.log == ["connect", "observe", "close"] and events == [] and outcome.applied == []


def test_a_kind_cannot_run_its_own_loop() -> None:
    with pytest.raises(TypeError, match="engine runs every kind's pass"):
        class Looping(Dict):
            async def reconcile(self, ctx: Context) -> Outcome:  # noqa: D102
                raise AssertionError


def test_every_kind_runs_on_the_engine() -> None:
    from stackops.reconcile.cloudstackrelease import CloudStackReleaseReconciler
    from stackops.reconcile.kvmhost import KvmHostReconciler
    from stackops.reconcile.systemvmtemplate import SystemVMTemplateReconciler
    from stackops.reconcile.xenpool import XenPoolReconciler

    reconcilers = (KvmHostReconciler, CloudStackReleaseReconciler, SystemVMTemplateReconciler, XenPoolReconciler)
    assert sorted(r.kind for r in reconcilers) == sorted(k.kind for k in KINDS)
    for reconciler in reconcilers:
        assert issubclass(reconciler, Engine), reconciler


class Registering(Dict):
    """A Dict registered somewhere else (`registry`) once it holds every wanted key: what the registry says is read
    by `observe_follow_up` (only then), and the registration is a follow-up stage."""

    def __init__(self, actual: dict, wanted: dict, registry: dict, then: str = "report"):
        super().__init__(actual, wanted, lambda missing: [Stage("puts", tuple(missing), then=then)])
        self.registry = registry

    async def observe_follow_up(self, ctx: Context, conn: list, facts: dict, plan: Plan) -> dict:
        if plan.actions:  # not converged: nothing to register yet
            return facts
        conn.append("look")
        return {**facts, "@registered": self.registry.get("registered", False)}

    def plan(self, ctx: Context, facts: dict) -> Plan:
        plan = super().plan(ctx, facts)
        if facts.get("@registered") is False:
            plan.stages.append(Stage("register", (Put("@registered", 1),), then="stop", follow_up=True))
        return plan

    async def execute(self, ctx: Context, conn: list, action: Action, facts: dict) -> None:
        if isinstance(action, Put) and action.key == "@registered":
            conn.append("register")
            self.registry["registered"] = True
            return
        await super().execute(ctx, conn, action, facts)


def test_a_follow_up_stage_runs_after_the_kinds_own_stage_in_the_same_pass_on_fresh_facts() -> None:
    kind = Registering({}, {"a": 1, "b": 2}, {})
    ctx, events, _ = context()
    outcome = asyncio.run(kind.reconcile(ctx))
    assert kind.log == ["connect", "observe", "put a", "put b", "observe", "look", "register", "close"]
    assert [e[2] for e in events] == ["put a=1", "put b=2", "put @registered=1"]
    assert [a.describe() for a in outcome.applied] == ["put a=1", "put b=2", "put @registered=1"]


def test_the_follow_up_is_read_only_once_the_kinds_own_stages_are_done() -> None:
    kind = Registering({}, {"a": 1, "b": 2}, {}, then="replan")
    ctx, _, _ = context()
    asyncio.run(kind.reconcile(ctx))
    assert kind.log == ["connect", "observe", "put a", "put b", "observe", "look", "register", "close"]
    converged = Registering({"a": 1}, {"a": 1}, {"registered": True})
    asyncio.run(converged.reconcile(context()[0]))
    assert converged.log == ["connect", "observe", "look", "close"], "a converged resource plans nothing"


def test_under_observe_a_follow_up_is_drift_like_any_other_action() -> None:
    kind = Registering({"a": 1}, {"a": 1}, {})
    ctx, events, _ = context("Observe")
    outcome = asyncio.run(kind.reconcile(ctx))
    assert kind.log == ["connect", "observe", "look", "close"] and kind.registry == {}
    assert [a.describe() for a in outcome.drift] == ["put @registered=1"]
    assert [e[1] for e in events] == ["DriftDetected"]


def test_no_kind_works_after_the_report() -> None:
    """Registration is a stage of the kinds' plans: the engine has no step after the report any more."""
    from stackops.reconcile.kvmhost import KvmHostReconciler
    from stackops.reconcile.xenpool import XenPoolReconciler

    assert not hasattr(Engine, "finish")
    for reconciler in (KvmHostReconciler, XenPoolReconciler):
        assert not hasattr(reconciler, "finish"), reconciler
