"""VBD.plug / unplug / unplug_force / insert / eject / assert_attachable and VIF.plug / unplug / unplug_force
(ocaml/xapi/message_forwarding.ml's VBD and VIF modules, xapi_vbd.ml, xapi_vif.ml).

Each call first checks its operation against the device's table (operations.vbd_table / vif_table, xapi's
valid_operations: VBD_NOT_UNPLUGGABLE, VBD_NOT_REMOVABLE_MEDIA, VBD_IS_EMPTY, VBD_NOT_EMPTY,
DEVICE_ALREADY_ATTACHED, DEVICE_ALREADY_DETACHED, VM_BAD_POWER_STATE [vm, "running", actual],
OPERATION_NOT_ALLOWED for an HVM guest's CD drive, VM_MISSING_PV_DRIVERS), then:
- plug attaches the device to the running VM, unplug and unplug_force detach it (VIF.unplug_force is checked as
  `unplug`, as xapi does); the VM's next start attaches every device again;
- insert(vbd, vdi) puts a disk into an empty CD drive (a halted VM's too: xapi only writes the database then):
  VDI_NOT_MANAGED [vdi] for an unmanaged VDI, HA_CONSTRAINT_VIOLATION_SR_NOT_SHARED [sr] when the VM is
  HA-protected in a pool with HA on (without overcommit) and the disk's SR is not shared; eject empties it.
VBD.destroy and VIF.destroy (Xapi_vbd_helpers.destroy, Xapi_vif_helpers.destroy) remove a detached device (a VBD's
disk stays): an attached one → OPERATION_NOT_ALLOWED ["VBD '<uuid>' still attached to '<VM uuid>'"], ["VIF
currently attached to a running VM"].
Calls in the lab are instant, so current_operations stay empty before and after.
"""

from __future__ import annotations

from typing import Any

from stackops_lab.xenapi.dispatch import Ctx, api
from stackops_lab.xenapi.errors import XapiError
from stackops_lab.xenapi.operations import vbd_attached, vbd_table, vif_attached, vif_table
from stackops_lab.xenapi.state import NULL_REF, SRRec, VBDRec, VDIRec, VIFRec, VMRec


def _vbd(ctx: Ctx, ref: Any, op: str) -> VBDRec:
    vbd = ctx.db.get(VBDRec, ref)
    error = vbd_table(ctx.db, vbd)[op]
    if error is not None:
        raise XapiError(*error)
    return vbd


def _vif(ctx: Ctx, ref: Any, op: str) -> VIFRec:
    vif = ctx.db.get(VIFRec, ref)
    error = vif_table(ctx.db, vif)[op]
    if error is not None:
        raise XapiError(*error)
    return vif


def _attach(ctx: Ctx, device: VBDRec | VIFRec, attached: bool) -> str:
    if attached:
        device.extra.pop("currently_attached", None)
    else:
        device.extra["currently_attached"] = False
    ctx.audit(f"{device.CLASS}.{'plug' if attached else 'unplug'}", uuid=device.uuid, vm=device.VM)
    return ""


@api("VBD.plug", 1)
def vbd_plug(ctx: Ctx, ref: Any) -> str:
    return _attach(ctx, _vbd(ctx, ref, "plug"), True)


@api("VBD.unplug", 1)
def vbd_unplug(ctx: Ctx, ref: Any) -> str:
    return _attach(ctx, _vbd(ctx, ref, "unplug"), False)


@api("VBD.unplug_force", 1)
def vbd_unplug_force(ctx: Ctx, ref: Any) -> str:
    return _attach(ctx, _vbd(ctx, ref, "unplug_force"), False)


@api("VBD.assert_attachable", 1)
def vbd_assert_attachable(ctx: Ctx, ref: Any) -> str:
    _vbd(ctx, ref, "attach")
    return ""


@api("VBD.insert", 2)
def vbd_insert(ctx: Ctx, ref: Any, vdi_ref: Any) -> str:
    vbd = _vbd(ctx, ref, "insert")
    vdi = ctx.db.get(VDIRec, vdi_ref)
    if not vdi.extra.get("managed", True):
        raise XapiError("VDI_NOT_MANAGED", vdi.ref)
    vm, pool = ctx.db.get(VMRec, vbd.VM), ctx.db.pool
    sr = ctx.db.find(SRRec, vdi.SR)
    if pool.ha_enabled and not pool.ha_allow_overcommit and vm.ha_restart_priority == "restart" \
            and sr is not None and not sr.shared:
        raise XapiError("HA_CONSTRAINT_VIOLATION_SR_NOT_SHARED", sr.ref)
    vbd.VDI, vbd.extra["empty"] = vdi.ref, False
    ctx.audit("VBD.insert", uuid=vbd.uuid, vdi=vdi.uuid)
    return ""


@api("VBD.eject", 1)
def vbd_eject(ctx: Ctx, ref: Any) -> str:
    vbd = _vbd(ctx, ref, "eject")
    vbd.VDI, vbd.extra["empty"] = NULL_REF, True
    ctx.audit("VBD.eject", uuid=vbd.uuid)
    return ""


@api("VIF.plug", 1)
def vif_plug(ctx: Ctx, ref: Any) -> str:
    return _attach(ctx, _vif(ctx, ref, "plug"), True)


@api("VIF.unplug", 1)
def vif_unplug(ctx: Ctx, ref: Any) -> str:
    return _attach(ctx, _vif(ctx, ref, "unplug"), False)


@api("VIF.unplug_force", 1)
def vif_unplug_force(ctx: Ctx, ref: Any) -> str:
    return _attach(ctx, _vif(ctx, ref, "unplug"), False)


@api("VBD.destroy", 1)
def vbd_destroy(ctx: Ctx, ref: Any) -> str:
    vbd = ctx.db.get(VBDRec, ref)
    if vbd_attached(ctx.db, vbd):
        vm = ctx.db.get(VMRec, vbd.VM)
        raise XapiError("OPERATION_NOT_ALLOWED", f"VBD '{vbd.uuid}' still attached to '{vm.uuid}'")
    ctx.db.remove(vbd)
    ctx.audit("VBD.destroy", uuid=vbd.uuid, vm=vbd.VM)
    return ""


@api("VIF.destroy", 1)
def vif_destroy(ctx: Ctx, ref: Any) -> str:
    vif = ctx.db.get(VIFRec, ref)
    if vif_attached(ctx.db, vif):
        raise XapiError("OPERATION_NOT_ALLOWED", "VIF currently attached to a running VM")
    ctx.db.remove(vif)
    ctx.audit("VIF.destroy", uuid=vif.uuid, vm=vif.VM)
    return ""
