"""kstatus conditions: transition times, generations, unrelated conditions, messages, the four triples."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from stackops import status as st
from stackops.api.common import Condition
from stackops.reconcile.base import PartialApply, ReconcileError
from stackops.status import ConditionState, merge_conditions

T0 = "2024-01-01T00:00:00Z"
T1 = "2024-01-01T00:05:00Z"


def by_type(conditions: list[dict]) -> dict[str, dict]:
    return {c["type"]: c for c in conditions}


def test_first_merge_sets_every_field() -> None:
    result = merge_conditions(None, st.ready("Converged", "all good"), generation=3, timestamp=T0)
    assert result == [
        {"type": "Ready", "status": "True", "reason": "Converged", "message": "all good",
         "lastTransitionTime": T0, "observedGeneration": 3},
        {"type": "Reconciling", "status": "False", "reason": "Converged", "message": "",
         "lastTransitionTime": T0, "observedGeneration": 3},
        {"type": "Stalled", "status": "False", "reason": "Converged", "message": "",
         "lastTransitionTime": T0, "observedGeneration": 3},
    ]
    for condition in result:
        Condition.model_validate(condition)  # what we write is what the status schema describes


def test_unchanged_status_keeps_last_transition_time() -> None:
    first = merge_conditions([], st.ready("Converged"), generation=1, timestamp=T0)
    second = merge_conditions(first, st.ready("StillConverged", "new message"), generation=2, timestamp=T1)
    ready = by_type(second)["Ready"]
    assert ready["lastTransitionTime"] == T0
    assert ready["reason"] == "StillConverged" and ready["message"] == "new message"
    assert ready["observedGeneration"] == 2
    assert all(c["lastTransitionTime"] == T0 for c in second)


def test_changed_status_updates_last_transition_time() -> None:
    first = merge_conditions([], st.ready("Converged"), generation=1, timestamp=T0)
    second = merge_conditions(first, st.progressing("Applying", "adding bond0"), generation=2, timestamp=T1)
    conditions = by_type(second)
    assert conditions["Ready"]["status"] == "False" and conditions["Ready"]["lastTransitionTime"] == T1
    assert conditions["Reconciling"]["status"] == "True" and conditions["Reconciling"]["lastTransitionTime"] == T1
    # Stalled stayed False: its transition time is kept although its reason changed.
    assert conditions["Stalled"]["lastTransitionTime"] == T0
    assert conditions["Stalled"]["reason"] == "Applying"


def test_missing_previous_transition_time_is_filled_in() -> None:
    existing = [{"type": "Ready", "status": "True", "reason": "Old"}]
    result = merge_conditions(existing, [ConditionState("Ready", "True", "New")], generation=1, timestamp=T1)
    assert result[0]["lastTransitionTime"] == T1


def test_observed_generation_set_on_every_written_condition() -> None:
    existing = merge_conditions([], st.ready("Converged"), generation=4, timestamp=T0)
    result = merge_conditions(existing, st.stalled("InvalidSpec", "bad"), generation=7, timestamp=T1)
    assert {c["observedGeneration"] for c in result} == {7}


def test_unrelated_conditions_kept_as_they_were() -> None:
    domain = {"type": "HAEnabled", "status": "True", "reason": "Enabled", "message": "timeout 180 s",
              "lastTransitionTime": T0, "observedGeneration": 1}
    result = merge_conditions([domain], st.progressing("Applying", "x"), generation=2, timestamp=T1)
    assert by_type(result)["HAEnabled"] == domain
    assert [c["type"] for c in result] == ["Ready", "Reconciling", "Stalled", "HAEnabled"]


def test_domain_conditions_sorted_after_the_kstatus_three() -> None:
    wanted = [ConditionState("VSwitchController", "True", "Set"), ConditionState("HAEnabled", "False", "Off"),
              *st.ready("Converged")]
    result = merge_conditions(None, wanted, generation=1, timestamp=T0)
    assert [c["type"] for c in result] == ["Ready", "Reconciling", "Stalled", "HAEnabled", "VSwitchController"]


def test_existing_list_is_not_modified() -> None:
    existing = [{"type": "Ready", "status": "True", "reason": "Converged", "message": "",
                 "lastTransitionTime": T0, "observedGeneration": 1}]
    snapshot = [dict(c) for c in existing]
    merge_conditions(existing, st.stalled("InvalidSpec", "bad"), generation=2, timestamp=T1)
    assert existing == snapshot


def test_garbage_in_existing_conditions_is_ignored() -> None:
    result = merge_conditions(["junk", None, 3], st.ready("Converged"), generation=1, timestamp=T0)  # type: ignore[list-item]
    assert [c["type"] for c in result] == ["Ready", "Reconciling", "Stalled"]


def test_message_becomes_one_line() -> None:
    message = "Traceback (most recent call last):\n  File \"x\", line 1\n\tValueError:   boom\r\n"
    result = merge_conditions(None, st.stalled("Broken", message), generation=1, timestamp=T0)
    text = by_type(result)["Ready"]["message"]
    assert "\n" not in text and "\r" not in text and "\t" not in text
    assert text == 'Traceback (most recent call last): File "x", line 1 ValueError: boom'


def test_long_message_truncated() -> None:
    result = merge_conditions(None, st.stalled("Broken", "word " * 1000), generation=1, timestamp=T0)
    text = by_type(result)["Stalled"]["message"]
    assert len(text) == st.MAX_MESSAGE
    assert text.endswith("…")


def test_message_at_the_limit_not_truncated() -> None:
    message = "x" * st.MAX_MESSAGE
    result = merge_conditions(None, st.stalled("Broken", message), generation=1, timestamp=T0)
    assert by_type(result)["Stalled"]["message"] == message


def test_default_timestamp_is_rfc3339_utc() -> None:
    result = merge_conditions(None, st.ready("Converged"), generation=1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", result[0]["lastTransitionTime"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", st.now())


@pytest.mark.parametrize(("helper", "expected"), [
    (st.ready, {"Ready": "True", "Reconciling": "False", "Stalled": "False"}),
    (st.progressing, {"Ready": "False", "Reconciling": "True", "Stalled": "False"}),
    (st.stalled, {"Ready": "False", "Reconciling": "False", "Stalled": "True"}),
    (st.unknown, {"Ready": "Unknown", "Reconciling": "False", "Stalled": "False"}),
])
def test_kstatus_triples(helper, expected: dict[str, str]) -> None:
    states = helper("SomeReason", "some message")
    assert {s.type: s.status for s in states} == expected
    assert [s.type for s in states] == ["Ready", "Reconciling", "Stalled"]
    assert all(s.reason == "SomeReason" for s in states)
    # The message goes on Ready and on whichever abnormal condition is True.
    for s in states:
        if s.type == "Ready" or s.status == "True":
            assert s.message == "some message"


def test_ready_never_reports_abnormal_conditions() -> None:
    states = {s.type: s for s in st.ready("Converged")}
    assert states["Reconciling"].status == "False" and states["Stalled"].status == "False"


def test_get_condition() -> None:
    status = {"conditions": merge_conditions(None, st.stalled("InvalidSpec", "bad"), generation=1, timestamp=T0)}
    assert st.get_condition(status, "Stalled")["status"] == "True"
    assert st.get_condition(status, "HAEnabled") is None
    assert st.get_condition(None, "Ready") is None
    assert st.get_condition({"conditions": None}, "Ready") is None


def test_enum_members_reach_status_as_plain_strings() -> None:
    """Condition types and reasons are StrEnum members in the code; status holds their plain values, which YAML's
    safe dumper (it refuses str subclasses) and JSON write as the strings they always were."""
    wanted = st.stalled(st.Reason.INVALID_SPEC, "spec.address: required") + [
        ConditionState(st.ConditionType.REACHABLE, "True", st.Reason.CONNECTED, "probed")]
    assert all(type(c.type) is str and type(c.reason) is str for c in wanted)
    status = {"conditions": merge_conditions(None, wanted, generation=2, timestamp=T0)}
    text = yaml.safe_dump(status)
    assert yaml.safe_load(text) == json.loads(json.dumps(status)) == status
    assert "reason: InvalidSpec" in text and "type: Reachable" in text and "Reason." not in text
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Reconciling", "Stalled", "Reachable"]
    assert st.get_condition(status, st.ConditionType.REACHABLE)["reason"] == "Connected"
    assert st.ConditionType.READY == "Ready" and f"{st.Reason.CONVERGING}" == "Converging"


def test_every_condition_type_and_common_reason_is_its_own_name() -> None:
    """The members' values are the strings status has always carried: CamelCase, one per member."""
    for enum_class in (st.ConditionType, st.Reason):
        values = [m.value for m in enum_class]
        assert len(values) == len(set(values))
        assert all(re.fullmatch(r"[A-Z][A-Za-z]+", v) for v in values)


def test_a_reconcile_error_carries_its_reason_as_a_plain_string() -> None:
    """What a ReconcileError carries goes to status, Events and `stackops plan`'s YAML and JSON."""
    error = ReconcileError(st.Reason.INSECURE_ENDPOINT, "not https", retry=False)
    assert type(error.reason) is str and error.reason == "InsecureEndpoint"
    partial = PartialApply(error, [])
    assert type(partial.reason) is str
    assert yaml.safe_dump({"reason": partial.reason}) == "reason: InsecureEndpoint\n"
