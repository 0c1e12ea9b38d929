"""The engine a kind runs on: connect → observe → (resume) → plan → stages → report, one pass at a time.

A kind subclasses `Engine` and implements its steps; the engine owns what is the same for every kind:
- the management policy: under `Observe` nothing is applied, the plan's actions are the drift, and a
  `DriftDetected` Event is posted when the drift changes;
- the order of work: a plan is a list of `Stage`s; each stage's actions run in order, one Event each (the action's
  `event_reason`, `Applied` unless it says otherwise), and the first failure stops the pass with what was done so
  far (`PartialApply`);
- intents: a stage with an `intent` writes those status fields before its first action and clears them after its
  last, so an operator killed in the middle finds the unfinished stage in status (`Engine.resume`) and never
  repeats a disruptive step blindly;
- what follows a stage (`Stage.then`): the next stage of the same plan, a fresh observation and plan, or the report;
- follow-up stages (`Stage.follow_up`: a host or pool registered in CloudStack once it is configured): planned from
  what `Engine.observe_follow_up` reads, which the engine asks for only once the kind's own stages are done (or
  under Observe, to report everything), and run in the same pass after the kind's own stages;
- the connection of a pass (`Engine.connect`), opened once and closed whatever happens.

A kind's `reconcile` is the engine's; a subclass that defines its own is refused when the class is made. Errors: a
step raises ReconcileError; a driver error that escapes is mapped by the kind's `failure`; an observation that
fails in a way the kind knows (a pool without a master) is answered by its `recover`.
"""
from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass, field
from typing import Any, AsyncContextManager, ClassVar, Generic, Literal, Mapping, Sequence, TypeVar

from .base import Action, Context, Outcome, PartialApply, ReconcileError, Reconciler

Connection = TypeVar("Connection")
Facts = TypeVar("Facts")
PlanT = TypeVar("PlanT", bound="Plan")

MAX_ROUNDS = 8  # observe → plan → stage rounds in one pass (a plan that never settles is a bug, not a loop)

Then = Literal["next", "replan", "report", "stop"]


@dataclass(frozen=True)
class Stage:
    """Actions applied together, in order.

    `intent`: status fields written (checkpoint) before the first action and set to null after the last.
    `then`: what follows — `next`: the plan's next stage, on the same facts; `replan`: observe and plan again and go
    on with the new plan; `report`: observe again and end the pass with the report (running the new plan's
    follow-up stages first); `stop`: end the pass with the report on the facts the stage started from (work that
    goes on by itself, such as a detached build, or whose answer the stage recorded in the facts).
    `follow_up`: work that follows the kind's own changes and is planned from what `Engine.observe_follow_up` read
    once they are done (a host or pool registered in CloudStack): after a stage whose `then` is `report`, the
    engine observes again and runs the new plan's follow-up stages before the report, instead of leaving them to
    the next pass."""

    name: str
    actions: tuple[Action, ...]
    intent: Mapping[str, Any] | None = None
    then: Then = "report"
    follow_up: bool = False


@dataclass
class Plan:
    """What a kind's `plan` returns: its stages (none: converged, or blocked — the kind's report says which).
    Kinds subclass it to carry what their report needs."""

    stages: list[Stage] = field(default_factory=list)

    @property
    def actions(self) -> list[Action]:
        return [action for stage in self.stages for action in stage.actions]


