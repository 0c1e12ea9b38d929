"""Network safety without a host: which changes are risky, the guarded batch and its scripts (run locally on a
temporary directory where that is harmless), the checkpoint markers the probe reports, and the reconciler's
decisions with a fake SSH connection."""
from __future__ import annotations

import asyncio
import base64
import logging
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

import stackops.reconcile.kvmhost as kvmhost
from support.specs import HOST_KEY
from support.credentials import secret
from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.ssh import CommandFailed, CommandResult, SSHTimeout, Unreachable
from stackops.reconcile.base import Context, PartialApply, ReconcileError
from stackops.reconcile.kvmhost import HostFacts, KvmHostReconciler, guard, probe
from stackops.reconcile.kvmhost.actions import MOVE_ADDRESS, IpCommand, MoveAddress, OvsCommand, RunCommand, WriteFile
from stackops.reconcile.kvmhost.observed import Checkpoint
from stackops.reconcile.kvmhost.plan import management_path, plan
from stackops.reconcile.kvmhost.probe import parse, sections
from support.kvmhost_probe import probe_output

OWNER = "lab/kvm1"
ADDRESS = "10.250.0.11"


def spec(bridge: dict[str, Any] | None = None, **changes: Any) -> KvmHostSpec:
    data: dict[str, Any] = {
        "address": ADDRESS,
        "ssh": {"privateKeySecretRef": {"name": "k"}, "hostKey": HOST_KEY},
        "openvswitch": {"bridges": [{"name": "cloudbr0", "datapathType": "netdev", **(bridge or {})}],
                        "rollbackTimeoutSeconds": 10},
    }
    data.update(changes)
    return KvmHostSpec.model_validate(data)


CUT = {"ports": ["eth0"], "vlanBridges": [{"name": "mgmt0", "vlan": 123, "addresses": [f"{ADDRESS}/24"]}]}


def fresh_host(checkpoints: str = "") -> str:
    """A host with no bridge yet, its management address on eth0; `checkpoints`: the probe's last section."""
    return probe_output(empty_ovs=True, addresses={"eth0": [f"{ADDRESS}/24"], "eno49": []}) + checkpoints


def checkpoint_section(*lines: str, now: int = 1_000) -> str:
    return "@@checkpoints -\n" + f"now {now}\n" + "".join(line + "\n" for line in lines)


def checkpoint_line(name: str, flags: tuple[str, ...] = (), **values: str) -> str:
    encoded = " ".join(f"{key.replace('_', '-')}={base64.b64encode(value.encode()).decode()}"
                       for key, value in values.items())
    return " ".join(filter(None, [f"checkpoint {name}", encoded, *(f"{flag}=" for flag in flags)]))


# --------------------------------------------------------------------------------------------------------------
# What is risky, what is moved


def test_moving_the_management_address_off_a_nic_that_joins_the_bridge_is_risky() -> None:
    s = spec(CUT)
    observed = parse(fresh_host(), 16509)
    actions = plan(s, observed, OWNER)
    moves = [a for a in actions if isinstance(a, MoveAddress)]
    assert [(m.cidr, m.source, m.target) for m in moves] == [(f"{ADDRESS}/24", "eth0", "mgmt0")]
    assert moves[0].disruptive
    assert moves[0].argv() == ("sh", "-c", MOVE_ADDRESS, "stackops-move-address", f"{ADDRESS}/24", "eth0", "mgmt0")
    assert not any(isinstance(a, IpCommand) and a.args[:2] == ("addr", "add") for a in actions), "moved, not copied"
    assert management_path(s, observed) == {"eth0", "mgmt0"}
    risky = guard.risky_actions(actions, management_path(s, observed))
    assert [a.describe() for a in risky][:3] == ["add eth0 to bridge cloudbr0",
                                                 "create VLAN bridge mgmt0 (VLAN 123) on cloudbr0",
                                                 f"move address {ADDRESS}/24 from eth0 to mgmt0 (with the routes "
                                                 "through eth0)"]
    guarded, rest = guard.split_guarded(actions, risky)
    assert guarded[0].describe() == "create bridge cloudbr0 (datapath netdev)", "the bridge first, in plan order"
    assert guarded[-1] is risky[-1] and guarded + rest == actions
    assert all(isinstance(a, WriteFile) or a.argv()[0] == "systemctl" for a in rest)


