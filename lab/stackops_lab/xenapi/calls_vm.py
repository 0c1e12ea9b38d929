"""VM.start and VM.start_on (ocaml/xapi/xapi_vm.ml, xapi_vm_helpers.ml), so that a client can undo a shutdown.

- The VM must be Halted: else VM_BAD_POWER_STATE [vm, "halted", actual]; a template cannot start
  (VM_IS_TEMPLATE [vm]).
- VM.start picks its affinity host if that is live and enabled, else the live enabled host running fewest VMs;
  none → NO_HOSTS_AVAILABLE. VM.start_on(vm, host, …): that host, HOST_OFFLINE [host] when it is not live,
  HOST_DISABLED [host] when it is disabled.
- The VM then runs (Paused with start_paused) on that host with a new domid; ha_always_run follows its restart
  priority ("restart" → true), as VM.clean_shutdown / hard_shutdown clear it.
"""

from __future__ import annotations

from typing import Any

from stackops_lab.xenapi.devices import add_guest_metrics
from stackops_lab.xenapi.dispatch import Ctx, api
from stackops_lab.xenapi.errors import FIELD_TYPE_ERROR, HOST_OFFLINE, XapiError
from stackops_lab.xenapi.operations import plug_all
from stackops_lab.xenapi.state import NULL_REF, HostRec, VMRec


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
