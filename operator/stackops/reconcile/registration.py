"""A host's or pool's registration in CloudStack, the same way for every kind with `spec.cloudstack` (KvmHost: a
host, kvmhost/registration.py; XenPool: a cluster, xenpool/cluster.py).

- The kind reads CloudStack in `Engine.observe_follow_up`, only once what it registers is ready (a KvmHost that
  matches its spec, a XenPool without a problem), so a pass that cannot register makes no request.
- Its plan puts the registration actions (add the host, the cluster, the hosts that joined; remove the hosts that
  left) in a `RegistrationStage`: a follow-up stage, run in the same pass after the kind's own stages, with one
  Event per action, PartialApply on a failure and, under Observe, its actions in the drift like any other.
- What registration found is a `Registration`: the `Registered` condition, the status fields (the CloudStack id and
  state), notices; `with_registration` adds it to the pass's outcome: Ready waits for it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import status as st
from .base import Action, Outcome
from .engine import Plan, Stage, Then


@dataclass(frozen=True)
class RegistrationStage(Stage):
    """The registration actions of a plan: a follow-up stage (planned once the host or pool is ready, run after the
    kind's own stages in the same pass) that ends the pass (`stop`): the kind's `run_stage` records what CloudStack
    answered in the facts, and the report shows it, without observing everything again."""

    then: Then = "stop"
    follow_up: bool = True


@dataclass
class Registration:
    """What registration found, for status: the `Registered` condition; Ready's reason while Ready waits for it
    (the kind's prefix and the condition's reason: `CloudStackHostConnecting`, `CloudStackHostsMissing`); the
    status fields it fills (`cloudstackHostId`, `cloudstackClusterId`, …); notices added to Ready's message once
    registered; how soon to look again while it is not done."""

    condition: st.ConditionState
    reason: str
    fields: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    requeue_after: float | None = None


def registering(plan: Plan) -> list[Action]:
    """The actions of the plan's registration stages."""
    return [action for stage in plan.stages if isinstance(stage, RegistrationStage) for action in stage.actions]


def with_registration(outcome: Outcome, found: Registration) -> Outcome:
    """The outcome with the registration's condition and status fields; Ready waits for it (progressing while it is
    looked at again soon, else not ready), and says its notices once it is there."""
    condition = found.condition
    outcome.conditions = [c for c in outcome.conditions if c.type != condition.type] + [condition]
    outcome.fields.update(found.fields)
    ready = next((c for c in outcome.conditions if c.type == st.ConditionType.READY), None)
    if ready is not None and ready.status == "True":
        if condition.status != "True":
            kept = [c for c in outcome.conditions if c.type not in st.KSTATUS]
            message = condition.message or condition.reason
            waiting = st.progressing(found.reason, message) if found.requeue_after else \
                st.not_ready(found.reason, message)
            outcome.conditions = [*waiting, *kept]
        elif found.notices:
            outcome.conditions = [st.ConditionState(st.ConditionType.READY, "True", ready.reason,
                                                    "; ".join([ready.message, *found.notices]))
                                  if c.type == st.ConditionType.READY else c for c in outcome.conditions]
    if found.requeue_after:
        outcome.requeue_after = min(outcome.requeue_after or found.requeue_after, found.requeue_after)
    return outcome
