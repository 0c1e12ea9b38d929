"""System VM and router lifecycle next to start/stop: migrateSystemVm (async) and getRouterHealthCheckResults (sync).

migrateSystemVm (MigrateSystemVMCmd.execute, VmLiveMigrationOrchestrationServiceImpl): `hostid` and `storageid`
exclude each other; a `hostid` that is not a Routing host (a system VM's agent row) is refused; without either,
`autoselect` (true by default) lets CloudStack pick a host, else 431. In the job: the VM must be Running; with a
destination (migrateVirtualMachineWithVolume) the destination must differ from the current host (431), be of the
same hypervisor type (530 "The source and destination hosts are not of the same type and version. ..."), in the
same pod (431, a system VM), with storage motion in the hypervisor capabilities of the source's type and version
(and of the target's if its version differs; 530 "Migration with storage isn't supported for source host ...": the
'default' XenServer row has none), and Up and Enabled (530 "Cannot migrate VM, destination host <name> (ID: <uuid>)
is not in correct state, has status: <status>, state: <state>"). Without a destination (migrateVirtualMachine and
the deployment planner) another Up, Enabled host of the VM's cluster is taken, else the job fails 530 "Unable to
find suitable destination to migrate VM <name>". The VM is Migrating while the job runs and then Running on the
destination; the job answers the system VM. Only system VMs are accepted (CloudStack also migrates routers).

getRouterHealthCheckResults (QueryManagerImpl.listRouterHealthChecks): router.health.checks.enabled false → 530
"Failed to get health check results due to: Router health checks are not enabled for router <id>". A Running
router answers the basic checks of a healthy VR (the management server's connectivity and file system checks and
the router's own scripts), all passing; a router that is not Running has no results yet (530 "... No health check
results found for the router. ..."); with performfreshchecks it fails the fresh checks instead (that text is
modelled on performRouterHealthChecks').
"""

from __future__ import annotations

from typing import Any

from stackops_lab.cloudstack import responses
from stackops_lab.cloudstack.errors import INTERNAL_ERROR, PARAM_ERROR, ApiError, invalid_value
from stackops_lab.cloudstack.framework import BOOLEAN, UUID, Param, Request, command
from stackops_lab.cloudstack.jobs import JobContext
from stackops_lab.cloudstack.responses import cs_date
from stackops_lab.cloudstack.commands_hypervisor_caps import find
from stackops_lab.cloudstack.state import Host, Router, State, SystemVm

ADMIN = "org.apache.cloudstack.api.command.admin"
HEALTH_CHECKS = (  # (check name, type): the management server's two, then the router's basic scripts
    ("connectivity.test", "basic"), ("filesystem.writable.test", "basic"), ("cpu_usage_check.py", "basic"),
    ("disk_space_check.py", "basic"), ("memory_usage_check.py", "basic"), ("router_version_check.py", "basic"),
    ("services_check.py", "basic"), ("gateways_check.py", "basic"))


def _destination_error(state: State, source: Host, target: Host) -> tuple[int, str] | None:
    """VmLiveMigrationOrchestrationServiceImpl.getHostsForMigrateVmWithStorage, as a system VM meets it."""
    if target is source:
        return PARAM_ERROR, (f"Cannot migrate VM as it is already present on host {target.name} (ID: {target.uuid}), "
                             "please specify valid destination host to migrate the VM")
    if target.hypervisor != source.hypervisor:
        return INTERNAL_ERROR, ("The source and destination hosts are not of the same type and version. Source "
                                f"hypervisor type and version: {source.hypervisor} {source.hypervisor_version or None}"
                                f", Destination hypervisor type and version: {target.hypervisor} "
                                f"{target.hypervisor_version or None}")
    if target.cluster.pod is not source.cluster.pod:
        return PARAM_ERROR, "Cannot migrate the VM, destination host is not in the same pod as current host of the VM"
    for end, host in (("source", source), ("target", target)):
        if end == "target" and host.hypervisor_version == source.hypervisor_version:
            continue
        row = find(state, host.hypervisor, host.hypervisor_version)
        if row is None or not row.storage_motion:
            return INTERNAL_ERROR, (f"Migration with storage isn't supported for {end} host {host.name} (ID: "
                                    f"{host.uuid}) on hypervisor {host.hypervisor} with version "
                                    f"{host.hypervisor_version or None}")
    if target.state != "Up" or target.resource_state != "Enabled":
        return INTERNAL_ERROR, (f"Cannot migrate VM, destination host {target.name} (ID: {target.uuid}) is not in "
                                f"correct state, has status: {target.state}, state: {target.resource_state}")
    return None