def test_an_address_no_member_nic_holds_is_added_and_nothing_is_risky() -> None:
    s = spec({"ports": ["eno49"], "addresses": ["10.250.9.1/24"]})
    observed = parse(fresh_host(), 16509)
    actions = plan(s, observed, OWNER)
    assert ("ip", "addr", "add", "10.250.9.1/24", "dev", "cloudbr0") in [a.argv() for a in actions]
    assert not any(isinstance(a, MoveAddress) for a in actions)
    assert guard.risky_actions(actions, management_path(s, observed)) == []
    assert guard.split_guarded(actions, []) == ([], actions)


# --------------------------------------------------------------------------------------------------------------
# Scripts


@pytest.mark.parametrize("name", ["START", "REVERT", "CONFIRM", "MOVE_ADDRESS", "PROBE"])
def test_scripts_are_valid_posix_sh(name: str) -> None:
    text = {"START": guard.START, "REVERT": guard.REVERT, "CONFIRM": guard.CONFIRM, "MOVE_ADDRESS": MOVE_ADDRESS,
            "PROBE": probe.SCRIPT}[name]
    checked = subprocess.run(["sh", "-n"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_start_takes_everything_from_the_spec_as_positional_arguments() -> None:
    s = spec(CUT)
    actions = plan(s, parse(fresh_host(), 16509), OWNER)
    args = guard.start_args("20260101T000000Z-0a1b2c3d", 10, 7, OWNER, guard.spec_digest(s), actions[:2],
                            {"mgmt0", "eth0"})
    assert args[:6] == ["20260101T000000Z-0a1b2c3d", "10", "2", "7", OWNER, guard.spec_digest(s)]
    assert args[6] == "create bridge cloudbr0 (datapath netdev); add eth0 to bridge cloudbr0"
    assert args[7:] == ["eth0", "mgmt0"]
    assert ADDRESS not in guard.START and "cloudbr0" not in guard.START
    with pytest.raises(ValueError):
        guard.start_args("../../etc", 10, 1, OWNER, "d", [], set())
    assert guard.apply_wait(10) == 2 and guard.apply_wait(600) == 10 and guard.apply_wait(3) == 1
    assert guard.spec_digest(s) == guard.spec_digest(spec(CUT)) != guard.spec_digest(spec())


def run_apply(tmp_path: Path, actions: list) -> tuple[int, str, str]:
    (tmp_path / "apply.sh").write_text(guard.apply_script(actions))
    done = subprocess.run(["sh", str(tmp_path / "apply.sh"), str(tmp_path)], capture_output=True, text=True,
                          timeout=30)
    return done.returncode, done.stdout, (tmp_path / "progress").read_text().strip()


def test_the_apply_keeps_arguments_as_data_feeds_stdin_and_stops_at_the_first_failure(tmp_path: Path) -> None:
    nasty = f"$(touch {tmp_path}/canary); `touch {tmp_path}/canary` | touch {tmp_path}/canary 'q\" a b"
    target = tmp_path / "written"
    actions = [RunCommand("echo", command=("printf", "<%s>\\n", nasty, "a b")),
               WriteFile("write", path=str(target), content=f"x = {nasty}\n"),
               RunCommand("fail", command=("sh", "-c", "exit 7")),
               RunCommand("never", command=("touch", str(tmp_path / "never")))]
    status, stdout, progress = run_apply(tmp_path, actions)
    assert status == 7 and progress == "2"
    assert f"<{nasty}>\n<a b>\n" in stdout and "== echo" in stdout
    assert target.read_text() == f"x = {nasty}\n"
    assert not (tmp_path / "canary").exists() and not (tmp_path / "never").exists()


# The confirmation and the timer decide once, whoever is first (`mkdir decided`). Run locally on a temporary
# directory: the revert finds no database backup and no saved interfaces there, so it changes nothing on this
# machine and only writes its markers.

def confirm(base: Path, checkpoint: str) -> guard.ConfirmResult:
    script = guard.CONFIRM.replace(guard.CHECKPOINT_DIR, str(base))
    done = subprocess.run(["sh", "-s", "--", checkpoint], input=script, capture_output=True, text=True, timeout=30)
    return guard.parse_confirm(done.stdout)


def probe_checkpoints(base: Path) -> tuple[int | None, tuple[Checkpoint, ...]]:
    """The probe's checkpoints section, and its files section (which carries the checkpoints' files), run here."""
    files_section = probe.SCRIPT[probe.SCRIPT.index("\nsection files "):]
    script = ("section() { printf '\\n@@%s %s\\n' \"$1\" \"$2\"; }\n"
              "have() { command -v \"$1\" >/dev/null 2>&1; }\n"
              + guard.PROBE_SECTION.replace(guard.CHECKPOINT_DIR, str(base)) + files_section)
    output = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=30).stdout
    body = next(b for name, _, b in sections(output) if name == "checkpoints")
    files = {path.replace(str(base), guard.CHECKPOINT_DIR, 1): content
             for path, content in probe.unpack(next(b for name, _, b in sections(output) if name == "files")).items()}
    return guard.parse_checkpoints(body, files)


def make_checkpoint(base: Path, name: str, **files: str) -> Path:
    directory = base / name
    directory.mkdir(parents=True)
    machine = Path("/etc/machine-id").read_text().strip() if Path("/etc/machine-id").exists() else ""
    for key, value in {"machine-id": machine, "owner": OWNER, "generation": "3", "digest": "d1",
                       "changes": "add eth0 to bridge cloudbr0", "started": "100", "expires": "110",
                       "network": "", **files}.items():
        (directory / key).write_text(value + "\n")
    return directory


def test_confirmation_waits_for_the_apply_and_wins_over_a_later_timer(tmp_path: Path) -> None:
    directory = make_checkpoint(tmp_path, "c1")
    assert confirm(tmp_path, "c1").state == "running"
    (directory / "applied").write_text("0\n")
    (directory / "progress").write_text("3\n")
    (directory / "apply.log").write_text("== add eth0 to bridge cloudbr0\n")
    first = confirm(tmp_path, "c1")
    assert (first.state, first.applied, first.progress) == ("confirmed", 0, 3)
    assert "add eth0" in first.log
    assert confirm(tmp_path, "c1").state == "confirmed", "confirming again is harmless"
    timer = subprocess.run(["sh", "-s", "--", str(directory), "1"], input=guard.REVERT, capture_output=True,
                           text=True, timeout=30)
    assert timer.returncode == 0 and not (directory / "rolled-back").exists()
    assert confirm(tmp_path, "missing").state == "missing" and confirm(tmp_path, "../x").state == "missing"


def test_the_timer_reverts_an_unconfirmed_change_and_a_late_confirmation_loses(tmp_path: Path) -> None:
    directory = make_checkpoint(tmp_path, "c2", applied="0")
    # The timer's clock: a `sleep` that returns at once and notes each wait, and whether the change was decided
    # by then (a shell function comes before the `sleep` of PATH), so the test sees how long the timer waited
    # without depending on how fast this machine is.
    waits = tmp_path / "waits"
    clock = (f'sleep() {{ if [ -d "$dir/decided" ]; then d=decided; else d=undecided; fi; '
             f'echo "$1 $d" >> {shlex.quote(str(waits))}; }}\n')
    timer = subprocess.run(["sh", "-s", "--", str(directory), "3"], input=clock + guard.REVERT, capture_output=True,
                           text=True, timeout=30)
    assert timer.returncode == 0, timer.stderr
    # one second at a time for the 3 s timeout, then it decides (the last wait lets ovs-vswitchd reconfigure)
    assert waits.read_text().splitlines() == ["1 undecided"] * 3 + ["1 decided"]
    assert (directory / "decided").is_dir() and not (directory / "confirmed").exists()
    late = confirm(tmp_path, "c2")
    assert late.state == "rolled-back"
    now, [checkpoint] = probe_checkpoints(tmp_path)
    assert now is not None and now > 1_600_000_000
    assert checkpoint.state(now) == "rolled-back" and checkpoint.decided and not checkpoint.confirmed
    assert (checkpoint.owner, checkpoint.generation, checkpoint.digest) == (OWNER, 3, "d1")
    assert checkpoint.rolled_back_time and checkpoint.rolled_back_time.endswith("Z")
    assert checkpoint.rolled_back_reason is not None
    assert checkpoint.rolled_back_reason.startswith("no confirmation from the operator within 3s")
    assert "ovsdb-client restore failed" in checkpoint.rolled_back_reason, "a failed step is reported"


def test_checkpoint_states() -> None:
    pending = Checkpoint(id="a", expires=110)
    assert pending.state(100) == "pending" and pending.state(139) == "pending"
    assert pending.state(141) == "expired", "its timer is gone (e.g. the host rebooted)"
    assert Checkpoint(id="a", decided=True).state(100) == "reverting"
    assert Checkpoint(id="a", decided=True, confirmed=True).state(100) == "confirmed"
    assert Checkpoint(id="a", decided=True, rolled_back_time="t").state(100) == "rolled-back"


def test_the_probe_reports_checkpoints() -> None:
    output = fresh_host(checkpoint_section(
        checkpoint_line("20260101T000001Z-bb", flags=("decided",), owner=OWNER, generation="2", digest="d",
                        changes="add eth0 to bridge cloudbr0", applied="0", progress="6",
                        rolled_back="time 2026-01-01T00:00:12Z\nreason no confirmation\n"),
        checkpoint_line("20260101T000000Z-aa", flags=("decided", "confirmed"), owner="other/host", generation="1"),
        "checkpoint ../evil owner=eA==",
    ))
    observed = parse(output, 16509)
    assert observed.host_time == 1000
    assert [c.id for c in observed.checkpoints] == ["20260101T000000Z-aa", "20260101T000001Z-bb"]
    reverted = guard.latest(observed.checkpoints, OWNER, "rolled-back")
    assert reverted is not None and reverted.generation == 2 and reverted.progress == 6
    assert reverted.rolled_back_time == "2026-01-01T00:00:12Z" and reverted.rolled_back_reason == "no confirmation"
    status = guard.rollback_status(reverted, ADDRESS)
    assert status["generation"] == 2 and status["time"] == "2026-01-01T00:00:12Z"
    assert "[add eth0 to bridge cloudbr0]" in str(status["reason"]) and "reverted by the host" in str(status["reason"])
    assert guard.latest(observed.checkpoints, OWNER, "confirmed") is None
    assert parse(fresh_host(), 16509).checkpoints == ()


def test_start_and_confirm_output() -> None:
    assert guard.parse_start("applied 0\n").applied == 0
    assert guard.parse_start("applied 3\n").applied == 3
    assert guard.parse_start("running\n").applied is None
    log = base64.b64encode(b"== x\nboom\n").decode()
    result = guard.parse_confirm(f"state confirmed\napplied 1\nprogress 2\nlog {log}\n")
    assert (result.state, result.applied, result.progress, result.log) == ("confirmed", 1, 2, "== x\nboom")
    assert guard.parse_confirm("").state == "missing"


# --------------------------------------------------------------------------------------------------------------
# The reconciler's decisions, with a fake SSH connection


class FakeHost:
    """Answers the probe with `probe`, START with `start` (text or an exception), CONFIRM with `confirms` in turn."""

    def __init__(self, probe_text: str, start: str | Exception = "applied 0\n",
                 confirms: list[str | Exception] | None = None):
        self.probe = probe_text
        self.start = start
        self.confirms = list(confirms or [])
        self.calls: list[str] = []
        self.closed = 0


class FakeConnection:
    def __init__(self, host: FakeHost, target: Any):
        self.host = host
        self.target = target

    async def run(self, argv, *, input=None, timeout=60.0, check=True, mutation=False, label=None, urgent=False):
        self.host.calls.append(label or argv[0])
        if argv[:3] == ["sh", "-c", guard.START]:
            if isinstance(self.host.start, Exception):
                raise self.host.start
            return CommandResult(0, self.host.start, "")
        return CommandResult(0, "", "")

    async def run_script(self, script, *, args=(), timeout=60.0, check=True, mutation=False, label="script",
                         urgent=False):
        if script is probe.SCRIPT:
            self.host.calls.append("probe")
            return CommandResult(0, self.host.probe, "")
        assert script is guard.CONFIRM
        assert urgent, "a confirm must not queue behind other hosts' commands (the host reverts without it)"
        self.host.calls.append("confirm")
        answer = self.host.confirms.pop(0) if self.host.confirms else Unreachable("down")
        if isinstance(answer, Exception):
            raise answer
        return CommandResult(0, answer, "")

    def close(self) -> None:
        self.host.closed += 1


class FakePool:
    def __init__(self, host: FakeHost):
        self.host = host

    def connection(self, target: Any) -> FakeConnection:
        return FakeConnection(self.host, target)


def fake_reconciler(host: FakeHost) -> KvmHostReconciler:
    return KvmHostReconciler(FakePool(host))  # type: ignore[arg-type]


def resume(reconciler: KvmHostReconciler, ctx: Context, view: HostFacts) -> HostFacts:
    """The engine's resume step of a pass: settle what an earlier pass left undecided."""
    return asyncio.run(reconciler.resume(ctx, reconciler.connection(ctx), view))


def context(s: KvmHostSpec, generation: int = 3, status: dict | None = None, events: list | None = None) -> Context:
    sink = events if events is not None else []
    return Context(namespace="lab", name="kvm1", generation=generation, spec=s, status=status or {},
                   secrets={"k": secret({"ssh-privatekey": "unused"}, s.address)}, event=lambda *e: sink.append(e),
                   logger=logging.getLogger("test"))


def test_a_cut_host_leaves_the_revert_to_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kvmhost, "CONFIRM_MARGIN_SECONDS", 9.5)  # give up after 0.5s instead of 9s
    host = FakeHost(fresh_host(), start=SSHTimeout("no answer"), confirms=[Unreachable("down")] * 100)
    events: list = []
    with pytest.raises(ReconcileError) as pending:
        asyncio.run(fake_reconciler(host).reconcile(context(spec(CUT), events=events)))
    assert pending.value.reason == "RollbackPending" and pending.value.retry
    assert "reverts the change by itself" in str(pending.value)
    assert any(c.type == "Reachable" and c.status == "False" for c in pending.value.conditions)
    assert host.calls[0] == "probe" and host.calls[1].startswith("checkpoint ")
    assert host.calls.count("confirm") >= 1 and host.closed >= 2, "every attempt on a fresh connection"
    assert [e[1] for e in events] == ["GuardedApply"], "nothing reported as applied"


