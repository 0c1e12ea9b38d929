"""Local builds (`builder.type: Local`): the build runs in the operator's own container, so it must not reach the
operator's credentials — the ServiceAccount token that reads Secrets, a kubeconfig, and the Secrets the operator
holds in memory. A release's commands are the spec's (`mavenCommand`, `versionCommand`, the repository's own build,
patches from URLs): whoever may create a CloudStackRelease chooses them.

Local builds run only when the operator was started with `stackops run --allow-local-builds` (off in deploy/), and
then each script (observe, start, the detached pipeline, remove) runs like this:

1. The forked child, before it executes anything, enters new user and mount namespaces, makes every mount
   private, covers each hidden path — the ServiceAccount directory (`/var/run/secrets`), every `KUBECONFIG` file,
   `~/.kube` — with an empty read-only tmpfs (a file with /dev/null), drops its whole capability bounding set and
   sets no_new_privs. Only then does it execute the shell: nothing of the build ever runs where the credentials
   are visible.
2. The operator maps the build's user to its own (`<uid> <uid> 1`) and only then lets the shell read its script
   (a `go` line on stdin gates it). The build has no capability in any namespace: it cannot unmount the covers
   (a user namespace it makes itself gets them locked), nor regain privileges through setuid programs.
3. The environment is rebuilt from a short list (PATH, HOME, locale, TZ, TMPDIR, Java and Maven settings,
   proxies without credentials): no KUBECONFIG, no STACKOPS_* or *_TOKEN variable reaches a build.
4. The operator's memory (the Secrets it has read) is out of reach twice over: a process in another user
   namespace may not ptrace the operator or open its /proc files (environ, mem, root, fd) without CAP_SYS_PTRACE
   over the operator's namespace, and the operator is also made non-dumpable at start (`protect_operator`), which
   closes them to every process of its user and keeps its Secrets out of core dumps. A script is refused while
   the operator is dumpable.

Why this and not another separation: a separate Unix user needs root or CAP_SETUID, which the operator's container
does not have; a Kubernetes Job under its own ServiceAccount would need an image with Maven, a JDK and rpmbuild, RBAC
to create Jobs and a volume for the work tree — that is the SSH builder's job (a build host of its own), which is
the recommended builder. Unprivileged user namespaces need no privilege and no other image; where they are not
available (a container's seccomp profile, a chroot, a kernel setting) the build is refused
(`LocalBuildIsolationUnavailable`) rather than run unisolated.

What remains: a Local build runs as the operator's user, so it reads and writes what that user can apart from the
covered paths (every Local build's work directory among them) and may signal the operator and its other builds;
it shares the operator's network (whatever the pod may reach, a cloud metadata endpoint included). Use the SSH
builder for releases from people you would not give the operator's container to.
"""
from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SECRETS_DIR = "/var/run/secrets"  # the ServiceAccount token and any other projected credential

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 4096, 16384, 1 << 18
PR_GET_DUMPABLE, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 3, 4, 24, 38

# The variables a build keeps (and LC_*); proxies only without credentials in them.
KEPT = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "JAVA_HOME", "MAVEN_HOME",
                  "M2_HOME", "MAVEN_OPTS"})
PROXIES = frozenset({"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"})
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The shell waits for `go` (sent once its user is mapped), then reads its script from the rest of stdin.
GATE = 'IFS= read -r go && [ "$go" = go ] || exit 125; exec sh -s -- "$@"'
GO = b"go\n"


class IsolationUnavailable(Exception):
    """The namespaces that keep a build from the operator's credentials cannot be set up here."""


@dataclass(frozen=True)
class LocalBuilds:
    """Local builds are allowed; `hidden`: the paths covered in their mount namespace."""

    hidden: tuple[str, ...]

    @classmethod
    def discover(cls, secrets_dir: str = SECRETS_DIR, environ: Mapping[str, str] | None = None) -> "LocalBuilds":
        """The operator's credential paths: the ServiceAccount directory, every KUBECONFIG file, ~/.kube."""
        environ = os.environ if environ is None else environ
        paths = [secrets_dir, *(p for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p)]
        if environ.get("HOME"):
            paths.append(os.path.join(environ["HOME"], ".kube"))
        return cls(tuple(paths))


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.unshare.argtypes = [ctypes.c_int]
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return libc


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


def protect_operator() -> None:
    """Make this process non-dumpable (see the module's docstring, step 4)."""
    _check(_libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE, 0)")


def operator_protected() -> bool:
    return _libc().prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0


def build_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a build gets (step 3)."""
    env = {key: value for key, value in environ.items()
           if key in KEPT or key.startswith("LC_") or (key in PROXIES and "@" not in value)}
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def _covers(hidden: Sequence[str]) -> list[tuple[bytes, bool]]:
    """(real path, is a directory) of each hidden path that exists."""
    found: dict[bytes, bool] = {}
    for path in hidden:
        real = os.path.realpath(path)
        if os.path.exists(real):
            found[os.fsencode(real)] = os.path.isdir(real)
    return list(found.items())


def _enter(covers: list[tuple[bytes, bool]], last_cap: int, report: int) -> None:
    """In the forked child, before it executes anything (step 1). A failure is written to `report`."""
    libc = _libc()
    try:
        _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare(CLONE_NEWUSER|CLONE_NEWNS)")
        _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "making the mounts private")
        for path, directory in covers:
            if directory:
                _check(libc.mount(b"stackops-hidden", path, b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                  b"size=4k,mode=0555"), f"covering {os.fsdecode(path)}")
            else:
                _check(libc.mount(b"/dev/null", path, None, MS_BIND, None), f"covering {os.fsdecode(path)}")
        for capability in range(last_cap + 1):
            _check(libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0), "dropping the capability bounding set")
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    except OSError as error:
        os.write(report, str(error).encode()[:500])
        raise


def _map_user(pid: int) -> None:
    """The build's user and group are the operator's (step 2)."""
    uid, gid = os.geteuid(), os.getegid()
    for name, line in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/{pid}/{name}", "w") as file:
            file.write(line)


async def spawn(local: LocalBuilds, args: Sequence[str]) -> asyncio.subprocess.Process:
    """`sh -s -- ARGS` isolated as the module's docstring says, in a session of its own; the caller writes `GO` and
    then the script to its stdin."""
    if not operator_protected():
        raise IsolationUnavailable("the operator process is dumpable, so a build could read its memory through "
                                   "/proc (`stackops run --allow-local-builds` makes it non-dumpable at start)")
    covers = _covers(local.hidden)
    last_cap = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    report, report_to = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            "sh", "-c", GATE, "sh", *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=build_environment(os.environ), start_new_session=True,
            preexec_fn=functools.partial(_enter, covers, last_cap, report_to))
    except subprocess.SubprocessError:
        os.close(report_to)
        report_to = -1
        why = os.read(report, 1000).decode(errors="replace") or "the isolated process could not be started"
        raise IsolationUnavailable(why) from None
    finally:
        if report_to >= 0:
            os.close(report_to)
        os.close(report)
    try:
        _map_user(process.pid)
    except OSError as error:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise IsolationUnavailable(f"mapping the build's user: {error}") from None
    return process
