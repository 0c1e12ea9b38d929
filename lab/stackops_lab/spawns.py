"""How many processes a shell script starts on a KVM lab host: the script runs in the host's namespaces under
`strace -f` (as an SSH session runs it: `sh -s -- ARGS`, the script on stdin, as root), and every process its shell
creates, and their children, is counted (fork, vfork, clone without CLONE_THREAD: a subshell counts, a thread does
not). The shell itself is not counted: it is the SSH round trip's, whatever the script does.

The lab's stand-ins for programs that are one process on a real host (the `systemctl` and `service` shims,
hostfiles.py: shell scripts) count as one process each: what they start is the lab's, not the script's, and is
listed apart (`Spawned.lab`).

Needs strace (scripts/install-system-deps.sh installs it). Deterministic: the count does not depend on timing.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from stackops_lab.controlplane import LabError, require_packages
from stackops_lab.hosts import LabHost

# The lab's stand-ins (hosts.py mounts hostfiles' shims there): one process each, as the real programs are.
SHIMS = ("/usr/local/sbin/systemctl", "/usr/bin/systemctl", "/usr/local/sbin/service", "/usr/sbin/service",
         "/usr/local/sbin/stackops-lab-xapi")
_LINE = re.compile(r"^(\d+)\s+(.*)$")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(-?\d+)")
_EXEC_PATH = re.compile(r'^"((?:[^"\\]|\\.)*)"')
_EXIT = "\n@@stackops-lab-exit "


@dataclass
class Spawned:
    """What a script started: `commands`, one per process it started (the program it ran, or `(subshell)` for a
    fork that ran no program), in the order they were created; `lab`: what the lab's shims started."""

    commands: list[str] = field(default_factory=list)
    lab: list[str] = field(default_factory=list)
    exit_status: int = 0
    stdout: str = field(default="", repr=False)  # what the script printed

    @property
    def count(self) -> int:
        return len(self.commands)


def count(trace: str, shims: Sequence[str] = SHIMS) -> Spawned:
    """The processes in an `strace -f -e trace=process` log whose first line is the script's shell."""
    pending: dict[str, str] = {}
    parent: dict[str, str] = {}
    program: dict[str, str] = {}
    created: list[str] = []
    root: str | None = None
    for line in trace.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        pid, rest = match.groups()
        root = root or pid
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")]
            continue
        resumed = _RESUMED.match(rest)
        if resumed:
            rest = pending.pop(pid, resumed.group(1) + "(") + resumed.group(2)
        call = _CALL.match(rest)
        if not call:
            continue
        name, arguments, result = call.group(1), call.group(2), int(call.group(3))
        if name in ("fork", "vfork", "clone", "clone3") and result > 0 and "CLONE_THREAD" not in arguments:
            parent[str(result)] = pid
            created.append(str(result))
        elif name in ("execve", "execveat") and result == 0:
            path = _EXEC_PATH.match(arguments)
            program[pid] = path.group(1) if path else "?"
    spawned = Spawned()
    for pid in created:
        ancestors, up = [], parent.get(pid)
        while up is not None and up != root:
            ancestors.append(up)
            up = parent.get(up)
        what = program.get(pid, "(subshell)")
        (spawned.lab if any(program.get(a) in shims for a in ancestors) else spawned.commands).append(what)
    return spawned


def spawned_by(host: LabHost, script: str, args: Sequence[str] = (), timeout: float = 120) -> Spawned:
    """Run `script` with `args` on `host` under strace and count what it started."""
    require_packages(["strace"])
    command = (f"strace -f -q -e trace=process -e signal=none -o /dev/fd/3 sh -s -- {shlex.join(args)}"
               f" 3>&2 2>/dev/null; printf '{_EXIT}%s\\n' \"$?\"")
    result = host.run(command, timeout=timeout, input=script)
    stdout, marker, status = result.stdout.rpartition(_EXIT)
    if not marker or not result.stderr.strip():
        raise LabError(f"{host.name}: strace did not run (exit {result.returncode}): {result.stderr.strip()[-300:]}")
    spawned = count(result.stderr)
    spawned.exit_status, spawned.stdout = int(status.strip() or -1), stdout
    return spawned
