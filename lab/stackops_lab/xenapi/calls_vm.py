"""VM.start and VM.start_on (ocaml/xapi/xapi_vm.ml, xapi_vm_helpers.ml), so that a client can undo a shutdown;
VM.clone and VM.destroy (xapi_vm_clone.ml, Xapi_vm_helpers.destroy), so that it can make a VM and remove it.

- The VM must be Halted: else VM_BAD_POWER_STATE [vm, "halted", actual]; a template cannot start
  (VM_IS_TEMPLATE [vm]).
- VM.start picks its affinity host if that is live and enabled, else the live enabled host running fewest VMs;
  none → NO_HOSTS_AVAILABLE. VM.start_on(vm, host, …): that host, HOST_OFFLINE [host] when it is not live,
  HOST_DISABLED [host] when it is disabled.
- The VM then runs (Paused with start_paused) on that host with a new domid; ha_always_run follows its restart
  priority ("restart" → true), as VM.clean_shutdown / hard_shutdown clear it.
- VM.clone(vm, new_name) and VM.destroy(vm) are first checked as xapi_vm_lifecycle.check_operation_error does
  (operations.vm_operation_error): OPERATION_BLOCKED [vm, reason] by blocked_operations, VM_BAD_POWER_STATE
  [vm, "halted" (clone) or "halted, suspended" (destroy), actual], VM_IS_TEMPLATE [vm, op] (destroying a default
  template), OPERATION_NOT_ALLOWED for the control domain. A clone is a new halted top-level VM (parent NULL)
  named `new_name` with the VM's settings (other_config without default_template, with a fresh mac_seed; a
  template's clone remembers its base_template_name), a clone of each disk on the same SR, a copy of each VBD (an
  empty CD drive stays empty) and of each VIF with a new MAC, and copies of its metrics and guest metrics; no
  console until it runs. VM.destroy removes the VM with its VBDs, VIFs, consoles and metrics, not its disks
  (VM_CANNOT_DELETE_DEFAULT_TEMPLATE for other_config default_template=true); its children get its parent.
- VM.clean_reboot (Running; an HVM guest without PV drivers needs feature-shutdown or feature-reboot, else
  VM_LACKS_FEATURE [vm]) and VM.hard_reboot (Paused or Running): the VM runs again on its host with a new domid
  and every device attached. VM.assert_operation_valid(vm, op) answers the error an operation would meet now.
"""

from __future__ import annotations

import copy
from typing import Any

from stackops_lab.xenapi.devices import _mac, add_guest_metrics
from stackops_lab.xenapi.dispatch import Ctx, api
from stackops_lab.xenapi.errors import FIELD_TYPE_ERROR, HOST_OFFLINE, XapiError
from stackops_lab.xenapi.datamodel import ENUMS
from stackops_lab.xenapi.operations import plug_all, vm_operation_error
from stackops_lab.xenapi.state import (NULL_REF, ConsoleRec, HostRec, Record, VBDRec, VDIRec, VIFRec, VMGuestMetricsRec,
                                       VMMetricsRec, VMRec, new_ref, new_uuid)


def _start(ctx: Ctx, vm: VMRec, host: HostRec, paused: Any) -> str:
    if not isinstance(paused, bool):
        raise XapiError(FIELD_TYPE_ERROR, "start_paused")
    db = ctx.db
    vm.power_state = "Paused" if paused else "Running"
    vm.resident_on = host.ref
    vm.domid = max([v.domid for v in db.vms_on(host.ref)] + [0]) + 1
    vm.ha_always_run = vm.ha_restart_priority == "restart"
    plug_all(db, vm)
    if vm.guest_metrics == NULL_REF and not paused:
        add_guest_metrics(db, vm)
    ctx.audit("vm.started", vm=vm.name_label, uuid=vm.uuid, host=host.name_label)
    ctx.lab.ha.update_pool_status(db)
    return ""


def _startable(ctx: Ctx, ref: Any) -> VMRec:
    vm = ctx.db.get(VMRec, ref)
    if vm.is_a_template:
        raise XapiError("VM_IS_TEMPLATE", vm.ref)
    if vm.power_state != "Halted":
        raise XapiError("VM_BAD_POWER_STATE", vm.ref, "halted", vm.power_state.lower())
    return vm


@api("VM.start", 3)
def start(ctx: Ctx, ref: Any, start_paused: Any, force: Any) -> str:
    vm = _startable(ctx, ref)
    db = ctx.db
    candidates = [h for h in db.hosts() if h.enabled and db.live(h)]
    affinity = db.find(HostRec, vm.extra.get("affinity", NULL_REF))
    if affinity is not None and affinity in candidates:
        host = affinity
    elif candidates:
        host = min(candidates, key=lambda h: len(db.vms_on(h.ref)))
    else:
        raise XapiError("NO_HOSTS_AVAILABLE")
    return _start(ctx, vm, host, start_paused)


@api("VM.start_on", 4)
def start_on(ctx: Ctx, ref: Any, host_ref: Any, start_paused: Any, force: Any) -> str:
    vm = _startable(ctx, ref)
    host = ctx.db.get(HostRec, host_ref)
    if not ctx.db.live(host):
        raise XapiError(HOST_OFFLINE, host.ref)
    if not host.enabled:
        raise XapiError("HOST_DISABLED", host.ref)
    return _start(ctx, vm, host, start_paused)


