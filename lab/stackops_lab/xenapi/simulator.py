"""XenLab: a protocol-level simulator of XenServer pools (XenAPI over XML-RPC) for the lab and tests.

    with XenLab(hosts=[XenHostSpec("xen1"), XenHostSpec("xen2"), XenHostSpec("xen3")],
                pools=[["xen1", "xen2"]]) as lab:
        session = XenAPI.Session(lab.url("xen1"))
        session.xenapi.login_with_password("root", lab.password)

Every host has its own endpoint (bind="loopback": host i listens on 127.0.1.<10+i>, all on one port, so the
address in HOST_IS_SLAVE [address] is enough to reconnect; bind="<an IPv4 address>": host i listens on that address
plus i, addresses the caller made the machine's, e.g. on the lab's bridge where Pods reach them). Hosts listed in a `pools` entry form one pool (the
first is its master) with the `shared_srs`; hosts not listed are standalone pools with local storage only
(joinable: a joiner must not have shared SRs). Each host runs `vms_per_host` guest VMs (XenHostSpec.vms
overrides it), every other one with ha_restart_priority "restart".

Records are complete: every class of xapi's datamodel the pool has (datamodel.json: pool, host, host_metrics,
host_cpu, SR, PBD, VDI, VBD, VM, VM_metrics, VM_guest_metrics, network, PIF, PIF_metrics, VIF, console, task,
session, SDN_controller, message …) answers get_record / get_all_records with all of its fields; each host has
16 CPUs and NICs eth0 (management) and eth1 on the pool-wide networks xenbr0 / xenbr1, each VM its metrics and
console, each guest a 20 GiB disk on the pool's default SR, an empty CD drive, a VIF on xenbr0 and guest metrics
(devices.py); what the lab does not model takes the datamodel's defaults (classes.py). Beyond the generated field
calls it serves the messages clients drive a pool with: VM.start / start_on / clean_shutdown / hard_shutdown /
clean_reboot / hard_reboot / clone / destroy (calls_vm.py, calls_host.py), VBD and VIF plug / unplug / destroy and CD
insert / eject (calls_devices.py), task.create / cancel / destroy (calls_task.py), event.from with the
deprecated event.register / next (events.py), and host maintenance: host.disable / enable (calls_host.py),
host.assert_can_evacuate / get_vms_which_prevent_evacuation / evacuate / reboot / shutdown / compute_free_memory and
VM.pool_migrate (calls_maintenance.py), with VMs that move and host memory accounted; `vm_counts()` says how often
each VM migrated and stopped.
XenServer updates: uploads over HTTP PUT /import_raw_vdi and pool_update.introduce / precheck / apply / pool_apply /
pool_clean / destroy (calls_update.py), the pool_patch API with PUT /pool_patch_upload — 6.x's own on a pool whose
product_version is before 7.1, today's over pool_update otherwise (calls_patch.py) — taking the lab's update files
(update_file.py: UpdateFile builds them, UpdateServer serves them by URL and SHA-256).

With `dom0s={name: LabHost, …}` (every host or none; needs root) each host stands in a KVM lab host
(stackops_lab.hosts) for its dom0 instead (dom0.py): its XenAPI is served at the lab host's address, from a
socket inside the lab host's network namespace (all on one port, 80 unless `port` says otherwise, 443 with TLS),
and the lab host has the dom0's /etc/xensource-inventory, /var/lib/xcp/state.db and a `service xapi
stop|start|restart|status` that stops and starts this host's xapi. The files and the lab's methods
(write_inventory, remove_state_db, clone, inventory, restart_xapi) always agree.

With `tls=True` (or a LabCA to share) every endpoint speaks HTTPS with a certificate of the lab CA (tls.py);
`lab.ca_pem` is what clients verify with, `replace_certificate` gives a host another certificate.

The lab binds its ports when constructed, serves once started, and drives every time-based transition from
one scheduler thread under one lock.
"""

from __future__ import annotations

import copy
import ipaddress
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

