"""host.* and VM.* calls (ocaml/xapi/xapi_host.ml, xapi_host_helpers.ml, xapi_ha.ml, xapi_vm.ml).

- host.enable(host) / host.disable(host[, auto_enable]) are forwarded to the host (not live → HOST_OFFLINE).
  host.enable on a host whose xapi is still starting meets its emergency_mode_error (HOST_STILL_BOOTING;
  faults.py). Re-enabling checks assert_safe_to_reenable: HOST_DISABLED_UNTIL_REBOOT while dom0's Localdb says so
  (the lab knob `XenLab.set_disabled_until_reboot`, and host.reboot / shutdown until the host is down; a boot
  clears it). With HA on, disabling a host the failover plan needs → HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN
  (checked before the host is asked). auto_enable=false (xapi 25.31) is kept in the host's Localdb: xapi does not
  re-enable the host at boot until host.enable.
- host.emergency_ha_disable([soft]) (emergency call, slave-local session): disarms HA on this host; on the
  master it also sets pool.ha_enabled false. Not armed → HA_NOT_ENABLED unless soft.
- VM.set_ha_restart_priority(vm, value): "restart", "best-effort" or "" (ha_valid_restart_priorities), else
  INVALID_VALUE ["ha_restart_priority", value]; protecting a running VM while HA is on and overcommit is not
  allowed must keep the plan (HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN); a running VM's ha_always_run follows.
"""

from __future__ import annotations

from typing import Any

from stackops_lab.xenapi.dispatch import Ctx, api
from stackops_lab.xenapi.errors import (FIELD_TYPE_ERROR, HA_NOT_ENABLED, HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN,
                                        HOST_DISABLED_UNTIL_REBOOT, HOST_OFFLINE, INVALID_VALUE, XapiError)
from stackops_lab.xenapi.faults import faults_of
from stackops_lab.xenapi.state import NULL_REF, HostRec, VMRec, now

RESTART_PRIORITIES = ("restart", "best-effort", "")


def _live_host(ctx: Ctx, ref: Any) -> HostRec:
    host = ctx.db.get(HostRec, ref)
    if not ctx.db.live(host):
        raise XapiError(HOST_OFFLINE, host.ref)
    return host


def _name(ctx: Ctx, host: HostRec) -> str:
    machine = ctx.lab.state.machine_of(ctx.db, host.ref)
    return machine.name if machine else host.name_label


@api("host.enable", 1)
def host_enable(ctx: Ctx, ref: Any) -> str:
    host = _live_host(ctx, ref)
    machine = ctx.lab.state.machine_of(ctx.db, host.ref)
    if machine is not None and machine.power == "up" and machine.xapi == "starting":
        raise faults_of(ctx.lab).emergency_error(machine)  # forwarded to a host whose xapi is not ready
    if not host.enabled:
        if machine is not None and machine.disabled_until_reboot:
            raise XapiError(HOST_DISABLED_UNTIL_REBOOT, host.ref)  # xapi_host.ml: [Ref.string_of self]
        if machine is not None:
            machine.auto_enable = True  # Localdb host_auto_enable "true"
        host.enabled = True
        ctx.audit("host.enabled", host=_name(ctx, host), reason="host.enable")
        ctx.lab.ha.update_pool_status(ctx.db)
    return ""


def assert_disable_preserves_ha_plan(ctx: Ctx, host: HostRec) -> None:
    """Xapi_ha_vm_failover.assert_host_disable_preserves_ha_plan (host.disable and host.evacuate)."""
    pool = ctx.db.pool
    if (pool.ha_enabled and host.enabled and pool.ha_plan_exists_for > 0
            and ctx.lab.ha.max_failures(ctx.db, exclude=(host.ref,)) < pool.ha_host_failures_to_tolerate):
        raise XapiError(HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN)


