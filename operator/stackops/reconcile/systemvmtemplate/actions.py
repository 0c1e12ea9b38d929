"""The changes a SystemVMTemplate rollout makes in CloudStack, as small frozen dataclasses that describe themselves."""
from __future__ import annotations

from dataclasses import dataclass

from ..base import Action


@dataclass(frozen=True)
class RegisterTemplate(Action):
    name: str
    hypervisor: str
    zone: str
    zone_id: str
    url: str
    checksum: str
    format: str
    os_type: str

    operation = "add"

    def describe(self) -> str:
        return f"register template {self.name} ({self.hypervisor}) in zone {self.zone} from {self.url}"


@dataclass(frozen=True)
class DeleteTemplate(Action):
    name: str
    id: str
    zone: str
    zone_id: str
    why: str

    operation = "remove"

    def describe(self) -> str:
        return f"delete template {self.name} ({self.id}) in zone {self.zone}: {self.why}"


@dataclass(frozen=True)
class SetConfiguration(Action):
    setting: str
    value: str
    zone: str
    zone_id: str
    current: str

    operation = "change"

    def describe(self) -> str:
        return f"set {self.setting} to {self.value!r} in zone {self.zone} (was {self.current!r})"


@dataclass(frozen=True)
class ReplaceSystemVM(Action):
    id: str
    name: str
    type: str
    zone: str

    disruptive = True
    operation = "remove"

    def describe(self) -> str:
        kind = {"secondarystoragevm": "secondary storage VM", "consoleproxy": "console proxy"}.get(self.type, self.type)
        return f"destroy {kind} {self.name} in zone {self.zone} so CloudStack recreates it from the new template"


@dataclass(frozen=True)
class UpgradeRouter(Action):
    id: str
    name: str
    zone: str
    network: str
    version: str
    redundant_state: str = ""

    disruptive = True
    operation = "change"

    def describe(self) -> str:
        role = f" {self.redundant_state}" if self.redundant_state else ""
        return f"reboot{role} router {self.name} ({self.network}, zone {self.zone}) from {self.version} onto the new template"
