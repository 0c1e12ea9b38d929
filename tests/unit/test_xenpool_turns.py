"""The pure plan of a XenPool's rolling maintenance (turns.plan_roll) on hand-built facts: the order of the turns
(master first, then the spec's order), the updates each host lacks, whether it reboots (an update's guidance, updates
waiting for a reboot, restartAfter against its boot_time), what stops a roll from being planned (no boot_time, the
same request failed already), and the roll as `stackops plan` lists it."""
from __future__ import annotations

import datetime
from typing import Any

from stackops.api.xenpool import HostTurn, RollStatus, XenPoolSpec
from stackops.drivers.xenapi import XenAPIError
from stackops.reconcile.xenpool.actions import EndRoll, HostTurnAction, StartRoll, UploadUpdate
from stackops.reconcile.xenpool.observed import SR, Host, PoolFacts, Update
from stackops.reconcile.xenpool.roll import actions, comes_first, progress
from stackops.reconcile.xenpool.turns import plan_roll

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SHA = "0" * 64


def epoch(hour: int) -> str:
    """A boot_time as xapi writes it (OCaml's string_of_float) for that hour of NOW's day."""
    return f"{NOW.replace(hour=hour).timestamp():.0f}."


def update(name: str) -> dict[str, Any]:
    return {"name": name, "url": f"http://updates.example/{name}.iso", "sha256": SHA}


def spec(members: int = 4, **maintenance: Any) -> XenPoolSpec:
    return XenPoolSpec.model_validate({
        "members": [{"name": f"xen{i}", "address": f"10.0.0.{i}"} for i in range(1, members + 1)],
        "credentialsSecretRef": {"name": "xen"},
        "tls": {"insecureSkipVerify": True},
        "maintenance": maintenance,
    })


def host(i: int, **changes: Any) -> Host:
    values: dict[str, Any] = dict(ref=f"h{i}", uuid=f"uuid-{i}", name_label=f"xen{i}", address=f"10.0.0.{i}",
                                  enabled=True, live=True, boot_time=epoch(8))
    values.update(changes)
    return Host(**values)


def facts(hosts: list[Host], master: int = 1, updates: dict[str, tuple[str, ...]] | None = None,
          **changes: Any) -> PoolFacts:
    """`updates`: the updates the pool knows (uploaded), name → after_apply_guidance."""
    values: dict[str, Any] = dict(
        pool_ref="p", pool_uuid="pool-uuid", master_ref=f"h{master}", ha_enabled=True,
        ha_configuration={"timeout": "180"}, ha_statefiles=["vdi"], ha_host_failures_to_tolerate=1,
        ha_plan_exists_for=1, ha_overcommitted=False, ha_allow_overcommit=True, vswitch_controller="",
        hosts={h.ref: h for h in hosts}, srs={"sr1": SR("sr1", "sr-uuid", "nfs-pri", "nfs", True)},
        vms_with_priority=[], heartbeat_sr_uuids=["sr-uuid"],
        updates={name: Update(f"ref-{name}", f"uuid-{name}", name, guidance)
                 for name, guidance in (updates or {}).items()})
    values.update(changes)
    return PoolFacts(**values)


def four(**per_host: Any) -> list[Host]:
    """xen1..xen4; `per_host`: {"xen2": {"updates": (…)}, …}."""
    return [host(i, **per_host.get(f"xen{i}", {})) for i in range(1, 5)]


def by_name(roll: Any) -> dict[str, Any]:
    return {t.name: t for t in roll.turns}


# ---------------------------------------------------------------------------------------------------- order, updates


def test_the_master_goes_first_then_the_spec_order_whatever_the_pool_lists() -> None:
    hosts = four()
    pool = facts(list(reversed(hosts)), master=3, updates={"U1": ("restartHost",)})
    roll = plan_roll(spec(updates=[update("U1")]), pool, NOW)
    assert [t.name for t in roll.turns] == ["xen3", "xen1", "xen2", "xen4"]
    assert [t.master for t in roll.turns] == [True, False, False, False]
    assert [t.address for t in roll.turns] == ["10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.4"]


def test_a_host_not_in_the_spec_has_no_turn() -> None:
    pool = facts([*four(), host(9)], updates={"U1": ()})
    roll = plan_roll(spec(updates=[update("U1")]), pool, NOW)
    assert [t.name for t in roll.turns] == ["xen1", "xen2", "xen3", "xen4"]