# The call modules register the XenAPI calls when imported.
from stackops_lab.xenapi import (calls_devices, calls_host, calls_maintenance, calls_membership, calls_patch,
                                 calls_pool, calls_session, calls_task, calls_update, calls_vm, events)
from stackops_lab.audit import AuditLog
from stackops_lab.xenapi.dispatch import Dispatcher
from stackops_lab.xenapi.dom0 import Dom0s, check_dom0s, format_inventory, new_inventory
from stackops_lab.xenapi.ha import HaMonitor
from stackops_lab.xenapi.lifecycle import Lifecycle
from stackops_lab.clock import Clock
from stackops_lab.xenapi.server import Listener
from stackops_lab.xenapi.state import HostRec, LabState, Machine, PoolDB, SDNControllerRec, SRRec, VMRec
from stackops_lab.xenapi.timings import XenTimings
from stackops_lab.xenapi.tls import LabCA, LabTLS

if TYPE_CHECKING:
    from stackops_lab.hosts import LabHost

CALL_MODULES = (calls_devices, calls_host, calls_maintenance, calls_membership, calls_patch, calls_pool, calls_session,
                calls_task, calls_update, calls_vm, events)
DEFAULT_SHARED_SRS: tuple[dict[str, Any], ...] = ({"name_label": "nfs-pri", "type": "nfs"},)


@dataclass
class XenHostSpec:
    name: str
    product_version: str = "8.2.1"
    platform_version: str = "3.2.1"
    build_number: str = "release/yangtze/master/58"
    product_brand: str = "XenServer"
    network_backend: str = "openvswitch"  # or "bridge": no vswitch controller possible
    cpu_vendor: str = "GenuineIntel"
    api_version: tuple[int, int] = (2, 21)
    vms: int | None = None  # running guest VMs; None: the lab's vms_per_host
    vm_capacity: int = 8  # protected VMs the host can run (HA planning)
    ha_licensed: bool = True
    memory: int = 256 * 1024 ** 3  # host_metrics.memory_total (bytes)


