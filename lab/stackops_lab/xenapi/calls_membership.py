"""Pool membership and master changes (ocaml/xapi/xapi_pool.ml, message_forwarding.ml, xapi_pool_transition.ml).

pool.join(master_address, master_username, master_password) runs on the JOINING host. It logs in to the
master first (unreachable → JOINING_HOST_CONNECTION_FAILED; a supporter's address → HOST_IS_SLAVE [its
master]; bad credentials → SESSION_AUTHENTICATION_FAILED), then pre_join_checks in xapi's order: HA on the
joiner, HA on the pool (HA_IS_ENABLED), the joiner is the master itself — a clone with the master's
INSTALLATION_UUID — (OPERATION_NOT_ALLOWED ["Host cannot become slave of itself"], or "Host is already part
of a pool"), the joiner has other hosts (JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS), running guest VMs
(JOINING_HOST_CANNOT_HAVE_RUNNING_VMS), software version or CPU vendor (HOSTS_NOT_HOMOGENEOUS), shared SRs
(JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS), network backend / SDN controller (OPERATION_NOT_ALLOWED ["Network
backends differ"] / ["SDN controller differs"]), API version (POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION).
Then the joiner's host, local SR and halted VMs are created in the pool (new refs, same UUIDs), it gets PBDs to
the pool's shared SRs, and its xapi restarts as a supporter: it is in pool.get_all hosts at once but live
only after XenTimings.join.

pool.eject(host) runs for the host it names: not live → HOST_OFFLINE; HA on → HA_IS_ENABLED; the master →
INTERNAL_ERROR ["Xapi_pool.Cannot_eject_master"]; a non-halted guest VM resident there → OPERATION_NOT_ALLOWED
["VM resident on host"]. The master forgets the host; the host resets and reboots (down for
XenTimings.eject_reboot, then boots) into a fresh standalone pool.

pool.designate_new_master(host): not live → HOST_OFFLINE; a pool operation in progress; HA on →
HA_IS_ENABLED; the master itself → nothing. After XenTimings.master_transition every member follows the new
master; all sessions are gone.

pool.emergency_transition_to_master() (on a supporter, slave-local session; HA armed → HA_IS_ENABLED) makes
it master of the pool database; the other supporters keep pointing at the old master until
pool.recover_slaves() on the new master re-points every reachable supporter and returns their refs.
pool.emergency_reset_master(master_address) re-points one supporter.
"""

from __future__ import annotations

from typing import Any

from stackops_lab.xenapi.calls_pool import begin_pool_operation, end_pool_operation
from stackops_lab.xenapi.devices import add_host_devices, add_vm_devices
from stackops_lab.xenapi.dispatch import Ctx, Slow, api
from stackops_lab.xenapi.errors import (FIELD_TYPE_ERROR, HA_IS_ENABLED, HOST_IS_SLAVE, HOST_OFFLINE,
                                        HOST_STILL_BOOTING, HOSTS_NOT_HOMOGENEOUS,
                                        JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS,
                                        JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS,
                                        JOINING_HOST_CANNOT_HAVE_RUNNING_VMS, JOINING_HOST_CONNECTION_FAILED,
                                        OPERATION_NOT_ALLOWED, POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION,
                                        SESSION_AUTHENTICATION_FAILED, XapiError, internal)
from stackops_lab.xenapi.state import (NULL_REF, HostMetricsRec, HostRec, Machine, PBDRec, PoolDB, SDNControllerRec, SRRec,
                                       VMRec, new_ref)

HOMOGENEOUS_KEYS = ("platform_version", "product_brand", "product_version")


def _assert_live(ctx: Ctx, host: HostRec) -> None:
    """message_forwarding.do_op_on: a call forwarded to a host that is not live → HOST_OFFLINE [host]."""
    if not ctx.db.live(host):
        raise XapiError(HOST_OFFLINE, host.ref)


def _remote_master(ctx: Ctx, address: str, username: Any, password: Any) -> Machine:
    target = ctx.lab.state.by_address(address)  # the lab hosts' addresses: 127.0.1.x, or a dom0's lab host's
    if target is None or not target.reachable:  # down, or xapi stopped: connection refused
        raise XapiError(JOINING_HOST_CONNECTION_FAILED)
    if target.xapi != "running":
        raise XapiError(HOST_STILL_BOOTING)
    if not target.is_master:
        raise XapiError(HOST_IS_SLAVE, target.master_address)
    if username != ctx.lab.username or password != ctx.lab.password:
        raise XapiError(SESSION_AUTHENTICATION_FAILED, username, "Authentication failure")
    return target


