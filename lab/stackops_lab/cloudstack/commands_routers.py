"""Router commands: listRouters, rebootRouter, stopRouter, startRouter, destroyRouter (async, answer the router),
upgradeRouterTemplate (sync, answers the reboot jobs).

upgradeRouterTemplate follows VirtualNetworkApplianceManagerImpl.upgradeRouterTemplate: `id` takes that router
whatever its state; `domainid` (with `account`: that account's) / `clusterid` / `podid` / `zoneid` take the
Running routers there; more than one of these → 431 "Multiple parameters not supported. Specify only one
among routerId/zoneId/podId/clusterId/accountId/domainId"; none → nothing to do. Routers already at the
required version get no job (CloudStack only logs "... is already at the latest version. No upgrade
required"), so the answer can be an empty list.
"""

from __future__ import annotations

from typing import Any

from stackops_lab.cloudstack import responses
from stackops_lab.cloudstack.commands_misc import OWNER_PARAMS, owned_by_visible
from stackops_lab.cloudstack.errors import invalid_value
from stackops_lab.cloudstack.framework import (BOOLEAN, UUID, Param, Request, command, keyword_match,
                                               list_response, paged)
from stackops_lab.cloudstack.routers import REBOOT_CMD
from stackops_lab.cloudstack.state import Router

ADMIN = "org.apache.cloudstack.api.command.admin.router"
ROUTER = ("router",)


def _pod(router: Router) -> Any:
    return router.host.cluster.pod if router.host and router.host.cluster else None


def _cluster(router: Router) -> Any:
    return router.host.cluster if router.host else None


@command("listRouters", f"{ADMIN}.ListRoutersCmd",
         [Param("id", UUID, entity=ROUTER), Param("name"), Param("state"), Param("zoneid", UUID, entity=("zone",)),
          Param("podid", UUID, entity=("pod",)), Param("clusterid", UUID, entity=("cluster",)),
          Param("hostid", UUID, entity=("host",)), Param("networkid", UUID, entity=("network",)),
          Param("vpcid", UUID, entity=("vpc",)), Param("forvpc", BOOLEAN), Param("version"),
          Param("healthchecksfailed", BOOLEAN, since="4.16"), Param("fetchhealthcheckresults", BOOLEAN, since="4.14"),
          Param("arch", since="4.20.1"), Param("projectid", UUID, entity=("project",)), *OWNER_PARAMS],
         is_list=True)
def list_routers(request: Request) -> dict[str, Any]:
    """QueryManagerImpl.searchForRoutersInternal: name matches as a substring, version as a prefix of the
    recorded version, ordered by id."""
    sim = request.sim
    name, wanted_state, version = request.get("name"), request.get("state"), request.get("version")
    found = []
    for router in sim.state.values("router"):
        if request.has("id"):
            if request.get("id") is not router:
                continue
        elif not owned_by_visible(request, router.account):
            continue
        if name is not None and name.lower() not in router.name.lower():
            continue
        if wanted_state is not None and wanted_state.lower() != router.state.lower():
            continue
        if request.has("zoneid") and request.get("zoneid") is not router.zone:
            continue
        if request.has("podid") and request.get("podid") is not _pod(router):
            continue
        if request.has("clusterid") and request.get("clusterid") is not _cluster(router):
            continue
        if request.has("hostid") and request.get("hostid") is not router.host:
            continue
        if request.has("networkid") and request.get("networkid") is not router.network:
            continue
        if request.has("vpcid") and request.get("vpcid") is not router.vpc:
            continue
        if request.has("forvpc") and request.get("forvpc") != (router.vpc is not None):
            continue
        if version is not None and not (router.version or "").startswith(version):
            continue
        if request.has("projectid"):
            continue  # no router of the lab belongs to a project
        if request.get("healthchecksfailed"):
            continue  # the lab's routers pass their health checks
        if keyword_match(request, router.name):
            found.append(router)
    return paged(request, "router", found, lambda r: responses.router(sim.state, r))


