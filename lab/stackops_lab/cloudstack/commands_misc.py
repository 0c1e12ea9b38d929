"""Listing commands for the cloud's structure and accounts, configuration, capabilities, queryAsyncJobResult and
listAsyncJobs.

Ownership filters follow AccountManager.buildACLSearchParameters for a root admin: with an `id` every
object is found; with `domainid` (and `account`) the objects of that domain/account (subdomains with
isrecursive=true); with listall=true everything; otherwise only the caller's own objects (so a root admin's
plain listRouters/listNetworks/listVPCs finds none of the tenants' routers, networks and VPCs).
"""

from __future__ import annotations

import calendar
import re
from typing import Any

from stackops_lab.cloudstack import responses
from stackops_lab.cloudstack.errors import invalid_value, param_error
from stackops_lab.cloudstack.framework import (BOOLEAN, INTEGER, LIST, MAP, UUID, UUID_LIST, Param, Request, command,
                                               keyword_match, paged)
from stackops_lab.cloudstack.state import Account, Domain

ZONE, POD, CLUSTER, DOMAIN, ACCOUNT = ("zone",), ("pod",), ("cluster",), ("domain",), ("account",)
USER = "org.apache.cloudstack.api.command.user"
ADMIN = "org.apache.cloudstack.api.command.admin"
DOMAIN_LIST_PARAMS = (Param("domainid", UUID, entity=DOMAIN), Param("listall", BOOLEAN),
                      Param("isrecursive", BOOLEAN))  # BaseListDomainResourcesCmd
OWNER_PARAMS = (Param("account"), *DOMAIN_LIST_PARAMS)  # BaseListAccountResourcesCmd


def owned_by_visible(request: Request, owner: Account | None) -> bool:
    """buildACLSearchParameters for a root-admin caller (see module docstring)."""
    if owner is None or owner.domain is None:
        return False
    domain = request.get("domainid")
    name = request.get("account")
    if isinstance(domain, Domain):
        if name is not None:
            return owner.domain is domain and owner.name == name
        return owner.domain is domain or bool(request.get("isrecursive")) and owner.domain.within(domain)
    if name is not None:
        return owner.domain is request.caller.domain and owner.name == name
    if request.get("listall"):
        return True
    return owner is request.caller


def same(request: Request, name: str, value: Any) -> bool:
    """True when the filter `name` is absent or equals `value` (entities compare by identity)."""
    wanted = request.get(name)
    return wanted is None or wanted is value or wanted == value


@command("listZones", f"{USER}.zone.ListZonesCmd",
         [Param("id", UUID, entity=ZONE), Param("ids", UUID_LIST, entity=ZONE, since="4.19.0"), Param("name"),
          Param("available", BOOLEAN), Param("domainid", UUID, entity=DOMAIN), Param("showcapacities", BOOLEAN),
          Param("networktype"), Param("tags", MAP, since="4.3"), Param("showicon", BOOLEAN)], is_list=True)
def list_zones(request: Request) -> dict[str, Any]:
    zones = [z for z in request.sim.state.values("zone")
             if same(request, "id", z) and same(request, "name", z.name) and keyword_match(request, z.name)
             and (not request.has("ids") or any(z is wanted for wanted in request.get("ids")))
             and request.get("networktype", z.network_type).lower() == z.network_type.lower()]
    return paged(request, "zone", zones, responses.zone)


@command("listPods", f"{ADMIN}.pod.ListPodsByCmd",
         [Param("id", UUID, entity=POD), Param("name"), Param("zoneid", UUID, entity=ZONE),
          Param("allocationstate"), Param("showcapacities", BOOLEAN),
          Param("storageaccessgroup", since="4.21.0")], is_list=True)
def list_pods(request: Request) -> dict[str, Any]:
    pods = [p for p in request.sim.state.values("pod")
            if same(request, "id", p) and same(request, "name", p.name) and same(request, "zoneid", p.zone)
            and same(request, "allocationstate", p.allocation_state) and keyword_match(request, p.name)]
    return paged(request, "pod", pods, responses.pod)


@command("listClusters", f"{ADMIN}.cluster.ListClustersCmd",
         [Param("id", UUID, entity=CLUSTER), Param("name"), Param("zoneid", UUID, entity=ZONE),
          Param("podid", UUID, entity=POD), Param("hypervisor"), Param("clustertype"), Param("allocationstate"),
          Param("managedstate"), Param("showcapacities", BOOLEAN), Param("arch", since="4.20.1")], is_list=True)
