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
probe.py); a rolled-back one becomes `status.rollback`, and the same plan is not tried again for the same
generation of the same spec.

Everything from the spec reaches the host as positional arguments or as commands quoted with `shlex` (exactly as
the SSH driver quotes a command), never interpolated into script text.
"""
from __future__ import annotations

import base64
import hashlib
import re
import secrets
import shlex
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

from pydantic import BaseModel

from .actions import HostAction
from .observed import Checkpoint

CHECKPOINT_DIR = "/var/lib/stackops/checkpoint"
RETENTION_DAYS = 7  # finished checkpoints of other (maybe deleted) objects are removed after this long
ID_PATTERN = re.compile(r"^[0-9A-Za-z-]{1,64}$")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Route flags `ip route show` prints that `ip route replace` does not take.
_ROUTE_FLAGS = r"s/ (linkdown|dead|offload|trap|rt_offload|rt_trap|rt_offload_failed|pervasive)( |$)/ /g; s/ +$//"

# The revert timer: `sh revert.sh <checkpoint dir> <seconds>`, started detached by START.
REVERT = f"""# stackops: restores this checkpoint unless the operator confirms it within $2 seconds
set -u
export LC_ALL=C PATH={PATH}
dir=$1 timeout=$2
n=0
while [ "$n" -lt "$timeout" ]; do
  [ -d "$dir" ] || exit 0
  [ -e "$dir/confirmed" ] && exit 0
  sleep 1
  n=$((n + 1))
done
mkdir "$dir/decided" 2>/dev/null || exit 0  # the operator confirmed first
fail() {{ printf '%s\\n' "$*" >> "$dir/revert.errors"; }}
if [ ! -e "$dir/applied" ] && [ -s "$dir/apply.pid" ]; then  # the change is still being applied: stop it
  pid=$(cat "$dir/apply.pid")
  kill -s TERM -- "-$pid" 2>/dev/null
  sleep 1
  kill -s KILL -- "-$pid" 2>/dev/null
fi
ovsdb-client restore < "$dir/ovsdb.backup" || fail "ovsdb-client restore failed"
sleep 1  # ovs-vswitchd reconfigures from the restored database: bridges and ports of the change go away
exists() {{ ip link show dev "$1" >/dev/null 2>&1 </dev/null; }}
set -f
while read -r kind name value rest; do
  [ "$kind" = link ] || continue
  if [ -n "$value" ]; then ip link set dev "$name" mtu "$value" </dev/null || fail "MTU $value on $name"; fi
  ip link set dev "$name" "$rest" </dev/null || fail "link $name $rest"
done < "$dir/network"
for name in $(awk '$1 == "link" {{ print $2 }}' "$dir/network"); do
  for cidr in $(ip -4 -o addr show dev "$name" 2>/dev/null </dev/null | awk '{{ print $4 }}'); do
    grep -qxF "addr $name $cidr" "$dir/network" || ip addr del "$cidr" dev "$name" </dev/null \\
      || fail "remove $cidr from $name"
  done
done
while read -r kind name cidr rest; do
  [ "$kind" = addr ] || continue
  for other in $(ip -4 -o addr show </dev/null | awk -v ip="${{cidr%/*}}" -v keep="$name" \\
      '{{ sub(/@.*/, "", $2); split($4, a, "/"); if (a[1] == ip && $2 != keep) print $2 "=" $4 }}'); do
    ip addr del "${{other#*=}}" dev "${{other%%=*}}" </dev/null || ! exists "${{other%%=*}}" \
      || fail "remove ${{other#*=}} from ${{other%%=*}}"
  done
  ip addr replace "$cidr" dev "$name" </dev/null || fail "address $cidr on $name"
  if command -v arping >/dev/null 2>&1; then arping -q -U -c 1 -I "$name" "${{cidr%/*}}" </dev/null || true; fi
done < "$dir/network"
while read -r kind name route; do
  [ "$kind" = route ] || continue
  ip route replace $route dev "$name" </dev/null || fail "route $route dev $name"
