"""Guarded apply for changes that can cut the operator's path to a host, with an automatic revert on the host.

A plan is risky when one of its commands names an interface of the management path (the interface carrying the
host's management address, its bridge and that bridge's ports and NICs, or an interface the spec moves the address
to). Such a plan is applied like kubernetes-nmstate applies a NetworkManager checkpoint:

1. one SSH round trip (`START`) writes a checkpoint under `/var/lib/stackops/checkpoint/<id>/` — an
   `ovsdb-client backup` of the Open_vSwitch database and the links, IPv4 addresses and routes of the path's
   interfaces — starts a revert timer detached from the SSH session (`setsid`, output to the checkpoint), then
   starts the risky commands as one detached script (a dropped connection cannot stop it half-way) and waits a
   moment for it to finish;
2. the operator drops its connection and reconnects with a fresh one, retrying with short timeouts, and confirms
   (`CONFIRM`: only once the apply has finished);
3. unless confirmed within `rollbackTimeoutSeconds`, the timer (`REVERT`) restores the database, links, addresses
   and routes by itself and writes `rolled-back` with the reason.

Confirming and reverting are decided by whoever first creates `<id>/decided` (`mkdir` is atomic), so the operator
can never believe a change confirmed that the host is reverting. Every probe lists the checkpoints (see
probe.py; their files come with the other files it reads); a rolled-back one becomes `status.rollback`, and the
same plan is not tried again for the same generation of the same spec.

Everything from the spec reaches the host as positional arguments or as commands quoted with `shlex` (exactly as
the SSH driver quotes a command), never interpolated into script text. The scripts are scripts/guard-*.sh and
scripts/probe-checkpoints.sh; the checkpoint directory reaches them from paths.py.
"""
from __future__ import annotations

import base64
import hashlib
import re
import secrets
import shlex
import time
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from pydantic import BaseModel

from ..shell import fill, load, with_values
from .actions import HostAction
from .observed import Checkpoint
from .paths import CHECKPOINT_DIR, with_paths

ID_PATTERN = re.compile(r"^[0-9A-Za-z-]{1,64}$")

# The revert timer: `sh revert.sh <checkpoint dir> <seconds>`, started detached by START.
REVERT = load(__package__, "guard-revert.sh")
# One round trip: clean up, checkpoint, start the timer, start the apply (its script on stdin), wait a moment.
# `sh -c START stackops-checkpoint ID TIMEOUT WAIT GENERATION OWNER DIGEST CHANGES IFACE…`.
# Exit 3: no checkpoint or no timer, so nothing was changed.
START = with_paths(fill(load(__package__, "guard-start.sh"), "@REVERT@", REVERT), "CHECKPOINT_DIR")
# Confirm checkpoint $1 once its apply has finished (over a connection opened after the change): prints
# `state confirmed|running|reverting|rolled-back|missing`, then `applied N`, `progress N`, `log <base64>`.
CONFIRM = with_paths(load(__package__, "guard-confirm.sh"), "CHECKPOINT_DIR")
# The files of a checkpoint the probe reads (what START, the apply and the timer write), by name.
CHECKPOINT_FILES = ("owner", "generation", "digest", "changes", "started", "expires", "applied", "progress",
                    "rolled-back")
# The probe's section: this machine's checkpoints, one line each; their files join the probe's files section (see
# parse_checkpoints).
PROBE_SECTION = with_paths(with_values(load(__package__, "probe-checkpoints.sh"), "reconcile/kvmhost/guard.py",
                                       {"CHECKPOINT_FILES": CHECKPOINT_FILES}), "CHECKPOINT_DIR")


# --------------------------------------------------------------------------------------------------------------
# Pure helpers


def risky_actions(actions: Iterable[object], path: set[str]) -> list[HostAction]:
    """The commands that name an interface of the management path."""
    return [a for a in actions if isinstance(a, HostAction) and path & set(a.argv())]


def split_guarded(actions: Sequence[HostAction], risky: Sequence[HostAction]) -> tuple[list[HostAction],
                                                                                         list[HostAction]]:
    """(guarded, rest): every action up to the last risky one is applied under the checkpoint, in plan order (a
    bridge is created before a NIC joins it); the rest is applied normally once the change is confirmed."""
    if not risky:
        return [], list(actions)
    last = max(i for i, a in enumerate(actions) if a in risky)
    return list(actions[: last + 1]), list(actions[last + 1:])


def apply_script(actions: Sequence[HostAction]) -> str:
    """The detached apply: each command quoted with shlex (as the SSH driver sends one), stdin fed from base64,
    stopping at the first failure; `$1/progress` counts the commands done."""
    lines = ["# stackops: management-path changes, run detached from the SSH session ($1: the checkpoint)",
             "set -u", 'dir="$1"', 'echo 0 > "$dir/progress"']
    for number, action in enumerate(actions, 1):
        command = shlex.join(action.argv())
        data = action.stdin()
        if data is not None:
            encoded = base64.b64encode(data.encode("utf-8")).decode("ascii")
            command = f"printf '%s' {shlex.quote(encoded)} | base64 -d | {command}"
        else:
            command += " </dev/null"
        lines.append(f"printf '%s\\n' {shlex.quote('== ' + action.describe())}")
        lines.append(f"{command} || exit $?")
        lines.append(f'echo {number} > "$dir/progress"')
    return "\n".join(lines) + "\n"


