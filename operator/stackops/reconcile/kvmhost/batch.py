"""Fewer round trips: consecutive HostActions of a stage folded into one command on the host. Pure, no I/O.

- `OvsTransaction`: consecutive `ovs-vsctl` commands (OvsCommand) as one `ovs-vsctl` run, their commands separated
  by `--`: one OVSDB transaction, applied all or nothing. When it fails, nothing of it was applied; ovs-vsctl's
  message names the failing action when it names something only that action names (`failed_action`).
- `Script`: consecutive other commands (file writes, `ip`, restarts, …) as one shell script sent on stdin, run in
  order and stopping at the first failure, as one by one would. Each command is quoted with shlex exactly as the
  SSH driver quotes an argv, its own stdin fed from base64 (file contents, keys: never in an argv); the commands'
  output goes to stderr and stdout carries only `stackops-done N` after the N-th command (`parse_done`).
- Package work (RefreshPackageIndex, InstallPackages) is never folded: each stays its own round trip, and a
  failure quotes the package manager's lines.

Each folded action keeps its own `describe()`; the reconciler posts one Event per action (KvmHost.run_stage).
"""
from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass
from typing import Sequence

from .actions import OVS_TIMEOUT, HostAction, InstallPackages, OvsCommand, RefreshPackageIndex

DONE = "stackops-done"
OVS_WORDS = {"--", "add-br", "del-br", "add-port", "del-port", "add-bond", "set", "remove", "clear", "set-manager",
             "del-manager", "set-ssl", "del-ssl", "Bridge", "Port", "Interface", "Open_vSwitch", "SSL", "Manager",
             "external_ids", "options", "other_config"}


@dataclass(frozen=True)
class OvsTransaction:
    """OvsCommands as one `ovs-vsctl` transaction."""

    actions: tuple[OvsCommand, ...]

    def argv(self) -> tuple[str, ...]:
        args: list[str] = []
        for action in self.actions:
            args += [*(("--",) if args else ()), *action.args]
        return ("ovs-vsctl", OVS_TIMEOUT, *args)

    def describe(self) -> str:
        return f"one Open vSwitch transaction of {len(self.actions)} changes"


@dataclass(frozen=True)
class Script:
    """Commands run in order by one shell script, stopping at the first failure."""

    actions: tuple[HostAction, ...]

    def text(self) -> str:
        lines = ["# stackops: commands of one stage, in order, stopping at the first failure", "set -u"]
        for number, action in enumerate(self.actions, 1):
            command = shlex.join(action.argv())
            data = action.stdin()
            if data is None:
                command += " </dev/null"
            else:
                encoded = base64.b64encode(data.encode("utf-8")).decode("ascii")
                command = f"printf '%s' {shlex.quote(encoded)} | base64 -d | {command}"
            lines.append(f"printf '%s\\n' {shlex.quote('== ' + action.describe())} >&2")
            lines.append(f"{command} >&2 || exit $?")
            lines.append(f"echo {DONE} {number}")
        return "\n".join(lines) + "\n"

    def describe(self) -> str:
        return f"one script of {len(self.actions)} commands"


Unit = HostAction | OvsTransaction | Script


def _kind(action: HostAction) -> str:
    if isinstance(action, (RefreshPackageIndex, InstallPackages)):
        return "package"
    return "ovs" if isinstance(action, OvsCommand) else "script"


def fold(actions: Sequence[HostAction]) -> list[Unit]:
    """Runs of consecutive OvsCommands → one OvsTransaction, of other non-package commands → one Script; a run of
    one stays the action itself, and package work is never folded. Order is kept."""
    units: list[Unit] = []
    run: list[HostAction] = []

    def flush() -> None:
        if len(run) == 1:
            units.append(run[0])
        elif run and _kind(run[0]) == "ovs":
            units.append(OvsTransaction(tuple(a for a in run if isinstance(a, OvsCommand))))
        elif run:
            units.append(Script(tuple(run)))
        run.clear()

    for action in actions:
        kind = _kind(action)
        if run and (kind == "package" or kind != _kind(run[0])):
            flush()
        if kind == "package":
            units.append(action)
        else:
            run.append(action)
    flush()
    return units


def members(unit: Unit) -> tuple[HostAction, ...]:
    return unit.actions if isinstance(unit, (OvsTransaction, Script)) else (unit,)


def parse_done(stdout: str) -> int:
    """How many commands of a Script finished (its last `stackops-done N`)."""
    done = 0
    for line in stdout.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == DONE and words[1].isdigit():
            done = int(words[1])
    return done


def _names(action: OvsCommand) -> set[str]:
    """The objects an ovs-vsctl command names (bridges, ports, interfaces, targets), not its verbs and columns."""
    return {arg for arg in action.args if arg not in OVS_WORDS and "=" not in arg and not arg.isdigit()}


def failed_action(transaction: OvsTransaction, message: str) -> OvsCommand | None:
    """The action ovs-vsctl's error message points at: the only one naming an object the message names (None:
    the message names none, or several actions name it)."""
    words = {w.strip(".:,") for w in re.findall(r"[A-Za-z0-9_.:/+-]+", message)}
    named = [a for a in transaction.actions if _names(a) & words]
    return named[0] if len(named) == 1 else None
