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
# VM, by power state (xapi_vm_lifecycle.allowed_power_states, simplified: guest agent present, no vGPU/PCI)
_VM: dict[str, list[str]] = {
    "Halted": ["changing_NVRAM", "changing_dynamic_range", "changing_shadow_memory", "changing_static_range",
               "changing_memory_limits", "changing_VCPUs", "make_into_template", "migrate_send", "destroy",
               "provision", "export", "start_on", "start", "clone", "copy", "snapshot", "create_vtpm",
               "metadata_export"],
    "Running": ["changing_dynamic_range", "migrate_send", "pool_migrate", "changing_VCPUs_live", "suspend",
                "hard_reboot", "hard_shutdown", "clean_reboot", "clean_shutdown", "pause", "checkpoint", "snapshot",
                "send_sysrq", "send_trigger", "call_plugin", "query_services", "changing_shadow_memory_live",
                "metadata_export"],
    "Paused": ["unpause", "hard_reboot", "hard_shutdown", "snapshot", "metadata_export"],
    "Suspended": ["resume", "resume_on", "hard_shutdown", "snapshot", "clone", "copy", "export", "destroy",
                  "metadata_export"],
}
_TEMPLATE = ["changing_dynamic_range", "changing_static_range", "changing_memory_limits", "changing_VCPUs",
             "changing_NVRAM", "export", "provision", "clone", "copy", "destroy", "metadata_export"]
_CONTROL_DOMAIN = ["changing_dynamic_range", "changing_static_range", "changing_memory_limits", "metadata_export"]
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
        if record.is_control_domain:
            ops = _CONTROL_DOMAIN
        elif record.is_a_template:
            ops = _TEMPLATE
        else:
            ops = _VM.get(record.power_state, [])
        return _only("vm_operations", ops)
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
