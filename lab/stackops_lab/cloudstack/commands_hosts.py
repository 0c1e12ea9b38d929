"""Host commands: listHosts, addHost, prepareHostForMaintenance, cancelHostMaintenance, deleteHost.

addHost mirrors ResourceManagerImpl.discoverHostsFull + LibvirtServerDiscoverer.find for KVM: the cluster
(clusterid, or clustername — created in the pod when it does not exist) must be a KVM cluster, the URL
http://<address>, the address not yet a host of the zone, and the host must pass the real checks of
kvm.probe. When the discoverer finds nothing the answer is 530 "Unable to add the host: Cannot find the
server resources at <url>"; a failed SSH login is 530 "Could not add host at [<url>] with zone [<id>], pod
[<id>] and cluster [<id>] due to: [Authentication error]." (ids are CloudStack's internal ids). The reason
is in the audit log (`host.add.failed`). A new host is Connecting, then Up after Timings.host_connect.

For XenServer, addHost mirrors ResourceManagerImpl.discoverHosts/discoverHostsFull + XcpServerDiscoverer.find
(stackops_lab.cloudstack.xen, through the XenAPI SDK): 431 "Username and Password need to be provided.",
"Can't specify cluster by both id and name"; 530 "Guid is not updated for cluster with specified cluster id;
need to wait for hosts in this cluster to come up"; without cluster id or name the cluster is
"Standalone-<url>"; a cluster named but missing is created before the discovery (and stays when it fails).
The URL's host is logged in to (HOST_IS_SLAVE followed); its pool must be the cluster's (a cluster without
hosts takes the pool's uuid as guid), and every host of the pool not yet in the database is added — adding
one new member of a pool adds all new members. When find returns null (unreachable, wrong credentials, another
pool: "Please join the host <ip> to XS pool  <guid> through XC/XS before adding it through CS UI", a guid
another cluster holds) the answer is 530 "Unable to add the host: Cannot find the server resources at <url>";
when every host is already in the database ("Skipping <address> because <uuid> is already in the
database.") it is AddHostCmd's 530 "Failed to add host". Other hypervisors are not discovered.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import SplitResult, urlsplit

from stackops_lab.cloudstack import catalog, kvm, responses, xen
from stackops_lab.cloudstack.errors import ApiError, INTERNAL_ERROR, internal, invalid_value
from stackops_lab.cloudstack.framework import (BOOLEAN, LIST, UUID, Param, Request, command, keyword_match,
                                               paged)
from stackops_lab.cloudstack.maintenance import MIB
from stackops_lab.cloudstack.state import Cluster, Host

ADMIN = "org.apache.cloudstack.api.command.admin.host"
HOST = ("host",)


@command("listHosts", f"{ADMIN}.ListHostsCmd",
         [Param("id", UUID, entity=("host", "agenthost")), Param("name"), Param("type"),
          Param("zoneid", UUID, entity=("zone",)), Param("podid", UUID, entity=("pod",)),
          Param("clusterid", UUID, entity=("cluster",)), Param("state"), Param("resourcestate"),
          Param("hypervisor"), Param("details", LIST), Param("virtualmachineid", UUID, entity=("vm",)),
          Param("outofbandmanagementenabled", BOOLEAN), Param("outofbandmanagementpowerstate"),
          Param("hahost", BOOLEAN), Param("managementserverid", UUID, entity=("managementserver",), since="4.21.0"),
          Param("arch", since="4.20.1")], is_list=True)
def list_hosts(request: Request) -> dict[str, Any]:
    state = request.sim.state
    wanted_type = (request.get("type") or "").lower()
    wanted_state = (request.get("state") or "").lower()
    wanted_resource = (request.get("resourcestate") or "").lower()
    hypervisor = (request.get("hypervisor") or "").lower()
    rows: list[tuple[Any, dict[str, Any]]] = []
    maintenance = request.sim.hostops.maintenance
    for host in state.values("host"):
        row = responses.host(host)
        row["memoryallocated"] = (host.memory_total // MIB - maintenance.free_memory(host)) * MIB  # its VMs' (bytes)
        rows.append((host, row))
    if not any(request.has(name) for name in ("podid", "clusterid", "hypervisor")):
        for agent in state.values("agenthost"):
            rows.append((agent, responses.agent_host(agent)))
    found = []
    for entity, row in rows:
        if request.has("id") and request.get("id") is not entity:
            continue
        if request.has("zoneid") and row["zoneid"] != request.get("zoneid").uuid:
            continue
        if request.has("podid") and row.get("podid") != request.get("podid").uuid:
            continue
        if request.has("clusterid") and row.get("clusterid") != request.get("clusterid").uuid:
            continue
        if wanted_type and row["type"].lower() != wanted_type or wanted_state and row["state"].lower() != wanted_state:
            continue
        if wanted_resource and row["resourcestate"].lower() != wanted_resource:
            continue
        if hypervisor and row.get("hypervisor", "").lower() != hypervisor:
            continue
        if request.has("name") and request.get("name").lower() not in row["name"].lower():
            continue
        if keyword_match(request, row["name"]):
            found.append(row)
    return paged(request, "host", found, lambda row: row)


def _not_found(url: str) -> ApiError:
    return ApiError(INTERNAL_ERROR, f"Unable to add the host: Cannot find the server resources at {url}")


@command("addHost", f"{ADMIN}.AddHostCmd",
         [Param("zoneid", UUID, required=True, entity=("zone",)), Param("podid", UUID, required=True, entity=("pod",)),
          Param("url", required=True), Param("hypervisor", required=True),
          Param("clusterid", UUID, entity=("cluster",)), Param("clustername"), Param("username"),
          Param("password"), Param("hosttags", LIST), Param("allocationstate")], locked=False, sensitive=True)
def add_host(request: Request) -> dict[str, Any]:
    """Runs without the state lock held (the checks take seconds); takes it to read and to write."""
    sim = request.sim
    url = request.get("url")
    audit = sim.audit_log

    def refuse(reason: str, error: ApiError | None = None) -> ApiError:
        audit.record("host.add.failed", url=url, reason=reason)
        return error or _not_found(url)

    with sim.state.lock:
        zone, pod = request.get("zoneid"), request.get("podid")
        if not sim.state.live(zone) or not sim.state.live(pod):
            raise invalid_value("Can't find zone or pod by the given id")
        if pod.zone is not zone:
            raise invalid_value(f"Pod {pod.uuid} doesn't belong to the zone {zone.uuid}")
        hypervisor = catalog.hypervisor_name(request.get("hypervisor"))
        if hypervisor is None:
            raise invalid_value(f"Unable to resolve {request.get('hypervisor')} to a supported hypervisor type")
        cluster: Cluster | None = request.get("clusterid")
        if cluster is not None and cluster.pod is not pod:
            raise invalid_value(f"Cluster {cluster.uuid} does not belong to pod {pod.uuid}")
        cluster_name = request.get("clustername")
        parts = urlsplit(url)
        address = parts.hostname or ""
    if hypervisor == "XenServer":
        return _add_xen_hosts(request, cluster, cluster_name, parts)
    if hypervisor != "KVM":
        raise refuse(f"the simulator discovers KVM hosts only, not {hypervisor}")
    if parts.scheme != "http" or not address:
        raise refuse("urlString is not http so we're not taking care of the discovery for this")
    if cluster is None and not cluster_name:
        raise refuse("no cluster id or cluster name given")
    try:
        address = socket.gethostbyname(address)
    except OSError as error:
        raise refuse(f"cannot resolve {parts.hostname}: {error}") from None
    with sim.state.lock:
        if cluster is not None and cluster.hypervisor != "KVM":
            raise refuse(f"cluster {cluster.name} is not for KVM hypervisors")
        if any(h.address == address and h.cluster.zone is zone for h in sim.state.values("host")):
            raise refuse(f"a host with address {address} is already in the zone")
        if cluster is not None:
            cluster_id = cluster.db_id
        else:
            existing = [c for c in sim.state.values("cluster") if c.name == cluster_name and c.pod is pod]
            cluster_id = existing[0].db_id if existing else sim.state.sequences.get("cluster", 0) + 1
    result = kvm.probe(address, request.get("username"), request.get("password"), sim.ssh_key_path)
    if result.auth_failed:
        raise refuse(result.reason, ApiError(
            INTERNAL_ERROR, f"Could not add host at [{url}] with zone [{zone.db_id}], pod [{pod.db_id}] and "
                            f"cluster [{cluster_id}] due to: [Authentication error]."))
    if not result.ok:
        raise refuse(result.reason)
    with sim.state.lock:
        if any(h.address == address and h.cluster.zone is zone for h in sim.state.values("host")):
            raise refuse(f"a host with address {address} is already in the zone")
        if cluster is None:
            existing = [c for c in sim.state.values("cluster") if c.name == cluster_name and c.pod is pod]
            if existing and existing[0].hypervisor != "KVM":
                raise refuse(f"cluster {cluster_name} is not for KVM hypervisors")
            cluster = existing[0] if existing else sim.state.add(Cluster(
                uuid=sim.state.new_uuid(), db_id=sim.state.next_id("cluster"), name=cluster_name, pod=pod,
                hypervisor="KVM"))
        host = sim.state.add(Host(uuid=sim.state.new_uuid(), db_id=sim.state.next_id("host"), name=result.hostname,
                                  cluster=cluster, address=address, state="Connecting",
                                  resource_state=("Disabled" if request.get("allocationstate") == "Disable"
                                                  else "Enabled"),
                                  version=catalog.CLOUDSTACK_VERSION, tags=list(request.get("hosttags") or []),
                                  url=url, details={"url": url, "username": request.get("username") or ""}))
        if request.get("password"):  # the agent stand-in's session logs in as addHost did
            sim.hostops.availability.passwords[host.uuid] = request.get("password")
        audit.record("host.added", host=host.uuid, name=host.name, address=address, cluster=cluster.uuid,
                     zone=zone.uuid, tags=host.tags)
        sim.hostops.connect_later(host)
        return {"count": 1, "host": [responses.host(host)]}


def _add_xen_hosts(request: Request, cluster: Cluster | None, cluster_name: str | None, parts: SplitResult
                   ) -> dict[str, Any]:
    """addHost for XenServer (called without the state lock held)."""
    sim = request.sim
    zone, pod, url = request.get("zoneid"), request.get("podid"), request.get("url")
    username, password = request.get("username") or "", request.get("password") or ""

    def refuse(reason: str) -> ApiError:
        sim.audit_log.record("host.add.failed", url=url, reason=reason)
        xen.log(sim, "WARN", "ResourceManagerImpl", f"Cannot find the server resources at {url}")
        return _not_found(url)

    with sim.state.lock:
        if cluster is not None and cluster_name:
            raise invalid_value("Can't specify cluster by both id and name")
        if not username.strip() or not password.strip():
            raise invalid_value("Username and Password need to be provided.")
        if cluster is not None and cluster.guid is None and sim.hostops.hosts_of(cluster):
            raise internal("Guid is not updated for cluster with specified cluster id; need to wait for hosts in "
                           "this cluster to come up")
        if cluster is None:
            cluster_name = cluster_name or f"Standalone-{url}"
            existing = [c for c in sim.state.values("cluster") if c.name == cluster_name and c.pod is pod]
            cluster = existing[0] if existing else sim.state.add(Cluster(
                uuid=sim.state.new_uuid(), db_id=sim.state.next_id("cluster"), name=cluster_name, pod=pod,
                hypervisor="XenServer"))
        if "://" not in url or not parts.scheme:
            raise invalid_value(f"uri.scheme is null {url}, add nfs:// (or cifs://) as a prefix")
        xen.log(sim, "INFO", "ResourceManagerImpl", f"Trying to add a new host at {url} in data center {zone.db_id}")
        reason = xen.precheck(url, parts.scheme, cluster)
        if reason is not None:
            xen.log(sim, "DEBUG", xen.DISCOVERER, reason)
            raise refuse(reason)
    pool, address, port = xen.discover(sim, parts.hostname or "", parts.port, username, password, refuse)
    with sim.state.lock:
        if not sim.state.live(cluster):
            raise refuse(f"cluster {cluster.name} was removed during the discovery")
        added = xen.accept(sim, cluster, pool, address, port, username, password, request.get("hosttags"))
        if added is None:
            raise refuse("XcpServerDiscoverer.find returned nothing (see the cloudstack.log events)")
        if not added:
            sim.audit_log.record("host.add.failed", url=url, reason="every host of the pool is already in the "
                                                                    "database")
            raise ApiError(INTERNAL_ERROR, "Failed to add host")
        xen.log(sim, "INFO", "ResourceManagerImpl", f"server resources successfully discovered by {xen.DISCOVERER}")
        return {"count": len(added), "host": [responses.host(h) for h in added]}


@command("prepareHostForMaintenance", f"{ADMIN}.PrepareForMaintenanceCmd",
         [Param("id", UUID, required=True, entity=HOST)], is_async=True, instance_type="Host")
def prepare_host_for_maintenance(request: Request) -> dict[str, Any]:
    sim = request.sim
    host = request.get("id")
    job = sim.jobs.submit(request.command.java_class, request.caller, request.caller.user_uuid, "Host", host.uuid,
                          lambda ctx: sim.hostops.prepare_maintenance(ctx, host),
                          failure_text=f"Failed to prepare host {host.uuid} for maintenance")
    return {"jobid": job.uuid}


@command("cancelHostMaintenance", f"{ADMIN}.CancelMaintenanceCmd",
         [Param("id", UUID, required=True, entity=HOST)], is_async=True, instance_type="Host")
def cancel_host_maintenance(request: Request) -> dict[str, Any]:
    sim = request.sim
    host = request.get("id")
    job = sim.jobs.submit(request.command.java_class, request.caller, request.caller.user_uuid, "Host", host.uuid,
                          lambda ctx: sim.hostops.cancel_maintenance(ctx, host),
                          failure_text=f"Failed to cancel maintenance for host {host.uuid}")
    return {"jobid": job.uuid}


@command("deleteHost", f"{ADMIN}.DeleteHostCmd",
         [Param("id", UUID, required=True, entity=HOST), Param("forced", BOOLEAN),
          Param("forcedestroylocalstorage", BOOLEAN)])
def delete_host(request: Request) -> dict[str, Any]:
    sim = request.sim
    host: Host = request.get("id")
    if not sim.state.live(host):
        raise invalid_value(f"Host with id {host.db_id} doesn't exist")
    if host.resource_state not in ("Maintenance", "Degraded") and not request.get("forced"):
        raise internal(f"Host {host.uuid} cannot be deleted as it is not in maintenance mode. Either put the host "
                       f"into maintenance or perform a forced deletion.")
    for vm in [*sim.state.values("router"), *sim.state.values("systemvm"), *sim.state.values("uservm")]:
        if vm.host is host:
            if vm.kind == "uservm":
                if vm.state != "Stopped":
                    sim.hostops.maintenance.set_vm_state(vm, "Stopped")
                    sim.hostops.maintenance.count(vm, "stops")
            elif vm.kind == "router":
                sim.routers.set_state(vm, "Stopped")
            else:
                sim.system_vms.set_state(vm, "Stopped")
            vm.host = None
    sim.state.remove(host)
    cluster = host.cluster
    if cluster is not None and not sim.hostops.hosts_of(cluster):
        cluster.guid = None  # doDeleteHost: the last host of a cluster takes the cluster's guid with it
    sim.audit_log.record("host.deleted", host=host.uuid, name=host.name, address=host.address,
                         forced=bool(request.get("forced")))
    return {"success": True}
