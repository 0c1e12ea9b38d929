"""listHypervisorCapabilities and updateHypervisorCapabilities (sync), over the hypervisor_capabilities rows the lab
seeds (catalog.HYPERVISOR_CAPABILITIES: one 'default' row per hypervisor of the fleet).

listHypervisorCapabilities (ManagementServerImpl.listHypervisorCapabilities): by `id`, by `hypervisor`
(HypervisorType.getType: an unknown name matches nothing) and by keyword on the hypervisor type; the entries are
named "hypervisorCapabilities", as the command sets them.
updateHypervisorCapabilities (getHypervisorCapabilitiesForUpdate, updateHypervisorCapabilities): the row is `id`, or
`hypervisor` with `hypervisorversion` (4.19.1; a version without a row resolves to the hypervisor's 'default' row,
and an update then creates a copy for that version); errors as CloudStack's. Without a field to change the row is
answered unchanged. Storage motion here is what migrateSystemVm consults.
"""

from __future__ import annotations

from typing import Any

from stackops_lab.cloudstack import catalog
from stackops_lab.cloudstack.errors import invalid_value
from stackops_lab.cloudstack.framework import BOOLEAN, INTEGER, UUID, Param, Request, command, keyword_match, paged
from stackops_lab.cloudstack.state import HypervisorCapability, State

ADMIN = "org.apache.cloudstack.api.command.admin.config"
CAPABILITY = ("hypervisorcapability",)
FIELDS = (("securitygroupenabled", "security_groups"), ("maxguestslimit", "max_guests"),
          ("maxdatavolumeslimit", "max_data_volumes"), ("storagemotionenabled", "storage_motion"),
          ("maxhostspercluster", "max_hosts_per_cluster"), ("vmsnapshotenabled", "vm_snapshots"))


def render(row: HypervisorCapability) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": row.uuid, "hypervisorversion": row.version, "hypervisor": row.hypervisor,
        "maxguestslimit": row.max_guests, "securitygroupenabled": row.security_groups,
        "maxdatavolumeslimit": row.max_data_volumes, "storagemotionenabled": row.storage_motion,
        "vmsnapshotenabled": row.vm_snapshots}
    if row.max_hosts_per_cluster is not None:
        result["maxhostspercluster"] = row.max_hosts_per_cluster
    return result


def find(state: State, hypervisor: str, version: str | None) -> HypervisorCapability | None:
    """HypervisorCapabilitiesDaoImpl.findByHypervisorTypeAndVersion: the version's row, else the 'default' one."""
    rows = [r for r in state.values("hypervisorcapability") if r.hypervisor == hypervisor]
    exact = [r for r in rows if r.version == (version or "")]
    default = [r for r in rows if r.version == "default"]
    return (exact or default or [None])[0]


@command("listHypervisorCapabilities", f"{ADMIN}.ListHypervisorCapabilitiesCmd",
         [Param("id", UUID, entity=CAPABILITY), Param("hypervisor")], is_list=True)
def list_hypervisor_capabilities(request: Request) -> dict[str, Any]:
    wanted = request.get("hypervisor")
    hypervisor = catalog.hypervisor_name(wanted) if wanted is not None else None
    rows = [r for r in request.sim.state.values("hypervisorcapability")
            if (not request.has("id") or request.get("id") is r)
            and (wanted is None or r.hypervisor == hypervisor) and keyword_match(request, r.hypervisor)]
    return paged(request, "hypervisorCapabilities", rows, render)


@command("updateHypervisorCapabilities", f"{ADMIN}.UpdateHypervisorCapabilitiesCmd",
         [Param("id", UUID, entity=CAPABILITY), Param("hypervisor", since="4.19.1"),
          Param("hypervisorversion", since="4.19.1"), Param("securitygroupenabled", BOOLEAN),
          Param("maxguestslimit", INTEGER), Param("maxdatavolumeslimit", INTEGER, since="4.16.0"),
          Param("storagemotionenabled", BOOLEAN, since="4.16.0"), Param("maxhostspercluster", INTEGER, since="4.16.0"),
          Param("vmsnapshotenabled", BOOLEAN, since="4.16.0")])
def update_hypervisor_capabilities(request: Request) -> dict[str, Any]:
    state = request.sim.state
    row: HypervisorCapability | None = request.get("id")
    hypervisor, version = request.get("hypervisor") or "", request.get("hypervisorversion") or ""
    if row is None and not hypervisor and not version:
        raise invalid_value("Either ID or hypervisor and hypervisor version must be specified")
    if row is not None:
        if hypervisor.strip() or version.strip():
            raise invalid_value("ID can not be specified together with hypervisor and hypervisor version")
    else:
        if not hypervisor.strip() or not version.strip():
            raise invalid_value("Hypervisor and hypervisor version must be specified together")
        hypervisor_type = catalog.hypervisor_name(hypervisor)
        if hypervisor_type is None:
            raise invalid_value("Invalid hypervisor specified")
        row = find(state, hypervisor_type, version)
        if row is None:
            raise invalid_value("Unable to find the hypervisor capabilities for specified hypervisor and hypervisor "
                                "version")
    changes = {attr: request.get(name) for name, attr in FIELDS if request.has(name)}
    if not changes:
        return {"hypervisorcapabilities": render(row)}
    if version.strip() and row.version != version:
        row = state.add(HypervisorCapability(
            uuid=state.new_uuid(), db_id=state.next_id("hypervisorcapability"), hypervisor=row.hypervisor,
            version=version, max_guests=row.max_guests, max_data_volumes=row.max_data_volumes,
            max_hosts_per_cluster=row.max_hosts_per_cluster, security_groups=row.security_groups,
            storage_motion=row.storage_motion, vm_snapshots=row.vm_snapshots))
    for attr, value in changes.items():
        setattr(row, attr, value)
    request.sim.audit_log.record("hypervisor.capabilities", id=row.uuid, hypervisor=row.hypervisor,
                                 version=row.version, **changes)
    return {"hypervisorcapabilities": render(row)}
