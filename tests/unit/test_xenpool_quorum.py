"""XenPool master failover on the supporters' word, not the operator's: the pure decision (quorum.decide) on
observed views, the failover pass with a stand-in dom0 SSH (no transition on the operator's view alone, the delay
counted from the supporters' agreement), and the dom0 probe script run by the real `sh`, `bash` and `timeout`."""
from __future__ import annotations

import asyncio
import datetime
import logging
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from support.credentials import secret

from stackops.api.xenpool import XenPoolSpec
from stackops.drivers.ssh import CommandResult, SSHTimeout
from stackops.drivers.xenapi import Endpoint, XenNoMaster
from stackops.reconcile.base import Context, Outcome
from stackops.reconcile.xenpool import XenPoolReconciler, failover
from stackops.reconcile.xenpool.quorum import SupporterView, decide
from stackops.reconcile.xenpool.reach import PROBE

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
MASTER = "10.0.0.1"


def spec(members: int = 4, ssh: bool = True, **changes: Any) -> XenPoolSpec:
    data: dict[str, Any] = {
        "members": [{"name": f"xen{i}", "address": f"10.0.0.{i}", **({"sshHostKey": KEY} if ssh else {})}
                    for i in range(1, members + 1)],
        "credentialsSecretRef": {"name": "xen"}, "tls": {"insecureSkipVerify": True}, "ha": {"enabled": False},
        "masterFailover": {"policy": "EmergencyTransition", "delaySeconds": 30},
    }
    if ssh:
        data["uniqueness"] = {"policy": "Detect", "ssh": {"privateKeySecretRef": {"name": "dom0"}}}
    data.update(changes)
    return XenPoolSpec.model_validate(data)


def view(i: int, reaches: bool | None, detail: str = "") -> SupporterView:
    return SupporterView(f"10.0.0.{i}", MASTER, reaches, detail)


# --- the decision ---------------------------------------------------------------------------------------------

def test_no_live_supporter_means_no_failover() -> None:
    verdict = decide(spec(), [])
    assert verdict.chosen is None and verdict.reason == "SupportersViewUnavailable"


def test_without_any_known_view_there_is_no_failover() -> None:
    views = [view(i, None, "dom0 SSH is not configured (uniqueness.ssh)") for i in (2, 3, 4)]
    verdict = decide(spec(), views)
    assert verdict.chosen is None and verdict.reason == "SupportersViewUnavailable"
    assert "uniqueness.ssh" in verdict.message and "0 of 3" in verdict.message


def test_a_majority_that_still_reaches_the_master_is_a_partition_of_the_operator() -> None:
    verdict = decide(spec(), [view(2, True, "reaches"), view(3, True, "reaches"), view(4, False, "refused")])
    assert verdict.chosen is None and verdict.reason == "MasterUnreachableFromOperatorOnly"
    assert "1 of 3" in verdict.message and "xen2: reaches" in verdict.message


def test_a_minority_agreeing_is_not_enough_even_when_the_rest_is_unknown() -> None:
    verdict = decide(spec(), [view(2, False), view(3, None, "dom0 SSH: timed out"), view(4, None, "timed out")])
    assert verdict.chosen is None and verdict.reason == "SupportersViewUnavailable"
    assert "xen3: dom0 SSH: timed out" in verdict.message


@pytest.mark.parametrize("other", [True, None])
def test_a_tie_is_no_majority(other: bool | None) -> None:
    verdict = decide(spec(3), [view(2, False), view(3, other)])
    assert verdict.chosen is None
    assert verdict.reason == ("MasterUnreachableFromOperatorOnly" if other else "SupportersViewUnavailable")
    four = decide(spec(5), [view(2, False), view(3, False), view(4, other), view(5, other)])
    assert four.chosen is None


def test_a_majority_fails_over_to_the_first_agreeing_supporter_in_spec_order() -> None:
    verdict = decide(spec(), [view(2, True), view(3, False), view(4, False)])
    assert verdict.chosen == "10.0.0.3" and verdict.reason == "MasterUnreachable"
    assert "2 of 3" in verdict.message


def test_a_lone_supporter_is_its_own_majority() -> None:
    assert decide(spec(2), [view(2, False)]).chosen == "10.0.0.2"
    assert decide(spec(2), [view(2, True)]).chosen is None


def test_the_spec_master_is_preferred_when_it_agrees_and_never_when_it_reaches_the_master() -> None:
    assert decide(spec(master="xen4"), [view(2, False), view(3, False), view(4, False)]).chosen == "10.0.0.4"
    assert decide(spec(master="xen4"), [view(2, False), view(3, False), view(4, True)]).chosen == "10.0.0.2"
    assert decide(spec(master="xen1"), [view(2, False), view(3, False), view(4, False)]).chosen == "10.0.0.2"


