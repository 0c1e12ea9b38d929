"""Response objects as CloudStack's response classes serialize them (ZoneResponse, PodResponse,
ClusterResponse, HostResponse, TemplateResponse, DomainRouterResponse, SystemVmResponse, NetworkResponse,
VpcResponse, DomainResponse, AccountResponse, ConfigurationResponse, AsyncJobResponse).

Field names and the derived values follow the *JoinDaoImpl classes, e.g. DomainRouterJoinDaoImpl: a router
with no recorded template version reports version "UNKNOWN" and requiresupgrade true, otherwise
requiresupgrade = version < the zone's minreq.sysvmtemplate.version; TemplateJoinDaoImpl.getTemplateStatus
for the download status text; the checksum is shown without its {ALGO} prefix.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from stackops_lab.cloudstack import catalog, versions
from stackops_lab.cloudstack.jobs import PENDING, Job
from stackops_lab.cloudstack.state import (Account, AgentHost, Cluster, ConfigDef, Domain, Host, Network, OsType, Pod,
                                           Project, Router, State, SystemVm, Template, TemplateZone, Vpc, Zone)

Json = dict[str, Any]
SERVICE_OFFERING_ROUTER = ("b5a0e3d9-3f5e-4c43-9c1f-2f8d5c1e0a01", "System Offering For Software Router")


def cs_date(epoch: float) -> str:
    """CloudStack's date format: yyyy-MM-dd'T'HH:mm:ssZ, e.g. 2024-05-01T12:00:00+0000."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(epoch))


def owner(account: Account | None) -> Json:
    if account is None or account.domain is None:
        return {}
    return {"account": account.name, "domainid": account.domain.uuid, "domain": account.domain.name,
            "domainpath": account.domain.path}


def zone(z: Zone) -> Json:
    """ZoneJoinDaoImpl.newDataCenterResponse: null fields are left out (Gson)."""
    result: Json = {"id": z.uuid, "name": z.name, "description": z.name, "dns1": z.dns1, "dns2": z.dns2,
                    "internaldns1": z.internal_dns1, "internaldns2": z.internal_dns2,
                    "guestcidraddress": z.guest_cidr, "domain": z.network_domain, "networktype": z.network_type,
                    "securitygroupsenabled": z.security_groups, "allocationstate": z.allocation_state,
                    "zonetoken": z.uuid[:8], "dhcpprovider": z.dhcp_provider, "localstorageenabled": z.local_storage,
                    "tags": [], "hasannotations": False}
    if z.domain is not None:
        result.update(domainid=z.domain.uuid, domainname=z.domain.name)
    return {key: value for key, value in result.items() if value is not None}


def pod(p: Pod) -> Json:
    assert p.zone is not None
    result: Json = {"id": p.uuid, "name": p.name, "zoneid": p.zone.uuid, "zonename": p.zone.name,
                    "gateway": p.gateway, "netmask": p.netmask, "startip": [p.start_ip],
                    "endip": [p.end_ip or ""], "forsystemvms": ["0"], "vlanid": [""],
                    "ipranges": [{"startip": p.start_ip, "endip": p.end_ip or "", "forsystemvms": "0"}],
                    "allocationstate": p.allocation_state, "hasannotations": False}
    return result


def cluster(c: Cluster) -> Json:
    assert c.pod is not None
    return {"id": c.uuid, "name": c.name, "podid": c.pod.uuid, "podname": c.pod.name, "zoneid": c.zone.uuid,
            "zonename": c.zone.name, "hypervisortype": c.hypervisor, "clustertype": c.cluster_type,
            "allocationstate": c.allocation_state, "managedstate": c.managed_state, "cpuovercommitratio": "1.0",
            "memoryovercommitratio": "1.0", "hasannotations": False}