def test_each_host_lacks_what_it_has_not_applied_in_spec_order() -> None:
    pool = facts(four(xen2={"updates": ("U2",)}, xen3={"updates": ("U1", "U2", "U3")}, xen4={"updates": ("U3",)}),
                 updates={"U1": (), "U2": (), "U3": ()})
    roll = plan_roll(spec(updates=[update("U3"), update("U1"), update("U2")]), pool, NOW)
    turns = by_name(roll)
    assert turns["xen1"].updates == ("U3", "U1", "U2")
    assert turns["xen2"].updates == ("U3", "U1")
    assert turns["xen3"].updates == () and not turns["xen3"].work
    assert turns["xen4"].updates == ("U1", "U2")
    assert roll.uploads == [] and roll.problems == [] and roll.request == "updates U3, U1, U2"


def test_updates_not_uploaded_yet_are_the_uploads() -> None:
    pool = facts(four(), updates={"U1": ()})
    roll = plan_roll(spec(updates=[update("U1"), update("U2")]), pool, NOW)
    assert [u.name for u in roll.uploads] == ["U2"]
    assert by_name(roll)["xen1"].updates == ("U1", "U2")


# ---------------------------------------------------------------------------------------------------- reboots


def test_a_host_reboots_when_an_update_it_lacks_says_restart_host() -> None:
    pool = facts(four(xen2={"updates": ("U1",)}), updates={"U1": ("restartHost",), "U2": ("restartXAPI",)})
    turns = by_name(plan_roll(spec(updates=[update("U1"), update("U2")]), pool, NOW))
    assert turns["xen1"].reboot is True and turns["xen1"].why == ("U1 asks for a host restart",)
    assert turns["xen2"].reboot is False, "U1 (restartHost) is applied there already; U2 says restartXAPI only"
    assert turns["xen2"].updates == ("U2",) and turns["xen2"].work


def test_reboot_is_unknown_until_the_update_is_uploaded() -> None:
    pool = facts(four(xen4={"updates": ("U2",)}), updates={"U1": ()})
    turns = by_name(plan_roll(spec(updates=[update("U1"), update("U2")]), pool, NOW))
    assert turns["xen1"].reboot is None and turns["xen1"].work
    assert turns["xen4"].reboot is False, "xen4 lacks only U1, whose guidance is known"


def test_a_known_restart_wins_over_an_unknown_guidance() -> None:
    pool = facts(four(), updates={"U1": ("restartHost",)})
    turns = by_name(plan_roll(spec(updates=[update("U1"), update("U2")]), pool, NOW))
    assert turns["xen1"].reboot is True


def test_updates_waiting_for_a_reboot_reboot_the_host_when_asked() -> None:
    pool = facts(four(xen2={"updates": ("U1",), "requiring_reboot": ("U1",)},
                      xen3={"updates": ("U1",)}, xen1={"updates": ("U1",)}, xen4={"updates": ("U1",)}),
                 updates={"U1": ("restartHost",)})
    turns = by_name(plan_roll(spec(updates=[update("U1")], rebootWhenRequired=True), pool, NOW))
    assert turns["xen2"].reboot is True and turns["xen2"].updates == ()
    assert turns["xen2"].why == ("U1 wait(s) for a reboot",)
    assert [n for n, t in turns.items() if t.work] == ["xen2"]
    off = by_name(plan_roll(spec(updates=[update("U1")]), pool, NOW))
    assert not any(t.work for t in off.values()), "rebootWhenRequired is off by default: nothing to do"


def test_restart_after_reboots_the_hosts_booted_before_it_only() -> None:
    pool = facts(four(xen2={"boot_time": epoch(11)}, xen4={"boot_time": epoch(11)}))
    roll = plan_roll(spec(restartAfter="2026-12-07T10:00:00Z"), pool, NOW)
    turns = by_name(roll)
    assert {n: t.reboot for n, t in turns.items()} == {"xen1": True, "xen2": False, "xen3": True, "xen4": False}
    assert turns["xen1"].why == ("booted before 2026-12-07T10:00:00Z",)
    assert roll.request == "restart after 2026-12-07T10:00:00Z" and roll.not_yet == "" and roll.uploads == []


def test_restart_after_in_another_time_zone_is_the_same_moment() -> None:
    pool = facts(four(xen1={"boot_time": epoch(9)}, xen2={"boot_time": epoch(11)}))
    turns = by_name(plan_roll(spec(restartAfter="2026-12-07T11:30:00+01:00"), pool, NOW))  # 10:30 UTC
    assert turns["xen1"].reboot is True and turns["xen2"].reboot is False