class Engine(Reconciler, Generic[Connection, Facts, PlanT]):
    """The steps a kind implements; `reconcile` runs them."""

    engine_steps: ClassVar[tuple[str, ...]] = ("reconcile",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in Engine.engine_steps:
            if name in cls.__dict__:
                raise TypeError(f"{cls.__name__} defines {name}(): the engine runs every kind's pass; implement "
                                "its steps (connect, observe, recover, resume, observe_follow_up, plan, check, "
                                "execute, run_stage, report, failure) instead")

    # ------------------------------------------------------------------ the steps a kind implements

    def connect(self, ctx: Context) -> AsyncContextManager[Connection]:
        """What the pass talks through (an SSH connection, a XenAPI session, a CloudStack client), closed at its end."""
        return contextlib.nullcontext(None)  # type: ignore[return-value]

    @abc.abstractmethod
    async def observe(self, ctx: Context, conn: Connection) -> Facts:
        """The actual state, in as few round trips as possible."""

    async def recover(self, ctx: Context, conn: Connection, error: Exception) -> Outcome | None:
        """The first observation failed with `error`: the kind's own answer to a state it knows (a pool whose master
        is gone: the failover procedure), or None to let the error stand. Default: None."""
        return None

    async def resume(self, ctx: Context, conn: Connection, facts: Facts, applied: list[Action]) -> Facts:
        """Finish or wait for work an earlier pass left undecided (an intent in status, a change the host has not
        confirmed), adding what it does to `applied`; returns the facts to plan from. Default: nothing to resume."""
        return facts

    async def observe_follow_up(self, ctx: Context, conn: Connection, facts: Facts, plan: PlanT) -> Facts:
        """What follow-up stages are planned from, besides the kind's own state (a host's or pool's registration in
        CloudStack), added to `facts`. The engine asks once the kind's own stages are done (`plan`, on the facts so
        far, has no stage left, or the last stage's `then` was `report`) and under Observe; the kind reads only
        what it can plan from (a host that does not match its spec yet is not looked up), so a pass that could
        not act on it makes no request. Default: nothing more."""
        return facts

    @abc.abstractmethod
    def plan(self, ctx: Context, facts: Facts) -> PlanT:
        """Pure: (spec, facts) → stages. A converged resource plans nothing."""

    def check(self, ctx: Context, plan: PlanT, facts: Facts) -> Outcome | None:
        """Before anything changes: raise ReconcileError to refuse the plan, or return an Outcome to report instead
        of applying. Default: go ahead."""
        return None

    @abc.abstractmethod
    async def execute(self, ctx: Context, conn: Connection, action: Action, facts: Facts) -> None:
        """Carry out one action; raise ReconcileError on failure."""

    async def run_stage(self, ctx: Context, conn: Connection, stage: Stage, facts: Facts) -> list[Action]:
        """Carry out a stage; returns the actions done. Default: each action in order, one Event each."""
        return await self.execute_each(ctx, conn, stage.actions, facts, [])

    @abc.abstractmethod
    def report(self, ctx: Context, facts: Facts, plan: PlanT, applied: list[Action]) -> Outcome:
        """Status for what was observed; under Observe, `plan`'s actions are the drift."""

    def failure(self, ctx: Context, error: Exception) -> ReconcileError | None:
        """A driver's error that escaped the steps, as a reason for status (None: not the kind's to map)."""
        return None

    # ------------------------------------------------------------------ the engine

    async def execute_each(self, ctx: Context, conn: Connection, actions: Sequence[Action], facts: Facts,
                           applied: list[Action]) -> list[Action]:
        """Execute in order, one Event per change; stop at the first failure (PartialApply lists what was done)."""
        for action in actions:
            try:
                await self.execute(ctx, conn, action, facts)
            except ReconcileError as error:
                ctx.event("Warning", action.failure_reason or error.reason, f"{action.describe()} failed: {error}")
                raise PartialApply(error, applied) from error
            applied.append(action)
            ctx.event("Normal", action.event_reason, action.describe())
        return applied

    async def reconcile(self, ctx: Context) -> Outcome:
        try:
            async with self.connect(ctx) as conn:
                return await self._pass(ctx, conn)
        except ReconcileError:
            raise
        except Exception as error:
            mapped = self.failure(ctx, error)
            if mapped is None:
                raise
            raise mapped from None

    async def _pass(self, ctx: Context, conn: Connection) -> Outcome:
        try:
            facts = await self.observe(ctx, conn)
        except Exception as error:
            recovered = await self.recover(ctx, conn, error)
            if recovered is None:
                raise
            return recovered
        applied: list[Action] = []
        facts = await self.resume(ctx, conn, facts, applied)
        observe_only = ctx.spec.management_policy == "Observe"
        facts, plan = await self._plan(ctx, conn, facts, settled=observe_only)
        if observe_only or not plan.stages:
            return self._observed(ctx, facts, plan, applied)
        instead = self.check(ctx, plan, facts)
        if instead is not None:
            return instead
        stages, followed = plan.stages, False
        for _ in range(MAX_ROUNDS):
            then: Then = "report"
            for stage in stages:
                applied = await self._stage(ctx, conn, stage, facts, applied)
                then, followed = stage.then, followed or stage.follow_up
                if then != "next":
                    break
            if then == "stop":
                break
            facts, plan = await self._plan(ctx, conn, await self.observe(ctx, conn), settled=then != "replan")
            if then == "replan" and plan.stages:
                stages = plan.stages
                continue
            stages = [stage for stage in plan.stages if stage.follow_up]
            if followed or not stages:
                break
        outcome = self.report(ctx, facts, plan, applied)
        outcome.applied = applied
        return outcome

    async def _plan(self, ctx: Context, conn: Connection, facts: Facts, *, settled: bool) -> tuple[Facts, PlanT]:
        """The plan on `facts`; once the kind's own stages are done (`settled`, or nothing left to run), with what
        its follow-up stages need (`observe_follow_up`)."""
        plan = self.plan(ctx, facts)
        if settled or not plan.stages:
            more = await self.observe_follow_up(ctx, conn, facts, plan)
            if more is not facts:
                facts, plan = more, self.plan(ctx, more)
        return facts, plan

    async def _stage(self, ctx: Context, conn: Connection, stage: Stage, facts: Facts,
                     applied: list[Action]) -> list[Action]:
        if stage.intent:
            await ctx.checkpoint(dict(stage.intent))
        try:
            done = await self.run_stage(ctx, conn, stage, facts)
        except PartialApply as error:
            raise PartialApply(error, [*applied, *error.applied]) from error
        except ReconcileError as error:  # what earlier stages of the pass did still counts
            if applied:
                raise PartialApply(error, list(applied)) from error
            raise
        if stage.intent:
            await ctx.checkpoint({key: None for key in stage.intent})
        return [*applied, *done]

    def _observed(self, ctx: Context, facts: Facts, plan: PlanT, applied: list[Action]) -> Outcome:
        """Nothing applied: under Observe, the plan's actions are the drift; else nothing was left to do (or the
        kind's report says what blocks it)."""
        observe = ctx.spec.management_policy == "Observe"
        actions = plan.actions if observe else []
        if actions and [a.record() for a in actions] != ctx.status.get("drift"):
            ctx.event("Warning", "DriftDetected", f"{len(actions)} difference(s) left alone under Observe: "
                      + "; ".join(a.describe() for a in actions[:5]) + ("; …" if len(actions) > 5 else ""))
        outcome = self.report(ctx, facts, plan, applied)
        outcome.applied = applied
        if outcome.drift is None:
            outcome.drift = actions
        return outcome