def new_checkpoint_id(now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(4)}"


def spec_digest(spec: BaseModel) -> str:
    """Identifies the spec a change was planned from (a recreated object restarts at generation 1)."""
    return hashlib.sha256(spec.model_dump_json(by_alias=True).encode()).hexdigest()[:16]


def apply_wait(timeout: int) -> int:
    """Seconds the START round trip waits for the apply to finish: short, leaving most of the timeout for
    reconnecting."""
    return max(1, min(10, timeout // 5))


def start_args(checkpoint: str, timeout: int, generation: int, owner: str, digest: str,
               changes: Sequence[HostAction], path: Iterable[str]) -> list[str]:
    if not ID_PATTERN.match(checkpoint):
        raise ValueError(f"invalid checkpoint id {checkpoint!r}")
    summary = "; ".join(a.describe() for a in changes)
    return [checkpoint, str(timeout), str(apply_wait(timeout)), str(generation), owner, digest, summary,
            *sorted(path)]


def _decode(value: str) -> str:
    try:
        return base64.b64decode(value).decode("utf-8", errors="replace").strip("\n")
    except ValueError:
        return ""


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None and value.strip() else None
    except ValueError:
        return None


def parse_checkpoints(body: str, files: Mapping[str, bytes | None] | None = None) -> tuple[int | None,
                                                                                          tuple[Checkpoint, ...]]:
    """The probe's `checkpoints` section: (the host's clock, the checkpoints sorted by id, i.e. by time). A
    checkpoint's line has its markers (`confirmed=`, `decided=`); the values of its files are on the line too
    (`owner=<base64>`: the probe before issue 18) or among the probe's `files` (path → content)."""
    now: int | None = None
    found: list[Checkpoint] = []
    for line in body.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "now":
            now = _int(words[1])
        elif len(words) >= 2 and words[0] == "checkpoint" and ID_PATTERN.match(words[1]):
            values: dict[str, str] = {}
            for word in words[2:]:
                key, _, value = word.partition("=")
                values[key] = _decode(value)
            for key in CHECKPOINT_FILES:
                content = (files or {}).get(f"{CHECKPOINT_DIR}/{words[1]}/{key}")
                if content is not None:
                    values[key] = content.decode("utf-8", errors="replace").strip("\n")
            rolled_time = rolled_reason = None
            if "rolled-back" in values:
                marker = dict(row.partition(" ")[::2] for row in values["rolled-back"].splitlines())
                rolled_time, rolled_reason = marker.get("time", ""), marker.get("reason", "")
            found.append(Checkpoint(
                id=words[1], owner=values.get("owner", ""), generation=_int(values.get("generation")),
                digest=values.get("digest", ""), changes=values.get("changes", ""),
                started=_int(values.get("started")), expires=_int(values.get("expires")),
                applied=_int(values.get("applied")), progress=_int(values.get("progress")) or 0,
                confirmed="confirmed" in values, decided="decided" in values,
                rolled_back_time=rolled_time, rolled_back_reason=rolled_reason))
    return now, tuple(sorted(found, key=lambda c: c.id))


@dataclass(frozen=True)
class StartResult:
    applied: int | None  # exit status of the apply, None: still running when START returned


def parse_start(stdout: str) -> StartResult:
    for line in reversed(stdout.splitlines()):
        words = line.split()
        if words[:1] == ["applied"] and len(words) == 2:
            return StartResult(applied=_int(words[1]))
        if words == ["running"]:
            return StartResult(applied=None)
    return StartResult(applied=None)


@dataclass(frozen=True)
class ConfirmResult:
    state: str  # confirmed | running | reverting | rolled-back | missing
    applied: int | None = None
    progress: int = 0
    log: str = ""


def parse_confirm(stdout: str) -> ConfirmResult:
    values = dict(line.partition(" ")[::2] for line in stdout.splitlines() if line.strip())
    return ConfirmResult(state=values.get("state", "missing").strip() or "missing",
                         applied=_int(values.get("applied")), progress=_int(values.get("progress")) or 0,
                         log=_decode(values.get("log", "").strip()))


def latest(checkpoints: Iterable[Checkpoint], owner: str, *states: str, now: int | None = None) -> Checkpoint | None:
    """The newest checkpoint of `owner` in one of `states`."""
    mine = [c for c in checkpoints if c.owner == owner and c.state(now) in states]
    return mine[-1] if mine else None


def rollback_status(checkpoint: Checkpoint, address: str) -> dict[str, object]:
    """`status.rollback` for a rolled-back checkpoint."""
    return {"generation": checkpoint.generation or 0, "time": checkpoint.rolled_back_time or "",
            "reason": rollback_reason(checkpoint, address)}


def rollback_reason(checkpoint: Checkpoint, address: str) -> str:
    return (f"the change [{checkpoint.changes or 'unknown'}] on the path to the management address {address} was "
            f"reverted by the host (checkpoint {checkpoint.id} in {CHECKPOINT_DIR}): "
            f"{checkpoint.rolled_back_reason or 'no confirmation from the operator'}")
