"""The changes the KvmHost reconciler can make, each one command on the host (argv, quoted by the SSH driver)."""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Literal

from ..base import Action
from ..shell import load
from .observed import file_bytes
from .paths import with_paths

OVS_TIMEOUT = "--timeout=30"

# Scripts run as `sh -c SCRIPT NAME ARGS…` (scripts/*.sh): paths are positional arguments, never part of the text.
# The write-file scripts take the content on stdin in base64: a file's bytes need not be UTF-8 (observed.file_text),
# and the SSH driver and the guarded apply send text as UTF-8.
WRITE_FILE = load(__package__, "write-file.sh")  # atomically, with a backup of the previous content
WRITE_FILE_NO_BACKUP = load(__package__, "write-file-no-backup.sh")  # for apt's sources.list.d
WRITE_READABLE_FILE = load(__package__, "write-readable-file.sh")  # mode 0644, no backup: a repository key
WRITE_PRIVATE_FILE = load(__package__, "write-private-file.sh")  # mode 0600 from the first byte, no backup

# apt-get run by the operator: never a question (noninteractive; dpkg keeps a configuration file the operator
# edited and takes the package's version of an unmodified one: confdef + confold), no service restarts by
# needrestart (Ubuntu), and waiting for a dpkg lock another apt holds (unattended-upgrades) instead of failing.
APT_ENV = ("DEBIAN_FRONTEND=noninteractive", "NEEDRESTART_SUSPEND=1")
# An install installs the packages named and nothing else, and never removes one. apt takes an argument that is no
# package's exact name as a regular expression when it has one of `.?+*|[^$` (apt 2.6, Debian 12: `apt-get -s
# install ba.h` planned 403 new packages, `libc6.` 179), and a name ending in `-` as a removal.
# APT::Cmd::Pattern-Only=1 (what the `apt` command sets for itself since apt 2.0; apt-get's default is off, an
# older apt ignores it) leaves only explicit patterns: regexes anchored with ^ or $, globs with `*?[`, tasks ending
# in ^, `?`/`~` patterns, none of which a package name passes (api/kvmhost.py PackageName);
# `ba.h` and `libc6.` then fail with "Unable to locate package" (exit 100) while `python3.11`, `g++` and
# `name=version` install as before. `?exact-name(…)` is no alternative: a name no package has installs nothing
# and apt exits 0. --no-remove makes apt refuse (exit 100, "Packages need to be removed but remove is disabled")
# any plan that removes a package: `bash-`, or a package that conflicts with an installed one (sysvinit-core
# would remove 12). Checked with `apt-get -s` on Debian 12 (apt 2.6.1); tests/unit/test_kvmhost_package_commands.py
# runs the real apt-get -s on this argv where apt is installed.
APT_INSTALL_OPTIONS = ("-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
                       "-o", "DPkg::Lock::Timeout=300", "-o", "APT::Cmd::Pattern-Only=1", "--no-remove")

# Moves an address from a NIC that became a bridge port to an interface of that bridge, with the NIC's other
# routes (the default route, …): $1 the CIDR, $2 the NIC, $3 the new interface.
MOVE_ADDRESS = load(__package__, "move-address.sh")
# AppArmor profile $1 disabled (linked into disable/, unloaded) or enforced again; the directory from paths.py.
APPARMOR_DISABLE = with_paths(load(__package__, "apparmor-disable.sh"), "APPARMOR_DIR")
APPARMOR_ENFORCE = with_paths(load(__package__, "apparmor-enforce.sh"), "APPARMOR_DIR")
# ovs-pki's client key and self-signed certificate, made in directory $1 (clientCertificate: Generate).
OVS_PKI_GENERATE = load(__package__, "ovs-pki-generate.sh")


@dataclass(frozen=True)
class HostAction(Action):
    """A change made by running one command on the host. The planner says what each one does: a command adds or
    removes something only when its `operation` says so (one class, `ovs-vsctl` say, does all three)."""

    summary: str
    disruptive: bool = False  # type: ignore[misc]  # can interrupt workloads or the management path
    operation: Literal["add", "remove", "change"] = field(default="change", kw_only=True)  # type: ignore[misc]

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
class MoveAddress(HostAction):
    """Move an address (and the routes through its NIC) from a NIC that is now a bridge port to an interface of
    that bridge: the port's own address would be dead, and a second copy would answer on the wrong interface."""

    cidr: str = ""
    source: str = ""
    target: str = ""
    disruptive: bool = True  # type: ignore[misc]

    def argv(self) -> tuple[str, ...]:
        return ("sh", "-c", MOVE_ADDRESS, "stackops-move-address", self.cidr, self.source, self.target)


@dataclass(frozen=True)
class WriteFile(HostAction):
    """Replace a configuration file atomically (with a backup), content from the planner's key-by-key edit."""

    path: str = ""
    content: str = ""
    service: str | None = None  # restarted afterwards when its configuration changed
    backup: bool = True  # keep the previous content as <path>.stackops-backup
    readable: bool = False  # mode 0644, no backup (a repository key)

    def argv(self) -> tuple[str, ...]:
        script = WRITE_READABLE_FILE if self.readable else WRITE_FILE if self.backup else WRITE_FILE_NO_BACKUP
        return ("sh", "-c", script, "stackops-write-file", self.path)

    def stdin(self) -> str | None:
        return base64.b64encode(file_bytes(self.content)).decode("ascii")


@dataclass(frozen=True)
class WritePrivateFile(HostAction):
    """Write a file with mode 0600 (a private key, and the certificates that go with it). The content goes on
    stdin only: it is in no argv, description or repr."""

    path: str = ""
    content: str = field(default="", repr=False)
    owner_reference: str = ""  # a file whose owner the new file gets, when it exists

    def argv(self) -> tuple[str, ...]:
        return ("sh", "-c", WRITE_PRIVATE_FILE, "stackops-write-private-file", self.path, self.owner_reference)

    def stdin(self) -> str | None:
        return base64.b64encode(self.content.encode("utf-8")).decode("ascii")


@dataclass(frozen=True)
class RestartService(HostAction):
    service: str = ""

    def argv(self) -> tuple[str, ...]:
        return ("systemctl", "restart", self.service)


@dataclass(frozen=True)
class RefreshPackageIndex(HostAction):
    """Bring the package index up to date before an install: `apt-get update`; for dnf/yum, expire the metadata
    cache so that the install fetches the repositories' current metadata."""

    manager: str = "apt"

    def argv(self) -> tuple[str, ...]:
        if self.manager == "apt":
            return ("env", *APT_ENV, "apt-get", "-q", "update")
        return (self.manager, "clean", "expire-cache")


@dataclass(frozen=True)
class InstallPackages(HostAction):
    """Install packages (names, or exact versions as the manager spells them: `name=version` for apt,
    `name-version` for dnf/yum) with the host's package manager, without a question."""

    manager: str = "apt"
    packages: tuple[str, ...] = ()
    downgrade: bool = False  # a pinned version may be older than the installed one

    def argv(self) -> tuple[str, ...]:
        if self.manager == "apt":
            return ("env", *APT_ENV, "apt-get", "install", "-y", "-q", "--no-install-recommends",
                    *APT_INSTALL_OPTIONS, *(("--allow-downgrades",) if self.downgrade else ()), *self.packages)
        return (self.manager, "install", "-y", *self.packages)  # dnf installs an exact version up or down


@dataclass(frozen=True)
class RunCommand(HostAction):
    """Any other fixed command (ovs-pki, setenforce, apparmor_parser, …)."""

    command: tuple[str, ...] = ()

    def argv(self) -> tuple[str, ...]:
        return self.command
