"""Host maintenance as xapi does it (ocaml/xapi/xapi_host.ml, vm_evacuation.ml, xapi_ha.ml, message_forwarding.ml,
xapi_vm_helpers.ml): evacuating a host and rebooting or shutting it down. host.disable / host.enable are in
calls_host.py.

- The evacuation plan (compute_evacuation_plan_no_wlb) of a host's guest VMs: the targets are the other enabled
  hosts; none → NO_HOSTS_AVAILABLE [vm] for every VM. With HA on, a VM not protected (ha_always_run with priority
  "restart") → HOST_EVACUATE_VM_NOT_HA_PROTECTED [vm]. A protected VM must be able to boot on every target
  (assert_can_boot_here without the memory check): HOST_NOT_LIVE [] for a dead target, VM_REQUIRES_SR [vm, sr] for
  a disk on storage a target does not see; one that cannot do pool_migrate now gets that operation's error
  (VM_BAD_POWER_STATE, OPERATION_BLOCKED …). The rest are bin-packed by memory, the largest VM first, each on the
  target with the most free memory (host_metrics.memory_free: devices.host_free_memory); a VM that fits nowhere →
  HOST_NOT_ENOUGH_FREE_MEMORY [vm].
- host.assert_can_evacuate(host): CANNOT_EVACUATE_HOST ["code,p|code,p"] when the plan has errors;
  host.get_vms_which_prevent_evacuation(host): {vm: [code, params…]}.
- host.evacuate(host[, network, evacuate_batch_size]) keeps the HA failover plan
  (HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN), raises the plan's first error before any VM moves, checks a given
  network on every destination (PIF_NOT_PRESENT [host, network], INTERFACE_HAS_NO_IP [pif]) and migrates the VMs
  in batches of evacuate_batch_size (0: 10) at once, each batch taking XenTimings.vm_migrate; a VM stopped meanwhile
  is skipped, one still there at the end → INTERNAL_ERROR. It does not disable the host.
- VM.pool_migrate(vm, host, options): the VM's pool_migrate check (operations.vm_operation_error), then
  assert_can_boot_here on the destination: HOST_NOT_LIVE [], HOST_DISABLED [host], VM_REQUIRES_SR [vm, sr], a
  destination being evacuated or shut down (OTHER_OPERATION_IN_PROGRESS ["host", host, op, task]),
  HOST_NOT_ENOUGH_FREE_MEMORY [needed, available]; vm_migrate later the VM runs there (new domid, same devices). A
  migration to its own host (localhost migration) is allowed.
- Operations in progress are in current_operations (host: evacuate, and "shutdown" from host.reboot / shutdown until
  the host's xapi starts again; VM: pool_migrate while it migrates, its allowed_operations empty meanwhile), and
  exclude others as Xapi_host_helpers.valid_operations / xapi_vm_lifecycle say (operations.py).
- host.reboot(host) / host.shutdown(host): the host must be disabled (HOST_NOT_DISABLED [], checked before the call
  is forwarded), not being shut down by another call (OTHER_OPERATION_IN_PROGRESS) and live (HOST_OFFLINE [host]); with HA on it must see the statefile (HA_LOST_STATEFILE []; faults.statefile_inaccessible).
  They return at once; XenTimings.shutdown_delay later (xapi: 10 s) the host runs prepare_for_poweroff
  (Vm_evacuation.ensure_no_vms): host.evacuate, then a clean shutdown, then a hard shutdown of any VM still there
  (all of them if the evacuation plan had an error: evacuate moves nothing then); with HA on, fencing is disarmed
  and the host excluded from the liveset (no failover of it; it joins again at boot); the host stays disabled until
  its reboot. It goes down (its API refuses connections); a rebooted host boots after XenTimings.reboot_down (+
  host_boot) and xapi re-enables it unless host.disable(auto_enable=false) was asked (lifecycle.finish_start); the
  boot clears host.updates_requiring_reboot. A shut-down host stays down until XenLab.revive.

Every migration and stop of a guest VM is counted (Lifecycle.count; XenLab.vm_counts).
"""

from __future__ import annotations

from typing import Any