def list_clusters(request: Request) -> dict[str, Any]:
    hypervisor = request.get("hypervisor")
    clusters = [c for c in request.sim.state.values("cluster")
                if same(request, "id", c) and same(request, "name", c.name) and same(request, "zoneid", c.zone)
                and same(request, "podid", c.pod) and (hypervisor is None or hypervisor.lower() == c.hypervisor.lower())
                and same(request, "clustertype", c.cluster_type) and same(request, "managedstate", c.managed_state)
                and same(request, "allocationstate", c.allocation_state) and keyword_match(request, c.name)]
    return paged(request, "cluster", clusters, responses.cluster)


@command("listDomains", f"{ADMIN}.domain.ListDomainsCmd",
         [Param("id", UUID, entity=DOMAIN), Param("name"), Param("level", INTEGER), Param("listall", BOOLEAN),
          Param("details", LIST)], is_list=True)
def list_domains(request: Request) -> dict[str, Any]:
    state = request.sim.state
    all_domains = state.values("domain")
    if request.has("id") or request.get("listall"):
        candidates = all_domains
    else:
        candidates = [request.caller.domain]
    found = [d for d in candidates if same(request, "id", d) and same(request, "name", d.name)
             and same(request, "level", d.level) and keyword_match(request, d.name)]
    return paged(request, "domain", found,
                 lambda d: responses.domain(d, any(child.parent is d for child in all_domains)))


@command("listAccounts", f"{ADMIN}.account.ListAccountsCmdByAdmin",
         [Param("id", UUID, entity=ACCOUNT), Param("name"), Param("accounttype", INTEGER), Param("state"),
          Param("iscleanuprequired", BOOLEAN), Param("details", LIST), Param("apikeyaccess", since="4.20.1.0"),
          Param("showicon", BOOLEAN), Param("tag", since="4.20.0"), *DOMAIN_LIST_PARAMS], is_list=True)
def list_accounts(request: Request) -> dict[str, Any]:
    """With an id that account; with listall=true all; with domainid that domain's (recursive with
    isrecursive=true); otherwise the accounts of the caller's own domain."""
    domain = request.get("domainid")
    accounts = []
    for a in request.sim.state.values("account"):
        if a.name == "system" or a.account_type == 5:  # not the system account, nor projects' accounts
            continue
        if request.has("id"):
            visible = request.get("id") is a
        elif request.get("listall"):
            visible = True
        elif isinstance(domain, Domain):
            visible = a.domain is domain or bool(request.get("isrecursive")) and a.domain.within(domain)
        else:
            visible = a.domain is request.caller.domain
        if visible and same(request, "name", a.name) and same(request, "accounttype", a.account_type) \
                and keyword_match(request, a.name):
            accounts.append(a)
    return paged(request, "account", accounts, responses.account)


@command("listOsTypes", f"{USER}.guest.ListGuestOsCmd",
         [Param("id", UUID, entity=("ostype",)), Param("oscategoryid"), Param("description")], is_list=True)
def list_os_types(request: Request) -> dict[str, Any]:
    description = request.get("description")
    found = [o for o in request.sim.state.values("ostype")
             if same(request, "id", o) and (description is None or description.lower() in o.description.lower())
             and keyword_match(request, o.description)]
    return paged(request, "ostype", found, responses.ostype)


@command("listCapabilities", f"{USER}.config.ListCapabilitiesCmd")
def list_capabilities(request: Request) -> dict[str, Any]:
    return {"capability": {
        "securitygroupsenabled": False, "dynamicrolesenabled": True, "cloudstackversion": request.sim.version,
        "userpublictemplateenabled": True, "supportELB": "false", "projectinviterequired": False,
        "allowusercreateprojects": True, "customdiskofferingminsize": 1, "customdiskofferingmaxsize": 1024,
        "regionsecondaryenabled": False, "kvmsnapshotenabled": False, "allowuserviewdestroyedvm": False,
        "allowuserexpungerecovervm": False, "apilimitinterval": 1, "apilimitmax": 30, "defaultuipagesize": 20,
        "instancesstatsretentiontime": 720, "instancesstatsuseronly": False, "sharedfsvmmincpucount": 2,
    }}


