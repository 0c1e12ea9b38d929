"""The pure part of the SystemVMTemplate rollout: stages, router choice, budgets and maintenance windows."""
from __future__ import annotations

import datetime

import pytest

from stackops.api.systemvmtemplate import MaintenanceWindow, SystemVMTemplateSpec
from stackops.reconcile.systemvmtemplate.actions import (
    DeleteTemplate,
    RegisterTemplate,
    ReplaceSystemVM,
    SetConfiguration,
)
from stackops.reconcile.systemvmtemplate.observed import CloudState, Router, SystemVM, Template, older, version_key
from stackops.reconcile.systemvmtemplate import plan as planner
from stackops.reconcile.systemvmtemplate.plan import budget, choose_routers
from stackops.reconcile.window import window_state

SUM = "{SHA-512}" + "ab" * 64


def spec(**rollout) -> SystemVMTemplateSpec:
    return SystemVMTemplateSpec.model_validate({
        "cloudstack": {"secretRef": {"name": "cs"}},
        "version": "4.19.1",
        "templates": [{"hypervisor": "KVM", "url": "http://images.lab/kvm.qcow2.bz2", "checksum": SUM,
                       "format": "QCOW2"}],
        "rollout": {"routers": {"maxUnavailable": 2, **rollout}},
    })


def router(n: int, *, version="4.18.0", state="Running", pair="", role="", zone="z1", hv="KVM") -> Router:
    return Router(id=f"r{n}", name=f"r-{n}-VM", state=state, zone_id=zone, hypervisor=hv, version=version,
                  requires_upgrade=older(version, "4.19.1"), redundant=bool(pair), redundant_state=role,
                  pair=pair or f"net{n}", network=f"net-{n}", account="acct", domain="ROOT")


def ready_template(zone="z1") -> Template:
    return Template(id=f"t-{zone}", name="systemvm-kvm-4.19.1", zone_id=zone, hypervisor="KVM", ready=True,
                    status="Download Complete", checksum=SUM, url="http://images.lab/kvm.qcow2.bz2")


def activated(zone="z1") -> dict[str, str]:
    return {"router.template.kvm": "systemvm-kvm-4.19.1", "minreq.sysvmtemplate.version": "4.19.1"}


def observed(*, templates=None, config=None, system_vms=None, routers=()) -> CloudState:
    return CloudState(zones={"zone-1": "z1"}, templates=templates if templates is not None else [ready_template()],
                      config=config if config is not None else {"z1": activated()},
                      system_vms=system_vms if system_vms is not None else [
                          SystemVM("s1", "s-1-VM", "secondarystoragevm", "Running", "z1", "KVM", "t-z1"),
                          SystemVM("v1", "v-2-VM", "consoleproxy", "Running", "z1", "KVM", "t-z1")],
                      routers=list(routers))


def test_versions_compare_numerically_and_unknown_is_older() -> None:
    assert version_key("4.19.1") == (4, 19, 1, 0)
    assert older("4.9.0", "4.19.1") and not older("4.19.1.0", "4.19.1") and not older("4.20", "4.19.1")
    assert older("UNKNOWN", "4.19.1")


def test_missing_template_is_registered_first_and_nothing_else_is_planned() -> None:
    plan = planner.plan(spec(), observed(templates=[], config={}, routers=[router(1)]))
    assert plan.stage == "Registering"
    assert [type(a) for a in plan.registrations] == [RegisterTemplate]
    assert plan.registrations[0].zone_id == "z1" and plan.registrations[0].name == "systemvm-kvm-4.19.1"
    assert plan.settings == [] and plan.routers_todo == []


def test_a_downloading_template_is_waited_for() -> None:
    downloading = Template("t-z1", "systemvm-kvm-4.19.1", "z1", "KVM", False, "35% Downloaded", SUM)
    plan = planner.plan(spec(), observed(templates=[downloading], config={}))
    assert plan.stage == "Registering" and plan.registrations == [] and plan.downloading == [downloading]


