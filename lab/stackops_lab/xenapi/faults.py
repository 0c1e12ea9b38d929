"""Faults of a lab XenServer's environment, injected while the lab runs (in the style of the CloudStack
simulator's faults.py): storage, heartbeat network or xHA daemon failures, a pool held by an operation xapi runs
by itself, a master whose HTTP service rejects a joining host. `faults_of(lab)` attaches them to a XenLab on
first use:

    faults = faults_of(lab)
    faults.statefile_inaccessible.add("xen2")       # xen2 lost its path to the heartbeat SR
    faults.hold_pool_operation("xen1", "cert_refresh", seconds=30.0)

Hosts are named as in XenHostSpec.name. Change faults between calls, or under `lab.state.lock`.

- statefile_inaccessible: hosts whose xHA daemon cannot access the statefile. pool.enable_ha: Host.ha_join_liveset
  fails with MTC_EXIT_CAN_NOT_ACCESS_STATEFILE, which xapi maps to HA_HOST_CANNOT_ACCESS_STATEFILE, and HA is
  rolled back (xapi_host.ml ha_join_liveset, xapi_ha.ml enable). Booting with HA armed: xapi stays in emergency
  mode answering HA_HOST_CANNOT_ACCESS_STATEFILE to every non-emergency call and retries — it neither joins the
  liveset nor fences — until the fault is cleared, HA is off pool-wide (the master confirms it) or
  host.emergency_ha_disable (xapi_ha.ml on_server_restart).
- ha_daemon_fails: hosts whose xHA daemon fails to start (MTC_EXIT_SYSTEM_ERROR). pool.enable_ha: xapi does not map
  that errno, so the caller gets INTERNAL_ERROR ["Xha_scripts.Xha_error(2)"] (Printexc of the exception) and HA is
  rolled back. Booting with HA armed: emergency mode answering HA_HEARTBEAT_DAEMON_STARTUP_FAILED, retrying until the
  fault is cleared or host.emergency_ha_disable.
- heartbeat_partitioned: hosts cut off from the others' network heartbeats. pool.enable_ha: the liveset does not
  form within xHA's enable_join_timeout (t + 60 s, scaled like every HA time): MTC_EXIT_BOOTJOIN_TIMEOUT, mapped to
  HA_FAILED_TO_FORM_LIVESET, HA rolled back. Only enabling is modelled: a running liveset ignores it.
- join_service_rejects: hosts (pool masters) whose HTTP service rejects a joining host's login: pool.join towards
  them answers JOINING_HOST_SERVICE_FAILED — once the connection succeeded, before the pre-join checks
  (Http_request_rejected / Http_error in Xapi_pool.join_common).
- hold_pool_operation(host, op, seconds): an operation xapi runs by itself (cert_refresh,
  exchange_certificates_on_join during another host's join, …: Xapi_pool_helpers' "waiting" operations) is in the
  host's pool.current_operations for `seconds` (audit log: pool.operation_held, pool.operation_released).
  pool.enable_ha / disable_ha / designate_new_master meeting it wait (Helpers.retry) and fail with
  OTHER_OPERATION_IN_PROGRESS ["pool", pool, op, op's task] once `retry_budget` is spent.
- retry_budget: how long a call waits for another operation before OTHER_OPERATION_IN_PROGRESS (xapi's
  Repeat_with_uniform_backoff.standard: 2 h). None: 7200 × XenTimings.ha_time_scale lab seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stackops_lab.xenapi.errors import (HA_FAILED_TO_FORM_LIVESET, HA_HEARTBEAT_DAEMON_STARTUP_FAILED,
                                        HA_HOST_CANNOT_ACCESS_STATEFILE,
                                        HOST_STILL_BOOTING, JOINING_HOST_SERVICE_FAILED, XapiError, internal)
from stackops_lab.xenapi.state import Machine, new_ref

if TYPE_CHECKING:
    from stackops_lab.xenapi.dispatch import Ctx
    from stackops_lab.xenapi.simulator import XenLab

# Xapi_pool_helpers.waiting_ops: operations xapi runs by itself; a blocking one (ha_enable …) waits for them.
WAITING_OPERATIONS = ("cert_refresh", "copy_primary_host_certs", "eject", "exchange_ca_certificates_on_join",
                      "exchange_certificates_on_join", "get_updates")
XAPI_RETRY_BUDGET = 7200.0  # Helpers.Repeat_with_uniform_backoff.standard.max_total_wait
XHA_SYSTEM_ERROR = "Xha_scripts.Xha_error(2)"  # Printexc.to_string (Xha_error Mtc_exit_system_error)


@dataclass
class XenFaults:
    """The faults in force (see the module docstring); all empty by default."""

    lab: XenLab = field(repr=False)
    statefile_inaccessible: set[str] = field(default_factory=set)
    ha_daemon_fails: set[str] = field(default_factory=set)
    heartbeat_partitioned: set[str] = field(default_factory=set)
    join_service_rejects: set[str] = field(default_factory=set)
    retry_budget: float | None = None

    # ------------------------------------------------------------------------------------------ knobs
    def hold_pool_operation(self, host: str, op: str = "cert_refresh", seconds: float = 5.0) -> str:
        """Put `op` (one of WAITING_OPERATIONS) in the pool.current_operations of `host`'s pool for `seconds`;
        returns its key (the task ref xapi records)."""
        if op not in WAITING_OPERATIONS:
            raise ValueError(f"{op!r} is not an operation xapi runs by itself; known: {', '.join(WAITING_OPERATIONS)}")
        lab = self.lab
        with lab.state.lock:
            db = lab.state.machine(host).db
            if db is None:
                raise ValueError(f"{host} has no pool database")
            key = new_ref()
            db.pool.current_operations[key] = op
            lab.audit_log.record("pool.operation_held", host=host, op=op, seconds=seconds)

        def release() -> None:
            if db.pool.current_operations.pop(key, None) is not None:
                lab.audit_log.record("pool.operation_released", host=host, op=op)

        lab.scheduler.call_later(seconds, release)
        return key

    def retry_seconds(self) -> float:
        return self.retry_budget if self.retry_budget is not None else \
            self.lab.timings.ha_seconds(int(XAPI_RETRY_BUDGET))

    # ------------------------------------------------------------------------------------------ effects
    def ha_start_error(self, machine: Machine) -> XapiError | None:
        """Why `machine`'s xHA daemon cannot start and join a liveset (its emergency_mode_error), if it cannot."""
        if machine.name in self.statefile_inaccessible:
            return XapiError(HA_HOST_CANNOT_ACCESS_STATEFILE)
        if machine.name in self.ha_daemon_fails:
            return XapiError(HA_HEARTBEAT_DAEMON_STARTUP_FAILED)
        return None

    def emergency_error(self, machine: Machine) -> XapiError:
        """What a host whose xapi is not (yet) serving answers a non-emergency call: HOST_STILL_BOOTING, or, held
        in emergency mode at boot by an xHA daemon that cannot start, the reason it cannot."""
        if machine.ha_joining_until > 0 and (error := self.ha_start_error(machine)) is not None:
            return error
        return XapiError(HOST_STILL_BOOTING)

    def join_liveset_error(self, machine: Machine) -> XapiError | None:
        """What Host.ha_join_liveset on `machine` fails with during pool.enable_ha (xapi_host.ml ha_join_liveset):
        a host lost meanwhile or cut off from the heartbeats never joins (MTC_EXIT_BOOTJOIN_TIMEOUT)."""
        if not machine.serving or machine.name in self.heartbeat_partitioned:
            return XapiError(HA_FAILED_TO_FORM_LIVESET)
        if machine.name in self.statefile_inaccessible:
            return XapiError(HA_HOST_CANNOT_ACCESS_STATEFILE)
        if machine.name in self.ha_daemon_fails:
            return internal(XHA_SYSTEM_ERROR)
        return None

    def before_call(self, ctx: Ctx, name: str, args: tuple[Any, ...]) -> None:
        """Failures of the environment that a call meets before its own checks (the dispatcher asks for every call)."""
        if name == "pool.join" and self.join_service_rejects and args and isinstance(args[0], str):
            target = ctx.lab.state.by_address(args[0])
            if target is not None and target.reachable and target.name in self.join_service_rejects:
                raise XapiError(JOINING_HOST_SERVICE_FAILED)


def faults_of(lab: XenLab) -> XenFaults:
    """The lab's faults: `lab.faults`, attached on first use if the lab has none."""
    faults = getattr(lab, "faults", None)
    if faults is None:
        with lab.state.lock:
            faults = getattr(lab, "faults", None)
            if faults is None:
                faults = XenFaults(lab)
                setattr(lab, "faults", faults)
    if not isinstance(faults, XenFaults):
        raise TypeError(f"lab.faults is a {type(faults).__name__}, not XenFaults")
    return faults
