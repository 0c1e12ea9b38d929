"""The changes the KvmHost reconciler can make, each one command on the host (argv, quoted by the SSH driver)."""
from __future__ import annotations

from dataclasses import dataclass

from ..base import Action

OVS_TIMEOUT = "--timeout=30"

# Writes a file atomically, keeping a backup of the previous content: stdin → <path>.stackops-new → <path>.
# The path is a positional argument ($1), never part of the script text.
WRITE_FILE = (
    'set -e; f="$1"; mkdir -p "$(dirname "$f")"; '
    'if [ -f "$f" ]; then cp -p "$f" "$f.stackops-backup"; fi; '
    'cat > "$f.stackops-new"; '
    'if [ -f "$f" ]; then chmod --reference="$f" "$f.stackops-new"; chown --reference="$f" "$f.stackops-new"; fi; '
    'mv -f "$f.stackops-new" "$f"'
)


@dataclass(frozen=True)
class HostAction(Action):
    """A change made by running one command on the host."""

    summary: str
    disruptive: bool = False  # type: ignore[misc]  # can interrupt workloads or the management path

    def describe(self) -> str:
        return self.summary

    def argv(self) -> tuple[str, ...]:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def stdin(self) -> str | None:
        return None


@dataclass(frozen=True)
class OvsCommand(HostAction):
    """`ovs-vsctl` with one or more `--`-separated commands."""

    args: tuple[str, ...] = ()

    def argv(self) -> tuple[str, ...]:
        return ("ovs-vsctl", OVS_TIMEOUT, *self.args)


@dataclass(frozen=True)
class IpCommand(HostAction):
    """`ip` (addresses, link state)."""

    args: tuple[str, ...] = ()

    def argv(self) -> tuple[str, ...]:
        return ("ip", *self.args)


@dataclass(frozen=True)
class WriteFile(HostAction):
    """Replace a configuration file atomically (with a backup), content from the planner's key-by-key edit."""

    path: str = ""
    content: str = ""
    service: str | None = None  # restarted afterwards when its configuration changed

    def argv(self) -> tuple[str, ...]:
        return ("sh", "-c", WRITE_FILE, "stackops-write-file", self.path)

    def stdin(self) -> str | None:
        return self.content


@dataclass(frozen=True)
class RestartService(HostAction):
    service: str = ""

    def argv(self) -> tuple[str, ...]:
        return ("systemctl", "restart", self.service)


@dataclass(frozen=True)
class InstallPackages(HostAction):
    manager: str = "apt"
    packages: tuple[str, ...] = ()

    def argv(self) -> tuple[str, ...]:
        if self.manager == "apt":
            return ("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "--no-install-recommends",
                    *self.packages)
        return (self.manager, "install", "-y", *self.packages)


@dataclass(frozen=True)
class RunCommand(HostAction):
    """Any other fixed command (ovs-pki, setenforce, apparmor_parser, …)."""

    command: tuple[str, ...] = ()

    def argv(self) -> tuple[str, ...]:
        return self.command
