"""pool HA calls and the vswitch controller (ocaml/xapi/xapi_ha.ml, xapi_pool.ml, xapi_pool_helpers.ml,
xha_statefile.ml, xapi_sdn_controller.ml).

Pool operations (Xapi_pool_helpers.compute_valid_operations, with_pool_operation): pool.enable_ha, disable_ha and
designate_new_master are "blocking" operations, recorded in pool.current_operations under the call's task while
they run. One in progress refuses the others with its own error (HA_ENABLE_IN_PROGRESS, HA_DISABLE_IN_PROGRESS,
DESIGNATE_NEW_MASTER_IN_PROGRESS). An operation xapi runs by itself ("waiting" ones: cert_refresh,
exchange_certificates_on_join … — faults.py hold_pool_operation) refuses them with OTHER_OPERATION_IN_PROGRESS
["pool", pool, op, op's task], which Helpers.retry answers by waiting and trying again: the caller only gets the
error once the retry budget is spent (xapi: 2 h; XenFaults.retry_budget). With nothing in progress: HA_IS_ENABLED
for an enable, HA_NOT_ENABLED for a disable.

pool.enable_ha(heartbeat_srs, configuration), in xapi's order:
1. the pool operation as above;
2. the HA licence (LICENCE_RESTRICTION ["HA"]); any host with host_metrics.live false → HOST_OFFLINE [host];
3. the statefile SR: the first of `heartbeat_srs` (an empty set lets xapi pick any SR that qualifies;
   none → CANNOT_CREATE_STATE_FILE). It must have a plugged PBD for every host — a local SR in a pool of
   several hosts fails SR_HAS_NO_PBDS [sr] — and an SM type that can hold a statefile (not iso/udev:
   SR_OPERATION_NOT_SUPPORTED [sr]). Note: xapi raises HA_CONSTRAINT_VIOLATION_SR_NOT_SHARED only for VM
   agility, never here;
4. pool.ha_statefiles and pool.ha_configuration are written, then the timeout is derived (configuration
   "timeout", else other_config "default_ha_timeout", else 60): not a number → INTERNAL_ERROR
   ['Failure("int_of_string")'], below 10 → INTERNAL_ERROR ['Failure("constraint violation: timeout >= 10")']
   — and, as in xapi, the configuration written in 4 stays;
5. after XenTimings.ha_enable every host joins the liveset (Host.ha_join_liveset), is armed, ha_enabled := true.
   A join that fails (faults.py: a host lost meanwhile or cut off from the heartbeats — answered only after xHA's
   enable_join_timeout —, without statefile access, or whose xHA daemon does not start) rolls HA back
   (disable_internal: HA off, nobody armed) and its error is answered.

pool.set_ha_host_failures_to_tolerate(self, value): negative → INVALID_VALUE; while a plan exists
(ha_plan_exists_for > 0: "don't block changes if we have no plan at all"), HA on and overcommit not allowed, a
value the plan cannot cover → HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from stackops_lab.xenapi.dispatch import Ctx, Slow, api
from stackops_lab.xenapi.errors import (CANNOT_CREATE_STATE_FILE, DESIGNATE_NEW_MASTER_IN_PROGRESS,
                                        FIELD_TYPE_ERROR, HA_DISABLE_IN_PROGRESS, HA_ENABLE_IN_PROGRESS,
                                        HA_IS_ENABLED, HA_NOT_ENABLED,
                                        HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN, HOST_OFFLINE,
                                        INVALID_IP_ADDRESS_SPECIFIED, INVALID_VALUE, LICENCE_RESTRICTION,
                                        OPERATION_NOT_ALLOWED, OTHER_OPERATION_IN_PROGRESS, SR_HAS_NO_PBDS,
                                        SR_OPERATION_NOT_SUPPORTED, XapiError, failure)
from stackops_lab.xenapi.faults import WAITING_OPERATIONS, faults_of
from stackops_lab.xenapi.state import PoolRec, SDNControllerRec, SRRec, VDIRec, new_ref, new_uuid

BLOCKING = {"ha_enable": HA_ENABLE_IN_PROGRESS, "ha_disable": HA_DISABLE_IN_PROGRESS,
            "designate_new_master": DESIGNATE_NEW_MASTER_IN_PROGRESS}
NO_STATEFILE_TYPES = {"iso", "udev"}
STATEFILE_SIZE = 4096 + 64 * 4096  # Xha_statefile.minimum_size
RETRY_STEP = 0.05  # how often a waiting call looks again (xapi: 1-20 s, or an early wake-up)


def pool_operation_error(pool: PoolRec, op: str) -> XapiError | None:
    """Why the blocking operation `op` may not start now (compute_valid_operations), or None."""
    current = list(pool.current_operations.items())
    blocking = next(((key, name) for key, name in current if name in BLOCKING), None)
    waiting = next(((key, name) for key, name in current if name in WAITING_OPERATIONS), None)
    if blocking is not None:
        return XapiError(BLOCKING[blocking[1]])
    if waiting is not None:
        return XapiError(OTHER_OPERATION_IN_PROGRESS, "pool", pool.ref, waiting[1], waiting[0])
    if op == "ha_enable" and pool.ha_enabled:
        return XapiError(HA_IS_ENABLED)
    if op == "ha_disable" and not pool.ha_enabled:
        return XapiError(HA_NOT_ENABLED)
    return None


def begin_pool_operation(ctx: Ctx, op: str) -> str:
    """Xapi_pool_helpers.with_pool_operation: refuse, or record `op` in pool.current_operations under the call's
    task. OTHER_OPERATION_IN_PROGRESS is waited out first (Helpers.retry), up to the retry budget; the task can be
    cancelled meanwhile (ctx.pause)."""
    clock = ctx.lab.clock
    started, budget = clock.monotonic(), faults_of(ctx.lab).retry_seconds()
    ctx.set_cancellable()  # Helpers.retry: the task may be cancelled while it waits (TASK_CANCELLED)
    while (error := pool_operation_error(ctx.db.pool, op)) is not None:
        if error.code != OTHER_OPERATION_IN_PROGRESS or clock.monotonic() - started >= budget:
            raise error
        ctx.pause(RETRY_STEP)
    key = ctx.task_ref or new_ref()
    ctx.db.pool.current_operations[key] = op
    return key


def end_pool_operation(ctx: Ctx, key: str) -> None:
    ctx.db.pool.current_operations.pop(key, None)


def _string_map(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise XapiError(FIELD_TYPE_ERROR, name)
    return dict(value)


def _int(name: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise XapiError(FIELD_TYPE_ERROR, name) from None


def assert_sr_can_host_statefile(ctx: Ctx, sr: SRRec) -> None:
    db = ctx.db
    pbds = db.pbds_of_sr(sr.ref)
    if {pbd.host for pbd in pbds} < {host.ref for host in db.hosts()} or not all(p.currently_attached for p in pbds):
        raise XapiError(SR_HAS_NO_PBDS, sr.ref)
    if sr.type in NO_STATEFILE_TYPES:
        raise XapiError(SR_OPERATION_NOT_SUPPORTED, sr.ref)


def _statefile(ctx: Ctx, sr: SRRec, kind: str, label: str) -> VDIRec:
    existing = [v for v in ctx.db.all(VDIRec) if v.SR == sr.ref and v.type == kind]
    if existing:
        return existing[0]
    return ctx.db.add(VDIRec(ref=new_ref(), uuid=new_uuid(), name_label=label, SR=sr.ref, type=kind,
                             virtual_size=STATEFILE_SIZE, sharable=True))


@api("pool.enable_ha", 2)
def enable_ha(ctx: Ctx, heartbeat_srs: Any, configuration: Any) -> Any:
    if not isinstance(heartbeat_srs, list) or not all(isinstance(ref, str) for ref in heartbeat_srs):
        raise XapiError(FIELD_TYPE_ERROR, "heartbeat_srs")
    configuration = _string_map("configuration", configuration)
    db, pool = ctx.db, ctx.db.pool
    key = begin_pool_operation(ctx, "ha_enable")
    try:
        if not all(m.spec.ha_licensed for m in ctx.lab.state.members(db)):
            raise XapiError(LICENCE_RESTRICTION, "HA")
        for host in db.hosts():
            if not db.live(host):
                raise XapiError(HOST_OFFLINE, host.ref)
        if heartbeat_srs:
            sr = db.get(SRRec, heartbeat_srs[0])
        else:
            candidates = [sr for sr in db.all(SRRec) if _qualifies(ctx, sr)]
            if not candidates:
                raise XapiError(CANNOT_CREATE_STATE_FILE)
            sr = candidates[0]
        assert_sr_can_host_statefile(ctx, sr)
        statefile = _statefile(ctx, sr, "ha_statefile", "Statefile for HA")
        _statefile(ctx, sr, "redo_log", "Metadata for HA")
        pool.ha_statefiles = [statefile.ref]
        pool.ha_configuration = configuration
        pool.ha_plan_exists_for = 0
        raw = configuration.get("timeout") or pool.other_config.get("default_ha_timeout")
        try:
            timeout = int(raw) if raw is not None else 60
        except ValueError:
            raise failure("int_of_string") from None
        if timeout < 10:
            raise failure("constraint violation: timeout >= 10")
    except BaseException:
        end_pool_operation(ctx, key)
        raise

    def commit() -> Any:
        members, faults = ctx.lab.state.members(db), faults_of(ctx.lab)
        errors = [error for m in members if (error := faults.join_liveset_error(m)) is not None]
        if any(m.name in faults.heartbeat_partitioned for m in members if m.serving):
            state["chained"] = True  # the joins block until xHA gives up: enable_join_timeout (t + 60 s)
            return Slow(ctx.lab.timings.boot_join_seconds(timeout), lambda: _roll_back(ctx, errors[0]),
                        lambda: end_pool_operation(ctx, key))
        if errors:
            _roll_back(ctx, errors[0])
        for machine in members:
            machine.ha_armed = True
        db.liveset = {host.ref for host in db.hosts()}
        pool.ha_enabled = True
        ctx.lab.ha.update_pool_status(db)
        ctx.audit("ha.enabled", pool=pool.uuid, configuration=dict(configuration), timeout=timeout,
                  heartbeat_sr=sr.uuid, statefiles=[statefile.uuid])
        return ""

    state = {"chained": False}
    return Slow(ctx.lab.timings.ha_enable, commit, lambda: None if state["chained"] else end_pool_operation(ctx, key))


def _roll_back(ctx: Ctx, error: XapiError) -> Any:
    """xapi_ha.ml enable's failure path: disable_internal, then the first Host.ha_join_liveset error."""
    ctx.lab.ha.disarm(ctx.db)
    ctx.audit("ha.enable_failed", pool=ctx.db.pool.uuid, error=error.description)
    raise error


