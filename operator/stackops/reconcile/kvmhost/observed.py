"""What observe finds on a KVM host: typed facts parsed from the one batched probe."""
from __future__ import annotations

from dataclasses import dataclass, field

OWNER_KEY = "stackops-owner"
ADDRESSES_KEY = "stackops-addresses"


def file_text(data: bytes) -> str:
    """A configuration file's bytes as text: UTF-8, and each byte that is not UTF-8 (an admin's Latin-1 `é`, …)
    as one lone surrogate (surrogateescape), so that `file_bytes` gives the file's bytes back unchanged."""
    return data.decode("utf-8", "surrogateescape")


def file_bytes(text: str) -> bytes:
    """The bytes of a file's text (inverse of `file_text`): lines stackops did not edit keep their bytes."""
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class OvsInterface:
    name: str
    type: str = ""  # "" (system NIC), internal, vxlan, gre, …
    options: dict[str, str] = field(default_factory=dict)
    mtu_request: int | None = None
    mtu: int | None = None
    external_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OvsPort:
    name: str
    bridge: str
    interfaces: tuple[str, ...]
    tag: int | None = None
    fake_bridge: bool = False
    bond_mode: str | None = None
    lacp: str | None = None
    other_config: dict[str, str] = field(default_factory=dict)
    external_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OvsBridge:
    name: str
    datapath_type: str = ""
    external_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OvsState:
    """The Open vSwitch database: bridges, ports and interfaces by name, plus the manager."""

    bridges: dict[str, OvsBridge] = field(default_factory=dict)
    ports: dict[str, OvsPort] = field(default_factory=dict)
    interfaces: dict[str, OvsInterface] = field(default_factory=dict)
    managers: tuple[str, ...] = ()
    manager_connected: bool = False
    ssl_configured: bool = False
    ssl_private_key: str = ""  # `ovs-vsctl get-ssl`: the files the SSL table names
    ssl_certificate: str = ""
    ssl_ca_certificate: str = ""
    ssl_bootstrap: bool = False

    def owned_by(self, owner: str) -> tuple[list[OvsBridge], list[OvsPort]]:
        bridges = [b for b in self.bridges.values() if b.external_ids.get(OWNER_KEY) == owner]
        ports = [p for p in self.ports.values() if p.external_ids.get(OWNER_KEY) == owner]
        return bridges, ports


@dataclass(frozen=True)
class ClientFile:
    """A file of the OVSDB client certificate written from a Secret, as the probe sees it (never its content)."""

    mode: str  # octal, as `stat -c %a` shows it
    digest: str  # SHA-256 of the content, hex


@dataclass(frozen=True)
class Service:
    name: str
    active: bool


EXPIRY_GRACE_SECONDS = 30  # a checkpoint still undecided this long after its deadline has lost its timer


@dataclass(frozen=True)
class Checkpoint:
    """A guarded change on the host (a directory under /var/lib/stackops/checkpoint): what was changed, for which
    object and generation, and how it ended."""

    id: str
    owner: str = ""  # namespace/name of the KvmHost
    generation: int | None = None
    digest: str = ""  # of the spec the change was planned from
    changes: str = ""  # the management-path changes, as described to people
    started: int | None = None  # host clock, seconds since the epoch
    expires: int | None = None  # when the host reverts unless confirmed
    applied: int | None = None  # exit status of the apply; None while it runs
    progress: int = 0  # commands of the apply that completed
    confirmed: bool = False
    decided: bool = False  # the operator confirmed or the timer started reverting (whoever came first)
    rolled_back_time: str | None = None  # RFC 3339, once the host has reverted
    rolled_back_reason: str | None = None

    def state(self, now: int | None) -> str:
        """confirmed | rolled-back | reverting | pending | expired (undecided long after its deadline: its timer
        is gone, e.g. the host rebooted)."""
        if self.confirmed:
            return "confirmed"
        if self.rolled_back_time is not None:
            return "rolled-back"
        if self.decided:
            return "reverting"
        if now is not None and self.expires is not None and now > self.expires + EXPIRY_GRACE_SECONDS:
            return "expired"
        return "pending"


@dataclass(frozen=True)
class HostState:
    """Everything one probe of a KVM host found."""

    os_name: str | None
    kernel: str | None
    package_manager: str | None  # apt | dnf | yum | None
    packages: dict[str, str | None]  # package name → installed version (None: not installed)
    ovs_version: str | None
    libvirt_version: str | None
    qemu_version: str | None
    agent_version: str | None
    ovs: OvsState | None  # None: Open vSwitch is not running
    files: dict[str, str | None]  # path → content as file_text decodes it (None: missing)
    addresses: dict[str, tuple[str, ...]]  # interface → IPv4 CIDRs
    links_up: dict[str, bool]
    services: dict[str, bool]  # service → active
    apparmor: str | None  # "enabled" | "disabled" | None (not present)
    apparmor_profiles_disabled: tuple[str, ...]
    selinux: str | None  # Enforcing | Permissive | Disabled | None
    selinux_config: str | None
    certificate_fingerprint: str | None
    libvirt_tcp_listening: bool
    checkpoints: tuple[Checkpoint, ...] = ()  # guarded changes recorded on this host, oldest first
    host_time: int | None = None  # the host's clock when probed (seconds since the epoch)
    # apt only, and only looked up when a package is to be installed (missing, or not the pinned version):
    package_index_age: int | None = None  # seconds since the newest index file changed; None: no index
    available: dict[str, tuple[str, ...]] = field(default_factory=dict)  # package → versions the index lists
    client_files: dict[str, ClientFile] = field(default_factory=dict)  # clientCertificate: Secret's files present
    client_certificate_fingerprint: str | None = None  # SHA-1 of the certificate written from the Secret
    # what the probe's version sections name: `stat -L` identity of ovs-vsctl, libvirtd, QEMU → version (probe.Probe
    # keeps them, so that the next probe does not run `--version` again)
    binary_versions: dict[str, str | None] = field(default_factory=dict)
    # the identity of the apt-index answer (`apt-index:<index time>:<files>:<bytes>:<names…>`): probe.Probe keeps
    # `available` under it, so that the next probe does not run `apt-cache madison` again for the same question
    package_index: str | None = None
    # whether the host says it needs a reboot: the sentinel /var/run/reboot-required (any host), or on EL `needs-
    # restarting -r` (exit 1: needed, 0: not); None: not known (EL without needs-restarting, or a probe that did
    # not look)
    reboot_required: bool | None = None
    # the packages that asked for it: /var/run/reboot-required.pkgs (Debian), or the `  * name` lines
    # needs-restarting -r prints (EL); each once, in their order
    reboot_required_by: tuple[str, ...] = ()
    # this boot: its id (/proc/sys/kernel/random/boot_id; a different one means the host rebooted) and when it began
    # (seconds since the epoch: the kernel's btime plus PID 1's start; None when not read)
    boot_id: str | None = None
    boot_time: float | None = None