def host(h: Host) -> Json:
    c = h.cluster
    assert c is not None and c.pod is not None
    result: Json = {
        "id": h.uuid, "name": h.name, "state": h.state, "type": "Routing", "ipaddress": h.address,
        "zoneid": c.zone.uuid, "zonename": c.zone.name, "podid": c.pod.uuid, "podname": c.pod.name,
        "clusterid": c.uuid, "clustername": c.name, "clustertype": c.cluster_type, "hypervisor": c.hypervisor,
        "version": h.version, "resourcestate": h.resource_state, "created": cs_date(h.created),
        "islocalstorageactive": False, "cpunumber": 16, "cpuspeed": 2400, "memorytotal": h.memory_total,
        "events": "AgentConnected; PingTimeout; ShutdownRequested; Remove; Ping; AgentDisconnected; "
                  "HostDown; ManagementServerDown; StartAgentRebalance",
        "hasannotations": False, "ueficapability": False,
    }
    if h.tags:
        result["hosttags"] = ",".join(h.tags)
    if h.hypervisor_version:
        result["hypervisorversion"] = h.hypervisor_version
    return result


def agent_host(agent: AgentHost) -> Json:
    """The host row an SSVM or CPVM agent registers (type SecondaryStorageVM / ConsoleProxy)."""
    vm = agent.vm
    assert vm is not None and vm.zone is not None
    return {"id": agent.uuid, "name": vm.name, "state": "Up" if vm.state == "Running" else "Disconnected",
            "type": "SecondaryStorageVM" if vm.vm_type == "secondarystoragevm" else "ConsoleProxy",
            "ipaddress": vm.private_ip, "zoneid": vm.zone.uuid, "zonename": vm.zone.name,
            "version": catalog.CLOUDSTACK_VERSION, "resourcestate": "Enabled", "created": cs_date(vm.created),
            "islocalstorageactive": False, "hasannotations": False}


def ostype(o: OsType) -> Json:
    return {"id": o.uuid, "description": o.description, "name": o.description,
            "oscategoryname": o.category, "isuserdefined": False, "fordisplay": True}


def template_status(ref: TemplateZone) -> str:
    """TemplateJoinDaoImpl.getTemplateStatus."""
    if ref.download_state != "DOWNLOADED":
        if ref.download_state == "DOWNLOAD_IN_PROGRESS":
            return "Installing Template" if ref.percent == 100 else f"{ref.percent}% Downloaded"
        if ref.error is None:
            return ref.store_state
        return ref.error
    return "Download Complete"


def template(t: Template, ref: TemplateZone) -> Json:
    checksum = t.checksum
    if checksum and checksum.startswith("{") and "}" in checksum:
        checksum = checksum.split("}", 1)[1]
    result: Json = {
        "id": t.uuid, "name": t.name, "displaytext": t.display_text, "ispublic": t.public,
        "created": cs_date(ref.created), "isready": ref.ready, "passwordenabled": t.password_enabled,
        "format": t.format, "isfeatured": t.featured,
        "isextractable": t.extractable and t.template_type != "SYSTEM", "crossZones": t.cross_zones,
        "templatetype": t.template_type, "hypervisor": t.hypervisor, "sshkeyenabled": False,
        "isdynamicallyscalable": False, "directdownload": False, "deployasis": False,
        "requireshvm": t.requires_hvm, "bits": t.bits, "hasannotations": False, "status": template_status(ref),
        "zoneid": ref.zone.uuid, "zonename": ref.zone.name, "tags": [],
        "downloaddetails": [{"datastore": f"{ref.zone.name}-secondary", "downloadPercent": str(ref.percent),
                             "downloadState": ref.download_state}],
    }
    if t.ostype is not None:
        result["ostypeid"] = t.ostype.uuid
        result["ostypename"] = t.ostype.description
    result.update(owner(t.account))
    if t.url:
        result["url"] = t.url
    if t.size > 0 and ref.ready:
        result["size"] = t.size
        result["physicalsize"] = t.size
    if checksum:
        result["checksum"] = checksum
    return result


