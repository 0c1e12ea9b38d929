"""allowed_operations as they follow an object's state, after xapi's valid_operations functions
(ocaml/xapi/xapi_host_helpers.ml, xapi_vm_lifecycle.ml, xapi_sr_operations.ml, xapi_vdi.ml, xapi_vbd_helpers.ml,
xapi_vif_helpers.ml, xapi_pool_helpers.ml) for the states the lab models, with no operation in progress (the pool:
none while one runs). Each list keeps only values of the class's operations enum (datamodel.ENUMS).

VBDs and VIFs keep xapi's whole table (operation → the error that refuses it, or None): allowed_operations are the
operations without an error, and VBD.plug / unplug / insert / eject, VIF.plug / unplug raise the operation's error
(calls_devices.py). The first error set for an operation wins, in xapi's order.
"""

from __future__ import annotations

from typing import Any

from stackops_lab.xenapi.datamodel import ENUMS
from stackops_lab.xenapi.state import (HostRec, PoolDB, PoolRec, Record, SRRec, VBDRec, VDIRec, VIFRec,
                                       VMGuestMetricsRec, VMRec)

# host: all but power_on while the host is live (host_is_live); reboot, shutdown and apply_updates only once it is
# disabled (host_not_disabled)
_HOST_ALWAYS = ["provision", "evacuate", "vm_start", "vm_resume", "vm_migrate", "enable"]
_HOST_DISABLED = ["reboot", "shutdown", "apply_updates"]
# VM: the power states each operation needs (xapi_vm_lifecycle.allowed_power_states), for the operations
# update_allowed_operations considers (not its ignored_ops); snapshot_with_quiesce (VSS support removed), sysprep
# (Windows guests) and revert (snapshots only) are left out
_VM_STATES: dict[str, tuple[str, ...]] = {
    "changing_static_range": ("Halted",), "changing_shadow_memory": ("Halted",), "changing_NVRAM": ("Halted",),
    "make_into_template": ("Halted",), "provision": ("Halted",), "start": ("Halted",), "start_on": ("Halted",),
    "create_vtpm": ("Halted",), "unpause": ("Paused",), "resume": ("Suspended",), "resume_on": ("Suspended",),
    "clean_reboot": ("Running",), "clean_shutdown": ("Running",), "changing_VCPUs_live": ("Running",),
    "pause": ("Running",), "pool_migrate": ("Running",), "suspend": ("Running",),
    "changing_dynamic_range": ("Halted", "Running"), "clone": ("Halted",), "copy": ("Halted",),
    "destroy": ("Halted", "Suspended"), "export": ("Halted", "Suspended"), "hard_reboot": ("Paused", "Running"),
    "checkpoint": ("Paused", "Suspended", "Running"), "hard_shutdown": ("Paused", "Suspended", "Running"),
    "migrate_send": ("Halted", "Suspended", "Running"),
    "metadata_export": ("Halted", "Paused", "Suspended", "Running"),
    "snapshot": ("Halted", "Paused", "Suspended", "Running"),
}
# a control domain allows only these (and dom0 not destroy); changing_static_range also while it runs
_CONTROL_DOMAIN = ("metadata_export", "changing_dynamic_range", "changing_static_range", "start", "start_on")
# a template (check_template): these, and destroy / migrate_send unless it is a default template
_TEMPLATE = ("clone", "copy", "export", "metadata_export", "provision", "destroy", "migrate_send")


def _vm_ops(vm: VMRec) -> list[str]:
    ops = []
    for op, states in _VM_STATES.items():
        if vm.is_control_domain:
            ok = op in _CONTROL_DOMAIN and (vm.power_state in states or op == "changing_static_range")
        elif vm.is_a_template:
            ok = op in _TEMPLATE and vm.power_state in states
        else:
            ok = op != "provision" and vm.power_state in states
        if ok:
            ops.append(op)
    return ops


_SR = ["forget", "vdi_create", "vdi_introduce", "vdi_destroy", "vdi_resize", "vdi_clone", "vdi_snapshot",
       "vdi_mirror", "vdi_enable_cbt", "vdi_disable_cbt", "vdi_data_destroy", "vdi_list_changed_blocks",
       "vdi_set_on_boot", "pbd_create", "pbd_destroy", "plug", "update", "scan", "unplug"]