def _qualifies(ctx: Ctx, sr: SRRec) -> bool:
    try:
        assert_sr_can_host_statefile(ctx, sr)
    except XapiError:
        return False
    return True


@api("pool.disable_ha", 0)
def disable_ha(ctx: Ctx) -> Any:
    db = ctx.db
    key = begin_pool_operation(ctx, "ha_disable")

    def commit() -> str:
        pool = db.pool
        ctx.lab.ha.disarm(db)
        pool.ha_statefiles = []
        ctx.audit("ha.disabled", pool=pool.uuid, configuration=dict(pool.ha_configuration))
        return ""

    return Slow(ctx.lab.timings.ha_disable, commit, lambda: end_pool_operation(ctx, key))


@api("pool.set_ha_host_failures_to_tolerate", 2)
def set_ha_host_failures_to_tolerate(ctx: Ctx, self: Any, value: Any) -> str:
    pool = ctx.db.get(PoolRec, self)
    number = _int("value", value)
    if number < 0:
        raise XapiError(INVALID_VALUE, "ha_host_failures_to_tolerate", number)
    if pool.ha_plan_exists_for > 0 and pool.ha_enabled and not pool.ha_allow_overcommit \
            and number > ctx.lab.ha.max_failures(ctx.db):
        raise XapiError(HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN)
    pool.ha_host_failures_to_tolerate = number
    ctx.lab.ha.update_pool_status(ctx.db)
    ctx.audit("ha.host_failures_to_tolerate", pool=pool.uuid, value=number)
    return ""