def router(state: State, r: Router) -> Json:
    assert r.zone is not None
    minimum = state.config_value("minreq.sysvmtemplate.version", r.zone) or "0"
    version = r.version if r.version and r.version != versions.UNKNOWN else versions.UNKNOWN
    if state.config_value("router.version.check") == "false":
        upgrade = False
    else:
        upgrade = versions.requires_upgrade(r.version, minimum)
    result: Json = {
        "id": r.uuid, "zoneid": r.zone.uuid, "zonename": r.zone.name, "name": r.name,
        "templateid": r.template.uuid if r.template else None,
        "templatename": r.template.name if r.template else None,
        "created": cs_date(r.created), "state": r.state, "isredundantrouter": r.redundant,
        "scriptsversion": hashlib.md5(version.encode()).hexdigest() if version != versions.UNKNOWN else None,
        "redundantstate": r.redundant_state, "version": version, "requiresupgrade": upgrade,
        "linklocalip": r.link_local_ip, "publicip": r.public_ip,
        "serviceofferingid": SERVICE_OFFERING_ROUTER[0], "serviceofferingname": SERVICE_OFFERING_ROUTER[1],
        "dns1": "8.8.8.8", "role": "VIRTUAL_ROUTER", "healthchecksfailed": False, "nic": [],
    }
    if r.host is not None and r.host.cluster is not None:
        c = r.host.cluster
        result.update(hostid=r.host.uuid, hostname=r.host.name, hypervisor=r.hypervisor,
                      podid=c.pod.uuid if c.pod else None, podname=c.pod.name if c.pod else None)
    if r.network is not None:
        result.update(guestipaddress=r.guest_ip, guestnetworkid=r.network.uuid,
                      guestnetworkname=r.network.name, networkdomain="cs.lab")
        result["nic"].append({"ipaddress": r.guest_ip, "networkid": r.network.uuid,
                              "networkname": r.network.name, "traffictype": "Guest", "type": "Isolated",
                              "isdefault": False})
    if r.vpc is not None:
        result.update(vpcid=r.vpc.uuid, vpcname=r.vpc.name)
    result.update(owner(r.account))
    return {key: value for key, value in result.items() if value is not None}


def system_vm(vm: SystemVm) -> Json:
    assert vm.zone is not None
    result: Json = {
        "id": vm.uuid, "name": vm.name, "systemvmtype": vm.vm_type, "state": vm.state, "zoneid": vm.zone.uuid,
        "zonename": vm.zone.name, "hypervisor": vm.hypervisor, "created": cs_date(vm.created),
        "privateip": vm.private_ip, "publicip": vm.public_ip, "linklocalip": vm.link_local_ip,
        "dns1": "8.8.8.8", "gateway": "192.0.2.1", "isdynamicallyscalable": False, "hasannotations": False,
    }
    if vm.host is not None and vm.state in ("Running", "Starting", "Stopping"):
        assert vm.host.cluster is not None and vm.host.cluster.pod is not None
        result.update(hostid=vm.host.uuid, hostname=vm.host.name, podid=vm.host.cluster.pod.uuid,
                      podname=vm.host.cluster.pod.name)
    if vm.template is not None:
        result.update(templateid=vm.template.uuid, templatename=vm.template.name)
    if vm.vm_type == "consoleproxy":
        result["activeviewersessions"] = 0
    return result


def network(n: Network) -> Json:
    assert n.zone is not None
    result: Json = {"id": n.uuid, "name": n.name, "displaytext": n.name, "zoneid": n.zone.uuid,
                    "zonename": n.zone.name, "state": "Implemented", "type": "Isolated", "traffictype": "Guest",
                    "cidr": n.cidr, "redundantrouter": n.redundant, "restartrequired": False,
                    "networkofferingname": "DefaultIsolatedNetworkOfferingWithSourceNatService",
                    "acltype": "Account", "specifyipranges": False, "canusefordeploy": True}
    if n.vpc is not None:
        result["vpcid"] = n.vpc.uuid
    result.update(owner(n.account))
    return result