def _pre_join_checks(mine: PoolDB, me: HostRec, remote: PoolDB, master: HostRec, joiner: Machine,
                     target: Machine) -> None:
    if mine.pool.ha_enabled or remote.pool.ha_enabled:
        raise XapiError(HA_IS_ENABLED)
    if master.uuid == me.uuid:
        raise XapiError(OPERATION_NOT_ALLOWED, "Host is already part of a pool" if len(mine.hosts()) > 1
                        else "Host cannot become slave of itself")
    if len(mine.hosts()) > 1:
        raise XapiError(JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS)
    if any(vm.power_state == "Running" and not vm.is_control_domain for vm in mine.all(VMRec)):
        raise XapiError(JOINING_HOST_CANNOT_HAVE_RUNNING_VMS)
    if any(me.software_version.get(k) != master.software_version.get(k) for k in HOMOGENEOUS_KEYS):
        raise XapiError(HOSTS_NOT_HOMOGENEOUS, "Software version differs")
    if me.cpu_info.get("vendor") != master.cpu_info.get("vendor"):
        raise XapiError(HOSTS_NOT_HOMOGENEOUS, "CPUs differ")
    if any(sr.shared for sr in mine.all(SRRec)):
        raise XapiError(JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS)
    if joiner.spec.network_backend != target.spec.network_backend:
        raise XapiError(OPERATION_NOT_ALLOWED, "Network backends differ")
    if joiner.spec.network_backend == "openvswitch":
        ours, theirs = mine.all(SDNControllerRec), remote.all(SDNControllerRec)
        if ours and (not theirs or (ours[0].protocol, ours[0].address, ours[0].port)
                     != (theirs[0].protocol, theirs[0].address, theirs[0].port)):
            raise XapiError(OPERATION_NOT_ALLOWED, "SDN controller differs")
    if (me.API_version_major, me.API_version_minor) != (master.API_version_major, master.API_version_minor):
        raise XapiError(POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION,
                        f"{me.API_version_major}.{me.API_version_minor}",
                        f"{master.API_version_major}.{master.API_version_minor}")


@api("pool.join", 3)
def join(ctx: Ctx, master_address: Any, master_username: Any, master_password: Any) -> str:
    if not isinstance(master_address, str):
        raise XapiError(FIELD_TYPE_ERROR, "master_address")
    joiner, mine = ctx.machine, ctx.db
    target = _remote_master(ctx, master_address, master_username, master_password)
    remote = target.db
    assert remote is not None
    master = remote.get(HostRec, remote.pool.master)
    me = ctx.host
    _pre_join_checks(mine, me, remote, master, joiner, target)
    # update_non_vm_metadata + the VM import: the master creates our objects (new refs, same UUIDs).
    lifecycle = ctx.lab.lifecycle
    refs: dict[str, str] = {}
    for record in [me, mine.metrics_of(me), *mine.all(SRRec), *mine.all(PBDRec), *mine.all(VMRec)]:
        refs[record.ref] = new_ref()
    new_host = HostRec(**{**vars(me), "ref": refs[me.ref], "extra": {key: refs.get(value, value) if isinstance(value, str) else value
                                                       for key, value in me.extra.items()}, "metrics": refs[me.metrics],
                          "control_domain": refs.get(me.control_domain, me.control_domain)})
    remote.add(new_host)
    remote.add(HostMetricsRec(**{**vars(mine.metrics_of(me)), "ref": refs[me.metrics], "live": False}))
    for sr in mine.all(SRRec):
        remote.add(SRRec(**{**vars(sr), "ref": refs[sr.ref]}))
    for pbd in mine.all(PBDRec):
        remote.add(PBDRec(**{**vars(pbd), "ref": refs[pbd.ref], "host": refs[pbd.host], "SR": refs[pbd.SR]}))
    add_host_devices(remote, new_host)  # its NICs on the pool's networks, its CPUs
    for vm in mine.all(VMRec):
        copy = remote.add(VMRec(**{**vars(vm), "ref": refs[vm.ref], "extra": dict(vm.extra), "metrics": NULL_REF,
                                   "guest_metrics": NULL_REF,
                                   "resident_on": refs.get(vm.resident_on, vm.resident_on)}))
        add_vm_devices(remote, copy, joiner.address)
    for sr in remote.all(SRRec):
        if sr.shared:
            lifecycle.plug_shared(remote, sr, new_host.ref)
    ctx.audit("pool.join", host=joiner.name, master=target.name, pool=remote.pool.uuid)
    joiner.db, joiner.host_ref = remote, new_host.ref
    joiner.role, joiner.master_address = "slave", master_address
    lifecycle.restart_xapi(joiner, ctx.lab.timings.join, reason="pool.join")
    return ""


