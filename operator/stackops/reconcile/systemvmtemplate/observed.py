"""What a SystemVMTemplate pass reads from CloudStack: one `list*` call per collection, parsed into typed facts."""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from ...drivers.cloudstack import CloudStackClient

RUNNING = "Running"
TRANSITIONAL = frozenset({"Starting", "Stopping", "Migrating", "Expunging"})
FAILURE_WORDS = ("fail", "error", "abandon", "mismatch", "invalid", "not found", "unreachable")


def version_key(version: str) -> tuple[int, ...] | None:
    """`4.19.1` → (4, 19, 1, 0); None for UNKNOWN or anything without a numeric version."""
    match = re.match(r"^\s*v?(\d+(?:\.\d+)*)", version or "")
    if not match:
        return None
    parts = [int(p) for p in match.group(1).split(".")]
    return tuple((parts + [0, 0, 0, 0])[:max(4, len(parts))])


def older(version: str, than: str) -> bool:
    """Whether a router's `version` is older than `than` (UNKNOWN counts as older, as CloudStack treats it)."""
    mine, target = version_key(version), version_key(than)
    if target is None:
        return False
    return mine is None or mine < target


@dataclass(frozen=True)
class Template:
    id: str
    name: str
    zone_id: str
    hypervisor: str
    ready: bool
    status: str
    checksum: str = ""
    url: str = ""

    @property
    def failed(self) -> bool:
        text = self.status.lower()
        return not self.ready and any(word in text for word in FAILURE_WORDS)

    @classmethod
    def parse(cls, item: dict[str, Any]) -> "Template":
        return cls(id=str(item.get("id", "")), name=str(item.get("name", "")), zone_id=str(item.get("zoneid", "")),
                   hypervisor=str(item.get("hypervisor", "")), ready=bool(item.get("isready")),
                   status=str(item.get("status", "") or ""), checksum=str(item.get("checksum", "") or ""),
                   url=str(item.get("url", "") or ""))


@dataclass(frozen=True)
class SystemVM:
    id: str
    name: str
    type: str
    state: str
    zone_id: str
    hypervisor: str
    template_id: str

    @classmethod
    def parse(cls, item: dict[str, Any]) -> "SystemVM":
        return cls(id=str(item.get("id", "")), name=str(item.get("name", "")), type=str(item.get("systemvmtype", "")),
                   state=str(item.get("state", "")), zone_id=str(item.get("zoneid", "")),
                   hypervisor=str(item.get("hypervisor", "") or ""), template_id=str(item.get("templateid", "")))


@dataclass(frozen=True)
class Router:
    id: str
    name: str
    state: str
    zone_id: str
    hypervisor: str
    version: str
    requires_upgrade: bool
    redundant: bool
    redundant_state: str
    pair: str  # network or VPC id; redundant routers of one pair share it
    network: str
    account: str
    domain: str
    template_id: str = ""

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def transitional(self) -> bool:
        return self.state in TRANSITIONAL

    @classmethod
    def parse(cls, item: dict[str, Any]) -> "Router":
        pair = str(item.get("vpcid") or item.get("guestnetworkid") or item.get("networkid") or "")
        network = str(item.get("vpcname") or item.get("guestnetworkname") or item.get("networkname") or pair)
        return cls(id=str(item.get("id", "")), name=str(item.get("name", "")), state=str(item.get("state", "")),
                   zone_id=str(item.get("zoneid", "")), hypervisor=str(item.get("hypervisor", "") or ""),
                   version=str(item.get("version", "") or "UNKNOWN"),
                   requires_upgrade=bool(item.get("requiresupgrade")),
                   redundant=bool(item.get("isredundantrouter")),
                   redundant_state=str(item.get("redundantstate", "") or ""), pair=pair, network=network,
                   account=str(item.get("account", "") or ""), domain=str(item.get("domain", "") or ""),
                   template_id=str(item.get("templateid", "") or ""))


@dataclass
class CloudState:
    """What CloudStack has that a rollout plans from (one listing each): zones, templates, settings, system VMs and
    routers. RolloutFacts (the engine's facts) holds it with the rollout's own progress."""

    zones: dict[str, str]  # name → id
    templates: list[Template]
    config: dict[str, dict[str, str]]  # zone id → setting name → value
    system_vms: list[SystemVM]
    routers: list[Router]
    os_types: dict[str, str] = field(default_factory=dict)  # description → id, read only when registering

    def zone_name(self, zone_id: str) -> str:
        for name, id_ in self.zones.items():
            if id_ == zone_id:
                return name
        return zone_id


async def observe(client: CloudStackClient, names: list[str], settings: list[str]) -> CloudState:
    """Zones, the templates named `names`, the zone settings `settings`, system VMs and routers."""
    zones_raw = await client.list("listZones")
    zones = {str(z["name"]): str(z["id"]) for z in zones_raw}

    async def templates(name: str) -> list[dict[str, Any]]:
        return await client.list("listTemplates", templatefilter="all", name=name)

    async def configuration(zone_id: str) -> tuple[str, dict[str, str]]:
        items = await client.list("listConfigurations", zoneid=zone_id)
        return zone_id, {str(i["name"]): str(i.get("value", "") or "") for i in items if i.get("name") in settings}

    results = await asyncio.gather(
        asyncio.gather(*(templates(n) for n in names)),
        asyncio.gather(*(configuration(z) for z in zones.values())),
        client.list("listSystemVms"),
        client.list("listRouters", listall=True),
    )
    template_lists, configs, system_vms, routers = results
    found = [Template.parse(t) for items in template_lists for t in items if t.get("name") in names]
    return CloudState(zones=zones, templates=found, config=dict(configs),
                      system_vms=[SystemVM.parse(v) for v in system_vms], routers=[Router.parse(r) for r in routers])