def _scope_zone(request: Request) -> Any:
    scopes = [name for name in ("zoneid", "clusterid", "accountid", "domainid", "storageid") if request.has(name)]
    if len(scopes) > 1:
        raise invalid_value("cannot handle multiple IDs, provide only one ID corresponding to the scope")
    if scopes and scopes[0] != "zoneid":
        raise invalid_value(f"The lab simulator keeps configuration values per zone only, not by {scopes[0]}")
    return request.get("zoneid")


SCOPE_PARAMS = (Param("zoneid", UUID, entity=ZONE), Param("clusterid", UUID, entity=CLUSTER),
                Param("accountid", UUID, entity=ACCOUNT), Param("domainid", UUID, entity=DOMAIN),
                Param("storageid", UUID, entity=("storagepool",)))
IMAGE_STORE = ("imagestore",)


@command("listConfigurations", f"{ADMIN}.config.ListCfgsByCmd",
         [Param("name"), Param("category"), *SCOPE_PARAMS, Param("imagestoreuuid", UUID, entity=IMAGE_STORE),
          Param("group", since="4.18.0"), Param("subgroup", since="4.18.0"), Param("parent", since="4.18.0")],
         is_list=True)
def list_configurations(request: Request) -> dict[str, Any]:
    """ManagementServerImpl.searchForConfigurations: `name` matches as a substring (LIKE %name%); with a zone
    only Zone-scoped keys, with the zone's value, and scope "zone" (ListCfgsByCmd.setScope)."""
    state = request.sim.state
    zone = _scope_zone(request)
    name = request.get("name")
    category = request.get("category")
    found = [c for c in state.configs.values()
             if (name is None or name.lower() in c.name.lower())
             and (category is None or category.lower() == c.category.lower())
             and (zone is None or c.scope == "Zone") and keyword_match(request, c.name)]

    def render(config: Any) -> dict[str, Any]:
        result = responses.configuration(config, state.config_value(config.name, zone))
        if zone is not None:
            result["scope"] = "zone"
        return result

    return paged(request, "configuration", found, render)


@command("updateConfiguration", f"{ADMIN}.config.UpdateCfgCmd",
         [Param("name", required=True), Param("value"), *SCOPE_PARAMS,
          Param("imagestoreuuid", UUID, entity=IMAGE_STORE), Param("networkid", UUID, entity=("network",))])
def update_configuration(request: Request) -> dict[str, Any]:
    state = request.sim.state
    name = request.get("name")
    if not name:
        raise invalid_value("Empty configuration name provided")
    config = state.configs.get(name)
    if config is None:
        raise invalid_value(f"Config parameter with name {name} doesn't exist")
    zone = _scope_zone(request)
    if zone is not None and config.scope != "Zone":
        raise invalid_value(f"Invalid scope id provided for the parameter {name}")
    value = request.get("value")
    if value is not None and config.value_type == "Boolean" and value.lower() not in ("true", "false"):
        raise invalid_value("Please enter either 'true' or 'false'.")
    old = state.config_value(name, zone)
    if zone is None:
        state.global_values[name] = value if value is not None else config.default
    else:
        state.zone_values[(name, zone.uuid)] = value if value is not None else config.default
    request.sim.audit_log.record("config.updated", name=name, value=value, old=old,
                                 zone=zone.uuid if zone is not None else None)
    result = responses.configuration(config, value)
    if zone is not None:
        result["scope"] = "zone"
    return {"configuration": result}


@command("resetConfiguration", f"{ADMIN}.config.ResetCfgCmd",
         [Param("name", required=True), Param("zoneid", UUID, entity=ZONE), Param("clusterid", UUID, entity=CLUSTER),
          Param("storageid", UUID, entity=("storagepool",)), Param("domainid", UUID, entity=DOMAIN),
          Param("accountid", UUID, entity=ACCOUNT), Param("imagestoreid", UUID, entity=IMAGE_STORE),
          Param("networkid", UUID, entity=("network",), since="4.18.0")])