from stackops_lab.xenapi.calls_host import assert_disable_preserves_ha_plan
from stackops_lab.xenapi.devices import host_free_memory, vm_memory
from stackops_lab.xenapi.dispatch import Ctx, Slow, api
from stackops_lab.xenapi.errors import FIELD_TYPE_ERROR, HOST_OFFLINE, INTERNAL_ERROR, XapiError
from stackops_lab.xenapi.faults import faults_of
from stackops_lab.xenapi.operations import host_operation_error, vm_operation_error
from stackops_lab.xenapi.state import (NULL_REF, HostRec, Machine, NetworkRec, PBDRec, PIFRec, PoolDB, VBDRec, VDIRec,
                                       VMRec, Record, new_ref)

Plan = dict[str, "str | list[str]"]  # VM ref → target host ref, or the error [code, params…]
BATCH = 10  # Xapi_globs.evacuation_batch_size


def _requires_sr(db: PoolDB, vm: VMRec, host: HostRec) -> list[str] | None:
    seen = {pbd.SR for pbd in db.all(PBDRec) if pbd.host == host.ref and pbd.currently_attached}
    for vbd in db.all(VBDRec):
        disk = db.find(VDIRec, vbd.VDI) if vbd.VM == vm.ref else None
        if disk is not None and disk.SR not in seen:
            return ["VM_REQUIRES_SR", vm.ref, disk.SR]
    return None


def _boot_error(db: PoolDB, vm: VMRec, host: HostRec) -> list[str] | None:
    """assert_can_boot_here without the memory check."""
    if not db.live(host):
        return ["HOST_NOT_LIVE"]
    if not host.enabled:
        return ["HOST_DISABLED", host.ref]
    return _requires_sr(db, vm, host)


def evacuation_plan(db: PoolDB, host: HostRec) -> Plan:
    """compute_evacuation_plan_no_wlb: where each guest VM of `host` would go, or why it cannot."""
    targets = [h for h in db.hosts() if h.enabled and h.ref != host.ref]
    guests = [vm for vm in db.vms_on(host.ref) if not vm.is_control_domain]
    plans: Plan = {}
    if not targets:
        return {vm.ref: ["NO_HOSTS_AVAILABLE", vm.ref] for vm in guests}
    protected = guests
    if db.pool.ha_enabled:
        protected = [vm for vm in guests if vm.ha_always_run and vm.ha_restart_priority == "restart"]
        for vm in guests:
            if vm not in protected:
                plans[vm.ref] = ["HOST_EVACUATE_VM_NOT_HA_PROTECTED", vm.ref]
    migratable = []
    for vm in protected:
        error = next((e for t in targets if (e := _boot_error(db, vm, t)) is not None), None)
        if error is None:
            migratable.append(vm)
        else:
            plans[vm.ref] = error
    for vm in guests:
        if (error := vm_operation_error(vm, "pool_migrate")) is not None:
            plans[vm.ref] = error
    free = {t.ref: host_free_memory(db, t) for t in targets}
    for vm in sorted(migratable, key=vm_memory, reverse=True):  # a VM with an operation error is packed too
        target = max(targets, key=lambda t: free[t.ref])
        if free[target.ref] < vm_memory(vm):
            plans[vm.ref] = ["HOST_NOT_ENOUGH_FREE_MEMORY", vm.ref]
            continue
        free[target.ref] -= vm_memory(vm)
        plans.setdefault(vm.ref, target.ref)
    return plans


def begin(record: Record, key: str, op: str) -> None:
    """An operation in progress: in the record's current_operations under its task (with_host_operation,
    with_vm_operation)."""
    record.extra.setdefault("current_operations", {})[key] = op


def end(record: Record | None, key: str) -> None:
    if record is not None:
        record.extra.get("current_operations", {}).pop(key, None)


def plan_errors(plans: Plan) -> list[list[str]]:
    return [plan for plan in plans.values() if isinstance(plan, list)]


