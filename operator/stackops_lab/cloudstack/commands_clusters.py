"""Cluster commands: addCluster, updateCluster (listClusters is in commands_misc).

addCluster (ResourceManagerImpl.discoverCluster) creates a CloudManaged cluster in a pod; a cluster name is
unique within its pod. A cluster without a URL is created empty (KVM clusters always are; XenServer pools can
be added empty and given hosts later). A URL asks CloudStack to discover the hypervisor pool behind it —
the simulator has no XenServer/vCenter to discover and answers 530 "Unable to find the server resources at
<url>" (not verified against CloudStack's source). updateCluster sets allocationstate (Enabled/Disabled) and
managedstate (Managed/Unmanaged) and answers `cluster`.
"""

from __future__ import annotations

from typing import Any

from stackops_lab.cloudstack import catalog, responses
from stackops_lab.cloudstack.errors import INTERNAL_ERROR, ApiError, internal, invalid_value
from stackops_lab.cloudstack.framework import UUID, Param, Request, command, list_response
from stackops_lab.cloudstack.state import Cluster

ADMIN = "org.apache.cloudstack.api.command.admin.cluster"


@command("addCluster", f"{ADMIN}.AddClusterCmd",
         [Param("clustername", required=True), Param("clustertype", required=True),
          Param("hypervisor", required=True), Param("zoneid", UUID, required=True, entity=("zone",)),
          Param("podid", UUID, required=True, entity=("pod",)), Param("url"), Param("username"),
          Param("password"), Param("allocationstate")])
def add_cluster(request: Request) -> dict[str, Any]:
    sim = request.sim
    zone, pod, name = request.get("zoneid"), request.get("podid"), request.get("clustername")
    if pod.zone is not zone:
        raise invalid_value(f"Pod {pod.uuid} doesn't belong to the zone {zone.uuid}")
    hypervisor = catalog.hypervisor_name(request.get("hypervisor"))
    if hypervisor is None:
        raise invalid_value(f"Unable to resolve {request.get('hypervisor')} to a supported hypervisor type")
    cluster_type = request.get("clustertype")
    if cluster_type not in ("CloudManaged", "ExternalManaged"):
        raise invalid_value(f"Unable to resolve {cluster_type} to a supported cluster type")
    if any(c.name == name and c.pod is pod for c in sim.state.values("cluster")):
        raise internal(f"Unable to create cluster {name} in pod and data center with specified ids")
    if request.get("url"):
        sim.audit_log.record("cluster.add.failed", name=name, url=request.get("url"),
                             reason=f"the simulator cannot discover {hypervisor} pools")
        raise ApiError(INTERNAL_ERROR, f"Unable to find the server resources at {request.get('url')}")
    allocation = "Disabled" if request.get("allocationstate") == "Disabled" else "Enabled"
    cluster = sim.state.add(Cluster(uuid=sim.state.new_uuid(), db_id=sim.state.next_id("cluster"), name=name,
                                    pod=pod, hypervisor=hypervisor, cluster_type=cluster_type,
                                    allocation_state=allocation))
    sim.audit_log.record("cluster.added", cluster=cluster.uuid, name=name, hypervisor=hypervisor, zone=zone.uuid)
    return list_response("cluster", [responses.cluster(cluster)], 1)


@command("updateCluster", f"{ADMIN}.UpdateClusterCmd",
         [Param("id", UUID, required=True, entity=("cluster",)), Param("clustername"), Param("allocationstate"),
          Param("managedstate"), Param("clustertype"), Param("hypervisor")])
def update_cluster(request: Request) -> dict[str, Any]:
    sim = request.sim
    cluster: Cluster = request.get("id")
    allocation, managed = request.get("allocationstate"), request.get("managedstate")
    if allocation is not None and allocation not in ("Enabled", "Disabled"):
        raise invalid_value(f"Unable to resolve Allocation State '{allocation}' to a supported state")
    if managed is not None and managed not in ("Managed", "Unmanaged"):
        raise invalid_value(f"Unable to resolve Managed State '{managed}' to a supported state")
    if request.get("clustername"):
        cluster.name = request.get("clustername")
    cluster.allocation_state = allocation or cluster.allocation_state
    cluster.managed_state = managed or cluster.managed_state
    sim.audit_log.record("cluster.updated", cluster=cluster.uuid, name=cluster.name,
                         allocationstate=cluster.allocation_state, managedstate=cluster.managed_state)
    return {"cluster": responses.cluster(cluster)}