@api("pool.ha_compute_max_host_failures_to_tolerate", 0)
def ha_compute_max_host_failures_to_tolerate(ctx: Ctx) -> int:
    return ctx.lab.ha.max_failures(ctx.db)


@api("pool.sync_database", 0)
def sync_database(ctx: Ctx) -> str:
    return ""


def _assert_vswitch(ctx: Ctx) -> None:
    if ctx.machine.spec.network_backend != "openvswitch":
        raise XapiError(OPERATION_NOT_ALLOWED, "host not configured for vswitch operation")


def _assert_ipv4(name: str, address: str) -> None:
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise XapiError(INVALID_IP_ADDRESS_SPECIFIED, name) from None


def _introduce(ctx: Ctx, protocol: str, address: str, port: int) -> SDNControllerRec:
    controller = ctx.db.add(SDNControllerRec(ref=new_ref(), uuid=new_uuid(), protocol=protocol, address=address,
                                             port=port))
    ctx.audit("sdn.controller", pool=ctx.db.pool.uuid, protocol=protocol, address=address, port=port)
    return controller


@api("pool.set_vswitch_controller", 1)
def set_vswitch_controller(ctx: Ctx, address: Any) -> str:
    """Replaces any SDN controller with ssl:<address>:6632; "" removes it. Persists in the pool database."""
    if not isinstance(address, str):
        raise XapiError(FIELD_TYPE_ERROR, "address")
    _assert_vswitch(ctx)
    pool = ctx.db.pool
    if pool.vswitch_controller != address:
        if address:
            _assert_ipv4("address", address)
        pool.vswitch_controller = address
        for controller in ctx.db.all(SDNControllerRec)[:1]:
            ctx.db.remove(controller)
            ctx.audit("sdn.controller_forgotten", pool=pool.uuid, address=controller.address)
        if address:
            _introduce(ctx, "ssl", address, 6632)
    return ""


