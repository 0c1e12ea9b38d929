"""Host administration next to the maintenance commands: updateHost (sync) and reconnectHost (async).

updateHost follows ResourceManagerImpl.updateHost: `allocationstate` is Enable or Disable (the ResourceState
events; anything else is refused), which moves an Enabled host to Disabled and back; a host in a maintenance
state cannot be enabled or disabled. `hosttags` replaces the host's tags (an empty value clears them), `name`
renames it. UpdateHostCmd turns every failure into 530 "Failed to update host: <host> with id <db id>,
<reason>", where <host> is Host's toString: Host {"id":<db id>,"name":"<name>","type":"Routing","uuid":"<uuid>"}.

reconnectHost (ResourceManagerImpl.reconnectHost): the agent reconnects (Connecting, then Up); a host in
maintenance is refused (the job fails with 431, the text modelled on CloudStack's).
"""

from __future__ import annotations

from typing import Any

from stackops_lab.cloudstack import responses
from stackops_lab.cloudstack.errors import INTERNAL_ERROR, PARAM_ERROR, ApiError
from stackops_lab.cloudstack.framework import BOOLEAN, LIST, MAP, UUID, Param, Request, command
from stackops_lab.cloudstack.maintenance import MAINTENANCE_STATES
from stackops_lab.cloudstack.jobs import JobContext
from stackops_lab.cloudstack.state import Host

ADMIN = "org.apache.cloudstack.api.command.admin.host"
HOST = ("host",)
EVENTS = {"enable": ("Enable", "Enabled"), "disable": ("Disable", "Disabled")}


def host_text(host: Host) -> str:
    return f'Host {{"id":{host.db_id},"name":"{host.name}","type":"Routing","uuid":"{host.uuid}"}}'


@command("updateHost", f"{ADMIN}.UpdateHostCmd",
         [Param("id", UUID, required=True, entity=HOST), Param("name", since="4.15"),
          Param("oscategoryid", UUID, entity=("oscategory",)), Param("allocationstate"), Param("hosttags", LIST),
          Param("istagarule", BOOLEAN), Param("url"), Param("annotation", since="4.11"),
          Param("externaldetails", MAP)])
def update_host(request: Request) -> dict[str, Any]:
    sim = request.sim
    host: Host = request.get("id")

    def failed(reason: str) -> ApiError:
        return ApiError(INTERNAL_ERROR, f"Failed to update host: {host_text(host)} with id {host.db_id}, {reason}")

    if not sim.state.live(host):
        raise failed(f"Host with id {host.uuid} doesn't exist")
    wanted = request.get("allocationstate")
    if wanted is not None:
        event = EVENTS.get(wanted.lower())
        if event is None:
            raise failed(f"Invalid allocation state: {wanted}, only Enable/Disable are allowed")
        if host.resource_state in MAINTENANCE_STATES:
            raise failed(f"Cannot perform {event[0]} when resource state is {host.resource_state}, "
                         f"hostId = {host.db_id}")
        sim.hostops.set_state(host, resource_state=event[1])
    if request.has("hosttags"):
        host.tags = list(request.get("hosttags"))
        sim.audit_log.record("host.tags", host=host.uuid, tags=host.tags)
    if request.get("name"):
        host.name = request.get("name")
    return {"host": responses.host(host)}


@command("reconnectHost", f"{ADMIN}.ReconnectHostCmd", [Param("id", UUID, required=True, entity=HOST)],
         is_async=True, instance_type="Host")
def reconnect_host(request: Request) -> dict[str, Any]:
    sim = request.sim
    host: Host = request.get("id")

    def run(ctx: JobContext) -> None:
        if not sim.state.live(host):
            ctx.fail(PARAM_ERROR, f"Host with id {host.uuid} doesn't exist")
            return
        if host.resource_state in MAINTENANCE_STATES:
            ctx.fail(PARAM_ERROR, f"Host {host.uuid} is in maintenance, cannot reconnect it")
            return
        sim.hostops.set_state(host, state="Connecting")

        def up() -> None:
            sim.hostops.set_state(host, state="Up")
            ctx.succeed({"host": responses.host(host)})

        ctx.later(sim.timings.host_connect, up)

    job = sim.jobs.submit(request.command.java_class, request.caller, request.caller.user_uuid, "Host", host.uuid,
                          run, failure_text=f"Failed to reconnect host {host.uuid}")
    return {"jobid": job.uuid}
