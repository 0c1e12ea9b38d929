"""Host maintenance as CloudStack does it: ResourceManagerImpl.maintain(cmd) / doMaintain / attemptMaintain and the
HighAvailabilityManager's Migration work.

prepareHostForMaintenance (in its async job, as maintain(cmd) runs there), in CloudStack's order:
- a host in Maintenance, PrepareForMaintenance or ErrorInPrepareForMaintenance (!canAttemptMaintenance): "Host is
  already in state <state>. Cannot recall for maintenance until resolved." (ErrorInMaintenance may try again);
- a cluster peer in (Error)PrepareForMaintenance: "There are other servers attempting migrations for maintenance.
  Found hosts in PrepareForMaintenance OR ErrorInPrepareForMaintenance STATUS in cluster <cluster id>";
- VMs Migrating in (a VM migrating to this host has it as host, its source as last host): "Host contains incoming
  VMs migrating. Please wait for them to complete before putting to maintenance."; Starting/Stopping: "Host
  contains VMs in starting/stopping state. Please wait for them to complete before putting to maintenance.";
  Error/Unknown: "Host contains VMs in error/unknown/shutdown state. Please fix errors to proceed.";
- the MaintainCommand needs the agent: a host Down, Alert, Disconnected (or unreachable) → "Unable to prepare for
  maintenance host <id>";
- the resource FSM (ResourceState.java): Disabled has no AdminAskMaintenance transition → "Cannot transit resource
  state of Host {...} to Maintenance" + "No next resource state found for current state = Disabled event =
  AdminAskMaintenance" (HostVO.toString is modelled); Degraded → Maintenance directly; Enabled and
  ErrorInMaintenance → PrepareForMaintenance.
Then each VM on the host (user VMs, routers, system VMs) gets HA Migration work; without any Up+Enabled peer in the
cluster (migrate.vm.across.clusters false) doMaintain returns false: the job fails "Unable to prepare for
maintenance host <id>" with the host already in PrepareForMaintenance, and the next checkAndMaintain puts it in
ErrorInMaintenance (ACS #9523). A Migration work takes the Up+Enabled peer of the cluster with the most free memory
that can hold the VM (memory is accounted: a host's RAM less its VMs', those migrating in included); the VM is
Migrating for Timings.vm_migrate (host = target, last host = source), then Running on the target. With no such
peer the work is tried again after `migrate.retry.interval` seconds, `max.retries` tries in all, then given up.
After each try checkAndMaintain (attemptMaintain), in its order: nothing active left and nothing migrating away →
Maintenance; no work pending and VMs still running (or only failed ones) → ErrorInMaintenance (the VMs stay where
they are, counted by `left`); work pending and a failed migration (a VM whose last try failed) or a VM in
Error/Unknown → ErrorInPrepareForMaintenance (UnableToMigrate); from there, once no error is left, back to
PrepareForMaintenance (ErrorsCorrected).
cancelHostMaintenance from any maintenance state → Enabled (AdminCancelMaintenance), pending migrations cancelled;
otherwise "Cannot perform cancelMaintenance when resource state is <state>, hostId = <id>".

Lab deviations: a host without VMs is put in Maintenance by the job itself (CloudStack answers PrepareForMaintenance
and its next checkAndMaintain moves it); the vGPU / no-migrate cases (SSVM/CPVM destroyed, others force-stopped)
and local storage are not modelled; `max.retries` and `migrate.retry.interval` are global settings here (Cluster
scope in CloudStack). Every migration, stop and restart of a VM is counted (`counts`) so that tests can assert that
no VM was ever stopped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stackops_lab.cloudstack import responses
from stackops_lab.cloudstack.errors import INTERNAL_ERROR
from stackops_lab.cloudstack.jobs import JobContext
from stackops_lab.cloudstack.state import Host, UserVm

if TYPE_CHECKING:
    from stackops_lab.cloudstack.hostops import HostOps

CANNOT_ATTEMPT = ("Maintenance", "PrepareForMaintenance", "ErrorInPrepareForMaintenance")
MAINTENANCE_STATES = (*CANNOT_ATTEMPT, "ErrorInMaintenance")
PREPARING = ("PrepareForMaintenance", "ErrorInPrepareForMaintenance")
ACTIVE = ("Running", "Starting", "Stopping", "Migrating", "Error", "Unknown")
SYSTEM_MEMORY = {"router": 256, "secondarystoragevm": 512, "consoleproxy": 1024}  # the system offerings' MiB
MIB = 1024 * 1024


def memory_of(vm: Any) -> int:
    """A VM's memory in MiB (its service offering's)."""
    if isinstance(vm, UserVm):
        return vm.memory
    return SYSTEM_MEMORY.get(vm.kind if vm.kind == "router" else vm.vm_type, 256)


def host_text(host: Host) -> str:
    """HostVO.toString (4.18+): ReflectionToStringBuilderUtils.reflectOnlySelectedFields(id, name, uuid, type)."""
    return f'Host {{"id":{host.db_id},"name":"{host.name}","type":"Routing","uuid":"{host.uuid}"}}'


class Maintenance:
    def __init__(self, hostops: HostOps) -> None:
        self.hostops = hostops
        self.sim = hostops.sim
        self.pending: dict[str, set[str]] = {}  # host uuid → uuids of its VMs with Migration work
        self.counts: dict[str, dict[str, int]] = {}  # vm uuid → migrations, stops, restarts
        self.left: dict[str, int] = {}  # host uuid → VMs left on it when it went ErrorInMaintenance
        self.failed: set[str] = set()  # uuids of VMs whose last Migration try failed (failed migrations)
        self.rounds: dict[str, int] = {}  # host uuid → its prepareHostForMaintenance count (stale retries end)

    # ------------------------------------------------------------------ VMs and capacity
    def all_vms(self) -> list[Any]:
        state = self.sim.state
        return [*state.values("uservm"), *state.values("router"), *state.values("systemvm")]

    def vms_on(self, host: Host) -> list[Any]:
        return [vm for vm in self.all_vms() if vm.host is host and vm.state != "Stopped"]

    def free_memory(self, host: Host) -> int:
        return host.memory_total // MIB - sum(memory_of(vm) for vm in self.vms_on(host))

    def count(self, vm: Any, what: str) -> None:
        self.counts.setdefault(vm.uuid, {"migrations": 0, "stops": 0, "restarts": 0})[what] += 1

    def set_vm_state(self, vm: Any, new: str) -> None:
        old = vm.state
        vm.state = new
        if old != new:
            self.sim.audit_log.record("vm.state", vm=vm.uuid, name=vm.name, state=new, **{"from": old})

    def targets(self, host: Host, memory: int = 0) -> list[Host]:
        """Up and Enabled peers of the host's cluster with room for `memory` MiB, the freest first."""
        peers = [h for h in self.hostops.hosts_of(host.cluster) if h is not host and h.state == "Up"
                 and h.resource_state == "Enabled" and not self.hostops.unreachable(h)
                 and self.free_memory(h) >= memory]
        return sorted(peers, key=lambda h: (-self.free_memory(h), h.db_id))

    def setting(self, name: str) -> float:
        return float(self.sim.state.config_value(name) or 0)

    # ------------------------------------------------------------------ prepareHostForMaintenance
    def prepare(self, ctx: JobContext, host: Host) -> None:
        def fail(text: str) -> None:
            self.sim.audit_log.record("host.maintenance.refused", host=host.uuid, name=host.name, reason=text)
            ctx.fail(INTERNAL_ERROR, text)

        current = host.resource_state
        if current in CANNOT_ATTEMPT:
            return fail(f"Host is already in state {current}. Cannot recall for maintenance until resolved.")
        if any(h is not host and h.resource_state in PREPARING for h in self.hostops.hosts_of(host.cluster)):
            return fail("There are other servers attempting migrations for maintenance. Found hosts in "
                        f"PrepareForMaintenance OR ErrorInPrepareForMaintenance STATUS in cluster "
                        f"{host.cluster.db_id}")
        on = self.vms_on(host)
        if any(vm.state == "Migrating" for vm in on):
            return fail("Host contains incoming VMs migrating. Please wait for them to complete before putting to "
                        "maintenance.")
        if any(vm.state in ("Starting", "Stopping") for vm in on):
            return fail("Host contains VMs in starting/stopping state. Please wait for them to complete before "
                        "putting to maintenance.")
        if any(vm.state in ("Error", "Unknown") for vm in on):
            return fail("Host contains VMs in error/unknown/shutdown state. Please fix errors to proceed.")
        if host.state in ("Down", "Alert", "Disconnected") or self.hostops.unreachable(host):
            return fail(f"Unable to prepare for maintenance host {host.db_id}")  # no MaintainAnswer
        if current == "Degraded":
            self.hostops.set_state(host, resource_state="Maintenance")
            return ctx.succeed({"host": responses.host(host)})
        if current not in ("Enabled", "ErrorInMaintenance"):
            return fail(f"Cannot transit resource state of {host_text(host)} to Maintenance"
                        f"No next resource state found for current state = {current} event = AdminAskMaintenance")
        self.hostops.set_state(host, resource_state="PrepareForMaintenance")
        self.left.pop(host.uuid, None)
        if not on:
            self.hostops.set_state(host, resource_state="Maintenance")
            return ctx.succeed({"host": responses.host(host)})
        if not self.targets(host):
            self.sim.scheduler.call_later(self.sim.timings.host_maintenance, lambda: self.check(host))
            return fail(f"Unable to prepare for maintenance host {host.db_id}")
        self.failed -= {vm.uuid for vm in on}
        work = self.pending.setdefault(host.uuid, set())
        round_ = self.rounds[host.uuid] = self.rounds.get(host.uuid, 0) + 1
        for vm in on:
            work.add(vm.uuid)
            self.sim.scheduler.call_later(0, lambda vm=vm: self._migrate(host, vm, 1, round_))
        ctx.succeed({"host": responses.host(host)})

    def _migrate(self, host: Host, vm: Any, attempt: int, round_: int) -> None:
        """One try of a VM's Migration work."""
        work = self.pending.get(host.uuid, set())
        if vm.uuid not in work or self.rounds.get(host.uuid) != round_:
            return  # cancelled, or work of an earlier prepareHostForMaintenance
        if vm.host is not host or vm.state != "Running":
            work.discard(vm.uuid)
            return self.check(host)
        found = self.targets(host, memory_of(vm))
        if not found:
            self.sim.audit_log.record("vm.migration.failed", vm=vm.uuid, name=vm.name, source=host.uuid,
                                      attempt=attempt, reason="Unable to find a suitable destination")
            self.failed.add(vm.uuid)
            if attempt < int(self.setting("max.retries")):
                self.sim.scheduler.call_later(self.setting("migrate.retry.interval"),
                                              lambda: self._migrate(host, vm, attempt + 1, round_))
            else:
                work.discard(vm.uuid)
            return self.check(host)
        self.failed.discard(vm.uuid)
        target = found[0]
        vm.last_host, vm.host = host, target
        self.set_vm_state(vm, "Migrating")

        def arrived() -> None:
            if vm.state == "Migrating" and vm.host is target:
                self.set_vm_state(vm, "Running")
                self.count(vm, "migrations")
                self.sim.audit_log.record("vm.migrated", vm=vm.uuid, name=vm.name, source=host.uuid,
                                          target=target.uuid)
            work.discard(vm.uuid)
            self.check(host)

        self.sim.scheduler.call_later(self.sim.timings.vm_migrate, arrived)
        self.check(host)

    def check(self, host: Host) -> None:
        """checkAndMaintain → attemptMaintain, its steps in its order."""
        if not self.sim.state.live(host) or host.resource_state not in PREPARING:
            return
        migrating_away = bool([vm for vm in self.all_vms() if vm.last_host is host and vm.state == "Migrating"])
        on = self.vms_on(host)
        active = [vm for vm in on if vm.state in ACTIVE]
        pending = bool(self.pending.get(host.uuid))
        if not migrating_away and not active:  # step 1
            self.pending.pop(host.uuid, None)
            self.hostops.set_state(host, resource_state="Maintenance")
            return
        errors = [vm for vm in on if vm.state in ("Error", "Unknown") or vm.uuid in self.failed]
        running = any(vm.state == "Running" for vm in on)
        stopping = any(vm.state == "Stopping" for vm in on)
        if (not pending and not migrating_away and running) or (not running and not migrating_away and errors):
            self.pending.pop(host.uuid, None)  # step 3: every legal operation is done, VMs are left
            self.left[host.uuid] = len(active)
            self.sim.audit_log.record("host.maintenance.failed", host=host.uuid, name=host.name, left=len(active))
            self.hostops.set_state(host, resource_state="ErrorInMaintenance")
        elif (pending or migrating_away or stopping) and errors:  # step 4: UnableToMigrate
            self.hostops.set_state(host, resource_state="ErrorInPrepareForMaintenance")
        elif host.resource_state == "ErrorInPrepareForMaintenance":  # step 5: ErrorsCorrected
            self.hostops.set_state(host, resource_state="PrepareForMaintenance")

    # ------------------------------------------------------------------ cancelHostMaintenance
    def cancel(self, ctx: JobContext, host: Host) -> None:
        if host.resource_state not in MAINTENANCE_STATES:
            ctx.fail(INTERNAL_ERROR, f"Cannot perform cancelMaintenance when resource state is "
                                     f"{host.resource_state}, hostId = {host.db_id}")
            return
        self.pending.pop(host.uuid, None)  # cancelScheduledMigrations
        self.hostops.set_state(host, resource_state="Enabled")
        ctx.succeed({"host": responses.host(host)})
