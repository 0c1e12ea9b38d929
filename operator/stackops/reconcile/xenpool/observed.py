"""What a XenPool pass reads: one `get_all_records` per class from the pool master, and a look at each spec member
that is not in the pool yet (a join candidate answers as the master of its own one-host pool)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ...api.xenpool import XenPoolSpec
from ...drivers.xenapi import PoolSession, XenAPIError

if TYPE_CHECKING:
    from .cluster import ClusterInCloudStack


@dataclass(frozen=True)
class Host:
    ref: str
    uuid: str
    name_label: str
    address: str
    enabled: bool
    live: bool
    running_vms: tuple[str, ...] = ()  # name labels of running non-dom0 VMs resident here
    boot_time: str = ""  # other_config:boot_time, which xapi sets at each boot (a reboot changes it)
    shutting_down: bool = False  # a host.reboot / host.shutdown is under way (current_operations)
    evacuating: bool = False  # a host.evacuate is under way (current_operations)
    updates: tuple[str, ...] = ()  # name labels of the updates (6.x: patches) applied here, once read
    requiring_reboot: tuple[str, ...] = ()  # name labels of applied updates waiting for a reboot, once read
    update_refs: tuple[str, ...] = ()  # host.updates (7.1+)
    reboot_refs: tuple[str, ...] = ()  # host.updates_requiring_reboot
    product_version: str = ""
    memory_free: int = 0  # host_metrics.memory_free, bytes
    vm_memory: tuple[int, ...] = ()  # bytes each running guest VM here takes (memory_dynamic_max + overhead)


@dataclass(frozen=True)
class SR:
    ref: str
    uuid: str
    name_label: str
    type: str
    shared: bool


@dataclass(frozen=True)
class VM:
    ref: str
    name_label: str
    ha_restart_priority: str


@dataclass(frozen=True)
class Update:
    """An update the pool knows (7.1+: a pool_update; 6.x: a pool_patch)."""

    ref: str
    uuid: str
    name: str
    guidance: tuple[str, ...]  # after_apply_guidance


@dataclass(frozen=True)
class Candidate:
    """A spec member outside the pool, as it answered on its own."""

    address: str
    uuid: str = ""
    name_label: str = ""
    pool_size: int = 0  # hosts in its own pool (1 = standalone)
    master_of: str = ""  # the master it points at when it is a supporter elsewhere
    running_vms: tuple[str, ...] = ()
    error: str = ""


@dataclass
class PoolFacts:
    pool_ref: str
    pool_uuid: str
    master_ref: str
    ha_enabled: bool
    ha_configuration: dict[str, str]
    ha_statefiles: list[str]
    ha_host_failures_to_tolerate: int | None
    ha_plan_exists_for: int | None
    ha_overcommitted: bool
    ha_allow_overcommit: bool
    vswitch_controller: str
    hosts: dict[str, Host]
    srs: dict[str, SR]
    vms_with_priority: list[VM]
    heartbeat_sr_uuids: list[str] = field(default_factory=list)  # SRs of the HA statefiles, when readable
    candidates: dict[str, Candidate] = field(default_factory=dict)  # address → candidate
    master_address: str = ""
    cloudstack: ClusterInCloudStack | None = None  # the pool's CloudStack cluster, once read (cluster.py)
    default_sr: str = ""  # the pool's default SR (a ref)
    updates: dict[str, Update] | None = None  # name label → update, read when the spec lists updates

    @property
    def legacy(self) -> bool:
        """XenServer before 7.1: no pool_update class, the pool_patch API."""
        master = self.master
        version = master.product_version if master is not None else ""
        numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
        return bool(numbers) and numbers < (7, 1)

    @property
    def master(self) -> Host | None:
        return self.hosts.get(self.master_ref)

    def host_by_address(self, address: str) -> Host | None:
        return next((h for h in self.hosts.values() if h.address == address), None)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse(pools: dict[str, Any], hosts: dict[str, Any], metrics: dict[str, Any], srs: dict[str, Any],
          vms: dict[str, Any]) -> PoolFacts:
    pool_ref, pool = next(iter(pools.items()))
    running: dict[str, list[str]] = {}
    memory: dict[str, list[int]] = {}
    with_priority = []
    for ref, vm in vms.items():
        if vm.get("is_control_domain") or vm.get("is_a_template") or vm.get("is_a_snapshot"):
            continue
        if vm.get("power_state") == "Running":
            running.setdefault(vm.get("resident_on", ""), []).append(vm.get("name_label", ref))
            taken = (_int(vm.get("memory_dynamic_max")) or _int(vm.get("memory_static_max")) or 0) + \
                (_int(vm.get("memory_overhead")) or 0)
            memory.setdefault(vm.get("resident_on", ""), []).append(taken)
        if vm.get("ha_restart_priority"):
            with_priority.append(VM(ref, vm.get("name_label", ref), vm["ha_restart_priority"]))
    parsed = {}
    for ref, host in hosts.items():
        measured = metrics.get(host.get("metrics", ""), {})
        live = bool(measured.get("live", False))
        operations = (host.get("current_operations") or {}).values()
        parsed[ref] = Host(ref, host.get("uuid", ""), host.get("name_label", ""), host.get("address", ""),
                           bool(host.get("enabled")), live, tuple(sorted(running.get(ref, []))),
                           boot_time=str((host.get("other_config") or {}).get("boot_time", "")),
                           shutting_down="shutdown" in operations,
                           evacuating="evacuate" in operations,
                           update_refs=tuple(host.get("updates") or ()),
                           reboot_refs=tuple(host.get("updates_requiring_reboot") or ()),
                           product_version=str((host.get("software_version") or {}).get("product_version", "")),
                           memory_free=_int(measured.get("memory_free")) or 0,
                           vm_memory=tuple(sorted(memory.get(ref, []), reverse=True)))
    return PoolFacts(
        pool_ref=pool_ref, pool_uuid=pool.get("uuid", ""), master_ref=pool.get("master", ""),
        ha_enabled=bool(pool.get("ha_enabled")), ha_configuration=dict(pool.get("ha_configuration") or {}),
        ha_statefiles=list(pool.get("ha_statefiles") or []),
        ha_host_failures_to_tolerate=_int(pool.get("ha_host_failures_to_tolerate")),
        ha_plan_exists_for=_int(pool.get("ha_plan_exists_for")), ha_overcommitted=bool(pool.get("ha_overcommitted")),
        ha_allow_overcommit=bool(pool.get("ha_allow_overcommit")),
        vswitch_controller=str(pool.get("vswitch_controller", "") or ""),
        default_sr=str(pool.get("default_SR", "") or ""),
        hosts=parsed,
        srs={ref: SR(ref, sr.get("uuid", ""), sr.get("name_label", ""), sr.get("type", ""), bool(sr.get("shared")))
             for ref, sr in srs.items()},
        vms_with_priority=sorted(with_priority, key=lambda v: v.name_label),
    )


async def observe(session: PoolSession, spec: XenPoolSpec) -> PoolFacts:
    records = [await session.records(c) for c in ("pool", "host", "host_metrics", "SR", "VM")]  # one connection
    facts = parse(*records)
    facts.master_address = session.master_address or ""
    if facts.ha_statefiles:
        try:
            for vdi in facts.ha_statefiles:
                sr_ref = await session.call("VDI.get_SR", vdi)
                if sr_ref in facts.srs:
                    facts.heartbeat_sr_uuids.append(facts.srs[sr_ref].uuid)
        except XenAPIError:
            facts.heartbeat_sr_uuids = []  # not readable: the SR is not compared
    if spec.maintenance.updates:
        await read_updates(session, facts)
    pool_addresses = {h.address for h in facts.hosts.values()}
    outside = [m.address for m in spec.members if m.address not in pool_addresses]
    found = await asyncio.gather(*(look_at(session, address) for address in outside))
    facts.candidates = {c.address: c for c in found}
    return facts


async def observe_hosts(session: PoolSession) -> PoolFacts:
    """The pool's hosts only (pool, host, host_metrics: three calls), for the waits of a roll that ask again and
    again whether a host is back; SRs, VMs and updates are left empty."""
    records = [await session.records(c) for c in ("pool", "host", "host_metrics")]
    facts = parse(*records, {}, {})
    facts.master_address = session.master_address or ""
    return facts


async def read_updates(session: PoolSession, facts: PoolFacts) -> None:
    """The updates the pool knows and which host has which (7.1+: pool_update, host.updates; 6.x: pool_patch and
    host_patch), two more round trips."""
    if facts.legacy:
        patches, applied = await session.records("pool_patch"), await session.records("host_patch")
        known = {ref: Update(ref, p.get("uuid", ""), p.get("name_label", ""),
                             tuple(p.get("after_apply_guidance") or ())) for ref, p in patches.items()}
        per_host: dict[str, list[str]] = {}
        for record in applied.values():
            patch = known.get(record.get("pool_patch", ""))
            if patch is not None and record.get("applied", True):
                per_host.setdefault(record.get("host", ""), []).append(patch.name)
        for ref, host in facts.hosts.items():
            facts.hosts[ref] = replace(host, updates=tuple(sorted(per_host.get(ref, []))))
    else:
        records = await session.records("pool_update")
        known = {ref: Update(ref, u.get("uuid", ""), u.get("name_label", ""),
                             tuple(u.get("after_apply_guidance") or ())) for ref, u in records.items()}
        for ref, host in facts.hosts.items():
            facts.hosts[ref] = replace(
                host, updates=tuple(sorted(known[r].name for r in host.update_refs if r in known)),
                requiring_reboot=tuple(sorted(known[r].name for r in host.reboot_refs if r in known)))
    facts.updates = {u.name: u for u in known.values()}


async def look_at(pool: PoolSession, address: str) -> Candidate:
    """A member outside the pool: its own records when it is a standalone master, else where it points."""
    own = PoolSession([address], pool.username, pool._password, pool.endpoint)
    try:
        await own.connect()
        if own.master_address != address:
            return Candidate(address, master_of=own.master_address or "")
        hosts = await own.records("host")
        vms = await own.records("VM")
        me = next((h for h in hosts.values() if h.get("address") == address), next(iter(hosts.values()), {}))
        running = tuple(sorted(v.get("name_label", "") for v in vms.values()
                               if v.get("power_state") == "Running" and not v.get("is_control_domain")))
        return Candidate(address, uuid=me.get("uuid", ""), name_label=me.get("name_label", ""),
                         pool_size=len(hosts), running_vms=running)
    except XenAPIError as error:
        return Candidate(address, error=f"{error.reason}: {error}")
    finally:
        await own.close()
