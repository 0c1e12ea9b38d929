"""The cloud's structure: createZone, updateZone, deleteZone, createPod, updatePod, deletePod, listHypervisors.

ConfigurationManagerImpl as the API shows it:
- createZone: `networktype` is Basic or Advanced ("Invalid zone type; only Advanced and Basic values are
  supported"); zone names are unique; a new zone is Disabled unless `allocationstate` says otherwise (the UI
  enables it at the end of its wizard). The answer is the zone ({"zone": {...}}).
- updateZone / updatePod: `allocationstate` is Enabled or Disabled (Grouping.AllocationState; anything else:
  "Unable to resolve Allocation State '<value>' to a supported state"); the other given fields replace the
  stored ones.
- deleteZone (checkIfZoneIsDeletable, CloudRuntimeException → 530): "The zone cannot be deleted because there
  are servers in this zone." while it has hosts, "... there are pods in this zone." while it has pods.
  deletePod likewise: "The pod cannot be deleted because there are servers in this pod." / "... there are
  clusters in this pod.". Both answer {"success": true}.
- createPod: pod names are unique in a zone; the start address must be an IPv4 address; a new pod is Enabled.
- listHypervisors (ManagementServerImpl.getHypervisors; not a BaseListCmd, so no paging): without `zoneid` the
  `hypervisor.list` setting; with a zone one entry per cluster of the zone (as CloudStack lists them, so a
  hypervisor with two clusters shows twice); with zoneid=-1 the hypervisors every zone has a cluster of.
The texts for a duplicate zone or pod name and a bad address are the lab's, modelled on CloudStack's.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from stackops_lab.cloudstack import responses
from stackops_lab.cloudstack.errors import internal, invalid_value
from stackops_lab.cloudstack.framework import BOOLEAN, INTEGER, LIST, MAP, UUID, Param, Request, command, \
    list_response
from stackops_lab.cloudstack.state import Pod, Zone

ADMIN = "org.apache.cloudstack.api.command.admin"
USER = "org.apache.cloudstack.api.command.user"
ZONE, POD, DOMAIN = ("zone",), ("pod",), ("domain",)
ALLOCATION_STATES = ("Enabled", "Disabled")
DEFAULT_HYPERVISOR_LIST = "Hyperv,KVM,XenServer,VMware,BareMetal,Ovm,LXC,Ovm3,Simulator"


def _allocation_state(value: str) -> str:
    for state in ALLOCATION_STATES:
        if state.lower() == value.lower():
            return state
    raise invalid_value(f"Unable to resolve Allocation State '{value}' to a supported state")


def _zone_fields(request: Request, zone: Zone) -> None:
    for param, attribute in (("dns1", "dns1"), ("dns2", "dns2"), ("internaldns1", "internal_dns1"),
                             ("internaldns2", "internal_dns2"), ("guestcidraddress", "guest_cidr"),
                             ("domain", "network_domain"), ("dhcpprovider", "dhcp_provider")):
        if request.has(param):
            setattr(zone, attribute, request.get(param) or None)
    if request.has("localstorageenabled"):
        zone.local_storage = request.get("localstorageenabled")


@command("createZone", f"{ADMIN}.zone.CreateZoneCmd",
         [Param("dns1", required=True), Param("dns2"), Param("ip6dns1"), Param("ip6dns2"), Param("guestcidraddress"),
          Param("internaldns1"), Param("internaldns2"), Param("name", required=True), Param("domain"),
          Param("domainid", UUID, entity=DOMAIN), Param("networktype", required=True), Param("allocationstate"),
          Param("securitygroupenabled", BOOLEAN), Param("localstorageenabled", BOOLEAN)])
def create_zone(request: Request) -> dict[str, Any]:
    state = request.sim.state
    network_type = request.get("networktype")
    if network_type.lower() not in ("basic", "advanced"):
        raise invalid_value("Invalid zone type; only Advanced and Basic values are supported")
    name = request.get("name")
    if any(z.name == name for z in state.values("zone")):
        raise invalid_value("A zone with that name already exists. Please specify a unique zone name.")
    zone = Zone(uuid=state.new_uuid(), db_id=state.next_id("zone"), name=name,
                network_type="Basic" if network_type.lower() == "basic" else "Advanced",
                allocation_state=_allocation_state(request.get("allocationstate") or "Disabled"),
                domain=request.get("domainid"), security_groups=bool(request.get("securitygroupenabled")),
                guest_cidr=None)
    _zone_fields(request, zone)
    state.add(zone)
    request.sim.audit_log.record("zone.created", zone=zone.uuid, name=zone.name)
    return {"zone": responses.zone(zone)}


@command("updateZone", f"{ADMIN}.zone.UpdateZoneCmd",
         [Param("dns1"), Param("dns2"), Param("ip6dns1"), Param("ip6dns2"), Param("guestcidraddress"),
          Param("id", UUID, required=True, entity=ZONE), Param("internaldns1"), Param("internaldns2"), Param("name"),
          Param("ispublic", BOOLEAN), Param("allocationstate"), Param("details", MAP), Param("dhcpprovider"),
          Param("domain"), Param("dnssearchorder", LIST), Param("localstorageenabled", BOOLEAN),
          Param("sortkey", INTEGER)])
def update_zone(request: Request) -> dict[str, Any]:
    state = request.sim.state
    zone: Zone = request.get("id")
    if not state.live(zone):
        raise invalid_value(f"unable to find zone by id {zone.db_id}")
    name = request.get("name")
    if name and name != zone.name and any(z.name == name for z in state.values("zone")):
        raise invalid_value("A zone with that name already exists. Please specify a unique zone name.")
    if request.get("allocationstate"):
        zone.allocation_state = _allocation_state(request.get("allocationstate"))
    if name:
        zone.name = name
    if request.get("ispublic"):
        zone.domain = None
    _zone_fields(request, zone)
    request.sim.audit_log.record("zone.updated", zone=zone.uuid, allocationstate=zone.allocation_state)
    return {"zone": responses.zone(zone)}


@command("deleteZone", f"{ADMIN}.zone.DeleteZoneCmd", [Param("id", UUID, required=True, entity=ZONE)])
def delete_zone(request: Request) -> dict[str, Any]:
    state = request.sim.state
    zone: Zone = request.get("id")
    if not state.live(zone):
        raise invalid_value(f"unable to find zone by id {zone.db_id}")
    if any(h.cluster.zone is zone for h in state.values("host")):
        raise internal("The zone cannot be deleted because there are servers in this zone.")
    if any(p.zone is zone for p in state.values("pod")):
        raise internal("The zone cannot be deleted because there are pods in this zone.")
    state.remove(zone)
    request.sim.audit_log.record("zone.deleted", zone=zone.uuid, name=zone.name)
    return {"success": True}


def _address(value: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise invalid_value(f"Please specify a valid {what}") from None


@command("createPod", f"{ADMIN}.pod.CreatePodCmd",
         [Param("name", required=True), Param("zoneid", UUID, required=True, entity=ZONE),
          Param("startip", required=True), Param("endip"), Param("netmask", required=True),
          Param("gateway", required=True), Param("allocationstate")])
def create_pod(request: Request) -> dict[str, Any]:
    state = request.sim.state
    zone: Zone = request.get("zoneid")
    if not state.live(zone):
        raise invalid_value("Please specify a valid zone.")
    name = request.get("name")
    if any(p.zone is zone and p.name == name for p in state.values("pod")):
        raise invalid_value(f"A pod with name: {name} already exists in zone {zone.db_id}. Please specify a "
                            "different pod name. ")
    pod = Pod(uuid=state.new_uuid(), db_id=state.next_id("pod"), name=name, zone=zone,
              gateway=_address(request.get("gateway"), "gateway"), netmask=request.get("netmask"),
              start_ip=_address(request.get("startip"), "start IP address"),
              end_ip=_address(request.get("endip"), "end IP address") if request.get("endip") else None,
              allocation_state=_allocation_state(request.get("allocationstate") or "Enabled"))
    state.add(pod)
    request.sim.audit_log.record("pod.created", pod=pod.uuid, name=pod.name, zone=zone.uuid)
    return {"pod": responses.pod(pod)}


@command("updatePod", f"{ADMIN}.pod.UpdatePodCmd",
         [Param("id", UUID, required=True, entity=POD), Param("name"), Param("startip"), Param("endip"),
          Param("netmask"), Param("gateway"), Param("allocationstate")])
def update_pod(request: Request) -> dict[str, Any]:
    state = request.sim.state
    pod: Pod = request.get("id")
    if not state.live(pod):
        raise invalid_value(f"Unable to find pod by id {pod.db_id}")
    name = request.get("name")
    if name and name != pod.name and any(p.zone is pod.zone and p.name == name for p in state.values("pod")):
        raise invalid_value(f"A pod with name: {name} already exists in zone {pod.zone.db_id}. Please specify a "
                            "different pod name. ")
    if request.get("allocationstate"):
        pod.allocation_state = _allocation_state(request.get("allocationstate"))
    if name:
        pod.name = name
    if request.get("gateway"):
        pod.gateway = _address(request.get("gateway"), "gateway")
    if request.get("netmask"):
        pod.netmask = request.get("netmask")
    if request.get("startip"):
        pod.start_ip = _address(request.get("startip"), "start IP address")
    if request.get("endip"):
        pod.end_ip = _address(request.get("endip"), "end IP address")
    request.sim.audit_log.record("pod.updated", pod=pod.uuid, allocationstate=pod.allocation_state)
    return {"pod": responses.pod(pod)}


@command("deletePod", f"{ADMIN}.pod.DeletePodCmd", [Param("id", UUID, required=True, entity=POD)])
def delete_pod(request: Request) -> dict[str, Any]:
    state = request.sim.state
    pod: Pod = request.get("id")
    if not state.live(pod):
        raise invalid_value(f"Unable to find pod by id {pod.db_id}")
    if any(h.cluster.pod is pod for h in state.values("host")):
        raise internal("The pod cannot be deleted because there are servers in this pod.")
    if any(c.pod is pod for c in state.values("cluster")):
        raise internal("The pod cannot be deleted because there are clusters in this pod.")
    state.remove(pod)
    request.sim.audit_log.record("pod.deleted", pod=pod.uuid, name=pod.name)
    return {"success": True}


@command("listHypervisors", f"{USER}.resource.ListHypervisorsCmd", [Param("zoneid", UUID, entity=ZONE)])
def list_hypervisors(request: Request) -> dict[str, Any]:
    state = request.sim.state
    configured = [h for h in (state.config_value("hypervisor.list") or DEFAULT_HYPERVISOR_LIST).split(",") if h]
    zone = request.get("zoneid")
    if zone is None:
        names = configured
    elif zone == -1:
        zones = state.values("zone")
        names = [h for h in configured
                 if all(any(c.zone is z and c.hypervisor == h for c in state.values("cluster")) for z in zones)]
    else:
        names = [c.hypervisor for c in state.values("cluster") if c.zone is zone]
    return list_response("hypervisor", [responses.hypervisor(name) for name in names], len(names))
