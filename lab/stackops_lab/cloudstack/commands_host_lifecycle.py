"""Host lifecycle next to maintenance: declareHostAsDegraded, cancelHostAsDegraded (async, 4.16), updateHostPassword
(sync) and listHostTags.

declareHostAsDegraded (ResourceManagerImpl.declareHostAsDegraded): a host already Degraded fails the job with 530
"Failed to declare host as Degraded due to: Host [id:<id>] was already marked as Degraded." (NoTransitionException);
a host whose status is not Alert or Disconnected with 431 "Cannot perform declare host [id=<id>, name=<name>] as
'Degraded' when host is in <status> status"; a host declared Degraded has its Starting, Running and Stopping VMs
restarted by HA on another host (stackops_lab.cloudstack.availability: HA-enabled ones restarted, the others
stopped, each counted). cancelHostAsDegraded moves a Degraded host back to Enabled; any other
resource state fails with 530 "Failed to Cancel host from Degraded status due to: Cannot perform
cancelHostAsDegraded on host [id=<id>, name=<name>] when host is in <state> state". Both answer the host.

updateHostPassword (ManagementServerImpl.updateHostPassword / updateClusterPassword; a credential among the
parameters, so the request is audited as addHost's): with `clusterid` every host of a KVM or XenServer cluster gets
the new credentials, else `hostid` is needed ("You should provide an host id.") and must not be a XenServer host
("Single host update is not supported by XenServer hypervisors. Please try again informing the Cluster ID."). A
host whose stored user name differs is refused. The password is stored in the host's details, never logged.

listHostTags (QueryManagerImpl.searchForHostTags): one entry per host and tag, {"name", "hostid"} (the host's
database id, as HostTagDaoImpl.newHostTagResponse sets it; the row id is not set).
"""

from __future__ import annotations

from typing import Any

from stackops_lab.cloudstack import responses
from stackops_lab.cloudstack.errors import INTERNAL_ERROR, PARAM_ERROR, invalid_value
from stackops_lab.cloudstack.framework import BOOLEAN, UUID, Param, Request, command, keyword_match, paged
from stackops_lab.cloudstack.jobs import JobContext
from stackops_lab.cloudstack.state import Host

ADMIN = "org.apache.cloudstack.api.command.admin.host"
HOST = ("host",)
SUPPORTED = ("KVM", "XenServer")  # ManagementServerImpl's hypervisors for host password updates


def _submit(request: Request, runner: Any) -> dict[str, Any]:
    host: Host = request.get("id")
    job = request.sim.jobs.submit(request.command.java_class, request.caller, request.caller.user_uuid, "Host",
                                  host.uuid, lambda ctx: runner(ctx, host))
    return {"jobid": job.uuid}


@command("declareHostAsDegraded", f"{ADMIN}.DeclareHostAsDegradedCmd",
         [Param("id", UUID, required=True, entity=HOST)], is_async=True, instance_type="Host")
def declare_host_as_degraded(request: Request) -> dict[str, Any]:
    sim = request.sim

    def run(ctx: JobContext, host: Host) -> None:
        if not sim.state.live(host):
            ctx.fail(PARAM_ERROR, f"Host [id:{host.db_id}, name:{host.name}] does not exist or it has been removed.")
            return
        if host.resource_state == "Degraded":
            ctx.fail(INTERNAL_ERROR, f"Failed to declare host as Degraded due to: Host [id:{host.db_id}] was already "
                                     "marked as Degraded.")
            return
        if host.state not in ("Alert", "Disconnected"):
            ctx.fail(PARAM_ERROR, f"Cannot perform declare host [id={host.db_id}, name={host.name}] as 'Degraded' "
                                  f"when host is in {host.state} status")
            return
        sim.hostops.set_state(host, resource_state="Degraded")
        for vm in sim.hostops.vms_on(host):  # scheduleVmsRestart: HA restarts them elsewhere
            if vm.state in ("Starting", "Running", "Stopping"):
                sim.hostops.availability.restart_elsewhere(host, vm)
        ctx.succeed({"host": responses.host(host)})

    return _submit(request, run)


@command("cancelHostAsDegraded", f"{ADMIN}.CancelHostAsDegradedCmd",
         [Param("id", UUID, required=True, entity=HOST)], is_async=True, instance_type="Host")
def cancel_host_as_degraded(request: Request) -> dict[str, Any]:
    sim = request.sim

    def run(ctx: JobContext, host: Host) -> None:
        if not sim.state.live(host):
            ctx.fail(PARAM_ERROR, f"Host [id={host.db_id}] does not exist")
            return
        if host.resource_state != "Degraded":
            ctx.fail(INTERNAL_ERROR, "Failed to Cancel host from Degraded status due to: Cannot perform "
                                     f"cancelHostAsDegraded on host [id={host.db_id}, name={host.name}] when host is "
                                     f"in {host.resource_state} state")
            return
        sim.hostops.set_state(host, resource_state="Enabled")
        ctx.succeed({"host": responses.host(host)})

    return _submit(request, run)


def _set_credentials(hosts: list[Host], username: str, password: str, mismatch: str) -> None:
    for host in hosts:
        current = host.details.get("username")
        if current is not None and current != username:
            raise invalid_value(mismatch)
    for host in hosts:
        host.details["username"] = username
        host.details["password"] = password


@command("updateHostPassword", f"{ADMIN}.UpdateHostPasswordCmd",
         [Param("hostid", UUID, entity=HOST), Param("clusterid", UUID, entity=("cluster",)),
          Param("update_passwd_on_host", BOOLEAN), Param("username", required=True),
          Param("password", required=True)], sensitive=True)
def update_host_password(request: Request) -> dict[str, Any]:
    state = request.sim.state
    username = "".join(request.get("username").split())
    cluster = request.get("clusterid")
    if cluster is not None:
        if not state.live(cluster) or cluster.hypervisor not in SUPPORTED:
            raise invalid_value("This operation is not supported for this hypervisor type")
        if not username:
            raise invalid_value("Username should be non empty string")
        hosts = [h for h in state.values("host") if h.cluster is cluster]
        _set_credentials(hosts, username, request.get("password"),
                         "The username is not same for all hosts, please modify passwords for individual hosts.")
    else:
        host: Host | None = request.get("hostid")
        if host is None:
            raise invalid_value("You should provide an host id.")
        if host.hypervisor == "XenServer":
            raise invalid_value("Single host update is not supported by XenServer hypervisors. Please try again "
                                "informing the Cluster ID.")
        if host.hypervisor not in SUPPORTED:
            raise invalid_value("This operation is not supported for this hypervisor type")
        if not username:
            raise invalid_value("Username should be non empty string")
        hosts = [host]
        _set_credentials(hosts, username, request.get("password"), "The username is not same for the hosts..")
    request.sim.audit_log.record("host.password", hosts=[h.uuid for h in hosts], username=username)
    return {"success": True}


@command("listHostTags", f"{ADMIN}.ListHostTagsCmd", [], is_list=True)
def list_host_tags(request: Request) -> dict[str, Any]:
    rows = [(host, tag) for host in request.sim.state.values("host") for tag in host.tags
            if keyword_match(request, tag)]
    return paged(request, "hosttag", rows, lambda row: {"name": row[1], "hostid": row[0].db_id})