_VDI = ["clone", "copy", "resize", "snapshot", "mirror", "destroy", "forget", "update", "generate_config",
        "enable_cbt", "disable_cbt", "data_destroy", "list_changed_blocks", "set_on_boot"]
_VDI_ATTACHED = ["clone", "copy", "snapshot", "mirror", "update", "generate_config", "enable_cbt", "disable_cbt",
                 "list_changed_blocks", "set_on_boot"]


def _only(enum: str, ops: list[str]) -> list[str]:
    return [op for op in ops if op in ENUMS[enum]]


def vm_running(db: PoolDB, vm_ref: str) -> bool:
    vm = db.find(VMRec, vm_ref)
    return vm is not None and vm.power_state in ("Running", "Paused")


def allowed(db: PoolDB, record: Record) -> list[str] | None:
    """The record's allowed_operations now, or None for a class whose list the lab keeps itself."""
    if isinstance(record, PoolRec):  # compute_valid_operations: an operation in progress blocks or delays all
        if record.current_operations:
            return []
        refused = ["ha_enable", "tls_verification_enable", "cluster_create"] if record.ha_enabled else ["ha_disable"]
        return [op for op in ENUMS["pool_allowed_operations"] if op not in refused]
    if isinstance(record, HostRec):
        ops = _HOST_ALWAYS + ([] if record.enabled else _HOST_DISABLED)
        if not db.live(record):
            ops = [op for op in ops if op not in ("vm_start", "vm_resume", "vm_migrate", "provision")]
        return _only("host_allowed_operations", [op for op in ops if host_operation_error(record, op) is None])
    if isinstance(record, VMRec):
        return [] if record.extra.get("current_operations") else _only("vm_operations", _vm_ops(record))
    if isinstance(record, SRRec):
        return _only("storage_operations", _SR)
    if isinstance(record, VDIRec):
        attached = any(vbd.VDI == record.ref and vm_running(db, vbd.VM) for vbd in db.all(VBDRec))
        return _only("vdi_operations", _VDI_ATTACHED if attached else _VDI)
    if isinstance(record, VBDRec):
        return [op for op, error in vbd_table(db, record).items() if error is None]
    if isinstance(record, VIFRec):
        return [op for op, error in vif_table(db, record).items() if error is None]
    return None


Table = dict[str, "list[str] | None"]


def _table(enum: str) -> tuple[Table, Any]:
    table: Table = {op: None for op in ENUMS[enum]}

    def refuse(error: list[str], ops: list[str]) -> None:
        for op in ops:
            if table[op] is None:
                table[op] = error
    return table, refuse


def _hotplug_error(db: PoolDB, vm: VMRec, kind: str) -> list[str] | None:
    """Why a running HVM guest cannot hot-plug a `kind` ("vbd" / "vif") device: its drivers say no, or it has no
    PV drivers (Xapi_pv_driver_version.make_error_opt); None when it can."""
    if vm.extra.get("domain_type", "hvm") != "hvm":
        return None
    metrics = db.find(VMGuestMetricsRec, vm.guest_metrics)
    if metrics is not None:
        claim = metrics.extra.get(f"can_use_hotplug_{kind}", "unspecified")
        if claim == "yes":
            return None
        if claim == "no":
            return ["OPERATION_NOT_ALLOWED", f"VM states it does not support {kind.upper()} hotplug."]
        if metrics.extra.get("PV_drivers_detected", False):
            return None
    return ["VM_MISSING_PV_DRIVERS", vm.ref]


def _power_error(vm: VMRec) -> list[str]:
    return ["VM_BAD_POWER_STATE", vm.ref, "running", vm.power_state.lower()]


