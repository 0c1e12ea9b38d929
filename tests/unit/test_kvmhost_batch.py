"""KvmHost round trips (batch.py): the actions of a stage folded into few commands, without a host. Inputs: the
probe output of a fresh host (support/kvmhost_probe), ovs-vsctl's messages captured on a lab host, and the fold's
script run by the local `sh`."""
from __future__ import annotations

import asyncio
import copy
import logging
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest

from support.kvmhost_probe import OWNER, probe_output
from support.specs import HOST_KEY
from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.ssh import CommandFailed, CommandResult
from stackops.reconcile.base import Context, PartialApply
from stackops.reconcile.engine import Stage
from stackops.reconcile.kvmhost import HostFacts, KvmHostReconciler
from stackops.reconcile.kvmhost.actions import (HostAction, InstallPackages, OvsCommand, RefreshPackageIndex,
                                                 RestartService, RunCommand, WriteFile)
from stackops.reconcile.kvmhost.batch import (DONE, OvsTransaction, Script, failed_action, fold, members,
                                               parse_done)
from stackops.reconcile.kvmhost.plan import plan
from stackops.reconcile.kvmhost.probe import parse

SPEC: dict[str, Any] = {
    "address": "10.250.0.11",
    "ssh": {"privateKeySecretRef": {"name": "k"}, "hostKey": HOST_KEY},
    "openvswitch": {"bridges": [{
        "name": "cloudbr0", "datapathType": "netdev", "mtu": 9000,
        "bonds": [{"name": "bond0", "interfaces": ["eno49", "eno50"]}],
        "vlanBridges": [{"name": "mgmt1", "vlan": 123, "addresses": ["10.251.123.1/24"]}, {"name": "st0", "vlan": 124}],
        "tunnels": [{"name": "vxlan0", "remoteIP": "10.250.0.12", "key": 5001}],
    }]},
    "cloudstackAgent": {"properties": {"network.bridge.type": "openvswitch"}, "logLevel": "DEBUG"},
}
FRESH = {"eth0": ["10.250.0.11/24"]}  # a fresh host: its management address on its NIC, no Open vSwitch object


def fresh_plan(**changes: Any) -> list[HostAction]:
    data = copy.deepcopy(SPEC)
    data.update(changes)
    return plan(KvmHostSpec.model_validate(data), parse(probe_output(empty_ovs=True, addresses=FRESH), 16509), OWNER)


def test_a_fresh_host_converges_in_at_most_four_round_trips() -> None:
    actions = fresh_plan()
    units = fold(actions)
    assert len(actions) >= 15 and len(units) <= 4, [type(u).__name__ for u in units]
    assert [a for u in units for a in members(u)] == actions  # every action once, in plan order
    assert [type(u) for u in units] == [OvsTransaction, Script, OvsCommand, Script]  # the addresses recorded
    assert all(isinstance(a, OvsCommand) for u in units if isinstance(u, OvsTransaction) for a in u.actions)


def test_package_work_is_never_folded() -> None:
    units = fold([RefreshPackageIndex("refresh"), InstallPackages("install a", packages=("a",)),
                  WriteFile("write /x", path="/x", content="x"), RestartService("restart s", service="s")])
    assert [type(u) for u in units] == [RefreshPackageIndex, InstallPackages, Script]


def test_a_run_of_one_stays_the_action() -> None:
    alone = OvsCommand("create bridge b", args=("add-br", "b"))
    assert fold([alone, RunCommand("true", command=("true",))]) == [alone, RunCommand("true", command=("true",))]


def test_the_transaction_separates_commands_with_double_dashes() -> None:
    units = fold([OvsCommand("a", args=("add-br", "b", "--", "set", "Bridge", "b", "datapath_type=netdev")),
                  OvsCommand("m", args=("set", "Interface", "b", "mtu_request=9000"))])
    assert units[0].argv() == ("ovs-vsctl", "--timeout=30", "add-br", "b", "--", "set", "Bridge", "b",
                               "datapath_type=netdev", "--", "set", "Interface", "b", "mtu_request=9000")


# Captured on a lab host (ovs-vsctl 3.1): each transaction failed and left the database unchanged.
@pytest.mark.parametrize("message, expected", [
    ("ovs-vsctl: no bridge named nosuchbr\n", "add vx0"),
    ('ovs-vsctl: no row "eno50" in table Interface\n', "set MTU of eno50"),
    ("ovs-vsctl: cannot create a bridge named cloudbr0 because a bridge named cloudbr0 already exists\n", None),
    ("ovs-vsctl: transaction error: {\"details\":\"...\",\"error\":\"constraint violation\"}\n", None),
])
def test_the_failed_action_is_the_one_ovs_vsctl_names(message: str, expected: str | None) -> None:
    transaction = OvsTransaction((
        OvsCommand("create bridge cloudbr0", args=("add-br", "cloudbr0")),
        OvsCommand("add eno49", args=("add-port", "cloudbr0", "eno49")),
        OvsCommand("add vx0", args=("add-port", "nosuchbr", "vx0")),
        OvsCommand("set MTU of eno50", args=("set", "Interface", "eno50", "mtu_request=9000"))))
    failed = failed_action(transaction, message)
    assert (failed.describe() if failed else None) == expected