def _valid(ctx: Ctx, ref: Any, op: str) -> VMRec:
    vm = ctx.db.get(VMRec, ref)
    error = vm_operation_error(vm, op)
    if error is not None:
        raise XapiError(*error)
    return vm


def _copy(record: Record, **changes: Any) -> Any:
    twin = copy.deepcopy(record)
    twin.ref, twin.uuid = new_ref(), new_uuid()
    for name, value in changes.items():
        setattr(twin, name, value)
    return twin


@api("VM.clone", 2)
def clone(ctx: Ctx, ref: Any, new_name: Any) -> str:
    vm = _valid(ctx, ref, "clone")
    if not isinstance(new_name, str):
        raise XapiError(FIELD_TYPE_ERROR, "new_name")
    db = ctx.db
    other_config = {key: value for key, value in vm.other_config.items()
                    if key not in ("default_template", "xensource_internal")}
    other_config["mac_seed"] = new_uuid()
    if vm.is_a_template:
        other_config.setdefault("base_template_name", vm.name_label)
    new = _copy(vm, name_label=new_name, power_state="Halted", resident_on=NULL_REF, domid=-1, ha_always_run=False,
                other_config=other_config)
    for name in ("parent", "snapshot_of", "blocked_operations", "is_default_template", "suspend_VDI"):
        new.extra.pop(name, None)
    for cls, field in ((VMMetricsRec, "metrics"), (VMGuestMetricsRec, "guest_metrics")):
        original = db.find(cls, getattr(vm, field))
        setattr(new, field, db.add(_copy(original)).ref if original is not None else NULL_REF)
    db.add(new)
    for vbd in [v for v in db.all(VBDRec) if v.VM == vm.ref]:
        disk = db.find(VDIRec, vbd.VDI)
        twin_disk = db.add(_copy(disk)) if disk is not None and vbd.type == "Disk" else disk
        twin = _copy(vbd, VM=new.ref, VDI=twin_disk.ref if twin_disk is not None else NULL_REF)
        twin.extra.pop("currently_attached", None)
        if twin.type == "Disk":
            twin.extra.setdefault("other_config", {}).setdefault("owner", "")
        db.add(twin)
    for vif in [v for v in db.all(VIFRec) if v.VM == vm.ref]:
        twin = _copy(vif, VM=new.ref)
        twin.extra.pop("currently_attached", None)
        twin.extra["MAC"], twin.extra["MAC_autogenerated"] = _mac(twin.uuid), True
        db.add(twin)
    ctx.audit("vm.cloned", vm=vm.name_label, uuid=vm.uuid, clone=new.uuid, name=new_name)
    return new.ref


@api("VM.destroy", 1)
def destroy(ctx: Ctx, ref: Any) -> str:
    vm = _valid(ctx, ref, "destroy")
    if vm.other_config.get("default_template") == "true":
        raise XapiError("VM_CANNOT_DELETE_DEFAULT_TEMPLATE")
    db = ctx.db
    for child in [v for v in db.all(VMRec) if v.extra.get("parent") == vm.ref]:
        child.extra["parent"] = vm.extra.get("parent", NULL_REF)
    for device in [*db.all(VBDRec), *db.all(VIFRec), *db.all(ConsoleRec)]:
        if device.VM == vm.ref:
            db.remove(device)
    for cls, field in ((VMMetricsRec, "metrics"), (VMGuestMetricsRec, "guest_metrics")):
        if (record := db.find(cls, getattr(vm, field))) is not None:
            db.remove(record)
    db.remove(vm)
    ctx.audit("vm.destroyed", vm=vm.name_label, uuid=vm.uuid)
    return ""


def _lacks_reboot_feature(ctx: Ctx, vm: VMRec) -> bool:
    """check_op_for_feature for clean_reboot: PV guests and guests with PV drivers support it implicitly."""
    metrics = ctx.db.find(VMGuestMetricsRec, vm.guest_metrics)
    if vm.extra.get("domain_type", "hvm") != "hvm" or (metrics is not None and metrics.extra.get("PV_drivers_version")):
        return False
    other = metrics.extra.get("other", {}) if metrics is not None else {}
    return other.get("feature-shutdown") != "1" and other.get("feature-reboot") != "1"


def _reboot(ctx: Ctx, vm: VMRec) -> str:
    vm.power_state = "Running"
    vm.domid = max([v.domid for v in ctx.db.vms_on(vm.resident_on)] + [0]) + 1
    plug_all(ctx.db, vm)
    ctx.audit("vm.rebooted", vm=vm.name_label, uuid=vm.uuid)
    return ""


@api("VM.clean_reboot", 1)
def clean_reboot(ctx: Ctx, ref: Any) -> str:
    vm = _valid(ctx, ref, "clean_reboot")
    if _lacks_reboot_feature(ctx, vm):
        raise XapiError("VM_LACKS_FEATURE", vm.ref)
    return _reboot(ctx, vm)


@api("VM.hard_reboot", 1)
def hard_reboot(ctx: Ctx, ref: Any) -> str:
    return _reboot(ctx, _valid(ctx, ref, "hard_reboot"))


@api("VM.assert_operation_valid", 2)
def assert_operation_valid(ctx: Ctx, ref: Any, op: Any) -> str:
    if op not in ENUMS["vm_operations"]:
        raise XapiError(FIELD_TYPE_ERROR, "op")
    _valid(ctx, ref, op)
    return ""
