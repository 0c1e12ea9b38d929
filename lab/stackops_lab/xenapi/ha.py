"""Liveness and pool HA (xHA), driven by a periodic monitor tick on the scheduler thread.

Liveness: a host heart-beats while its xapi runs and it points at its pool's master. Without HA, the master
marks a silent host `host_metrics.live = false` after `XenTimings.liveness`; a dead master updates nothing,
and its supporters keep answering HOST_IS_SLAVE [its address] until pool.emergency_transition_to_master.

With HA armed (pool.enable_ha), a host silent for the HA timeout `t` (ha_configuration["timeout"], else
pool.other_config["default_ha_timeout"], else 60 — Xapi_ha.Timeouts.get_base_t — times
XenTimings.ha_time_scale) leaves the liveset. The survivors carry on only if they are a strict majority of
the liveset they were in; otherwise every survivor sees itself isolated and self-fences (reboots): the seeds'
two-host pool where one crash takes the other down with it. The lab applies that majority rule to every pool
size (xHA's statefile tie-break is not modelled). If the master left, the survivors elect the first live host
(in pool order) as master. VMs of a dead host are halted; protected ones ("restart", "best-effort") are
restarted on a live host.

A booting host with HA armed waits up to boot_join_timeout (`t + 60`, scaled) for a liveset: it joins a
running one, or forms one together with the other booting hosts when they are a strict majority of the pool;
otherwise it fences again — two hosts that never boot at the same time keep fencing (seeds). Hosts that
crashed or fenced with HA armed come back enabled=false. `host.emergency_ha_disable` on a booting host breaks
the loop. A booting host whose xHA daemon cannot start (faults.py: no statefile access, daemon failure) stays in
emergency mode, retrying: it neither joins nor fences. Once HA is off pool-wide, a booting host stops waiting
(the master confirms HA is off; the daemon finds the pool state invalid) unless its daemon cannot start and it is
still armed.

The failover plan (ha_compute_max_host_failures_to_tolerate, ha_plan_exists_for, ha_overcommitted) uses a
simple capacity model: each live enabled host runs up to `XenHostSpec.vm_capacity` protected VMs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stackops_lab.xenapi.faults import faults_of
from stackops_lab.xenapi.state import NULL_REF, HostRec, Machine, PoolDB, VMRec

if TYPE_CHECKING:
    from stackops_lab.xenapi.simulator import XenLab

DEFAULT_TIMEOUT = 60  # Xapi_globs.ha_default_timeout_base in current xapi


class HaMonitor:
    def __init__(self, lab: XenLab) -> None:
        self.lab = lab
        self.running = False

    # ------------------------------------------------------------------------------------------ plan
    def timeout(self, db: PoolDB) -> int:
        pool = db.pool
        raw = pool.ha_configuration.get("timeout") or pool.other_config.get("default_ha_timeout")
        try:
            return int(raw) if raw else DEFAULT_TIMEOUT
        except ValueError:
            return DEFAULT_TIMEOUT

    def protected(self, db: PoolDB) -> list[VMRec]:
        return [vm for vm in db.all(VMRec) if not vm.is_control_domain and vm.power_state == "Running"
                and vm.ha_restart_priority == "restart"]

    def max_failures(self, db: PoolDB, extra_vms: int = 0, exclude: tuple[str, ...] = ()) -> int:
        capacities = sorted(self._capacity(db, host) for host in db.hosts()
                            if db.live(host) and host.enabled and host.ref not in exclude)
        needed = len(self.protected(db)) + extra_vms
        for failures in range(len(capacities) - 1, -1, -1):
            if sum(capacities[: len(capacities) - failures]) >= needed:
                return failures
        return 0

    def _capacity(self, db: PoolDB, host: HostRec) -> int:
        machine = self.lab.state.machine_of(db, host.ref)
        return machine.spec.vm_capacity if machine else 0

    def disarm(self, db: PoolDB) -> None:
        """Xapi_ha.disable_internal: HA off pool-wide, every host that is up disarmed, no liveset."""
        pool = db.pool
        pool.ha_enabled, pool.ha_plan_exists_for, pool.ha_overcommitted = False, 0, False
        for machine in self.lab.state.members(db):
            if machine.power == "up":
                machine.ha_armed = False
        db.liveset = set()

    def update_pool_status(self, db: PoolDB) -> None:
        pool = db.pool
        if not pool.ha_enabled:
            pool.ha_plan_exists_for, pool.ha_overcommitted = 0, False
            return
        plan = min(self.max_failures(db), pool.ha_host_failures_to_tolerate)
        pool.ha_plan_exists_for = plan
        pool.ha_overcommitted = plan < pool.ha_host_failures_to_tolerate

    # ------------------------------------------------------------------------------------------ monitor
    def start(self) -> None:
        if not self.running:
            self.running = True
            self.lab.scheduler.call_later(self.lab.timings.tick, self.tick)

    def tick(self) -> None:
        if not self.running:
            return
        for db in self.lab.state.databases():
            self.check(db)
        self.lab.scheduler.call_later(self.lab.timings.tick, self.tick)

    def check(self, db: PoolDB) -> None:
        now = self.lab.scheduler.now()
        state = self.lab.state
        master = state.machine_of(db, db.pool.master)
        for host in db.hosts():
            machine = state.machine_of(db, host.ref)
            beating = machine is not None and machine.serving and (
                machine is master or (not machine.is_master and master is not None
                                      and machine.master_address == master.address))
            if beating:
                db.silent_since.pop(host.ref, None)
                if not db.live(host) and master is not None and master.serving:
                    db.metrics_of(host).live = True
                    self.lab.audit_log.record("host.alive", host=self._name(db, host))
                    self.update_pool_status(db)
            else:
                db.silent_since.setdefault(host.ref, now)
        if db.pool.ha_enabled:
            self.check_ha(db, now)
            return
        self.release_joiners(db)
        if master is not None and master.serving:
            for host in db.hosts():
                since = db.silent_since.get(host.ref)
                if since is not None and now - since >= self.lab.timings.liveness and db.live(host):
                    self.declare_dead(db, host, reason="liveness", failover=False)

    def check_ha(self, db: PoolDB, now: float) -> None:
        limit = self.lab.timings.ha_seconds(self.timeout(db))
        order = [host.ref for host in db.hosts()]
        liveset = [ref for ref in order if ref in db.liveset]
        dead = [ref for ref in liveset if self._down_for(db, ref, now) >= limit]
        if dead:
            survivors = [ref for ref in liveset if ref not in dead]
            quorate = len(survivors) * 2 > len(liveset)
            for ref in dead:
                self.declare_dead(db, db.get(HostRec, ref), reason="ha", failover=True,
                                  targets=survivors if quorate else [])
            if quorate:
                db.liveset = set(survivors)
                if db.pool.master in dead and survivors:
                    self.lab.lifecycle.set_master(db, survivors[0], self._machines(db, survivors), reason="ha")
            else:
                db.liveset = set()
                for ref in survivors:
                    if (machine := self.lab.state.machine_of(db, ref)) is not None:
                        self.fence(machine, reason="isolated")
        faults = faults_of(self.lab)
        joiners = []
        for machine in self._joiners(db):
            if faults.ha_start_error(machine) is None:
                joiners.append(machine)
            else:  # xapi retries ha_start_daemon every 10 s: neither joins nor fences
                machine.ha_joining_until = now + self.lab.timings.boot_join_seconds(self.timeout(db))
        if not joiners:
            return
        if db.liveset:
            for machine in joiners:
                db.liveset.add(machine.host_ref)
                self.lab.lifecycle.finish_start(machine)
        elif len(joiners) * 2 > len(order):
            refs = [m.host_ref for m in joiners]
            db.liveset = set(refs)
            if db.pool.master not in refs:
                self.lab.lifecycle.set_master(db, refs[0], joiners, reason="ha")
            master = next(m for m in joiners if m.host_ref == db.pool.master)
            for machine in joiners:
                machine.role, machine.master_address = ("master", "") if machine is master else \
                    ("slave", master.address)
                self.lab.lifecycle.finish_start(machine)
            self.lab.audit_log.record("ha.liveset_formed", pool=db.pool.uuid,
                                      hosts=[m.name for m in joiners])
        else:
            for machine in joiners:
                if now >= machine.ha_joining_until:
                    self.fence(machine, reason="boot-join")

    def _joiners(self, db: PoolDB) -> list[Machine]:
        return [m for m in self.lab.state.members(db) if m.power == "up" and m.xapi == "starting"
                and m.ha_joining_until > 0]

    def release_joiners(self, db: PoolDB) -> None:
        """HA is off pool-wide: booting hosts stop waiting for a liveset and start without HA (xapi_ha.ml
        on_server_restart), except one still armed whose daemon fails: it retries until emergency_ha_disable."""
        for machine in self._joiners(db):
            if machine.ha_armed and machine.name in faults_of(self.lab).ha_daemon_fails:
                continue
            machine.ha_armed = False
            self.lab.audit_log.record("ha.boot_without_ha", host=machine.name)
            self.lab.lifecycle.finish_start(machine)

    def declare_dead(self, db: PoolDB, host: HostRec, reason: str, failover: bool,
                     targets: list[str] | None = None) -> None:
        if db.live(host):
            db.metrics_of(host).live = False
        machine = self.lab.state.machine_of(db, host.ref)
        if machine is not None and machine.power == "down" and failover:
            machine.crashed_with_ha = True
        self.lab.audit_log.record("host.dead", host=self._name(db, host), reason=reason)
        if failover:
            for vm in db.vms_on(host.ref):
                if vm.is_control_domain:
                    continue
                target = next((ref for ref in targets or [] if db.get(HostRec, ref).enabled), None)
                if vm.ha_restart_priority in ("restart", "best-effort") and target is not None:
                    vm.resident_on = target
                    self.lab.audit_log.record("vm.restarted", vm=vm.name_label, uuid=vm.uuid,
                                              on=self._name(db, db.get(HostRec, target)))
                else:
                    vm.power_state, vm.resident_on, vm.domid = "Halted", NULL_REF, -1
                    self.lab.lifecycle.count(vm, "stops")
        self.update_pool_status(db)

    def fence(self, machine: Machine, reason: str) -> None:
        if machine.power != "up":
            return
        self.lab.audit_log.record("host.fenced", host=machine.name, reason=reason)
        machine.crashed_with_ha = True
        self.lab.lifecycle.reboot(machine, self.lab.timings.fence, reason="fenced")
        machine.crashed_with_ha = True

    def _down_for(self, db: PoolDB, ref: str, now: float) -> float:
        """How long the host's xHA daemon has been silent (it beats while the machine is up, xapi or not)."""
        machine = self.lab.state.machine_of(db, ref)
        if machine is None:
            return float("inf")
        if machine.power == "up" or machine.down_since is None:
            return 0.0
        return now - machine.down_since

    def _machines(self, db: PoolDB, refs: list[str]) -> list[Machine]:
        return [m for ref in refs if (m := self.lab.state.machine_of(db, ref)) is not None]

    def _name(self, db: PoolDB, host: HostRec) -> str:
        machine = self.lab.state.machine_of(db, host.ref)
        return machine.name if machine else host.name_label
