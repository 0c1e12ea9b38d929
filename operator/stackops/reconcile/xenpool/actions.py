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

    def describe(self) -> str:
        return f"join host {self.name} ({self.address}) to the pool"


@dataclass(frozen=True)
class EjectHost(PoolAction):
    name: str
    ref: str

    needs_ha_off = True
    disruptive = True

    def describe(self) -> str:
        return f"eject host {self.name} from the pool (it resets and reboots)"


@dataclass(frozen=True)
class DesignateMaster(PoolAction):
    name: str
    address: str

    needs_ha_off = True
    disruptive = True

    def describe(self) -> str:
        return f"designate {self.name} as the new pool master"


@dataclass(frozen=True)
class EnableHA(PoolAction):
    sr_uuid: str
    sr_name: str
    timeout: int
    why: str = ""

    def describe(self) -> str:
        why = f" ({self.why})" if self.why else ""
        return f"enable pool HA on heartbeat SR {self.sr_name} with timeout {self.timeout}s{why}"


@dataclass(frozen=True)
class DisableHA(PoolAction):
    why: str

    disruptive = True

    def describe(self) -> str:
        return f"disable pool HA ({self.why})"


@dataclass(frozen=True)
class SetHostFailuresToTolerate(PoolAction):
    value: int

    def describe(self) -> str:
        return f"set ha-host-failures-to-tolerate to {self.value}"


@dataclass(frozen=True)
class SetAllowOvercommit(PoolAction):
    value: bool

    def describe(self) -> str:
        return f"set ha-allow-overcommit to {str(self.value).lower()}"


@dataclass(frozen=True)
class SetVSwitchController(PoolAction):
    address: str
    current: str

    def describe(self) -> str:
        return f"set the pool's vswitch controller to {self.address or 'none'} (was {self.current or 'none'})"


@dataclass(frozen=True)
class ClearVMPriority(PoolAction):
    ref: str
    name: str
    current: str

    def describe(self) -> str:
        return f"clear the HA restart priority {self.current!r} of VM {self.name}"


@dataclass(frozen=True)
class EnableHost(PoolAction):
    name: str
    ref: str

    def describe(self) -> str:
        return f"enable host {self.name}, found disabled"
