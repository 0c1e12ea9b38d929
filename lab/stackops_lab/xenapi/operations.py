"""allowed_operations as they follow an object's state, after xapi's valid_operations functions
(ocaml/xapi/xapi_host_helpers.ml, xapi_vm_lifecycle.ml, xapi_sr_operations.ml, xapi_vdi.ml, xapi_vbd_helpers.ml,
xapi_vif_helpers.ml, xapi_pool_helpers.ml) for the states the lab models, with no operation in progress (the pool:
none while one runs). Each list keeps only values of the class's operations enum (datamodel.ENUMS).
"""

from __future__ import annotations

from stackops_lab.xenapi.datamodel import ENUMS
from stackops_lab.xenapi.state import HostRec, PoolDB, PoolRec, Record, SRRec, VBDRec, VDIRec, VIFRec, VMRec

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
        return _only("host_allowed_operations", ops)
    if isinstance(record, VMRec):
        return _only("vm_operations", _vm_ops(record))
    if isinstance(record, SRRec):
        return _only("storage_operations", _SR)
    if isinstance(record, VDIRec):
        attached = any(vbd.VDI == record.ref and vm_running(db, vbd.VM) for vbd in db.all(VBDRec))
        return _only("vdi_operations", _VDI_ATTACHED if attached else _VDI)
    if isinstance(record, VBDRec):
        if record.type == "CD":
            ops = ["attach", "insert"] if record.VDI == "OpaqueRef:NULL" else ["attach", "eject"]
        else:
            ops = ["attach", "unplug", "unplug_force"] if vm_running(db, record.VM) else ["attach"]
        return _only("vbd_operations", ops)
    if isinstance(record, VIFRec):
        return _only("vif_operations", ["attach", "unplug"] if vm_running(db, record.VM) else ["attach"])
    return None