def reset_configuration(request: Request) -> dict[str, Any]:
    """ConfigurationManagerImpl.resetConfiguration: the global value goes back to the default; with a zone the
    zone's own value is removed (the zone then follows the global value). The answer carries the value now in
    force and, with a scope, the scope's ConfigKey.Scope name ("Zone")."""
    state = request.sim.state
    name = request.get("name")
    if not name:
        raise param_error("Empty or null value provided for API arg: name")
    config = state.configs.get(name)
    if config is None:
        raise invalid_value(f"Config parameter with name {name} doesn't exist")
    zone = _scope_zone(request)
    if zone is not None and config.scope != "Zone":
        raise invalid_value(f"Invalid scope id provided for the parameter {name}")
    if zone is None:
        state.global_values[name] = config.default
    else:
        state.zone_values.pop((name, zone.uuid), None)
    value = state.config_value(name, zone)
    request.sim.audit_log.record("config.reset", name=name, value=value, zone=zone.uuid if zone is not None else None)
    result = responses.configuration(config, value)
    if zone is not None:
        result["scope"] = "Zone"
    return {"configuration": result}


@command("listNetworks", f"{ADMIN}.network.ListNetworksCmdByAdmin",
         [Param("id", UUID, entity=("network",)), Param("zoneid", UUID, entity=ZONE),
          Param("vpcid", UUID, entity=("vpc",)), Param("type"), Param("traffictype"), *OWNER_PARAMS],
         is_list=True)
def list_networks(request: Request) -> dict[str, Any]:
    found = [n for n in request.sim.state.values("network")
             if (same(request, "id", n) if request.has("id") else owned_by_visible(request, n.account))
             and same(request, "zoneid", n.zone) and same(request, "vpcid", n.vpc)
             and (request.get("type") is None or request.get("type").lower() == "isolated")
             and keyword_match(request, n.name)]
    return paged(request, "network", found, responses.network)


@command("listVPCs", f"{USER}.vpc.ListVPCsCmd",
         [Param("id", UUID, entity=("vpc",)), Param("zoneid", UUID, entity=ZONE), Param("name"),
          *OWNER_PARAMS], is_list=True)
def list_vpcs(request: Request) -> dict[str, Any]:
    found = [v for v in request.sim.state.values("vpc")
             if (same(request, "id", v) if request.has("id") else owned_by_visible(request, v.account))
             and same(request, "zoneid", v.zone) and same(request, "name", v.name) and keyword_match(request, v.name)]
    return paged(request, "vpc", found, responses.vpc)


@command("queryAsyncJobResult", f"{USER}.job.QueryAsyncJobResultCmd",
         [Param("jobid", UUID, required=True, entity=("job",))])
def query_async_job_result(request: Request) -> dict[str, Any]:
    return responses.job(request.get("jobid"))


_DATE = re.compile(r"^(\d+)-(\d+)-(\d+)")


def _start_of_day(text: str) -> float | None:
    """ParamProcessWorker for a DATE parameter of any command but the event/alert/usage ones: SimpleDateFormat
    `yyyy-MM-dd`, not lenient, reading the beginning of the text (a time after the date is ignored), in the
    server's time zone (here UTC); None when it does not parse."""
    match = _DATE.match(text)
    if not match:
        return None
    year, month, day = (int(g) for g in match.groups())
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    return float(calendar.timegm((year, month, day, 0, 0, 0)))


@command("listAsyncJobs", f"{USER}.job.ListAsyncJobsCmd",
         [Param("startdate"), Param("managementserverid", UUID, entity=("managementserver",), since="4.19"),
          *OWNER_PARAMS], is_list=True)
def list_async_jobs(request: Request) -> dict[str, Any]:
    """QueryManagerImpl.searchForAsyncJobsInternal: the jobs of the accounts the caller may list (a root admin's
    own without listall=true), `keyword` matched in `cmd` (LIKE %keyword%), created at or after `startdate`,
    pending and finished alike, ordered by id. (`managementserverid`, 4.19, is not simulated.)"""
    since = None
    if request.has("startdate"):
        since = _start_of_day(request.get("startdate"))
        if since is None:
            raise param_error(f"Unable to parse date {request.get('startdate')} for command listasyncjobs, please "
                              "pass dates in the format mentioned in the api documentation")
    found = [j for j in request.sim.state.values("job")
             if owned_by_visible(request, j.account) and keyword_match(request, j.cmd)
             and (since is None or j.created >= since)]
    return paged(request, "asyncjobs", sorted(found, key=lambda j: j.db_id), responses.job)
