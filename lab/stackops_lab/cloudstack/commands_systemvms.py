"""System VM commands: listSystemVms; destroySystemVm (async; the replacement comes from the newest ready
SYSTEM template, see systemvms.py); startSystemVm, stopSystemVm, rebootSystemVm (async, answer the system VM)."""

from __future__ import annotations

from typing import Any

from stackops_lab.cloudstack import responses
from stackops_lab.cloudstack.framework import BOOLEAN, UUID, Param, Request, command, keyword_match, paged

ADMIN = "org.apache.cloudstack.api.command.admin.systemvm"
SYSTEMVM = ("systemvm",)


@command("listSystemVms", f"{ADMIN}.ListSystemVMsCmd",
         [Param("id", UUID, entity=SYSTEMVM), Param("name"), Param("zoneid", UUID, entity=("zone",)),
          Param("podid", UUID, entity=("pod",)), Param("hostid", UUID, entity=("host",)), Param("state"),
          Param("systemvmtype"), Param("storageid", UUID, entity=("storagepool",), since="3.0.1")], is_list=True)
def list_system_vms(request: Request) -> dict[str, Any]:
    name, wanted_state, vm_type = request.get("name"), request.get("state"), request.get("systemvmtype")
    found = []
    for vm in request.sim.state.values("systemvm"):
        if request.has("id") and request.get("id") is not vm:
            continue
        if name is not None and name != vm.name:
            continue
        if wanted_state is not None and wanted_state.lower() != vm.state.lower():
            continue
        if vm_type is not None and vm_type.lower() != vm.vm_type:
            continue
        if request.has("zoneid") and request.get("zoneid") is not vm.zone:
            continue
        if request.has("hostid") and request.get("hostid") is not vm.host:
            continue
        if request.has("podid") and (vm.host is None or vm.host.cluster.pod is not request.get("podid")):
            continue
        if keyword_match(request, vm.name):
            found.append(vm)
    return paged(request, "systemvm", found, responses.system_vm)


@command("destroySystemVm", f"{ADMIN}.DestroySystemVmCmd", [Param("id", UUID, required=True, entity=SYSTEMVM)],
         is_async=True, instance_type="SystemVm")
def destroy_system_vm(request: Request) -> dict[str, Any]:
    sim = request.sim
    vm = request.get("id")
    job = sim.jobs.submit(request.command.java_class, request.caller, request.caller.user_uuid, "SystemVm", vm.uuid,
                          lambda ctx: sim.system_vms.destroy(ctx, vm), failure_text="Fail to destroy system vm")
    return {"jobid": job.uuid}


def _submit(request: Request, runner: Any, failure_text: str) -> dict[str, Any]:
    vm = request.get("id")
    job = request.sim.jobs.submit(request.command.java_class, request.caller, request.caller.user_uuid, "SystemVm",
                                  vm.uuid, lambda ctx: runner(ctx, vm), failure_text=failure_text)
    return {"jobid": job.uuid}


@command("stopSystemVm", f"{ADMIN}.StopSystemVmCmd", [Param("id", UUID, required=True, entity=SYSTEMVM),
                                                      Param("forced", BOOLEAN)], is_async=True, instance_type="SystemVm")
def stop_system_vm(request: Request) -> dict[str, Any]:
    return _submit(request, request.sim.system_vms.stop, "Fail to stop system vm")


@command("startSystemVm", f"{ADMIN}.StartSystemVMCmd", [Param("id", UUID, required=True, entity=SYSTEMVM)],
         is_async=True, instance_type="SystemVm")
def start_system_vm(request: Request) -> dict[str, Any]:
    return _submit(request, request.sim.system_vms.start, "Fail to start system vm")


@command("rebootSystemVm", f"{ADMIN}.RebootSystemVmCmd",
         [Param("id", UUID, required=True, entity=SYSTEMVM), Param("forced", BOOLEAN, since="4.16.0")],
         is_async=True, instance_type="SystemVm")
def reboot_system_vm(request: Request) -> dict[str, Any]:
    return _submit(request, request.sim.system_vms.reboot, "Fail to reboot system vm")
