"""listVirtualMachines (ListVMsCmdByAdmin, QueryManagerImpl.searchForUserVMs): the user VMs, where they run.

The simulator's user VMs are placed by tests (`CloudStackSimulator.add_user_vm`); host maintenance migrates them and
HA restarts them (stackops_lab.cloudstack.maintenance, .availability). Filters: id, ids, name (a substring), state
(Present: not Destroyed nor Expunged), zoneid, podid, clusterid, hostid, hypervisor, haenable, keyword (the name).
Each row has the UserVmResponse fields an admin sees about placement and size: id, name, displayname,
instancename, account, domainid, domain, created, state, haenable, zoneid, zonename, hostid, hostname (while the
VM has a host), hypervisor, memory (MiB), cpunumber, cpuspeed. The other parameters are accepted as CloudStack
declares them and filter nothing here (the simulator has no groups, key pairs, offerings or affinity groups).
"""

from __future__ import annotations

from typing import Any

from stackops_lab.cloudstack.framework import BOOLEAN, LIST, MAP, UUID, UUID_LIST, Param, Request, command, \
    keyword_match, paged
from stackops_lab.cloudstack.responses import cs_date
from stackops_lab.cloudstack.state import UserVm

VM = ("uservm",)


def vm_row(vm: UserVm) -> dict[str, Any]:
    account = vm.account
    row: dict[str, Any] = {
        "id": vm.uuid, "name": vm.name, "displayname": vm.display_name or vm.name, "instancename": vm.instance_name,
        "created": cs_date(vm.created), "state": vm.state, "haenable": vm.ha_enable, "hypervisor": vm.hypervisor,
        "memory": vm.memory, "cpunumber": vm.cpu_number, "cpuspeed": vm.cpu_speed,
    }
    if account is not None:
        row["account"] = account.name
        if account.domain is not None:
            row["domainid"], row["domain"] = account.domain.uuid, account.domain.name
    if vm.zone is not None:
        row["zoneid"], row["zonename"] = vm.zone.uuid, vm.zone.name
    if vm.host is not None:
        row["hostid"], row["hostname"] = vm.host.uuid, vm.host.name
    return row


@command("listVirtualMachines", "org.apache.cloudstack.api.command.admin.vm.ListVMsCmdByAdmin",
         [Param("account"), Param("domainid", UUID, entity=("domain",)), Param("isrecursive", BOOLEAN),
          Param("listall", BOOLEAN), Param("projectid", UUID, entity=("project",)), Param("tags", MAP),
          Param("retrieveonlyresourcecount", BOOLEAN), Param("groupid", UUID), Param("id", UUID, entity=VM),
          Param("ids", UUID_LIST, entity=VM, since="4.4"), Param("name"), Param("state"),
          Param("zoneid", UUID, entity=("zone",)), Param("forvirtualnetwork", BOOLEAN),
          Param("networkid", UUID, entity=("network",)), Param("hypervisor"), Param("details", LIST),
          Param("templateid", UUID, entity=("template",)), Param("isoid", UUID), Param("vpcid", UUID, entity=("vpc",)),
          Param("affinitygroupid", UUID), Param("keypair"), Param("serviceofferingid", UUID, since="4.4"),
          Param("backupofferingid", UUID, since="4.17"), Param("displayvm", BOOLEAN, since="4.4"),
          Param("userid", UUID), Param("securitygroupid", UUID, since="4.15"),
          Param("haenable", BOOLEAN, since="4.15"), Param("autoscalevmgroupid", UUID, since="4.18.0"),
          Param("showicon", BOOLEAN, since="4.16.0.0"), Param("accumulate", BOOLEAN, since="4.17.0"),
          Param("userdata", BOOLEAN, since="4.18.0.0"), Param("userdataid", UUID, since="4.20.1"),
          Param("isvnf", BOOLEAN, since="4.19.0"), Param("hostid", UUID, entity=("host",)),
          Param("podid", UUID, entity=("pod",)), Param("storageid", UUID),
          Param("clusterid", UUID, entity=("cluster",), since="4.16.0")], is_list=True)
def list_virtual_machines(request: Request) -> dict[str, Any]:
    state = request.sim.state
    wanted_state = (request.get("state") or "").lower()
    hypervisor = (request.get("hypervisor") or "").lower()
    ids = request.get("ids")
    found = []
    for vm in state.values("uservm"):
        host = vm.host
        if request.has("id") and request.get("id") is not vm or ids is not None and vm not in ids:
            continue
        if wanted_state == "present" and vm.state in ("Destroyed", "Expunging"):
            continue
        if wanted_state and wanted_state != "present" and vm.state.lower() != wanted_state:
            continue
        if request.has("zoneid") and vm.zone is not request.get("zoneid"):
            continue
        if request.has("hostid") and host is not request.get("hostid"):
            continue
        if request.has("clusterid") and (host is None or host.cluster is not request.get("clusterid")):
            continue
        if request.has("podid") and (host is None or host.cluster.pod is not request.get("podid")):
            continue
        if hypervisor and vm.hypervisor.lower() != hypervisor:
            continue
        if request.has("haenable") and vm.ha_enable != request.get("haenable"):
            continue
        if request.has("name") and request.get("name").lower() not in vm.name.lower():
            continue
        if keyword_match(request, vm.name, vm.display_name):
            found.append(vm)
    found.sort(key=lambda vm: vm.db_id)
    return paged(request, "virtualmachine", found, vm_row)