@command("migrateSystemVm", f"{ADMIN}.systemvm.MigrateSystemVMCmd",
         [Param("hostid", UUID, entity=("host", "agenthost")),
          Param("virtualmachineid", UUID, required=True, entity=("systemvm",)),
          Param("storageid", UUID, entity=("storagepool",), since="4.16.0"),
          Param("autoselect", BOOLEAN, since="4.16.0")], is_async=True)
def migrate_system_vm(request: Request) -> dict[str, Any]:
    sim = request.sim
    vm: SystemVm = request.get("virtualmachineid")
    target = request.get("hostid")
    if target is not None and request.has("storageid"):
        raise invalid_value("Only one of hostId and storageId can be specified")
    if target is not None and not isinstance(target, Host):
        raise invalid_value(f"The specified host({target.vm.name if target.vm else target.uuid}) is not suitable to "
                            "migrate the VM, please specify another one")
    if target is None and request.get("autoselect") is False:
        raise invalid_value("Please specify a host or storage as destination, or pass 'autoselect=true' to "
                            "automatically select a destination host which do not require storage migration")

    def run(ctx: JobContext) -> None:
        source = vm.host
        if not sim.state.live(vm) or vm.state != "Running" or source is None:
            if target is not None:
                ctx.fail(INTERNAL_ERROR, f"Unable to migrate the VM {vm.name} (ID: {vm.uuid}) as it is not in "
                                         "Running state")
            else:
                ctx.fail(PARAM_ERROR, "VM is not Running, unable to migrate the vm with specified id")
            return
        destination = target
        if destination is None:
            candidates = [h for h in sim.state.values("host") if h is not source and h.cluster is source.cluster
                          and h.state == "Up" and h.resource_state == "Enabled"]
            if not candidates:
                ctx.fail(INTERNAL_ERROR, f"Unable to find suitable destination to migrate VM {vm.name}")
                return
            destination = candidates[0]
        else:
            refusal = _destination_error(sim.state, source, destination)
            if refusal is not None:
                ctx.fail(*refusal)
                return
        sim.system_vms.set_state(vm, "Migrating")

        def arrived() -> None:
            vm.host = destination
            sim.system_vms.set_state(vm, "Running")
            sim.audit_log.record("systemvm.migrated", vm=vm.uuid, name=vm.name, source=source.uuid,
                                 destination=destination.uuid)
            ctx.succeed({"systemvm": responses.system_vm(vm)})

        ctx.later(sim.timings.job, arrived)

    job = sim.jobs.submit(request.command.java_class, request.caller, request.caller.user_uuid, None, None, run,
                          failure_text="Failed to migrate the system vm")
    return {"jobid": job.uuid}


@command("getRouterHealthCheckResults", f"{ADMIN}.router.GetRouterHealthCheckResultsCmd",
         [Param("routerid", UUID, required=True, entity=("router",)), Param("performfreshchecks", BOOLEAN)])
def get_router_health_check_results(request: Request) -> dict[str, Any]:
    sim = request.sim
    router: Router = request.get("routerid")
    if not sim.state.live(router):
        raise invalid_value("Can't find router by routerId")

    def failed(reason: str) -> ApiError:
        return ApiError(INTERNAL_ERROR, f"Failed to get health check results due to: {reason}")

    if (sim.state.config_value("router.health.checks.enabled", router.zone) or "true").lower() != "true":
        raise failed(f"Router health checks are not enabled for router {router.db_id}")
    if router.state != "Running":
        if request.get("performfreshchecks"):
            raise failed(f"Unable to perform fresh checks on router - Router {router.name} is not in running state")
        raise failed("No health check results found for the router. This could happen for a newly created router. "
                     "Please wait for periodic results to populate or manually call for checks to execute.")
    checked = cs_date(sim.clock.time())
    checks = [{"checkname": name, "checktype": kind, "success": True, "lastupdated": checked, "details": ""}
              for name, kind in HEALTH_CHECKS]
    return {"routerhealthchecks": {"routerid": router.uuid, "healthchecks": checks}}