def migrate(lab: Any, db: PoolDB, vm: VMRec, target: HostRec, reason: str) -> None:
    """The VM runs on `target` now (xenopsd's VM.migrate): a new domid there, its devices and metrics kept."""
    source = db.find(HostRec, vm.resident_on)
    vm.resident_on = target.ref
    vm.domid = max([v.domid for v in db.vms_on(target.ref)] + [0]) + 1
    lab.lifecycle.count(vm, "migrations")
    lab.audit_log.record("vm.migrated", vm=vm.name_label, uuid=vm.uuid, reason=reason,
                         source=source.name_label if source else NULL_REF, target=target.name_label)
    lab.ha.update_pool_status(db)


def _check_network(db: PoolDB, network: Any, hosts: list[str]) -> None:
    """Xapi_network_attach_helpers.assert_valid_ip_configuration_on_network_for_host."""
    if network == NULL_REF:
        return
    net = db.get(NetworkRec, network)
    for host_ref in hosts:
        pif = next((p for p in db.all(PIFRec) if p.host == host_ref and p.network == net.ref), None)
        if pif is None:
            raise XapiError("PIF_NOT_PRESENT", host_ref, net.ref)
        if not pif.extra.get("IP"):
            raise XapiError("INTERFACE_HAS_NO_IP", pif.ref)


@api("host.assert_can_evacuate", 1)
def assert_can_evacuate(ctx: Ctx, ref: Any) -> str:
    errors = plan_errors(evacuation_plan(ctx.db, ctx.db.get(HostRec, ref)))
    if errors:
        raise XapiError("CANNOT_EVACUATE_HOST", "|".join(",".join(error) for error in errors))
    return ""


@api("host.get_vms_which_prevent_evacuation", 1)
def get_vms_which_prevent_evacuation(ctx: Ctx, ref: Any) -> dict[str, list[str]]:
    plans = evacuation_plan(ctx.db, ctx.db.get(HostRec, ref))
    return {vm: plan for vm, plan in plans.items() if isinstance(plan, list)}


@api("host.evacuate", 3, optional=2)
def evacuate(ctx: Ctx, ref: Any, network: Any = NULL_REF, evacuate_batch_size: Any = "0") -> str:
    db = ctx.db
    host = db.get(HostRec, ref)
    if not isinstance(network, str):
        raise XapiError(FIELD_TYPE_ERROR, "network")
    try:
        int(evacuate_batch_size)
    except (TypeError, ValueError):
        raise XapiError(FIELD_TYPE_ERROR, "evacuate_batch_size") from None
    assert_disable_preserves_ha_plan(ctx, host)
    if (error := host_operation_error(host, "evacuate")) is not None:
        raise XapiError(*error)
    plans = evacuation_plan(db, host)
    for plan in plans.values():
        if isinstance(plan, list):
            raise XapiError(*plan)
    _check_network(db, network, sorted({p for p in plans.values() if isinstance(p, str)}))
    size = int(evacuate_batch_size)
    size = max(1, abs(size if size > 0 else BATCH))
    moves = [(vm, target) for vm, target in plans.items() if isinstance(target, str)]
    batches = [moves[i:i + size] for i in range(0, len(moves), size)]
    lab, key = ctx.lab, ctx.task_ref or new_ref()

    def finish() -> str:
        end(host, key)
        left = [vm for vm in db.vms_on(host.ref) if not vm.is_control_domain]
        if left:
            raise XapiError(INTERNAL_ERROR, f"evacuate: {len(left)} VMs are still resident on {host.ref}")
        lab.audit_log.record("host.evacuated", host=host.name_label, vms=len(moves), batch=size)
        return ""

    last = [0]  # the latest batch under way: its end (or a drop) ends the host's evacuate operation

    def batch_under_way(index: int) -> Slow:
        last[0] = index
        start_batch(db, batches[index])

        def cleanup() -> None:
            end_batch(db, [batches[index]])
            if last[0] == index:
                end(host, key)

        return Slow(lab.timings.vm_migrate, lambda: step(index), cleanup=cleanup)

    def step(index: int) -> Any:
        run_batch(lab, db, host.ref, batches[index], "host.evacuate")
        return batch_under_way(index + 1) if index + 1 < len(batches) else finish()

    begin(host, key, "evacuate")
    if not batches:
        return finish()
    if lab.timings.vm_migrate <= 0:
        for batch in batches:
            run_batch(lab, db, host.ref, batch, "host.evacuate")
        return finish()
    return batch_under_way(0)