def test_an_existing_template_with_the_same_checksum_is_reused_whatever_the_checksum_notation() -> None:
    for shown in ("{sha-512}" + "AB" * 64, "AB" * 64):  # CloudStack may show the digest without its prefix
        plan = planner.plan(spec(), observed(templates=[
            Template("t-z1", "systemvm-kvm-4.19.1", "z1", "KVM", True, "", shown)]))
        assert plan.registrations == [] and plan.problems == [], shown
    other_sum = Template("t-z1", "systemvm-kvm-4.19.1", "z1", "KVM", True, "Download Complete", "cd" * 64)
    other = planner.plan(spec(), observed(templates=[other_sum], system_vms=[]))
    assert [type(a) for a in other.registrations] == [DeleteTemplate, RegisterTemplate]
    in_use = planner.plan(spec(), observed(templates=[other_sum]))  # and system VMs run it: never deleted
    assert in_use.registrations == [] and "another checksum" in in_use.problems[0]


def test_a_failed_download_with_the_spec_checksum_stalls_and_a_changed_checksum_replaces_it() -> None:
    failed = Template("t-z1", "systemvm-kvm-4.19.1", "z1", "KVM", False, "Failed: checksum mismatch", SUM,
                      "http://images.lab/kvm.qcow2.bz2")
    plan = planner.plan(spec(), observed(templates=[failed], system_vms=[]))
    assert plan.stage == "Failed" and "checksum mismatch" in plan.problems[0]
    other = Template("t-old", "systemvm-kvm-4.19.1", "z1", "KVM", True, "", "{SHA-512}" + "cd" * 64)
    plan = planner.plan(spec(), observed(templates=[other], system_vms=[]))
    assert [type(a) for a in plan.registrations] == [DeleteTemplate, RegisterTemplate]


def test_unknown_zone_is_a_problem() -> None:
    s = SystemVMTemplateSpec.model_validate({**spec().model_dump(by_alias=True, exclude_none=True),
                                             "templates": [{**spec().templates[0].model_dump(by_alias=True,
                                                                                              mode="json",
                                                                                              exclude_none=True),
                                                            "zones": ["nowhere"]}]})
    plan = planner.plan(s, observed())
    assert plan.stage == "Failed" and "nowhere" in plan.problems[0]


def test_activation_sets_router_template_and_minimum_version_per_zone() -> None:
    plan = planner.plan(spec(), observed(config={"z1": {"router.template.kvm": "systemvm-kvm-4.18.0"}}))
    assert plan.stage == "Activating"
    assert {(a.setting, a.value) for a in plan.settings} == {("router.template.kvm", "systemvm-kvm-4.19.1"),
                                                             ("minreq.sysvmtemplate.version", "4.19.1")}
    assert all(isinstance(a, SetConfiguration) for a in plan.settings)


def test_system_vms_are_replaced_one_at_a_time_per_zone() -> None:
    old = [SystemVM("s1", "s-1-VM", "secondarystoragevm", "Running", "z1", "KVM", "t-old"),
           SystemVM("v1", "v-2-VM", "consoleproxy", "Running", "z1", "KVM", "t-old")]
    plan = planner.plan(spec(), observed(system_vms=old))
    assert plan.stage == "ReplacingSystemVMs"
    assert plan.system_vms == [ReplaceSystemVM("s1", "s-1-VM", "secondarystoragevm", "zone-1")]
    # the SSVM was destroyed and its replacement is not there yet: wait, do not destroy the console proxy
    plan = planner.plan(spec(), observed(system_vms=old[1:]), ["zone-1/secondarystoragevm", "zone-1/consoleproxy"])
    assert plan.system_vms == [] and plan.system_vms_waiting == ["zone-1"]
    starting = [SystemVM("s9", "s-9-VM", "secondarystoragevm", "Starting", "z1", "KVM", "t-z1"), old[1]]
    assert planner.plan(spec(), observed(system_vms=starting)).system_vms == []
    done = [SystemVM("s9", "s-9-VM", "secondarystoragevm", "Running", "z1", "KVM", "t-z1"), old[1]]
    assert [a.id for a in planner.plan(spec(), observed(system_vms=done)).system_vms] == ["v1"]