def test_a_reachable_host_is_confirmed_and_the_rest_applied_normally() -> None:
    host = FakeHost(fresh_host(), start="applied 0\n", confirms=["state running\n", "state confirmed\napplied 0\n"])
    events: list = []
    outcome = asyncio.run(fake_reconciler(host).reconcile(
        context(spec(CUT), events=events)))
    assert host.calls.count("confirm") == 2
    kinds = [e[1] for e in events]
    assert kinds[0] == "GuardedApply" and "ChangeConfirmed" in kinds
    assert kinds.index("ChangeConfirmed") < len(kinds) - 1, "file edits and restarts come after the confirmation"
    assert any(isinstance(a, MoveAddress) for a in outcome.applied)


def test_a_failed_guarded_command_reports_what_was_applied() -> None:
    log = base64.b64encode(b"ovs-vsctl: no bridge named cloudbr0\n").decode()
    host = FakeHost(fresh_host(), confirms=[f"state confirmed\napplied 1\nprogress 1\nlog {log}\n"])
    with pytest.raises(PartialApply) as failed:
        asyncio.run(fake_reconciler(host).reconcile(context(spec(CUT))))
    assert failed.value.reason == "CommandFailed"
    assert "add eth0 to bridge cloudbr0 exited with status 1" in str(failed.value)
    assert "no bridge named cloudbr0" in str(failed.value)
    assert [a.describe() for a in failed.value.applied] == ["create bridge cloudbr0 (datapath netdev)"]