@command("rebootRouter", f"{ADMIN}.RebootRouterCmd", [Param("id", UUID, required=True, entity=ROUTER),
                                                      Param("forced", BOOLEAN, since="4.16.0")],
         is_async=True, instance_type="DomainRouter")
def reboot_router(request: Request) -> dict[str, Any]:
    job = request.sim.routers.submit_reboot(request.get("id"), request.caller, request.caller.user_uuid)
    return {"jobid": job.uuid}


def _submit(request: Request, runner: Any) -> dict[str, Any]:
    router = request.get("id")
    job = request.sim.jobs.submit(request.command.java_class, request.caller, request.caller.user_uuid,
                                  "DomainRouter", router.uuid, lambda ctx: runner(ctx, router))
    return {"jobid": job.uuid}


@command("stopRouter", f"{ADMIN}.StopRouterCmd", [Param("id", UUID, required=True, entity=ROUTER),
                                                  Param("forced", BOOLEAN)],
         is_async=True, instance_type="DomainRouter")
def stop_router(request: Request) -> dict[str, Any]:
    return _submit(request, request.sim.routers.stop)


@command("startRouter", f"{ADMIN}.StartRouterCmd", [Param("id", UUID, required=True, entity=ROUTER)],
         is_async=True, instance_type="DomainRouter")
def start_router(request: Request) -> dict[str, Any]:
    return _submit(request, request.sim.routers.start)


@command("destroyRouter", f"{ADMIN}.DestroyRouterCmd", [Param("id", UUID, required=True, entity=ROUTER)],
         is_async=True, instance_type="DomainRouter")
def destroy_router(request: Request) -> dict[str, Any]:
    return _submit(request, request.sim.routers.destroy)


@command("upgradeRouterTemplate", f"{ADMIN}.UpgradeRouterTemplateCmd",
         [Param("id", UUID, entity=ROUTER), Param("clusterid", UUID, entity=("cluster",)),
          Param("podid", UUID, entity=("pod",)), Param("zoneid", UUID, entity=("zone",)), Param("account"),
          Param("domainid", UUID, entity=("domain",))])
def upgrade_router_template(request: Request) -> dict[str, Any]:
    sim = request.sim
    state = sim.state
    running = [r for r in state.values("router") if r.state == "Running"]
    routers: list[Router] = []
    count = 0
    if request.has("id"):
        count += 1
        router = request.get("id")
        if state.live(router):
            routers.append(router)
    if request.has("domainid"):
        domain = request.get("domainid")
        name = request.get("account")
        if name is not None:
            accounts = [a for a in state.values("account") if a.domain is domain and a.name == name]
            if not accounts:
                raise invalid_value(f"Account :{name} does not exist in domain: {domain.db_id}")
            routers = [r for r in running if r.account is accounts[0]]
        else:
            routers = [r for r in running if r.account is not None and r.account.domain is domain]
        count += 1
    if request.has("clusterid"):
        count += 1
        routers = [r for r in running if _cluster(r) is request.get("clusterid")]
    if request.has("podid"):
        count += 1
        routers = [r for r in running if _pod(r) is request.get("podid")]
    if request.has("zoneid"):
        count += 1
        routers = [r for r in running if r.zone is request.get("zoneid")]
    if count > 1:
        raise invalid_value("Multiple parameters not supported. Specify only one among "
                            "routerId/zoneId/podId/clusterId/accountId/domainId")
    system_user = state.system_account.user_uuid if state.system_account else ""
    jobs = []
    for router in routers:
        if sim.routers.needs_upgrade(router):
            assert router.account is not None
            jobs.append(sim.routers.submit_reboot(router, router.account, system_user))
    sim.audit_log.record("router.upgrade.requested", routers=len(routers), jobs=[job.uuid for job in jobs],
                         cmd=REBOOT_CMD)
    return list_response("asyncjobs", [{"jobid": job.uuid} for job in jobs], len(jobs))