class XenLab:
    def __init__(self, hosts: list[XenHostSpec] | None = None, pools: list[list[str]] | None = None,
                 username: str = "root", password: str = "xenroot", timings: XenTimings | None = None,
                 shared_srs: list[dict[str, Any]] | None = None, vms_per_host: int = 2, bind: str = "loopback",
                 port: int | None = None, dom0s: dict[str, LabHost] | None = None, tls: bool | LabCA = False,
                 clock: Clock | None = None) -> None:
        first = ipaddress.IPv4Address("127.0.1.10" if bind == "loopback" else bind)  # ValueError if not an address
        specs = hosts if hosts is not None else [XenHostSpec(f"xen{i + 1}") for i in range(3)]
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names) or not names:
            raise ValueError("host names must be unique and at least one host is needed")
        if dom0s is not None:
            check_dom0s(names, dom0s)
        self.username, self.password = username, password
        self.timings = timings or XenTimings()
        self.state = LabState()
        self.clock = clock or Clock()
        self.audit_log = AuditLog(self.clock)
        self.scheduler = events.ChangeScheduler(self.state.lock, "xenapi-sim-scheduler", self.clock,
                                                changed=lambda: self.dispatcher.changed())
        self.lifecycle = Lifecycle(self)
        self.ha = HaMonitor(self)
        self.dispatcher = Dispatcher(self)
        self.running = False
        self.listeners: dict[str, Listener] = {}
        self.dom0s: Dom0s | None = None
        started = self.clock.time()  # the hosts are up, xapi running, when the lab is made
        for index, spec in enumerate(specs):
            self.state.machines[spec.name] = Machine(
                name=spec.name, index=index, address=dom0s[spec.name].address if dom0s else str(first + index),
                spec=spec, hostname=spec.name, inventory=new_inventory(spec), booted_at=started,
                xapi_started_at=started)
        listed: set[str] = set()
        with self.state.lock:
            for members in pools or []:
                unknown = [name for name in members if name not in self.state.machines or name in listed]
                if unknown or not members:
                    raise ValueError(f"pool {members}: unknown or repeated hosts {unknown}")
                listed.update(members)
                self.lifecycle.build_pool([self.state.machines[name] for name in members],
                                          list(DEFAULT_SHARED_SRS if shared_srs is None else shared_srs))
            for machine in self.state.machines.values():
                if machine.name not in listed:
                    self.lifecycle.build_pool([machine], [])
            for machine in self.state.machines.values():
                assert machine.db is not None
                count = vms_per_host if machine.spec.vms is None else machine.spec.vms
                self.lifecycle.add_guest_vms(machine.db, machine, count)
        self.tls = LabTLS(self, tls if isinstance(tls, LabCA) else LabCA()) if tls else None  # a certificate each
        self.port = port if port is not None else (443 if tls else 80) if dom0s else 0
        try:
            for machine in self.state.machines.values():
                listener = Listener(self, machine, self.port, dom0s[machine.name].netns_path if dom0s else None)
                self.listeners[machine.name] = listener
                self.port = listener.bind()
            if dom0s:
                self.dom0s = Dom0s(self, dom0s)
                self.dom0s.bind()
        except OSError:
            self.stop()
            raise
        self.audit_log.record("lab.created", hosts=names, port=self.port)

    # ---------------------------------------------------------------------------------------- lifecycle
    def start(self) -> XenLab:
        if not self.running:
            if self.dom0s is not None:
                with self.state.lock:
                    self.dom0s.start()  # the dom0s' files as the lab knows them, `service xapi` answering
            self.running = True
            self.scheduler.start()
            with self.state.lock:
                for machine in self.state.machines.values():
                    if machine.power == "up":
                        self.listeners[machine.name].start()
                self.ha.start()
        return self

    def stop(self) -> None:
        with self.state.lock:
            self.running = False
            self.ha.running = False
        self.scheduler.stop()
        self.dispatcher.wake_all()
        for listener in self.listeners.values():
            listener.stop()
        if self.dom0s is not None:
            self.dom0s.stop()

    def __enter__(self) -> XenLab:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    # ---------------------------------------------------------------------------------------- addresses
    @property
    def hosts(self) -> list[str]:
        return list(self.state.machines)

    def address(self, name: str) -> str:
        return self.state.machine(name).address

    def url(self, name: str) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address(name)}:{self.port}"

    @property
    def ca_pem(self) -> str | None:
        """The lab CA's certificate (PEM) that signed the hosts' certificates; None without TLS."""
        return self.tls.ca.pem if self.tls is not None else None

    def name_of(self, address: str) -> str:
        machine = self.state.by_address(address)
        if machine is None:
            raise KeyError(f"no lab host at {address}")
        return machine.name

    # ---------------------------------------------------------------------------------------- knobs
    def kill(self, name: str) -> None:
        """The host dies (power loss): connection refused; the pool notices after the liveness/HA timeout."""
        with self.state.lock:
            machine = self.state.machine(name)
            if machine.power == "up":
                self.lifecycle.power_off(machine)
            else:
                machine.boot_id += 1  # already down (rebooting, fenced): it stays down until revived
            self.audit_log.record("host.killed", host=name)

    def revive(self, name: str) -> None:
        """The host boots again (XenTimings.host_boot): back enabled, or enabled=false after a crash with HA."""
        with self.state.lock:
            machine = self.state.machine(name)
            if machine.power == "up":
                raise ValueError(f"{name} is running")
            machine.boot_id += 1  # cancels a pending boot (a fenced host's) in favour of this one
            self.audit_log.record("host.revived", host=name)
            self.lifecycle.boot_later(machine, self.timings.host_boot)

    def restart_xapi(self, name: str) -> None:
        """`service xapi stop; service xapi start`: the inventory is read again; without a state DB the host
        comes up as a fresh standalone pool with the inventory's UUIDs. A dom0's malformed inventory: ValueError."""
        with self.state.lock:
            machine = self.state.machine(name)
            if self.dom0s is not None:
                self.dom0s.load(machine, strict=True)
            self.lifecycle.restart_xapi(machine, self.timings.xapi_restart, reason="lab")

    def stop_xapi(self, name: str) -> None:
        """`service xapi stop`: the host stays up, its XenAPI refuses connections until restart_xapi."""
        with self.state.lock:
            self.lifecycle.stop_xapi(self.state.machine(name), reason="lab")

    def remove_state_db(self, name: str) -> None:
        """`rm /var/lib/xcp/state.db` (takes effect when xapi next starts)."""
        with self.state.lock:
            machine = self.state.machine(name)
            machine.state_db = False
            if self.dom0s is not None:
                self.dom0s.state_db_changed(machine)
            self.audit_log.record("host.state_db_removed", host=name)

    def inventory(self, name: str) -> dict[str, str]:
        """/etc/xensource-inventory (a dom0's: the file in its lab host; ValueError if malformed)."""
        with self.state.lock:
            machine = self.state.machine(name)
            return self.dom0s.inventory(machine) if self.dom0s is not None else dict(machine.inventory)

    def write_inventory(self, name: str, inventory: dict[str, str]) -> None:
        """Replace /etc/xensource-inventory (read by xapi when it next starts)."""
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in inventory.items()):
            raise ValueError("the inventory maps strings to strings")
        if "INSTALLATION_UUID" not in inventory:
            raise ValueError("INSTALLATION_UUID is required")
        if self.dom0s is not None:
            format_inventory(inventory)  # ValueError if not writable as KEY='value' lines
        with self.state.lock:
            machine = self.state.machine(name)
            machine.inventory = dict(inventory)
            if self.dom0s is not None:
                self.dom0s.inventory_written(machine)
            self.audit_log.record("host.inventory_written", host=name, uuid=inventory["INSTALLATION_UUID"])

    def set_inventory_uuid(self, name: str, uuid: str) -> None:
        with self.state.lock:
            inventory = self.inventory(name)
            inventory["INSTALLATION_UUID"] = uuid
            self.write_inventory(name, inventory)

    def clone(self, name: str, from_host: str) -> None:
        """Make `name` a clone of standalone host `from_host` (a VM template copy): same INSTALLATION_UUID,
        CONTROL_DOMAIN_UUID and hostname (hence name_label). `name` must be standalone; it comes back as a
        fresh standalone pool, no guest VMs."""
        with self.state.lock:
            machine, source = self.state.machine(name), self.state.machine(from_host)
            if machine.db is None or len(machine.db.hosts()) > 1:
                raise ValueError(f"{name} must be a standalone host to become a clone")
            machine.inventory = self.inventory(from_host)
            if self.dom0s is not None:
                self.dom0s.inventory_written(machine)
            if self.tls is not None:  # the copied disk has the source's xapi-ssl.pem: its name, its address
                self.tls.cloned(machine, source)
            machine.hostname = source.hostname
            self.lifecycle.clear_sessions(machine.db)
            machine.local_sessions.clear()
            self.lifecycle.fresh_pool(machine)
            self.audit_log.record("host.cloned", host=name, source=from_host,
                                  uuid=machine.inventory["INSTALLATION_UUID"])

    def replace_certificate(self, name: str, *, self_signed: bool = False, wrong_address: bool = False,
                            ca: LabCA | None = None) -> str:
        """Serve another certificate from now on (tls.LabTLS.replace); its PEM. Without options: the lab CA's."""
        if self.tls is None:
            raise ValueError("the lab has no TLS")
        return self.tls.replace(name, self_signed=self_signed, wrong_address=wrong_address, ca=ca)

    def set_disabled_until_reboot(self, name: str, value: bool = True) -> None:
        with self.state.lock:
            self.state.machine(name).disabled_until_reboot = value

    def halt_vms(self, name: str) -> None:
        """Halt the guest VMs resident on the host (what `xe vm-shutdown` for each would do)."""
        with self.state.lock:
            machine = self.state.machine(name)
            if machine.db is None:
                return
            for vm in machine.db.vms_on(machine.host_ref):
                if not vm.is_control_domain:
                    vm.power_state, vm.resident_on, vm.domid, vm.ha_always_run = "Halted", "OpaqueRef:NULL", -1, False
                    self.lifecycle.count(vm, "stops")
            self.ha.update_pool_status(machine.db)

    def expire_sessions(self) -> None:
        """Every session becomes invalid (SESSION_INVALID on next use), as after xapi's session timeout."""
        with self.state.lock:
            for db in self.state.databases():
                self.lifecycle.clear_sessions(db)
            for machine in self.state.machines.values():
                machine.local_sessions.clear()

    # ---------------------------------------------------------------------------------------- views
    def audit(self) -> list[dict[str, Any]]:
        return self.audit_log.snapshot()

    def vm_counts(self) -> dict[str, dict[str, int]]:
        """Per guest VM (by name_label): how often it migrated and stopped since the lab started; VMs that did
        neither are listed with zeros. What an e2e test asserts "no VM ever stopped" and "migrations per VM" on."""
        with self.state.lock:
            counts: dict[str, dict[str, int]] = {}
            for db in self.state.databases():
                for vm in db.all(VMRec):
                    if not vm.is_control_domain and not vm.is_a_template:
                        counts[vm.name_label] = dict(self.lifecycle.vm_counts.get(
                            vm.uuid, {"migrations": 0, "stops": 0}))
            return counts

    def waiting_calls(self) -> list[float]:
        """On a ManualClock: when (lab clock, monotonic) each call now waiting on the clock goes on — a Slow call's
        end, a retry's next look —, earliest first. Such a call waits until a test advances the clock that far."""
        with self.state.lock:
            return sorted(self.dispatcher.waits.values())

    def wait_for(self, predicate: Any, timeout: float = 10.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.02)

    def pool_of(self, name: str) -> dict[str, Any]:
        """A snapshot of the pool database the host's xapi uses (as the host believes it)."""
        with self.state.lock:
            machine = self.state.machine(name)
            db = machine.db
            if db is None:
                return {"uuid": None, "master": None, "members": [], "standalone": True}
            pool = db.pool
            names = {host.ref: self._host_name(db, host) for host in db.hosts()}
            controllers = [{"protocol": c.protocol, "address": c.address, "port": c.port}
                           for c in db.all(SDNControllerRec)]
            return copy.deepcopy({
                "uuid": pool.uuid, "master": names.get(pool.master), "members": list(names.values()),
                "master_address": db.get(HostRec, pool.master).address if pool.master in names else None,
                "role": machine.role, "my_master_address": machine.master_address,
                "live": {names[h.ref]: db.live(h) for h in db.hosts()},
                "enabled": {names[h.ref]: h.enabled for h in db.hosts()},
                "uuids": {names[h.ref]: h.uuid for h in db.hosts()},
                "ha_enabled": pool.ha_enabled, "ha_configuration": dict(pool.ha_configuration),
                "ha_statefiles": list(pool.ha_statefiles),
                "ha_host_failures_to_tolerate": pool.ha_host_failures_to_tolerate,
                "ha_plan_exists_for": pool.ha_plan_exists_for, "ha_allow_overcommit": pool.ha_allow_overcommit,
                "ha_armed": {m.name: m.ha_armed for m in self.state.members(db)},
                "vswitch_controller": pool.vswitch_controller, "sdn_controllers": controllers,
                "shared_srs": [sr.name_label for sr in db.all(SRRec) if sr.shared],
                "vms": {vm.name_label: {"power_state": vm.power_state, "resident_on": names.get(vm.resident_on),
                                        "ha_restart_priority": vm.ha_restart_priority}
                        for vm in db.all(VMRec) if not vm.is_control_domain},
            })

    def _host_name(self, db: PoolDB, host: HostRec) -> str:
        machine = self.state.machine_of(db, host.ref)
        if machine is None:
            machine = self.state.by_address(host.address)
        return machine.name if machine is not None else host.name_label

    def status(self, name: str) -> dict[str, Any]:
        """The machine itself: power, xapi state, role, HA arming."""
        with self.state.lock:
            m = self.state.machine(name)
            return {"power": m.power, "xapi": m.xapi, "role": m.role, "master_address": m.master_address,
                    "ha_armed": m.ha_armed, "serving": m.serving, "address": m.address}