def vpc(v: Vpc) -> Json:
    assert v.zone is not None
    result: Json = {"id": v.uuid, "name": v.name, "displaytext": v.name, "zoneid": v.zone.uuid,
                    "zonename": v.zone.name, "state": "Enabled", "cidr": v.cidr,
                    "redundantvpcrouter": v.redundant, "restartrequired": False,
                    "vpcofferingname": "Redundant VPC offering" if v.redundant else "Default VPC offering",
                    "network": [], "fordisplay": True}
    result.update(owner(v.account))
    return result


def domain(d: Domain, has_child: bool) -> Json:
    result: Json = {"id": d.uuid, "name": d.name, "level": d.level, "haschild": has_child, "path": d.path,
                    "state": "Active", "created": cs_date(d.created), "hasannotations": False}
    if d.network_domain:
        result["networkdomain"] = d.network_domain
    if d.parent is not None:
        result.update(parentdomainid=d.parent.uuid, parentdomainname=d.parent.name)
    return result


def account(a: Account) -> Json:
    assert a.domain is not None
    admin = a.account_type == 1
    result: Json = {
        "id": a.uuid, "name": a.name, "accounttype": a.account_type, "roletype": "Admin" if admin else "User",
        "rolename": "Root Admin" if admin else "User", "domainid": a.domain.uuid, "domain": a.domain.name,
        "domainpath": a.domain.path, "state": a.state, "isdefault": a.name in ("admin", "system"),
        "user": [{"id": a.user_uuid, "username": a.username, "account": a.name, "state": "enabled"}]}
    if a.network_domain:
        result["networkdomain"] = a.network_domain
    return result


def configuration(config: ConfigDef, value: str | None) -> Json:
    return {"category": config.category, "name": config.name, "value": value, "description": config.description,
            "isdynamic": config.dynamic, "component": config.component, "defaultvalue": config.default,
            "type": config.value_type, "displaytext": config.name.replace(".", " ").title(),
            "group": "Miscellaneous", "subgroup": "Others"}


def job(j: Job) -> Json:
    """queryAsyncJobResult's AsyncJobResponse (AsyncJobJoinDaoImpl.newAsyncJobResponse)."""
    assert j.account is not None and j.account.domain is not None
    result: Json = {"accountid": j.account.uuid, "account": j.account.name, "domainid": j.account.domain.uuid,
                    "domainpath": j.account.domain.db_path, "userid": j.user_uuid, "cmd": j.cmd,
                    "jobstatus": j.status, "jobprocstatus": 0, "jobresultcode": j.result_code}
    if j.result is not None:
        result["jobresulttype"] = "object"
        result["jobresult"] = j.result
    if j.instance_type is not None and j.instance_uuid is not None:
        result["jobinstancetype"] = j.instance_type
        result["jobinstanceid"] = j.instance_uuid
    result["created"] = cs_date(j.created)
    if j.status != PENDING and j.completed is not None:
        result["completed"] = cs_date(j.completed)
    result["jobid"] = j.uuid
    return result


def project(p: Project) -> Json:
    """ProjectJoinDaoImpl.newProjectResponse (resource limits and counts are not simulated)."""
    assert p.domain is not None
    result: Json = {"id": p.uuid, "name": p.name, "displaytext": p.display_text, "domainid": p.domain.uuid,
                    "domain": p.domain.name, "state": p.state, "created": cs_date(p.created), "tags": [],
                    "owner": [], "vmstopped": 0, "vmrunning": 0}
    if p.owner is not None:
        result["owner"] = [{"account": p.owner.name, "accountid": p.owner.uuid}]
    if p.project_account is not None:
        result["projectaccountname"] = p.project_account.name
    return result


def hypervisor(name: str) -> Json:
    return {"name": name}