def vbd_table(db: PoolDB, vbd: VBDRec) -> Table:
    """xapi_vbd_helpers.valid_operations (no operation in progress on the VBD, its VM or its VDI; managed VDIs)."""
    table, refuse = _table("vbd_operations")
    vm = db.get(VMRec, vbd.VM)
    cd = vbd.type == "CD"
    if not vbd.extra.get("unpluggable", True):
        refuse(["VBD_NOT_UNPLUGGABLE", vbd.ref], ["unplug", "unplug_force"])
    if not cd:
        refuse(["VBD_NOT_REMOVABLE_MEDIA", vbd.ref], ["insert", "eject"])
    empty = bool(vbd.extra.get("empty", False))
    refuse(["VBD_IS_EMPTY", vbd.ref] if empty else ["VBD_NOT_EMPTY", vbd.ref], ["eject"] if empty else ["insert"])
    if vm.power_state == "Running" and vbd_attached(db, vbd):
        refuse(["DEVICE_ALREADY_ATTACHED", vbd.ref], ["plug"])
    elif vm.power_state == "Running":
        refuse(["DEVICE_ALREADY_DETACHED", vbd.ref], ["unplug", "unplug_force"])
    else:
        refuse(_power_error(vm), ["plug", "unplug", "unplug_force"] +
               ([] if vm.power_state == "Paused" else ["pause", "unpause"]))
    if vm.power_state == "Running" and vm.extra.get("domain_type", "hvm") == "hvm":
        error = _hotplug_error(db, vm, "vbd")
        if error is not None:
            refuse(error, ["plug", "unplug", "unplug_force"])
        if cd:
            refuse(["OPERATION_NOT_ALLOWED", "HVM CDROMs cannot be hotplugged/unplugged, only inserted or ejected"],
                   ["plug", "unplug", "unplug_force"])
    if cd and vm.power_state == "Suspended":
        refuse(["VM_BAD_POWER_STATE", vm.ref, "halted, running", "suspended"], ["insert", "eject"])
    vdi = db.find(VDIRec, vbd.VDI)
    if not empty and vdi is not None and not vbd_attached(db, vbd):
        # the sharing checks: other VBDs attached to the disk (not a suspended VM's nor a control domain's)
        others = [other for other in db.all(VBDRec) if other.VDI == vdi.ref and other is not vbd
                  and vbd_attached(db, other) and not db.get(VMRec, other.VM).is_control_domain]
        need_write = vbd.extra.get("mode", "RW") == "RW"
        if not vdi.sharable and not vm.is_control_domain and (
                any(other.extra.get("mode", "RW") == "RW" for other in others) or (need_write and others)):
            refuse(["VDI_IN_USE", vdi.ref], ["attach", "insert", "plug"])
        if need_write and vdi.read_only:
            refuse(["VDI_READONLY", vdi.ref], ["attach", "insert", "plug"])
    return table


def vif_table(db: PoolDB, vif: VIFRec) -> Table:
    """xapi_vif_helpers.valid_operations (no operation in progress; no SR-IOV networks in the lab)."""
    table, refuse = _table("vif_operations")
    vm = db.get(VMRec, vif.VM)
    if vm.is_control_domain:
        refuse(["OPERATION_NOT_ALLOWED", "Control domain does not support hotplug"], ["plug"])
    if vm.power_state == "Running" and vif_attached(db, vif):
        refuse(["DEVICE_ALREADY_ATTACHED", vif.ref], ["plug"])
    elif vm.power_state == "Running":
        refuse(["DEVICE_ALREADY_DETACHED", vif.ref], ["unplug"])
    else:
        refuse(_power_error(vm), ["plug", "unplug"])
    if vm.power_state == "Running":
        error = _hotplug_error(db, vm, "vif")
        if error is not None:
            refuse(error, ["plug", "unplug"])
    return table


def vbd_attached(db: PoolDB, vbd: VBDRec) -> bool:
    """A VBD is attached while its VM has a domain, unless unplugged since it started (an empty CD drive: no)."""
    return vm_running(db, vbd.VM) and vbd.extra.get("currently_attached", True) and not vbd.extra.get("empty", False)


def vif_attached(db: PoolDB, vif: VIFRec) -> bool:
    return vm_running(db, vif.VM) and vif.extra.get("currently_attached", True)