@dataclass(frozen=True)
class Echo(HostAction):
    """A command for the local sh: prints its stdin (when it has one), then exits with `status`."""

    data: str | None = None
    status: int = 0

    def argv(self) -> tuple[str, ...]:
        return ("sh", "-c", f"cat; echo ' done'; exit {self.status}")

    def stdin(self) -> str | None:
        return self.data


def test_the_script_runs_in_order_and_stops_at_the_first_failure() -> None:
    script = Script((Echo("one", data="it's $HOME"), Echo("two", status=3), Echo("three")))
    result = subprocess.run(["sh", "-s"], input=script.text(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 3
    assert result.stdout == f"{DONE} 1\n" and parse_done(result.stdout) == 1
    assert result.stderr == "== one\nit's $HOME done\n== two\n done\n"


class FakeConnection:
    """Answers commands as a host would, counting round trips; `fail`: (round trip number, stdout, stderr)."""

    def __init__(self, fail: tuple[int, str, str] | None = None):
        self.calls: list[str] = []
        self.fail = fail

    async def _answer(self, label: str) -> CommandResult:
        self.calls.append(label)
        if self.fail is not None and self.fail[0] == len(self.calls):
            result = CommandResult(1, self.fail[1], self.fail[2])
            raise CommandFailed(f"{label} exited with status 1", host="kvm1", argv=label, exit_status=1,
                                stderr_tail=self.fail[2], result=result)
        return CommandResult(0, "", "")

    async def run(self, argv: Any, *, label: str = "", **_: Any) -> CommandResult:
        return await self._answer(label)



def run(conn: FakeConnection, actions: list[HostAction], events: list) -> list:
    ctx = Context(namespace="lab", name="kvm1", generation=1, spec=KvmHostSpec.model_validate(SPEC), status={},
                  secrets={}, event=lambda *e: events.append(e), logger=logging.getLogger("test"))
    view = HostFacts(owner=OWNER, host=parse(probe_output(), 16509))
    reconciler = KvmHostReconciler(pool=None)  # type: ignore[arg-type]
    done = asyncio.run(reconciler.run_stage(ctx, conn, Stage("host", tuple(actions)), view))  # type: ignore[arg-type]
    return done


def test_the_reconciler_applies_a_fresh_host_in_few_round_trips_with_one_event_per_action() -> None:
    actions = fresh_plan()
    conn, events = FakeConnection(), []
    done = run(conn, actions, events)
    assert len(conn.calls) <= 4, conn.calls
    assert done == actions
    assert events == [("Normal", "Applied", a.describe()) for a in actions]


def test_a_failed_transaction_applied_nothing_and_names_the_action() -> None:
    actions = fresh_plan()
    events: list = []
    with pytest.raises(PartialApply) as failed:
        run(FakeConnection(fail=(1, "", 'ovs-vsctl: no row "vxlan0" in table Interface\n')), actions, events)
    what = "create vxlan port vxlan0 to 10.250.0.12 on cloudbr0"
    assert failed.value.applied == []
    assert str(failed.value) == (f'{what} exited with status 1 on kvm1: ovs-vsctl: no row "vxlan0" in table '
                                 "Interface; nothing of the transaction was applied")
    assert events == [("Warning", "CommandFailed", f"{what} failed: {failed.value}")]


def test_a_failed_transaction_names_the_batch_when_ovs_vsctl_names_no_single_action() -> None:
    actions = fresh_plan()
    with pytest.raises(PartialApply) as failed:
        run(FakeConnection(fail=(1, "", 'ovs-vsctl: no row "eno50" in table Interface\n')), actions, [])
    assert failed.value.applied == []
    assert str(failed.value).startswith("one Open vSwitch transaction of 8 changes (create bridge cloudbr0")
    assert str(failed.value).endswith('ovs-vsctl: no row "eno50" in table Interface; nothing of the transaction '
                                      "was applied")


def test_a_failed_script_applied_the_commands_before_the_failing_one() -> None:
    actions = fresh_plan()
    units = fold(actions)
    script = units[1]
    assert isinstance(script, Script) and len(script.actions) >= 2
    second = script.actions[1].describe()
    conn = FakeConnection(fail=(2, f"{DONE} 1\n", f"== {script.actions[0].describe()}\n== {second}\nRTNETLINK "
                                                  "answers: File exists\n"))
    events: list = []
    with pytest.raises(PartialApply) as failed:
        run(conn, actions, events)
    expected = [*members(units[0]), script.actions[0]]
    assert failed.value.applied == expected
    assert str(failed.value) == f"{second} exited with status 1 on kvm1: RTNETLINK answers: File exists"
    assert events == [*(("Normal", "Applied", a.describe()) for a in expected),
                      ("Warning", "CommandFailed", f"{second} failed: {failed.value}")]