def test_restart_after_in_the_future_plans_nothing_yet_and_says_so() -> None:
    roll = plan_roll(spec(restartAfter="2026-12-07T13:00:00Z"), facts(four()), NOW)
    assert not roll.work and not any(t.work for t in roll.turns)
    assert "2026-12-07T13:00:00Z" in roll.not_yet and roll.problems == []


def test_a_host_without_boot_time_is_a_problem_for_restart_after() -> None:
    roll = plan_roll(spec(restartAfter="2026-12-07T10:00:00Z"), facts(four(xen3={"boot_time": ""})), NOW)
    assert [p.reason for p in roll.problems] == ["BootTimeUnknown"]
    assert "xen3" in roll.problems[0].message
    garbled = plan_roll(spec(restartAfter="2026-12-07T10:00:00Z"), facts(four(xen2={"boot_time": "soon"})), NOW)
    assert [p.reason for p in garbled.problems] == ["BootTimeUnknown"] and "xen2" in garbled.problems[0].message


def test_no_boot_time_matters_only_with_restart_after() -> None:
    roll = plan_roll(spec(updates=[update("U1")]), facts(four(xen3={"boot_time": ""}), updates={"U1": ()}), NOW)
    assert roll.problems == []


def test_every_reason_to_reboot_is_listed() -> None:
    pool = facts(four(xen1={"requiring_reboot": ("U0",)}), updates={"U1": ("restartHost",)})
    turn = by_name(plan_roll(spec(updates=[update("U1")], restartAfter="2026-12-07T10:00:00Z",
                                  rebootWhenRequired=True), pool, NOW))["xen1"]
    assert turn.reboot is True
    assert turn.why == ("U1 asks for a host restart", "U0 wait(s) for a reboot", "booted before 2026-12-07T10:00:00Z")


# ---------------------------------------------------------------------------------------------------- the last roll


def failed(request: str, generation: int) -> RollStatus:
    return RollStatus(request=request, phase="Failed", generation=generation, reason="CANNOT_EVACUATE_HOST",
                      message="host xen2, step Evacuating: CANNOT_EVACUATE_HOST")


def test_a_failed_roll_of_the_same_request_and_generation_is_a_problem_not_a_new_roll() -> None:
    pool = facts(four(), updates={"U1": ("restartHost",)})
    the_spec = spec(updates=[update("U1")])
    roll = plan_roll(the_spec, pool, NOW, failed("updates U1", 3), generation=3)
    assert roll.turns == [] and roll.uploads == [] and not roll.work
    assert [(p.reason, p.message) for p in roll.problems] == [
        ("CANNOT_EVACUATE_HOST", "host xen2, step Evacuating: CANNOT_EVACUATE_HOST")]


def test_a_failed_roll_is_tried_again_for_a_new_generation_or_another_request() -> None:
    pool = facts(four(), updates={"U1": ("restartHost",)})
    the_spec = spec(updates=[update("U1")])
    again = plan_roll(the_spec, pool, NOW, failed("updates U1", 3), generation=4)
    assert again.problems == [] and [t.reboot for t in again.turns] == [True] * 4
    other = plan_roll(the_spec, pool, NOW, failed("updates U0", 3), generation=3)
    assert other.problems == [] and other.work


def test_completed_or_paused_rolls_do_not_stop_the_plan() -> None:
    pool = facts(four(), updates={"U1": ("restartHost",)})
    for phase in ("Completed", "Paused"):
        last = RollStatus(request="updates U1", phase=phase, generation=3)
        assert plan_roll(spec(updates=[update("U1")]), pool, NOW, last, generation=3).work


def test_a_converged_pool_plans_nothing() -> None:
    done = {"updates": ("U1", "U2"), "boot_time": epoch(11)}
    pool = facts(four(xen1=done, xen2=done, xen3=done, xen4=done), updates={"U1": ("restartHost",), "U2": ()})
    the_spec = spec(updates=[update("U1"), update("U2")], restartAfter="2026-12-07T10:00:00Z")
    roll = plan_roll(the_spec, pool, NOW, RollStatus(request="x", phase="Completed"), generation=1)
    assert not roll.work and roll.problems == [] and roll.not_yet == ""
    assert actions(the_spec, pool, roll, cloudstack=True) == []


def test_no_maintenance_plans_nothing() -> None:
    roll = plan_roll(spec(), facts(four()), NOW)
    assert roll.request == "" and roll.turns == [] and not roll.work


# ---------------------------------------------------------------------------------------------------- as listed