# --- the failover pass ----------------------------------------------------------------------------------------

class FakeConnection:
    def __init__(self, dom0: "FakeSSH", address: str):
        self.dom0, self.address = dom0, address

    async def run_script(self, script: str, *, args: list[str], **_: Any) -> CommandResult:
        assert script == PROBE and args[0] == MASTER and args[3] == self.address
        self.dom0.asked.append(self.address)
        answer = self.dom0.answers[self.address]
        if isinstance(answer, Exception):
            raise answer
        return CommandResult(answer, "bash: connect: Connection refused\n" if answer == 10 else "", "")


class FakeSSH:
    """dom0 SSH whose probe exits as `answers` says (0 reaches, 10 cannot, 11 unknown, or an SSH error)."""

    def __init__(self, answers: dict[str, int | Exception]):
        self.answers = answers
        self.asked: list[str] = []

    def connection(self, target: Any) -> FakeConnection:
        return FakeConnection(self, target.address)


class Transitioned(Exception):
    pass


class FakeSession:
    endpoint = Endpoint(port=443)

    def __init__(self) -> None:
        self.transitions: list[str] = []

    def local(self, address: str) -> Any:
        session = self

        class Local:
            async def call(self, name: str) -> None:
                session.transitions.append(f"{name} on {address}")
                raise Transitioned()

        return Local()


def long_ago() -> str:
    then = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    return then.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def lost(supporters: list[int]) -> XenNoMaster:
    error = XenNoMaster("session.login_with_password", "NO_MASTER", message="no pool master answered")
    error.unreachable = {MASTER: "CONNECTION timed out", **{f"10.0.0.{i}": f"supporter of {MASTER}"
                                                                for i in supporters}}
    return error


def run_pass(pool: XenPoolSpec, ssh: Any, status: dict[str, Any], events: list[tuple[str, str, str]],
             session: FakeSession) -> Outcome | None:
    async def checkpoint(fields: dict[str, Any]) -> None:
        status.update(fields)

    ctx = Context(namespace="lab", name="pool", generation=1, spec=pool, status=status,
                  secrets={"dom0": secret({"ssh-privatekey": "not parsed by the stand-in"}, "10.0.0.0/24")},
                  event=lambda *e: events.append(e), logger=logging.getLogger("test"), checkpoint=checkpoint)
    try:
        outcome = asyncio.run(failover.master_lost(XenPoolReconciler(ssh), ctx, session, pool, lost([2, 3, 4])))
    except Transitioned:
        return None
    status.update(outcome.fields)
    status["conditions"] = [{"type": c.type, "reason": c.reason} for c in outcome.conditions]
    return outcome


def ready_reason(outcome: Outcome | None) -> str:
    assert outcome is not None, "failed over"
    return next(c.reason for c in outcome.conditions if c.type == "Ready")


def test_the_operator_alone_losing_the_master_never_fails_over() -> None:
    """The partition: the master does not answer the operator, but its supporters reach it. The delay, counted
    from when the operator lost it, is long past; no transition, a reason and one Warning Event."""
    ssh = FakeSSH({"10.0.0.2": 0, "10.0.0.3": 0, "10.0.0.4": 10})
    status: dict[str, Any] = {"masterUnreachableSince": long_ago()}
    events: list[tuple[str, str, str]] = []
    session = FakeSession()
    for _ in range(3):
        outcome = run_pass(spec(), ssh, status, events, session)
        assert ready_reason(outcome) == "MasterUnreachableFromOperatorOnly"
    assert session.transitions == [] and sorted(set(ssh.asked)) == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert [r for _, r, _ in events] == ["MasterUnreachableFromOperatorOnly"], "one Event when it starts"
    assert status["supportersLostMasterSince"] is None
    reachable = next(c for c in outcome.conditions if c.type == "Reachable")  # type: ignore[union-attr]
    assert reachable.status == "False"


def test_without_dom0_ssh_the_transition_is_refused() -> None:
    status: dict[str, Any] = {"masterUnreachableSince": long_ago()}
    events: list[tuple[str, str, str]] = []
    session = FakeSession()
    outcome = run_pass(spec(ssh=False), FakeSSH({}), status, events, session)
    assert ready_reason(outcome) == "SupportersViewUnavailable" and session.transitions == []
    assert "uniqueness.ssh" in next(c.message for c in outcome.conditions if c.type == "Ready")  # type: ignore[union-attr]
    outcome = run_pass(spec(), None, status, events, session)  # an operator without SSH
    assert ready_reason(outcome) == "SupportersViewUnavailable" and session.transitions == []


