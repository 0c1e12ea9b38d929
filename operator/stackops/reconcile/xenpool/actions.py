"""The changes a XenPool reconcile makes through the pool API, as small frozen dataclasses."""
from __future__ import annotations

from dataclasses import dataclass

from ..base import Action


@dataclass(frozen=True)
class PoolAction(Action):
    needs_ha_off = False  # membership changes: refused by xapi with HA_IS_ENABLED


@dataclass(frozen=True)
class JoinHost(PoolAction):
    name: str
    address: str

    needs_ha_off = True
    disruptive = True
    operation = "add"

    def describe(self) -> str:
        return f"join host {self.name} ({self.address}) to the pool"


@dataclass(frozen=True)
class EjectHost(PoolAction):
    name: str
    ref: str
    address: str = ""

    needs_ha_off = True
    disruptive = True
    operation = "remove"

    def describe(self) -> str:
        return f"eject host {self.name} from the pool (it resets and reboots)"


@dataclass(frozen=True)
class DesignateMaster(PoolAction):
    name: str
    address: str

    needs_ha_off = True
    disruptive = True
    operation = "change"

    def describe(self) -> str:
        return f"designate {self.name} as the new pool master"


@dataclass(frozen=True)
class EnableHA(PoolAction):
    sr_uuid: str
    sr_name: str
    timeout: int
    why: str = ""

    operation = "add"

    def describe(self) -> str:
        why = f" ({self.why})" if self.why else ""
        return f"enable pool HA on heartbeat SR {self.sr_name} with timeout {self.timeout}s{why}"


@dataclass(frozen=True)
class DisableHA(PoolAction):
    why: str

    disruptive = True
    operation = "remove"

    def describe(self) -> str:
        return f"disable pool HA ({self.why})"


@dataclass(frozen=True)
class SetHostFailuresToTolerate(PoolAction):
    value: int

    operation = "change"

    def describe(self) -> str:
        return f"set ha-host-failures-to-tolerate to {self.value}"


@dataclass(frozen=True)
class SetAllowOvercommit(PoolAction):
    value: bool

    operation = "change"

    def describe(self) -> str:
        return f"set ha-allow-overcommit to {str(self.value).lower()}"


@dataclass(frozen=True)
class SetVSwitchController(PoolAction):
    address: str
    current: str

    operation = "change"

    def describe(self) -> str:
        return f"set the pool's vswitch controller to {self.address or 'none'} (was {self.current or 'none'})"


@dataclass(frozen=True)
class ClearVMPriority(PoolAction):
    ref: str
    name: str
    current: str

    operation = "change"

    def describe(self) -> str:
        return f"clear the HA restart priority {self.current!r} of VM {self.name}"


@dataclass(frozen=True)
class EnableHost(PoolAction):
    name: str
    ref: str

    operation = "add"

    def describe(self) -> str:
        return f"enable host {self.name}, found disabled"


@dataclass(frozen=True)
class MakeHostUnique(PoolAction):
    """A cloned host outside the pool, fixed over dom0 SSH: new INSTALLATION_UUID and CONTROL_DOMAIN_UUID, xapi
    state DB removed, xapi restarted (it comes back as a fresh standalone pool), name label set to `name`."""

    name: str
    address: str
    uuid: str  # the UUID it shares with another host

    disruptive = True
    operation = "change"

    def describe(self) -> str:
        return (f"make host {self.name} ({self.address}) unique: it shares host UUID {self.uuid}; new UUIDs in "
                "/etc/xensource-inventory, xapi state DB removed, xapi restarted, name label set")


@dataclass(frozen=True)
class SetHostName(PoolAction):
    """A host whose name label another host also has, renamed to its member name."""

    name: str
    address: str
    current: str

    operation = "change"

    def describe(self) -> str:
        return f"set the name label of host {self.address} to {self.name} (was {self.current!r}, not unique)"


# ---------------------------------------------------------------------------------------------------- maintenance


@dataclass(frozen=True)
class UploadUpdate(PoolAction):
    """An update file fetched by URL, checked against its SHA-256 and made known to the pool."""

    name: str
    legacy: bool = False

    operation = "add"

    def describe(self) -> str:
        how = "/pool_patch_upload" if self.legacy else "/import_raw_vdi and pool_update.introduce"
        return f"download update {self.name}, check its SHA-256, upload it to the pool ({how})"


@dataclass(frozen=True)
class StartRoll(PoolAction):
    """Prechecks on every host, then HA's state recorded and HA disabled."""

    request: str
    hosts: int
    ha_enabled: bool

    disruptive = True
    operation = "change"

    def describe(self) -> str:
        ha = "; record HA's configuration and disable HA" if self.ha_enabled else ""
        return f"start rolling maintenance of {self.hosts} host(s) ({self.request}): precheck the updates on every host{ha}"


@dataclass(frozen=True)
class HostTurnAction(PoolAction):
    """One host's turn: emptied, updated, rebooted if it must be, back in service."""

    name: str
    master: bool
    updates: tuple[str, ...]
    reboot: bool | None
    cloudstack: bool

    disruptive = True
    operation = "change"

    def describe(self) -> str:
        steps = []
        if self.reboot is not False:
            if self.cloudstack:
                steps.append("CloudStack maintenance" + (" (cluster Unmanaged for its turn)" if self.master else ""))
            steps.append("disable and evacuate")
        if self.updates:
            steps.append("apply " + ", ".join(self.updates))
        if self.reboot:
            steps.append("reboot and wait until it is back and enabled")
        elif self.reboot is None:
            steps.append("reboot if an update's guidance says restartHost")
        if self.reboot is not False and self.cloudstack:
            steps.append("Up in CloudStack, maintenance cancelled")
        role = " (master)" if self.master else ""
        return f"host {self.name}{role}: " + ", ".join(steps)


@dataclass(frozen=True)
class EndRoll(PoolAction):
    """HA back as it was recorded, the cluster Managed."""

    ha_enabled: bool

    operation = "change"

    def describe(self) -> str:
        return "end the roll: " + ("enable HA again as it was recorded" if self.ha_enabled else "HA stays off as it was")