def start_batch(db: PoolDB, batch: list[tuple[str, Any]]) -> None:
    """The batch's VMs are migrating (current_operations pool_migrate under their migration's task)."""
    for vm_ref, _ in batch:
        if (vm := db.find(VMRec, vm_ref)) is not None:
            begin(vm, "migrate:" + vm_ref, "pool_migrate")


def end_batch(db: PoolDB, batches: list[list[tuple[str, Any]]]) -> None:
    for batch in batches:
        for vm_ref, _ in batch:
            end(db.find(VMRec, vm_ref), "migrate:" + vm_ref)


def run_batch(lab: Any, db: PoolDB, source: str, batch: list[tuple[str, Any]], reason: str) -> None:
    """Migrations that took their time: the VMs still running on `source` go to their targets (xenopsd's VM.migrate
    fails, VM_BAD_POWER_STATE, for one stopped meanwhile: evacuate ignores that error)."""
    end_batch(db, [batch])
    for vm_ref, target in batch:
        vm, host = db.find(VMRec, vm_ref), db.find(HostRec, target)
        if vm is not None and host is not None and vm.resident_on == source and vm.power_state == "Running":
            migrate(lab, db, vm, host, reason=reason)


@api("VM.pool_migrate", 3)
def pool_migrate(ctx: Ctx, ref: Any, host_ref: Any, options: Any) -> str:
    db = ctx.db
    vm = db.get(VMRec, ref)
    host = db.get(HostRec, host_ref)
    if not isinstance(options, dict):
        raise XapiError(FIELD_TYPE_ERROR, "options")
    if (error := vm_operation_error(vm, "pool_migrate")) is not None:
        raise XapiError(*error)
    if (error := _boot_error(db, vm, host)) is not None:
        raise XapiError(*error)
    if vm.resident_on != host.ref and (error := host_operation_error(host, "vm_migrate")) is not None:
        raise XapiError(*error)  # reserve_memory_for_vm: with_host_operation vm_migrate on the destination
    if vm.resident_on != host.ref and (available := host_free_memory(db, host)) < vm_memory(vm):
        raise XapiError("HOST_NOT_ENOUGH_FREE_MEMORY", str(vm_memory(vm)), str(available))
    if "network" in options:
        _check_network(db, options["network"], [host.ref])
    lab, source, key = ctx.lab, vm.resident_on, ctx.task_ref or new_ref()

    def done() -> str:
        end(vm, key)
        if vm.resident_on != source or vm.power_state != "Running":
            raise XapiError("VM_BAD_POWER_STATE", vm.ref, "running", vm.power_state.lower())
        migrate(lab, db, vm, host, reason="VM.pool_migrate")
        return ""

    if lab.timings.vm_migrate <= 0:
        return done()
    begin(vm, key, "pool_migrate")
    return Slow(lab.timings.vm_migrate, done, cleanup=lambda: end(vm, key))


def _stop_precheck(ctx: Ctx, ref: Any, reboot: bool) -> tuple[HostRec, Machine]:
    """shutdown_and_reboot_common's prechecks, on the host the call is forwarded to."""
    db = ctx.db
    host = db.get(HostRec, ref)
    if (error := host_operation_error(host, "reboot" if reboot else "shutdown")) is not None:
        raise XapiError(*error)  # with_host_operation, before the call is forwarded
    machine = ctx.lab.state.machine_of(db, host.ref)
    if machine is None or not db.live(host) or not machine.serving:
        raise XapiError(HOST_OFFLINE, host.ref)
    if db.pool.ha_enabled and machine.name in faults_of(ctx.lab).statefile_inaccessible:
        raise XapiError("HA_LOST_STATEFILE")
    return host, machine


