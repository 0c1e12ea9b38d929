"""What happens to machines: first boot (a fresh standalone pool, as xapi's firstboot scripts make it),
power loss, boots, reboots, xapi restarts, master changes.

- A host that boots halts its guest VMs (their domains died with it) and comes back enabled, unless it
  crashed or was fenced while HA was armed: then it comes back with enabled=false (the seeds' hosts "in
  maintenance mode" that need `xe host-enable`).
- A master that boots into a pool whose database names another master becomes that master's supporter
  (xapi.ml check_no_other_masters).
- A master change (designate, HA failover, emergency transition) restarts xapi on the new master: every
  session of the pool is gone (SESSION_INVALID; the SDK logs in again).
- Without its state DB (`remove_state_db`), xapi starts as a fresh standalone pool whose host and dom0 take
  their UUIDs from /etc/xensource-inventory (INSTALLATION_UUID, CONTROL_DOMAIN_UUID); with the DB kept but a
  new INSTALLATION_UUID, xapi does not find itself and adds a second host record (dbsync create_localhost).
- `service xapi stop` (stop_xapi): the host stays up but its XenAPI port refuses connections and its sessions
  are gone; it stops heart-beating (the master marks it dead after the liveness timeout). start_xapi brings
  it back as restart_xapi does.
- Every xapi start (boot, restart) sets the host's other_config "boot_time" (when the machine powered on:
  /proc/stat btime, the same across a mere xapi restart) and "agent_start_time" (when xapi started), seconds
  since the epoch as OCaml's string_of_float writes them (dbsync_slave.ml refresh_localhost_info); the lab's
  clock gives the times (on a ManualClock they move only when the test moves the clock).
- Every xapi start (boot, restart) reads the inventory and looks for the state DB; for a dom0 stand-in
  (dom0.py) that is the lab host's files, so edits made over SSH take effect then; with TLS it also reads
  /etc/xensource/xapi-ssl.pem, made anew (self-signed) when missing (tls.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stackops_lab.xenapi.devices import add_host_devices, add_vm_devices, remove_host_devices, remove_vm_devices
from stackops_lab.xenapi.state import (NULL_REF, HostMetricsRec, HostRec, Machine, PBDRec, PoolDB, PoolRec,
                                       SessionRec, SRRec, VMRec, new_ref, new_uuid)

if TYPE_CHECKING:
    from stackops_lab.xenapi.simulator import XenLab


def ocaml_float(value: float) -> str:
    """OCaml's string_of_float: 12 significant digits, a trailing "." when that looks like an integer
    ("1510282722."; real hosts have whole seconds, the lab keeps the fraction its short timings need)."""
    text = f"{value:.12g}"
    return text if any(c in text for c in ".eni") else text + "."


def stamp_start_times(host: HostRec, machine: Machine) -> None:
    """other_config boot_time and agent_start_time, as xapi sets them at every start."""
    host.other_config["boot_time"] = ocaml_float(machine.booted_at)
    host.other_config["agent_start_time"] = ocaml_float(machine.xapi_started_at)


def software_version(machine: Machine) -> dict[str, str]:
    inventory = machine.inventory
    return {"product_version": inventory.get("PRODUCT_VERSION", ""),
            "product_version_text": inventory.get("PRODUCT_VERSION_TEXT", inventory.get("PRODUCT_VERSION", "")),
            "product_brand": inventory.get("PRODUCT_BRAND", ""),
            "platform_name": inventory.get("PLATFORM_NAME", "XCP"),
            "platform_version": inventory.get("PLATFORM_VERSION", ""),
            "build_number": inventory.get("BUILD_NUMBER", ""),
            "hostname": machine.hostname, "xapi": "1.20", "xen": "4.13.5",
            "network_backend": machine.spec.network_backend}


class Lifecycle:
    def __init__(self, lab: XenLab) -> None:
        self.lab = lab
        self.vm_counts: dict[str, dict[str, int]] = {}  # VM uuid → {"migrations": n, "stops": n}

    def count(self, vm: VMRec, kind: str) -> None:
        """A guest VM migrated ("migrations") or stopped ("stops": shut down, hard-stopped, died with its host)."""
        if not vm.is_control_domain:
            counts = self.vm_counts.setdefault(vm.uuid, {"migrations": 0, "stops": 0})
            counts[kind] += 1

    # ----------------------------------------------------------------------------------------- databases
    def add_host_records(self, db: PoolDB, machine: Machine, live: bool = True) -> HostRec:
        """The host, its metrics, dom0 and local storage in `db` (refs are new, UUIDs from the inventory)."""
        host_ref = new_ref()
        metrics = db.add(HostMetricsRec(ref=new_ref(), uuid=new_uuid(), live=live, memory_total=machine.spec.memory))
        dom0_uuid = machine.inventory.get("CONTROL_DOMAIN_UUID") or new_uuid()
        dom0 = db.add(VMRec(ref=new_ref(), uuid=dom0_uuid, name_label=f"Control domain on host: {machine.hostname}",
                            is_control_domain=True, power_state="Running", resident_on=host_ref, domid=0))
        host = db.add(HostRec(ref=host_ref, uuid=machine.inventory["INSTALLATION_UUID"], name_label=machine.hostname,
                              hostname=machine.hostname, address=machine.address, metrics=metrics.ref,
                              control_domain=dom0.ref, software_version=software_version(machine),
                              API_version_major=machine.spec.api_version[0],
                              API_version_minor=machine.spec.api_version[1],
                              cpu_info={"vendor": machine.spec.cpu_vendor, "cpu_count": "16", "socket_count": "2"}))
        add_host_devices(db, host)
        add_vm_devices(db, dom0, machine.address)
        local = db.add(SRRec(ref=new_ref(), uuid=new_uuid(), name_label="Local storage", type="lvm", shared=False))
        db.add(PBDRec(ref=new_ref(), uuid=new_uuid(), host=host_ref, SR=local.ref,
                      device_config={"device": "/dev/sda3"}))
        host.extra.update(suspend_image_sr=local.ref, crash_dump_sr=local.ref)
        stamp_start_times(host, machine)
        return host

    def build_pool(self, machines: list[Machine], shared_srs: list[dict[str, Any]]) -> PoolDB:
        """A pool of `machines` (the first is its master) with `shared_srs`, as the lab starts it."""
        master = machines[0]
        db = self.fresh_pool(master)
        for machine in machines[1:]:
            host = self.add_host_records(db, machine)
            machine.db, machine.host_ref, machine.role, machine.master_address = db, host.ref, "slave", master.address
        for spec in shared_srs:
            self.add_shared_sr(db, spec)
        return db

    def fresh_pool(self, machine: Machine) -> PoolDB:
        """First boot: a standalone pool of one host (no guest VMs, local storage only)."""
        db = PoolDB()
        host = self.add_host_records(db, machine)
        local = next(pbd.SR for pbd in db.pbds_of_host(host.ref))
        db.add(PoolRec(ref=new_ref(), uuid=new_uuid(), master=host.ref, default_SR=local))
        machine.db, machine.host_ref, machine.role, machine.master_address = db, host.ref, "master", ""
        machine.ha_armed, machine.state_db = False, True
        if self.lab.dom0s is not None:
            self.lab.dom0s.state_db_changed(machine)
        return db

    def add_shared_sr(self, db: PoolDB, spec: dict[str, Any]) -> SRRec:
        sr = db.add(SRRec(ref=new_ref(), uuid=spec.get("uuid") or new_uuid(), name_label=spec["name_label"],
                          name_description=spec.get("name_description", ""), type=spec.get("type", "nfs"),
                          content_type=spec.get("content_type", "user"), shared=True))
        for host in db.hosts():
            self.plug_shared(db, sr, host.ref)
        if db.pool.default_SR == NULL_REF or not db.get(SRRec, db.pool.default_SR).shared:
            db.pool.default_SR = sr.ref
        return sr

    def plug_shared(self, db: PoolDB, sr: SRRec, host_ref: str) -> None:
        db.add(PBDRec(ref=new_ref(), uuid=new_uuid(), host=host_ref, SR=sr.ref,
                      device_config={"server": "192.0.2.10", "serverpath": f"/export/{sr.name_label}"}))

    def add_guest_vms(self, db: PoolDB, machine: Machine, count: int) -> None:
        """Running guest VMs; every other one (the first, third …) has ha_restart_priority "restart"."""
        for index in range(count):
            protected = index % 2 == 0
            vm = db.add(VMRec(ref=new_ref(), uuid=new_uuid(), name_label=f"{machine.name}-vm{index + 1}",
                              power_state="Running", resident_on=machine.host_ref, domid=index + 1,
                              ha_restart_priority="restart" if protected else "", ha_always_run=protected))
            add_vm_devices(db, vm, machine.address)

    def forget_host(self, db: PoolDB, host_ref: str) -> None:
        """What the master drops when a host leaves (eject): the host, metrics, PBDs, SRs only it saw, dom0."""
        host = db.get(HostRec, host_ref)
        for pbd in db.pbds_of_host(host_ref):
            db.remove(pbd)
            if not db.pbds_of_sr(pbd.SR) and (sr := db.find(SRRec, pbd.SR)) is not None:
                db.remove(sr)
        for vm in db.vms_on(host_ref):
            if vm.is_control_domain:
                remove_vm_devices(db, vm)
                db.remove(vm)
            else:
                vm.power_state, vm.resident_on, vm.domid = "Halted", NULL_REF, -1
        if (metrics := db.find(HostMetricsRec, host.metrics)) is not None:
            db.remove(metrics)
        remove_host_devices(db, host_ref)
        db.remove(host)
        db.silent_since.pop(host_ref, None)
        db.liveset.discard(host_ref)

    def clear_sessions(self, db: PoolDB | None) -> None:
        if db is not None:
            for session in db.all(SessionRec):
                db.remove(session)

    # ----------------------------------------------------------------------------------------- machines
    def power_off(self, machine: Machine) -> None:
        """The machine stops: its endpoint refuses connections, what was scheduled for it is cancelled."""
        machine.power, machine.xapi = "down", "stopped"
        machine.boot_id += 1
        machine.down_since = self.lab.clock.monotonic()
        machine.ha_joining_until = 0.0
        machine.local_sessions.clear()
        self.lab.listeners[machine.name].stop()
        db = machine.db
        if db is not None and db.pool.ha_enabled and machine.ha_armed:
            machine.crashed_with_ha = True

    def boot_later(self, machine: Machine, delay: float) -> None:
        """Power on `delay` seconds from now (the boot itself), then start xapi."""
        boot = machine.boot_id
        self.lab.scheduler.call_later(delay, lambda: self._booted(machine, boot))

    def reboot(self, machine: Machine, down_for: float, reason: str) -> None:
        self.power_off(machine)
        self.lab.audit_log.record("host.reboot", host=machine.name, reason=reason)
        self.boot_later(machine, down_for + self.lab.timings.host_boot)

    def _booted(self, machine: Machine, boot: int) -> None:
        if machine.boot_id != boot or machine.power == "up":
            return
        machine.power, machine.xapi = "up", "starting"
        machine.boot_id += 1
        machine.booted_at = self.lab.clock.time()
        machine.disabled_until_reboot = False
        self.read_certificate(machine)
        self.lab.listeners[machine.name].start()
        self.read_dom0_files(machine)
        if not machine.state_db or machine.db is None:
            self.fresh_pool(machine)
        db = machine.db
        assert db is not None
        for vm in db.vms_on(machine.host_ref):
            if not vm.is_control_domain:
                vm.power_state, vm.resident_on, vm.domid = "Halted", NULL_REF, -1
                self.count(vm, "stops")
        host = db.find(HostRec, machine.host_ref)
        if host is not None:  # /run/reboot-required.hfxs does not survive a boot (calls_update.clear_reboot_required)
            host.extra["updates_requiring_reboot"] = []
        self.lab.audit_log.record("host.booted", host=machine.name)
        if machine.ha_armed and db.pool.ha_enabled:
            timeout = self.lab.ha.timeout(db)
            machine.ha_joining_until = self.lab.clock.monotonic() + self.lab.timings.boot_join_seconds(timeout)
            return  # the HA monitor lets it join the liveset, or fences it again
        machine.ha_armed = False
        self.finish_start(machine)

    def finish_start(self, machine: Machine) -> None:
        """xapi is up: settle the pool role, enable (or not) the host."""
        db = machine.db
        assert db is not None
        machine.xapi, machine.ha_joining_until, machine.down_since = "running", 0.0, None
        machine.xapi_started_at = self.lab.clock.time()
        if machine.is_master:
            self.clear_sessions(db)
            if db.pool.master != machine.host_ref:
                current = self.lab.state.machine_of(db, db.pool.master)
                if current is not None and current.serving and current.is_master:
                    machine.role, machine.master_address = "slave", current.address
                    self.lab.audit_log.record("master.demoted", host=machine.name, master=current.name)
        host = db.find(HostRec, machine.host_ref)
        if host is not None:
            stamp_start_times(host, machine)
            host.extra.pop("current_operations", None)  # what this host was doing (a shutdown) is reset at startup
            enabled = not machine.crashed_with_ha and machine.auto_enable
            if host.enabled != enabled:
                host.enabled = enabled
                self.lab.audit_log.record("host.enabled" if enabled else "host.disabled", host=machine.name,
                                          reason="boot" if enabled else
                                          "ha-crash" if machine.crashed_with_ha else "auto_enable=false")
        machine.crashed_with_ha = False
        self.lab.ha.update_pool_status(db)

    def read_dom0_files(self, machine: Machine) -> None:
        """xapi starting reads /etc/xensource-inventory and looks for its state DB (a dom0 stand-in's files)."""
        if self.lab.dom0s is not None:
            self.lab.dom0s.load(machine, strict=False)

    def read_certificate(self, machine: Machine) -> None:
        """xapi starting serves a dom0 stand-in's xapi-ssl.pem (regenerated when missing), with TLS."""
        if self.lab.tls is not None:
            self.lab.tls.dom0_read(machine)

    def stop_xapi(self, machine: Machine, reason: str) -> None:
        """`service xapi stop`: connection refused, sessions gone, what was scheduled for xapi cancelled."""
        if machine.power != "up":
            raise ValueError(f"{machine.name} is down")
        machine.xapi, machine.ha_joining_until = "stopped", 0.0
        machine.boot_id += 1
        machine.local_sessions.clear()
        if machine.is_master:
            self.clear_sessions(machine.db)
        self.lab.listeners[machine.name].stop()
        self.lab.audit_log.record("xapi.stop", host=machine.name, reason=reason)

    def start_xapi(self, machine: Machine, delay: float, reason: str) -> None:
        """`service xapi start` of a stopped xapi: as restart_xapi (the inventory as read by the caller)."""
        self.lab.audit_log.record("xapi.start", host=machine.name, reason=reason, state_db=machine.state_db,
                                  uuid=machine.inventory.get("INSTALLATION_UUID"))
        self.restart_xapi(machine, delay, reason)

    def restart_xapi(self, machine: Machine, delay: float, reason: str) -> None:
        """`service xapi restart`: HOST_STILL_BOOTING for `delay`, sessions gone, the inventory read again."""
        if machine.power != "up":
            raise ValueError(f"{machine.name} is down")
        self.read_certificate(machine)
        self.lab.listeners[machine.name].start()  # a stopped xapi listens again
        machine.xapi = "starting"
        machine.boot_id += 1
        machine.local_sessions.clear()
        if machine.is_master:
            self.clear_sessions(machine.db)
        boot = machine.boot_id
        self.lab.audit_log.record("xapi.restart", host=machine.name, reason=reason)

        def started() -> None:
            if machine.boot_id != boot or machine.power != "up":
                return
            self.read_dom0_files(machine)
            self.reload_inventory(machine)
            self.finish_start(machine)

        self.lab.scheduler.call_later(delay, started)

    def reload_inventory(self, machine: Machine) -> None:
        if not machine.state_db or machine.db is None:
            self.fresh_pool(machine)
            self.lab.audit_log.record("xapi.fresh_database", host=machine.name,
                                      uuid=machine.inventory["INSTALLATION_UUID"])
            return
        db = machine.db
        wanted = machine.inventory["INSTALLATION_UUID"]
        host = db.find(HostRec, machine.host_ref)
        if host is None or host.uuid != wanted:
            found = next((h for h in db.hosts() if h.uuid == wanted), None)
            if found is None:
                found = self.add_host_records(db, machine)
                for sr in db.all(SRRec):
                    if sr.shared:
                        self.plug_shared(db, sr, found.ref)
            if db.pool.master == machine.host_ref:
                db.pool.master = found.ref
            machine.host_ref = found.ref
            host = found
        host.software_version = software_version(machine)
        host.hostname = machine.hostname

    def set_master(self, db: PoolDB, new_master: str, repoint: list[Machine], reason: str) -> None:
        """`new_master` becomes the pool's master; the machines in `repoint` follow it."""
        old = db.pool.master
        db.pool.master = new_master
        db.silent_since.clear()
        master = self.lab.state.machine_of(db, new_master)
        for machine in repoint:
            if machine is master:
                machine.role, machine.master_address = "master", ""
            else:
                machine.role, machine.master_address = "slave", master.address if master else ""
        self.clear_sessions(db)
        old_machine = self.lab.state.machine_of(db, old)
        self.lab.audit_log.record("master.changed", pool=db.pool.uuid, reason=reason,
                                  old=old_machine.name if old_machine else old,
                                  new=master.name if master else new_master)