def test_routers_needing_the_version_are_todo_and_stopped_ones_skipped() -> None:
    routers = [router(1), router(2, version="4.19.1"), router(3, state="Stopped"), router(4, hv="XenServer")]
    plan = planner.plan(spec(), observed(routers=routers))
    assert plan.stage == "UpgradingRouters"
    assert [r.id for r in plan.routers_todo] == ["r1"]
    assert [r.id for r in plan.routers_skipped] == ["r3"]
    assert plan.routers_upgraded == 1 and len(plan.routers_in_scope) == 3  # XenServer has no template here
    assert planner.plan(spec(), observed(routers=[router(2, version="4.19.1")])).stage == "Complete"


def test_budget_counts_and_percentages() -> None:
    assert budget(5, 100) == 5 and budget("10%", 500) == 50 and budget("10%", 5) == 1 and budget("100%", 7) == 7


def test_choose_routers_respects_slots_busy_and_blocked() -> None:
    todo = [router(n) for n in range(1, 6)]
    assert [r.id for r in choose_routers(todo, todo, set(), 2, blocked=set())] == ["r1", "r2"]
    assert [r.id for r in choose_routers(todo, todo, {"r1"}, 2, blocked={"r2"})] == ["r3", "r4"]
    assert choose_routers(todo, todo, set(), 0, blocked=set()) == []


def test_redundant_pair_backup_first_never_both() -> None:
    primary = router(1, pair="p", role="PRIMARY")
    backup = router(2, pair="p", role="BACKUP")
    todo = [primary, backup]
    chosen = choose_routers(todo, todo, set(), 10, blocked=set())
    assert [r.id for r in chosen] == ["r2"]  # only the BACKUP, although there are slots for both
    assert choose_routers([primary], todo, {"r2"}, 10, blocked=set()) == []  # its BACKUP is rebooting
    assert [r.id for r in choose_routers([primary], todo, set(), 10, blocked=set())] == ["r1"]  # BACKUP done
    down = router(2, pair="p", role="BACKUP", state="Stopped", version="4.19.1")
    assert choose_routers([primary], [primary, down], set(), 10, blocked=set()) == []  # peer down: wait
    assert [r.id for r in choose_routers(todo, todo, set(), 10, blocked=set(), respect_pairs=False)] == ["r2", "r1"]


def test_backoff_of_the_backup_lets_the_primary_wait_but_a_failed_backup_does_not_block_it() -> None:
    primary, backup = router(1, pair="p", role="PRIMARY"), router(2, pair="p", role="BACKUP")
    assert [r.id for r in choose_routers([primary, backup], [primary, backup], set(), 5, blocked={"r2"})] == ["r1"]


def window(**kw) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate({"start": "22:00", "durationMinutes": 120, **kw})


def test_maintenance_window_open_closed_and_across_midnight() -> None:
    utc = datetime.timezone.utc
    w = window(days=["Sat"])
    saturday_late = datetime.datetime(2026, 11, 21, 23, 0, tzinfo=utc)  # a Saturday
    state = window_state(w, saturday_late)
    assert state.open and state.closes == datetime.datetime(2026, 11, 22, 0, 0, tzinfo=utc)
    sunday_early = datetime.datetime(2026, 11, 22, 0, 30, tzinfo=utc)  # still Saturday's window? no: it closed 00:00
    assert not window_state(w, sunday_early).open
    long = window(days=["Sat"], durationMinutes=180)
    assert window_state(long, sunday_early).open  # Saturday 22:00 + 3 h covers Sunday 00:30
    friday = datetime.datetime(2026, 11, 20, 12, 0, tzinfo=utc)
    state = window_state(w, friday)
    assert not state.open and state.next_open == datetime.datetime(2026, 11, 21, 22, 0, tzinfo=utc)
    assert window_state(None, friday).open


def test_maintenance_window_in_a_time_zone() -> None:
    w = window(days=["Sat"], timeZone="Europe/Amsterdam")  # 22:00 CET = 21:00 UTC in November
    at = datetime.datetime(2026, 11, 21, 21, 30, tzinfo=datetime.timezone.utc)
    assert window_state(w, at).open


@pytest.mark.parametrize("stage_routers,expected", [([router(1)], "UpgradingRouters"), ([], "Complete")])
def test_observe_drift_lists_routers(stage_routers, expected) -> None:
    plan = planner.plan(spec(), observed(routers=stage_routers))
    assert plan.stage == expected
    assert len(plan.actions()) == len(stage_routers)