def test_the_whole_roll_is_listed_with_the_disruptive_steps_marked() -> None:
    pool = facts(four(xen2={"updates": ("U1",)}), master=2, updates={"U1": ("restartHost",), "U2": ()})
    the_spec = spec(updates=[update("U1"), update("U2"), update("U3")])
    roll = plan_roll(the_spec, pool, NOW)
    listed = actions(the_spec, pool, roll, cloudstack=True)
    assert [type(a) for a in listed] == [UploadUpdate, StartRoll, HostTurnAction, HostTurnAction, HostTurnAction,
                                         HostTurnAction, EndRoll]
    assert [a.disruptive for a in listed] == [False, True, True, True, True, True, False]
    text = [a.describe() for a in listed]
    assert "download update U3" in text[0] and "/import_raw_vdi" in text[0]
    assert "4 host(s)" in text[1] and "disable HA" in text[1]
    master = text[2]
    assert master.startswith("host xen2 (master): CloudStack maintenance (cluster Unmanaged for its turn)")
    assert "apply U2, U3" in master and "reboot if an update's guidance says restartHost" in master
    assert text[3].startswith("host xen1: ") and "apply U1, U2, U3" in text[3]
    assert "reboot and wait until it is back and enabled" in text[3]
    assert "Up in CloudStack, maintenance cancelled" in text[3]
    assert text[4].startswith("host xen3: ") and text[5].startswith("host xen4: ")
    assert text[6] == "end the roll: enable HA again as it was recorded"
    assert [a.record()["disruptive"] for a in listed[1:6]] == [True] * 5


def test_a_turn_without_reboot_is_listed_as_applied_in_place() -> None:
    pool = facts(four(), updates={"U2": ()}, ha_enabled=False)
    the_spec = spec(updates=[update("U2")])
    listed = actions(the_spec, pool, plan_roll(the_spec, pool, NOW), cloudstack=True)
    turn = listed[1].describe()
    assert turn == "host xen1 (master): apply U2", turn
    assert listed[-1].describe() == "end the roll: HA stays off as it was"
    assert "disable HA" not in listed[0].describe()


def test_a_legacy_pool_lists_the_pool_patch_upload() -> None:
    pool = facts(four(xen1={"product_version": "6.5.0"}))
    the_spec = spec(updates=[update("XS65E001")])
    listed = actions(the_spec, pool, plan_roll(the_spec, pool, NOW), cloudstack=False)
    assert "/pool_patch_upload" in listed[0].describe()


def test_progress_names_the_host_and_its_step() -> None:
    hosts = [HostTurn(name="xen1", step="Done"), HostTurn(name="xen2", step="Rebooting"),
             HostTurn(name="xen3"), HostTurn(name="xen4")]
    assert progress(RollStatus(hosts=hosts)) == "1/4 xen2 Rebooting"
    assert progress(RollStatus(hosts=[HostTurn(name="xen1"), HostTurn(name="xen2")])) == "0/2 xen1 Pending"
    assert progress(RollStatus(hosts=[HostTurn(name="xen1", step="Done")])) == "1/1 restoring HA"
    for phase in ("Completed", "Failed", "Paused"):
        assert progress(RollStatus(phase=phase, hosts=hosts)) == phase


def test_a_precheck_missing_only_what_the_turn_applies_first_does_not_stop_the_roll() -> None:
    sp1, hotfix = Update("r1", "uuid-sp1", "XS65ESP1", ()), Update("r2", "uuid-hf", "XS65ESP1005", ())

    def missing(code: str, which: str) -> XenAPIError:
        return XenAPIError("pool_patch.precheck", code, ["OpaqueRef:p", which])

    assert comes_first(missing("PATCH_PRECHECK_FAILED_PREREQUISITE_MISSING", "uuid-sp1"), [sp1])  # 6.x: by uuid
    assert comes_first(missing("UPDATE_PRECHECK_FAILED_PREREQUISITE_MISSING", "XS65ESP1"), [sp1, hotfix])  # by name
    assert not comes_first(missing("UPDATE_PRECHECK_FAILED_PREREQUISITE_MISSING", "XS65ESP1;XS65E009"), [sp1])
    assert not comes_first(missing("UPDATE_PRECHECK_FAILED_PREREQUISITE_MISSING", "XS65ESP1"), [])
    assert not comes_first(missing("UPDATE_PRECHECK_FAILED_CONFLICT_PRESENT", "XS65ESP1"), [sp1])
    assert not comes_first(XenAPIError("pool_update.precheck", "UPDATE_PRECHECK_FAILED_PREREQUISITE_MISSING"), [sp1])