def test_the_delay_counts_from_the_supporters_agreement_and_a_dissent_restarts_it() -> None:
    answers: dict[str, int | Exception] = {"10.0.0.2": 10, "10.0.0.3": 10, "10.0.0.4": SSHTimeout("timed out")}
    ssh = FakeSSH(answers)
    status: dict[str, Any] = {"masterUnreachableSince": long_ago()}
    events: list[tuple[str, str, str]] = []
    session = FakeSession()
    outcome = run_pass(spec(master="xen3"), ssh, status, events, session)
    assert ready_reason(outcome) == "MasterUnreachable" and "failing over in" in outcome.conditions[0].message  # type: ignore[union-attr]
    first = status["supportersLostMasterSince"]
    assert first and session.transitions == []
    answers["10.0.0.3"] = 0  # one of them reaches the master again: no majority, the agreement starts over
    assert ready_reason(run_pass(spec(master="xen3"), ssh, status, events, session)) == \
        "MasterUnreachableFromOperatorOnly"
    assert status["supportersLostMasterSince"] is None and session.transitions == []
    answers["10.0.0.3"] = 10
    run_pass(spec(master="xen3"), ssh, status, events, session)
    assert status["supportersLostMasterSince"] and session.transitions == []
    status["supportersLostMasterSince"] = long_ago()  # the agreement has lasted the delay
    assert run_pass(spec(master="xen3"), ssh, status, events, session) is None
    assert session.transitions == ["pool.emergency_transition_to_master on 10.0.0.3"]
    assert [r for _, r, _ in events][-1] == "MasterFailover"


# --- the probe in a shell ---------------------------------------------------------------------------------------

@contextmanager
def listening(*addresses: str) -> Iterator[int]:
    """TCP listeners on one free port at each address (127.0.0.x)."""
    first = socket.create_server((addresses[0], 0))
    port = first.getsockname()[1]
    sockets = [first, *(socket.create_server((a, port)) for a in addresses[1:])]
    try:
        yield port
    finally:
        for sock in sockets:
            sock.close()


def probe(master: str, port: int, own: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"PATH": path} if path else {})}
    return subprocess.run(["sh", "-s", "--", master, str(port), "2", own], input=PROBE, capture_output=True,
                          text=True, timeout=30, env=env)


def test_the_probe_tells_reached_from_refused() -> None:
    with listening("127.0.0.1", "127.0.0.2") as port:
        assert probe("127.0.0.2", port, "127.0.0.1").returncode == 0
    with listening("127.0.0.1") as port:
        refused = probe("127.0.0.2", port, "127.0.0.1")
        assert refused.returncode == 10
        assert refused.stdout.strip() == f"cannot connect to 127.0.0.2:{port}: Connection refused", refused.stdout


def test_the_probe_reports_a_timeout_as_unreachable(tmp_path: Path) -> None:
    """A connect that hangs (a dead host's address: no answer at all) ends with timeout's 124."""
    real = subprocess.run(["sh", "-c", "command -v timeout"], capture_output=True, text=True).stdout.strip()
    fake = tmp_path / "timeout"
    fake.write_text(f'#!/bin/sh\n[ "$6" = 192.0.2.1 ] && exit 124\nexec {real} "$@"\n')
    fake.chmod(0o755)
    with listening("127.0.0.1") as port:
        hung = probe("192.0.2.1", port, "127.0.0.1", path=f"{tmp_path}:{os.environ['PATH']}")
    assert hung.returncode == 10 and "timed out" in hung.stdout


def test_a_probe_that_cannot_connect_anywhere_is_unknown_not_unreachable(tmp_path: Path) -> None:
    """A bash without /dev/tcp fails every connect the way a refused one does: the control connect to the host's
    own XenAPI tells them apart."""
    fake = tmp_path / "bash"
    fake.write_text('#!/bin/sh\necho "bash: /dev/tcp/$1/$2: No such file or directory" >&2\nexit 1\n')
    fake.chmod(0o755)
    with listening("127.0.0.1") as port:
        blind = probe("127.0.0.2", port, "127.0.0.1", path=f"{tmp_path}:{os.environ['PATH']}")
        assert blind.returncode == 11 and "proves nothing" in blind.stdout
    with listening("127.0.0.2") as port:  # the host's own XenAPI does not answer
        assert probe("127.0.0.2", port, "127.0.0.1").returncode == 11
