"""How a KvmHost's CloudStack registration shows in its outcome: Registered, and Ready only once the host is Up."""
from __future__ import annotations

from stackops import status as st
from stackops.reconcile.base import Outcome
from stackops.reconcile.kvmhost import with_registration
from stackops.reconcile.kvmhost.registration import AddHost, describe_state, registered


def configured() -> Outcome:
    return Outcome(conditions=[*st.ready("Configured", "the host matches the spec"),
                               st.ConditionState("Configured", "True", "Configured")])


def by_type(outcome: Outcome) -> dict[str, st.ConditionState]:
    return {c.type: c for c in outcome.conditions}


def test_up_host_is_registered_and_ready() -> None:
    outcome = with_registration(configured(), registered(
        {"id": "h1", "name": "kvm1", "state": "Up", "resourcestate": "Enabled"}, []))
    conditions = by_type(outcome)
    assert conditions["Ready"].status == "True" and conditions["Registered"].status == "True"
    assert outcome.fields == {"cloudstackHostId": "h1", "cloudstackHostState": "Up"}
    assert outcome.requeue_after is None


def test_connecting_host_keeps_ready_false_and_checks_again_soon() -> None:
    action = AddHost("10.0.0.1", "z", "p", "c")
    outcome = with_registration(configured(), registered({"id": "h1", "name": "kvm1", "state": "Connecting"},
                                                         [action]))
    conditions = by_type(outcome)
    assert conditions["Ready"].status == "False" and conditions["Ready"].reason == "CloudStackHostConnecting"
    assert conditions["Reconciling"].status == "True"
    assert conditions["Configured"].status == "True"
    assert outcome.applied == [action] and outcome.requeue_after == 5.0


def test_host_in_maintenance_is_not_ready() -> None:
    host = {"id": "h1", "name": "kvm1", "state": "Up", "resourcestate": "Maintenance"}
    assert describe_state(host) == "Up/Maintenance"
    outcome = with_registration(configured(), registered(host, []))
    assert by_type(outcome)["Ready"].status == "False"
    assert by_type(outcome)["Registered"].status == "False"