@api("SDN_controller.introduce", 3)
def sdn_introduce(ctx: Ctx, protocol: Any, address: Any, port: Any) -> str:
    if not isinstance(address, str):
        raise XapiError(FIELD_TYPE_ERROR, "address")
    number = _int("port", port)
    _assert_vswitch(ctx)
    if ctx.db.all(SDNControllerRec):
        raise XapiError(OPERATION_NOT_ALLOWED, "SDN controller has been configured. Please forget it first.")
    if protocol not in ("ssl", "pssl"):
        raise XapiError(INVALID_VALUE, protocol)
    if protocol == "pssl":
        if address:
            raise XapiError(INVALID_VALUE, "address", address)
        if number != 0:
            raise XapiError(INVALID_VALUE, "port", number)
    elif address:
        _assert_ipv4("address", address)
    else:
        raise XapiError(INVALID_VALUE, "address", address)
    if number != 0 and not 0 < number < 65536:
        raise XapiError(INVALID_VALUE, "port", number)
    return _introduce(ctx, protocol, address, 6632 if protocol == "ssl" and number == 0 else number).ref


@api("SDN_controller.forget", 1)
def sdn_forget(ctx: Ctx, self: Any) -> str:
    controller = ctx.db.get(SDNControllerRec, self)
    ctx.db.remove(controller)
    ctx.audit("sdn.controller_forgotten", pool=ctx.db.pool.uuid, address=controller.address)
    return ""