done < "$dir/network"
names=$(awk '$1 == "link" {{ printf "%s%s", sep, $2; sep = ", " }}' "$dir/network")
reason="no confirmation from the operator within ${{timeout}}s, so the host restored the Open vSwitch database and \\
the links, addresses and routes of ${{names:-no interface}} as they were before the change"
if [ -s "$dir/revert.errors" ]; then reason="$reason, with errors: $(tr '\\n' ';' < "$dir/revert.errors")"; fi
{{ printf 'time %s\\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"; printf 'reason %s\\n' "$reason"; }} > "$dir/rolled-back.new"
mv -f "$dir/rolled-back.new" "$dir/rolled-back"
"""

# One round trip: clean up, checkpoint, start the timer, start the apply (its script on stdin), wait a moment.
# `sh -c START stackops-checkpoint ID TIMEOUT WAIT GENERATION OWNER DIGEST CHANGES IFACE…`.
# Exit 3: no checkpoint or no timer, so nothing was changed.
START = f"""set -u
umask 077
export LC_ALL=C PATH={PATH}
id=$1 timeout=$2 wait=$3 generation=$4 owner=$5 digest=$6 changes=$7
shift 7
case $id in ''|*[!0-9A-Za-z-]*) echo "invalid checkpoint id" >&2; exit 3;; esac
for tool in ovsdb-client ip setsid awk sed base64; do
  command -v "$tool" >/dev/null 2>&1 || {{ echo "$tool not found on the host" >&2; exit 3; }}
done
base={CHECKPOINT_DIR}
dir=$base/$id
mkdir -p "$base" || exit 3
machine=$(cat /etc/machine-id 2>/dev/null || true)
now=$(date +%s)
for old in "$base"/*/; do  # finished checkpoints: this object's, and anyone's after {RETENTION_DAYS} days
  old=${{old%/}}
  [ -d "$old" ] || continue
  [ "$(cat "$old/machine-id" 2>/dev/null || true)" = "$machine" ] || continue
  if [ -e "$old/confirmed" ] || [ -e "$old/rolled-back" ]; then :
  elif [ ! -d "$old/decided" ] && [ "$(cat "$old/expires" 2>/dev/null || echo 0)" -lt "$((now - 30))" ]; then :
  else continue
  fi
  if [ "$(cat "$old/owner" 2>/dev/null || true)" = "$owner" ] \\
      || [ -n "$(find "$old" -maxdepth 0 -mtime +{RETENTION_DAYS} 2>/dev/null)" ]; then
    rm -rf "$old"
  fi
done
mkdir "$dir" || exit 3
printf '%s\\n' "$machine" > "$dir/machine-id"
if ! ovsdb-client backup > "$dir/ovsdb.backup" 2> "$dir/checkpoint.log"; then
  echo "ovsdb-client backup failed: $(tail -n 3 "$dir/checkpoint.log")" >&2
  rm -rf "$dir"
  exit 3
fi
ip -j addr show > "$dir/ip-addr.json" 2>/dev/null
ip -j -4 route show > "$dir/ip-route.json" 2>/dev/null
for i in "$@"; do
  link=$(ip -o link show dev "$i" 2>/dev/null) || continue
  printf '%s\\n' "$link" | awk -v i="$i" '{{ up = ($3 ~ /[<,]UP[,>]/) ? "up" : "down"; mtu = ""
    for (n = 1; n < NF; n++) if ($n == "mtu") mtu = $(n + 1)
    print "link", i, mtu, up }}'
  ip -4 -o addr show dev "$i" | awk -v i="$i" '{{ print "addr", i, $4 }}'
  ip -4 route show dev "$i" | sed -E '{_ROUTE_FLAGS}' | awk -v i="$i" 'NF {{ print "route", i, $0 }}'
done > "$dir/network"
printf '%s\\n' "$owner" > "$dir/owner"
printf '%s\\n' "$generation" > "$dir/generation"
printf '%s\\n' "$digest" > "$dir/digest"
printf '%s\\n' "$changes" > "$dir/changes"
cat > "$dir/apply.sh"
cat > "$dir/revert.sh" <<'STACKOPS_REVERT'
{REVERT}STACKOPS_REVERT
started=$(date +%s)
printf '%s\\n' "$started" > "$dir/started"
printf '%s\\n' "$((started + timeout))" > "$dir/expires"
setsid sh "$dir/revert.sh" "$dir" "$timeout" </dev/null >>"$dir/revert.log" 2>&1 &
timer=$!
echo "$timer" > "$dir/timer.pid"
if ! kill -0 "$timer" 2>/dev/null; then  # never apply without a running timer
  echo "the revert timer did not start: $(tail -n 3 "$dir/revert.log")" >&2
  rm -rf "$dir"
  exit 3
fi
setsid sh -c 'sh "$1/apply.sh" "$1"; echo "$?" > "$1/applied.new"; mv -f "$1/applied.new" "$1/applied"' \\
  stackops-apply "$dir" </dev/null >>"$dir/apply.log" 2>&1 &
echo "$!" > "$dir/apply.pid"
n=0
while [ ! -e "$dir/applied" ] && [ "$n" -lt "$((wait * 10))" ]; do
  sleep 0.1 2>/dev/null || sleep 1
  n=$((n + 1))
done
if [ -e "$dir/applied" ]; then echo "applied $(cat "$dir/applied")"; else echo running; fi
"""

# Confirm checkpoint $1 once its apply has finished (over a connection opened after the change): prints
# `state confirmed|running|reverting|rolled-back|missing`, then `applied N`, `progress N`, `log <base64>`.
CONFIRM = f"""set -u
export LC_ALL=C PATH={PATH}
case ${{1:-}} in ''|*[!0-9A-Za-z-]*) echo "state missing"; exit 0;; esac
dir={CHECKPOINT_DIR}/$1
if [ ! -d "$dir" ]; then echo "state missing"; exit 0; fi
if [ -e "$dir/confirmed" ]; then state=confirmed
elif [ -e "$dir/rolled-back" ]; then state=rolled-back
elif [ -d "$dir/decided" ]; then state=reverting
elif [ ! -e "$dir/applied" ]; then state=running
elif mkdir "$dir/decided" 2>/dev/null; then : > "$dir/confirmed"; state=confirmed
else state=reverting
fi
echo "state $state"
if [ -e "$dir/applied" ]; then echo "applied $(cat "$dir/applied")"; fi
if [ -e "$dir/progress" ]; then echo "progress $(cat "$dir/progress")"; fi
echo "log $(tail -n 20 "$dir/apply.log" 2>/dev/null | base64 | tr -d '\\n')"
"""

# The probe's section: this machine's checkpoints, one line each, values base64 (see parse_checkpoints).
PROBE_SECTION = f"""section checkpoints -
if [ -d {CHECKPOINT_DIR} ]; then
  machine=$(cat /etc/machine-id 2>/dev/null || true)
  printf 'now %s\\n' "$(date +%s)"
  for d in {CHECKPOINT_DIR}/*/; do
    d=${{d%/}}
    [ -d "$d" ] || continue
    [ "$(cat "$d/machine-id" 2>/dev/null || true)" = "$machine" ] || continue
    printf 'checkpoint %s' "${{d##*/}}"
    for f in owner generation digest changes started expires applied progress rolled-back; do
      if [ -f "$d/$f" ]; then printf ' %s=%s' "$f" "$(base64 < "$d/$f" | tr -d '\\n')"; fi
    done
    if [ -e "$d/confirmed" ]; then printf ' confirmed='; fi
    if [ -d "$d/decided" ]; then printf ' decided='; fi
    printf '\\n'
  done
fi
"""


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


def parse_checkpoints(body: str) -> tuple[int | None, tuple[Checkpoint, ...]]:
    """The probe's `checkpoints` section: (the host's clock, the checkpoints sorted by id, i.e. by time)."""
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