def plug_all(db: PoolDB, vm: VMRec) -> None:
    """VM.start attaches every device of the VM: an unplug does not outlive the domain."""
    for device in [*db.all(VBDRec), *db.all(VIFRec)]:
        if device.VM == vm.ref:
            device.extra.pop("currently_attached", None)


# check_template: what a template allows (destroy and migrate_send too unless it is a default template)
_TEMPLATE_OPS = ("changing_dynamic_range", "changing_static_range", "changing_memory_limits", "changing_shadow_memory",
                 "changing_VCPUs", "changing_NVRAM", "clone", "copy", "export", "metadata_export", "provision")
_CONTROL_DOMAIN_OPS = ("data_source_op", "changing_memory_live", "awaiting_memory_live", "metadata_export",
                       "changing_dynamic_range", "changing_memory_limits", "changing_static_range", "start", "start_on",
                       "changing_VCPUs", "destroy")


_CREATING = ("provision", "vm_resume", "vm_migrate")  # host operations that bring VMs to the host
_REMOVING = ("evacuate", "reboot", "shutdown")  # and those that take them away
_EXCLUSIVE = {"reboot": ("shutdown", "apply_updates"), "shutdown": ("reboot", "apply_updates"),
              "apply_updates": ("reboot", "shutdown", "enable"), "provision": ("provision",)}


def host_operation_error(host: HostRec, op: str) -> list[str] | None:
    """Xapi_host_helpers.valid_operations for `op`: an operation in progress (host.current_operations) that excludes
    it — creating VMs against removing them, reboot / shutdown / apply_updates against each other —, then a host
    still enabled for reboot, shutdown and apply_updates."""
    current = list((host.extra.get("current_operations") or {}).items())
    for group, other in ((_CREATING, _REMOVING), (_REMOVING, _CREATING)):
        found = next(((ref, cop) for ref, cop in current if cop in other), None)
        if op in group and found is not None:
            return ["OTHER_OPERATION_IN_PROGRESS", "host", host.ref, found[1], found[0]]
    for ref, cop in current:
        if op in _EXCLUSIVE.get(cop, ()):
            return ["OTHER_OPERATION_IN_PROGRESS", "host", host.ref, cop, ref]
    if host.enabled and op in ("reboot", "shutdown", "apply_updates"):
        return ["HOST_NOT_DISABLED"]
    return None


def vm_operation_error(vm: VMRec, op: str) -> list[str] | None:
    """xapi_vm_lifecycle.check_operation_error for `op` in the states the lab models (no snapshots, appliances or
    protection policies): blocked by the user, a migration in progress, the power states the operation needs,
    a template's exceptions, the control domain's."""
    blocked = vm.extra.get("blocked_operations", {})
    if op in blocked:
        return ["OPERATION_BLOCKED", vm.ref, blocked[op]]
    current = vm.extra.get("current_operations") or {}
    if current:  # a migration in progress (the only long VM operation the lab has)
        refs, ops = (next(iter(current)), next(iter(current.values()))) if len(current) == 1 else (
            "{" + ",".join(current) + "}", "{" + ",".join(current.values()) + "}")
        return ["OTHER_OPERATION_IN_PROGRESS", "VM", vm.ref, ops, refs]
    if op in _VM_STATES and vm.power_state not in _VM_STATES[op]:
        return ["VM_BAD_POWER_STATE", vm.ref, ", ".join(state.lower() for state in _VM_STATES[op]),
                vm.power_state.lower()]
    if vm.is_a_template and not vm.extra.get("is_a_snapshot", False):
        default_template = vm.extra.get("is_default_template", False) or \
            vm.other_config.get("default_template") == "true"
        if not (op in _TEMPLATE_OPS or (op in ("destroy", "migrate_send") and not default_template)):
            return ["VM_IS_TEMPLATE", vm.ref, op]
    if vm.is_control_domain and op in ("changing_VCPUs", "destroy") and vm.domid == 0:
        return ["OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0"]
    if vm.is_control_domain and op not in _CONTROL_DOMAIN_OPS:
        return ["OPERATION_NOT_ALLOWED", "This operation is not allowed on a control domain"]
    return None