@api("host.disable", 2, optional=1)
def host_disable(ctx: Ctx, ref: Any, auto_enable: Any = True) -> str:
    if not isinstance(auto_enable, bool):
        raise XapiError(FIELD_TYPE_ERROR, "auto_enable")
    host = ctx.db.get(HostRec, ref)
    assert_disable_preserves_ha_plan(ctx, host)
    host = _live_host(ctx, ref)
    if host.enabled:
        host.enabled = False
        if not auto_enable and (machine := ctx.lab.state.machine_of(ctx.db, host.ref)) is not None:
            machine.auto_enable = False  # Localdb host_auto_enable "false": it stays disabled across reboots
        ctx.audit("host.disabled", host=_name(ctx, host), reason="host.disable", auto_enable=auto_enable)
        ctx.lab.ha.update_pool_status(ctx.db)
    return ""


@api("host.emergency_ha_disable", 1, emergency=True, optional=1)
def emergency_ha_disable(ctx: Ctx, soft: Any = False) -> str:
    machine = ctx.machine
    if not machine.ha_armed:
        if soft is True:
            return ""
        raise XapiError(HA_NOT_ENABLED)
    machine.ha_armed = False
    ctx.audit("ha.emergency_disabled", host=machine.name)
    db = machine.db
    if db is not None and machine.is_master and db.pool.ha_enabled:
        db.pool.ha_enabled = False
        db.liveset = set()
        ctx.audit("ha.disabled", pool=db.pool.uuid, configuration=dict(db.pool.ha_configuration),
                  reason="emergency_ha_disable")
    if machine.xapi == "starting" and machine.ha_joining_until > 0:
        ctx.lab.lifecycle.finish_start(machine)
    return ""


@api("host.set_hostname_live", 2)
def set_hostname_live(ctx: Ctx, ref: Any, hostname: Any) -> str:
    host = _live_host(ctx, ref)
    if not isinstance(hostname, str) or not hostname or len(hostname) > 63:
        raise XapiError("HOST_NAME_INVALID", "hostname must be 1-63 characters")
    host.hostname = hostname
    host.software_version["hostname"] = hostname
    if (machine := ctx.lab.state.machine_of(ctx.db, host.ref)) is not None:
        machine.hostname = hostname
    ctx.audit("host.hostname", host=_name(ctx, host), hostname=hostname)
    return ""


@api("host.get_servertime", 1)
def get_servertime(ctx: Ctx, ref: Any) -> Any:
    _live_host(ctx, ref)
    return now()


@api("VM.set_ha_restart_priority", 2)
def set_ha_restart_priority(ctx: Ctx, ref: Any, value: Any) -> str:
    vm = ctx.db.get(VMRec, ref)
    if not isinstance(value, str):
        raise XapiError(FIELD_TYPE_ERROR, "value")
    if value not in RESTART_PRIORITIES:
        raise XapiError(INVALID_VALUE, "ha_restart_priority", value)
    pool = ctx.db.pool
    previous = vm.ha_restart_priority
    if previous != "restart" and value == "restart" and vm.power_state != "Halted" and pool.ha_enabled \
            and not pool.ha_allow_overcommit \
            and ctx.lab.ha.max_failures(ctx.db, extra_vms=1) < pool.ha_host_failures_to_tolerate:
        raise XapiError(HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN)
    if previous != value:
        vm.ha_restart_priority = value
        if vm.power_state == "Running":
            vm.ha_always_run = value == "restart"
        ctx.lab.ha.update_pool_status(ctx.db)
        ctx.audit("vm.ha_restart_priority", vm=vm.name_label, uuid=vm.uuid, value=value, previous=previous)
    return ""


def _shutdown(ctx: Ctx, ref: Any) -> str:
    vm = ctx.db.get(VMRec, ref)
    if vm.is_control_domain or vm.power_state != "Running":
        raise XapiError("VM_BAD_POWER_STATE", vm.ref, "running", vm.power_state.lower())
    vm.power_state, vm.resident_on, vm.domid, vm.ha_always_run = "Halted", NULL_REF, -1, False
    ctx.lab.lifecycle.count(vm, "stops")
    ctx.audit("vm.halted", vm=vm.name_label, uuid=vm.uuid)
    ctx.lab.ha.update_pool_status(ctx.db)
    return ""


@api("VM.clean_shutdown", 1)
def clean_shutdown(ctx: Ctx, ref: Any) -> str:
    return _shutdown(ctx, ref)


@api("VM.hard_shutdown", 1)
def hard_shutdown(ctx: Ctx, ref: Any) -> str:
    return _shutdown(ctx, ref)