def _hard_stop(lab: Any, db: PoolDB, vm: VMRec, how: str) -> None:
    vm.power_state, vm.resident_on, vm.domid, vm.ha_always_run = "Halted", NULL_REF, -1, False
    lab.lifecycle.count(vm, "stops")
    lab.audit_log.record("vm.halted", vm=vm.name_label, uuid=vm.uuid, reason=how)


def prepare_for_poweroff(lab: Any, machine: Machine, reboot: bool) -> None:
    """What the host does shutdown_delay after host.reboot / host.shutdown returned: its evacuation (batches of
    migrations, each taking vm_migrate), then power_off."""
    db = machine.db
    host = db.find(HostRec, machine.host_ref) if db is not None else None
    if db is None or host is None:
        return
    plans = evacuation_plan(db, host)
    moves = [] if plan_errors(plans) else [(vm, t) for vm, t in plans.items() if isinstance(t, str)]
    batches = [moves[i:i + BATCH] for i in range(0, len(moves), BATCH)]
    boot, reason = machine.boot_id, "host.reboot" if reboot else "host.shutdown"

    def step(index: int) -> None:
        if machine.boot_id != boot or machine.power != "up":
            end_batch(db, batches)
            return  # killed meanwhile
        run_batch(lab, db, host.ref, batches[index], reason)
        if index + 1 < len(batches):
            start_batch(db, batches[index + 1])
            lab.scheduler.call_later(lab.timings.vm_migrate, lambda: step(index + 1))
            return
        power_off(lab, machine, db, host, reboot)

    if batches and lab.timings.vm_migrate > 0:
        start_batch(db, batches[0])
        lab.scheduler.call_later(lab.timings.vm_migrate, lambda: step(0))
        return
    for batch in batches:
        run_batch(lab, db, host.ref, batch, reason)
    power_off(lab, machine, db, host, reboot)


def power_off(lab: Any, machine: Machine, db: PoolDB, host: HostRec, reboot: bool) -> None:
    """The end of prepare_for_poweroff: what did not leave is stopped, HA lets the host go, it goes down."""
    for vm in db.vms_on(host.ref):
        if not vm.is_control_domain:
            clean = vm.power_state == "Running" and vm_operation_error(vm, "clean_shutdown") is None
            _hard_stop(lab, db, vm, "prepare_for_poweroff: " + ("clean_shutdown" if clean else "hard_shutdown"))
    if db.pool.ha_enabled:  # Xapi_ha.before_clean_shutdown_or_reboot: disarm fencing, exclude from the liveset
        db.liveset.discard(host.ref)
        lab.audit_log.record("ha.host_excluded", host=machine.name)
    machine.disabled_until_reboot = True
    lab.ha.update_pool_status(db)
    lab.lifecycle.power_off(machine)
    machine.crashed_with_ha = False  # Localdb host_restarted_cleanly: not a fence
    lab.audit_log.record("host.reboot" if reboot else "host.shutdown", host=machine.name, reason="api")
    if reboot:
        lab.lifecycle.boot_later(machine, lab.timings.reboot_down + lab.timings.host_boot)


def _stop_later(ctx: Ctx, ref: Any, reboot: bool) -> str:
    host, machine = _stop_precheck(ctx, ref, reboot)
    lab, boot = ctx.lab, machine.boot_id
    # the shutdown task stays in current_operations until the host's xapi starts again (lifecycle.finish_start)
    begin(host, new_ref(), "shutdown")

    def act() -> None:
        if machine.boot_id == boot and machine.power == "up":
            prepare_for_poweroff(lab, machine, reboot)

    lab.scheduler.call_later(lab.timings.shutdown_delay, act)
    ctx.audit("host.rebooting" if reboot else "host.shutting_down", host=machine.name)
    return ""


@api("host.reboot", 1)
def host_reboot(ctx: Ctx, ref: Any) -> str:
    return _stop_later(ctx, ref, reboot=True)


@api("host.shutdown", 1)
def host_shutdown(ctx: Ctx, ref: Any) -> str:
    return _stop_later(ctx, ref, reboot=False)


@api("host.compute_free_memory", 1)
def compute_free_memory(ctx: Ctx, ref: Any) -> int:
    return host_free_memory(ctx.db, ctx.db.get(HostRec, ref))