@api("pool.eject", 1)
def eject(ctx: Ctx, host: Any) -> str:
    db = ctx.db
    record = db.get(HostRec, host)
    _assert_live(ctx, record)
    if db.pool.ha_enabled:
        raise XapiError(HA_IS_ENABLED)
    if record.ref == db.pool.master:
        raise internal("Xapi_pool.Cannot_eject_master")
    for vm in db.vms_on(record.ref):
        if not vm.is_control_domain and vm.power_state != "Halted":
            raise XapiError(OPERATION_NOT_ALLOWED, "VM resident on host")
    machine = ctx.lab.state.machine_of(db, record.ref)
    ctx.lab.lifecycle.forget_host(db, record.ref)
    ctx.audit("pool.eject", host=machine.name if machine else record.name_label, pool=db.pool.uuid)
    if machine is not None:
        machine.db, machine.host_ref, machine.role, machine.master_address = None, "OpaqueRef:NULL", "master", ""
        machine.ha_armed = False
        ctx.lab.lifecycle.reboot(machine, ctx.lab.timings.eject_reboot, reason="pool.eject")
    return ""


@api("pool.designate_new_master", 1)
def designate_new_master(ctx: Ctx, host: Any) -> Any:
    db = ctx.db
    record = db.get(HostRec, host)
    _assert_live(ctx, record)
    key = begin_pool_operation(ctx, "designate_new_master")
    try:
        if db.pool.ha_enabled:
            raise XapiError(HA_IS_ENABLED)
    except XapiError:
        end_pool_operation(ctx, key)
        raise
    if record.ref == db.pool.master:
        end_pool_operation(ctx, key)
        return ""

    def commit() -> str:
        new = ctx.lab.state.machine_of(db, record.ref)
        if new is None or not new.serving:
            raise internal("Xapi_pool_transition: the new master did not commit")
        old = ctx.machine
        members = ctx.lab.state.members(db)
        ctx.lab.lifecycle.set_master(db, record.ref, members, reason="designate")
        for machine in (new, old):
            ctx.lab.lifecycle.restart_xapi(machine, ctx.lab.timings.xapi_restart, reason="designate_new_master")
        return ""

    return Slow(ctx.lab.timings.master_transition, commit, lambda: end_pool_operation(ctx, key))


@api("pool.emergency_transition_to_master", 0, emergency=True)
def emergency_transition_to_master(ctx: Ctx) -> str:
    machine = ctx.machine
    if machine.ha_armed:
        raise XapiError(HA_IS_ENABLED)
    if machine.is_master:
        return ""
    db = ctx.db
    ctx.lab.lifecycle.set_master(db, machine.host_ref, [machine], reason="emergency")
    ctx.lab.lifecycle.restart_xapi(machine, ctx.lab.timings.xapi_restart, reason="emergency_transition_to_master")
    return ""


@api("pool.emergency_reset_master", 1, emergency=True)
def emergency_reset_master(ctx: Ctx, master_address: Any) -> str:
    if not isinstance(master_address, str):
        raise XapiError(FIELD_TYPE_ERROR, "master_address")
    machine = ctx.machine
    if machine.ha_armed:
        raise XapiError(HA_IS_ENABLED)
    _reset_master(ctx, machine, master_address)
    return ""


def _reset_master(ctx: Ctx, machine: Machine, master_address: str) -> None:
    machine.role, machine.master_address = "slave", master_address
    ctx.lab.audit_log.record("pool.emergency_reset_master", host=machine.name, master_address=master_address)
    ctx.lab.lifecycle.restart_xapi(machine, ctx.lab.timings.xapi_restart, reason="emergency_reset_master")


@api("pool.recover_slaves", 0)
def recover_slaves(ctx: Ctx) -> list[str]:
    recovered = []
    for host in ctx.db.hosts():
        machine = ctx.lab.state.machine_of(ctx.db, host.ref)
        if host.ref == ctx.machine.host_ref or machine is None or not machine.reachable or machine.ha_armed:
            continue  # unreachable or refusing: failures are ignored
        _reset_master(ctx, machine, ctx.machine.address)
        recovered.append(host.ref)
    ctx.audit("pool.recover_slaves", recovered=[ctx.lab.state.machine_of(ctx.db, r).name for r in recovered])
    return recovered
