"""Cluster commands: addCluster, updateCluster, deleteCluster (listClusters is in commands_misc).

addCluster mirrors ResourceManagerImpl.discoverCluster: the pod must be in the zone ("Pod with specified id
doesn't belong to the zone <zone id>"), the hypervisor known ("Could not find corresponding resource manager
for <hypervisor>"), the name unique in its pod (530 "Unable to create cluster <name> in pod and data center
with specified ids"). A **CloudManaged** cluster is created and returned at once: its `url`, `username` and
`password` are ignored (discoverCluster returns before it looks at them, in every CloudStack version) — a
CloudManaged XenServer pool gets its hosts through addHost with a member's URL. An **ExternalManaged**
cluster is discovered through its URL: "uri.scheme is null <url>, add http:// as a prefix" and, for http,
"Your host and/or path is wrong.  Make sure it's of the format http://hostname/path" (the URL needs a path:
http://<master>/) are 431; then XcpServerDiscoverer.find reads the XenServer pool through the XenAPI SDK
(stackops_lab.cloudstack.xen) and every pool host not yet in the database becomes a host of the cluster. When
find returns null CloudStack logs "Unable to find the server resources at <url>", removes the cluster and
answers 530 "Unable to add the external cluster" (AddClusterCmd's ServerApiException). The simulator discovers
XenServer pools only (other hypervisors' external clusters are refused the same way).

updateCluster (ResourceManagerImpl.updateCluster) sets clustername (not for VMware), hypervisor, clustertype,
allocationstate (Enabled/Disabled) and managedstate; Managed → Unmanaged disconnects the cluster's hosts and
Unmanaged → Managed lets the direct agent scan reconnect them (HostOps.unmanage / reconnect_later). It answers
`cluster` at once, managedstate Managed before the hosts are back.

deleteCluster (ResourceManagerImpl.deleteCluster) refuses a cluster that still has hosts: 530 "Cluster: <id>
cannot be removed. Cluster still has hosts" (<id> is CloudStack's internal id), and a removed one: "Cluster:
<id> does not exist"; otherwise `success`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from stackops_lab.cloudstack import catalog, responses, xen
from stackops_lab.cloudstack.errors import INTERNAL_ERROR, ApiError, internal, invalid_value, param_error
from stackops_lab.cloudstack.framework import LIST, MAP, UUID, Param, Request, command, list_response
from stackops_lab.cloudstack.state import Cluster

ADMIN = "org.apache.cloudstack.api.command.admin.cluster"
CLUSTER_TYPES = ("CloudManaged", "ExternalManaged")
RESOURCE_MANAGER = "ResourceManagerImpl"
EXTERNAL_FAILED = "Unable to add the external cluster"


def _name_taken(request: Request, name: str, pod: Any) -> ApiError | None:
    if any(c.name == name and c.pod is pod for c in request.sim.state.values("cluster")):
        return internal(f"Unable to create cluster {name} in pod and data center with specified ids")
    return None


@command("addCluster", f"{ADMIN}.AddClusterCmd",
         [Param("clustername", required=True), Param("clustertype", required=True),
          Param("hypervisor", required=True), Param("zoneid", UUID, required=True, entity=("zone",)),
          Param("podid", UUID, required=True, entity=("pod",)), Param("url"), Param("username"),
          Param("password"), Param("allocationstate"), Param("arch", since="4.20"), Param("vsmusername"),
          Param("vsmpassword"), Param("vsmipaddress"), Param("guestvswitchtype"), Param("publicvswitchtype"),
          Param("guestvswitchname"), Param("publicvswitchname"), Param("ovm3pool"), Param("ovm3cluster"),
          Param("ovm3vip"), Param("storageaccessgroups", LIST, since="4.21.0"),
          Param("extensionid", UUID, entity=("extension",), since="4.21.0"),
          Param("externaldetails", MAP, since="4.21.0")], locked=False, sensitive=True)
def add_cluster(request: Request) -> dict[str, Any]:
    """Runs without the state lock held (an external cluster is discovered through XenAPI)."""
    sim = request.sim
    url, username, password = request.get("url"), request.get("username") or "", request.get("password") or ""
    with sim.state.lock:
        zone, pod, name = request.get("zoneid"), request.get("podid"), request.get("clustername")
        if not sim.state.live(zone):
            raise invalid_value("Can't find zone by the id specified")
        if not sim.state.live(pod):
            raise invalid_value(f"Can't find pod with specified podId {pod.db_id}")
        if pod.zone is not zone:
            raise invalid_value(f"Pod with specified id doesn't belong to the zone {zone.db_id}")
        if not name:
            raise invalid_value("Please specify cluster name")
        hypervisor = catalog.hypervisor_name(request.get("hypervisor") or "")
        if hypervisor is None:
            raise invalid_value(f"Could not find corresponding resource manager for {request.get('hypervisor')}")
        cluster_type = request.get("clustertype") or "CloudManaged"
        if cluster_type not in CLUSTER_TYPES:
            raise param_error(f"No enum constant com.cloud.org.Cluster.ClusterType.{cluster_type}")
        allocation = request.get("allocationstate") or "Enabled"
        if allocation not in ("Enabled", "Disabled"):
            raise invalid_value(f"Unable to resolve Allocation State '{allocation}' to a supported state")
        if (taken := _name_taken(request, name, pod)) is not None:
            raise taken

        def create() -> Cluster:
            return sim.state.add(Cluster(uuid=sim.state.new_uuid(), db_id=sim.state.next_id("cluster"), name=name,
                                         pod=pod, hypervisor=hypervisor, cluster_type=cluster_type,
                                         allocation_state=allocation, url=url))

        if cluster_type == "CloudManaged":
            cluster = create()
            sim.audit_log.record("cluster.added", cluster=cluster.uuid, name=name, hypervisor=hypervisor,
                                 zone=zone.uuid, clustertype=cluster_type, url_ignored=url is not None)
            return list_response("cluster", [responses.cluster(cluster)], 1)
        if url is None:  # UriUtils.encodeURIComponent(null)
            raise internal('Cannot invoke "String.indexOf(String)" because "url" is null')
        parts = urlsplit(url)
        if "://" not in url or not parts.scheme:
            raise invalid_value(f"uri.scheme is null {url}, add http:// as a prefix")
        if parts.scheme.lower() == "http" and (not parts.hostname or not parts.path):
            raise invalid_value("Your host and/or path is wrong.  Make sure it's of the format http://hostname/path")

    def refuse(reason: str) -> ApiError:
        xen.log(sim, "WARN", RESOURCE_MANAGER, f"Unable to find the server resources at {url}")
        sim.audit_log.record("cluster.add.failed", name=name, url=url, reason=reason)
        return ApiError(INTERNAL_ERROR, EXTERNAL_FAILED)

    if hypervisor != "XenServer":
        raise refuse(f"the simulator discovers XenServer pools only, not {hypervisor} clusters")
    reason = xen.precheck(url, parts.scheme, None)
    if reason is not None:
        xen.log(sim, "DEBUG", xen.DISCOVERER, reason)
        raise refuse(reason)
    pool, address, port = xen.discover(sim, parts.hostname or "", parts.port, username, password, refuse)
    with sim.state.lock:
        if (taken := _name_taken(request, name, pod)) is not None:
            raise taken
        cluster = create()
        added = xen.accept(sim, cluster, pool, address, port, username, password)
        if added is None:
            sim.state.remove(cluster)
            raise refuse("XcpServerDiscoverer.find returned nothing (see the cloudstack.log events)")
        sim.audit_log.record("cluster.added", cluster=cluster.uuid, name=name, hypervisor=hypervisor,
                             zone=zone.uuid, clustertype=cluster_type, guid=cluster.guid,
                             hosts=[h.uuid for h in added])
        xen.log(sim, "INFO", RESOURCE_MANAGER,
                f"External cluster has been successfully discovered by {xen.DISCOVERER}")
        return list_response("cluster", [responses.cluster(cluster)], 1)


@command("updateCluster", f"{ADMIN}.UpdateClusterCmd",
         [Param("id", UUID, required=True, entity=("cluster",)), Param("clustername"), Param("allocationstate"),
          Param("managedstate"), Param("clustertype"), Param("hypervisor"), Param("arch", since="4.20")])
def update_cluster(request: Request) -> dict[str, Any]:
    sim = request.sim
    cluster: Cluster = request.get("id")
    name, hypervisor, cluster_type = request.get("clustername"), request.get("hypervisor"), request.get("clustertype")
    allocation, managed = request.get("allocationstate"), request.get("managedstate")
    if name and cluster.hypervisor == "VMware":
        raise invalid_value("Renaming VMware cluster is not supported as it could cause problems if the updated  "
                            "cluster name is not mapped on VCenter.")
    if hypervisor and catalog.hypervisor_name(hypervisor) is None:
        raise invalid_value(f"Unable to resolve {hypervisor} to a supported type")
    if cluster_type and cluster_type not in CLUSTER_TYPES:
        raise invalid_value(f"Unable to resolve {cluster_type} to a supported type")
    if allocation and allocation not in ("Enabled", "Disabled"):
        raise invalid_value(f"Unable to resolve Allocation State '{allocation}' to a supported state")
    if managed and managed not in ("Managed", "Unmanaged"):
        raise invalid_value(f"Unable to resolve Managed State '{managed}' to a supported state")
    cluster.name = name or cluster.name
    if hypervisor:
        cluster.hypervisor = catalog.hypervisor_name(hypervisor) or cluster.hypervisor
    cluster.cluster_type = cluster_type or cluster.cluster_type
    cluster.allocation_state = allocation or cluster.allocation_state
    old = cluster.managed_state
    if managed and managed != old:
        if managed == "Unmanaged":
            cluster.managed_state = "PrepareUnmanaged"
            refusal = sim.hostops.unmanage(cluster)
            if refusal is not None:
                cluster.managed_state = "PrepareUnmanagedError"
                sim.audit_log.record("cluster.unmanage.failed", cluster=cluster.uuid, reason=refusal)
                raise internal(refusal)
            cluster.managed_state = "Unmanaged"
        else:
            cluster.managed_state = "Managed"
            sim.hostops.reconnect_later(cluster)
    sim.audit_log.record("cluster.updated", cluster=cluster.uuid, name=cluster.name,
                         allocationstate=cluster.allocation_state, managedstate=cluster.managed_state,
                         **{"from": {"managedstate": old}})
    return {"cluster": responses.cluster(cluster)}


@command("deleteCluster", f"{ADMIN}.DeleteClusterCmd", [Param("id", UUID, required=True, entity=("cluster",))])
def delete_cluster(request: Request) -> dict[str, Any]:
    sim = request.sim
    cluster: Cluster = request.get("id")
    if not sim.state.live(cluster):
        raise internal(f"Cluster: {cluster.db_id} does not exist")
    if sim.hostops.hosts_of(cluster):
        sim.audit_log.record("cluster.delete.failed", cluster=cluster.uuid, reason="the cluster still has hosts")
        raise internal(f"Cluster: {cluster.db_id} cannot be removed. Cluster still has hosts")
    sim.state.remove(cluster)
    sim.audit_log.record("cluster.deleted", cluster=cluster.uuid, name=cluster.name, guid=cluster.guid)
    return {"success": True}