def rolled_back(generation: int, digest: str) -> str:
    return checkpoint_section(checkpoint_line(
        "20260101T000000Z-aa", flags=("decided",), owner=OWNER, generation=str(generation), digest=digest,
        changes="add eth0 to bridge cloudbr0", applied="0", progress="6",
        rolled_back="time 2026-01-01T00:00:12Z\nreason no confirmation from the operator within 10s\n"))


def test_a_reverted_change_is_not_tried_again_for_the_same_generation() -> None:
    s = spec(CUT)
    host = FakeHost(fresh_host(rolled_back(3, guard.spec_digest(s))))
    outcome = asyncio.run(fake_reconciler(host).reconcile(context(s)))
    assert host.calls == ["probe"]
    stalled = next(c for c in outcome.conditions if c.type == "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "RolledBack")
    assert "not retried for generation 3" in stalled.message and "within 10s" in stalled.message
    assert outcome.fields["rollback"]["generation"] == 3 and outcome.drift and outcome.requeue_after is None

    # status alone remembers it too
    host = FakeHost(fresh_host())
    recorded = {"rollback": {"generation": 3, "time": "t", "reason": "reverted by the host: …"}}
    outcome = asyncio.run(fake_reconciler(host).reconcile(
        context(s, status=recorded)))
    assert host.calls == ["probe"]
    assert next(c for c in outcome.conditions if c.type == "Stalled").reason == "RolledBack"


@pytest.mark.parametrize("generation, digest", [(4, "same"), (3, "other")], ids=["new generation", "other spec"])
def test_a_new_generation_or_another_spec_may_try_again(generation: int, digest: str) -> None:
    s = spec(CUT)
    host = FakeHost(fresh_host(rolled_back(3, guard.spec_digest(s) if digest == "same" else "0123456789abcdef")),
                    confirms=["state confirmed\napplied 0\n"])
    outcome = asyncio.run(fake_reconciler(host).reconcile(
        context(s, generation=generation)))
    assert any(call.startswith("checkpoint ") for call in host.calls)
    assert outcome.fields["rollback"]["generation"] == 3, "the last revert stays in status"


def test_an_undecided_change_of_an_earlier_pass_is_confirmed_or_waited_for() -> None:
    s = spec(CUT)
    undecided = checkpoint_section(checkpoint_line("20260101T000000Z-aa", owner=OWNER, generation="3", digest="d",
                                                   changes="add eth0 to bridge cloudbr0", started="990",
                                                   expires="1000", applied="0", progress="6"), now=995)
    view = HostFacts(owner=OWNER, host=parse(fresh_host(undecided), 16509))
    host = FakeHost("", confirms=["state confirmed\napplied 0\n"])
    events: list = []
    assert resume(fake_reconciler(host), context(s, events=events), view) is view
    assert host.calls == ["confirm"] and events[0][1] == "ChangeConfirmed"

    running = checkpoint_section(checkpoint_line("20260101T000000Z-aa", owner=OWNER, generation="3",
                                                 expires="1000"), now=995)
    view = HostFacts(owner=OWNER, host=parse(fresh_host(running), 16509))
    host = FakeHost("")
    with pytest.raises(ReconcileError) as waiting:
        resume(fake_reconciler(host), context(s), view)
    assert waiting.value.reason == "RollbackPending" and waiting.value.delay == 8.0 and host.calls == []

    elsewhere = checkpoint_section(checkpoint_line("20260101T000000Z-aa", owner="other/host", expires="1000"),
                                   now=995)
    view = HostFacts(owner=OWNER, host=parse(fresh_host(elsewhere), 16509))
    assert resume(fake_reconciler(FakeHost("")), context(s), view) is view


def test_no_checkpoint_for_a_plan_off_the_management_path() -> None:
    host = FakeHost(fresh_host())
    s = spec({"ports": ["eno49"]})
    asyncio.run(fake_reconciler(host).reconcile(context(s)))
    assert not any(call.startswith("checkpoint") or call == "confirm" for call in host.calls)
    assert any(isinstance(a, OvsCommand) for a in plan(s, parse(fresh_host(), 16509), OWNER))


def test_no_checkpoint_means_no_change() -> None:
    failure = CommandFailed("sh -c … exited with status 3: ovsdb-client not found on the host", exit_status=3)
    host = FakeHost(fresh_host(), start=failure)
    events: list = []
    with pytest.raises(ReconcileError) as refused:
        asyncio.run(fake_reconciler(host).reconcile(context(spec(CUT), events=events)))
    assert refused.value.reason == "CheckpointFailed" and "nothing was changed" in str(refused.value)
    assert "confirm" not in host.calls and not any(e[1] == "Applied" for e in events)
    assert not isinstance(refused.value, PartialApply)
