"""CloudStackSimulator: a protocol-level simulator of a CloudStack management server for the lab.

    with CloudStackSimulator(fleet=Fleet(routers=20), timings=Timings(router_reboot=0.2)) as sim:
        api = CloudStack(sim.endpoint, sim.api_key, sim.secret_key)
        api.listZones()

It binds its port when constructed (port 0 picks a free one), serves once started, and drives every
time-based transition from one scheduler thread.
"""

from __future__ import annotations

import collections
import secrets
import threading
from types import TracebackType
from typing import Any

from stackops_lab.cloudstack import catalog, images
# The command modules register the API commands when imported.
from stackops_lab.cloudstack import (commands_account_admin, commands_accounts, commands_clusters,
                                     commands_host_admin, commands_host_lifecycle, commands_hosts,
                                     commands_hypervisor_caps, commands_infra, commands_misc, commands_routers,
                                     commands_systemvms, commands_template_admin, commands_templates,
                                     commands_vm_lifecycle, commands_vms)
from stackops_lab.cloudstack.api import Api
from stackops_lab.audit import AuditLog
from stackops_lab.cloudstack.downloads import TemplateOps
from stackops_lab.cloudstack.faults import FaultDice, Faults
from stackops_lab.cloudstack.fleet import Fleet, FleetBuilder
from stackops_lab.cloudstack.hostops import HostOps
from stackops_lab.cloudstack.jobs import Jobs
from stackops_lab.clock import Clock
from stackops_lab.scheduler import Scheduler
from stackops_lab.cloudstack.routers import RouterOps
from stackops_lab.cloudstack.server import API_PATH, SimulatorServer
from stackops_lab.cloudstack.state import Host, State, UserVm
from stackops_lab.cloudstack.systemvms import SystemVmOps
from stackops_lab.cloudstack.timings import Timings

COMMAND_MODULES = (commands_account_admin, commands_accounts, commands_clusters, commands_host_admin,
                   commands_host_lifecycle, commands_hosts, commands_hypervisor_caps, commands_infra, commands_misc,
                   commands_routers, commands_systemvms, commands_template_admin, commands_templates,
                   commands_vm_lifecycle, commands_vms)
HOST_STATES = ("Up", "Down", "Disconnected", "Alert", "Connecting")
ACCESS_LOG_LINES = 100_000


def new_key() -> str:
    """An 86-character key, like the keys CloudStack generates (Base64 URL-safe of 64 random bytes)."""
    return secrets.token_urlsafe(64)[:86]


class CloudStackSimulator:
    def __init__(self, fleet: Fleet | None = None, timings: Timings | None = None, faults: Faults | None = None,
                 host: str = "127.0.0.1", port: int = 0, ssh_key_path: str | None = None,
                 api_key: str | None = None, secret_key: str | None = None, clock: Clock | None = None,
                 version: str = catalog.CLOUDSTACK_VERSION) -> None:
        self.version = version
        """The management server's version: what listCapabilities reports; parameters newer than it are ignored,
        as that version's CloudStack ignores parameters it does not know. Tests may change it."""
        self.access: collections.deque[str] = collections.deque(maxlen=ACCESS_LOG_LINES)
        self.fleet = fleet or Fleet()
        self.timings = timings or Timings()
        self._faults = faults or Faults()
        self.dice = FaultDice(self._faults)
        self.ssh_key_path = str(ssh_key_path) if ssh_key_path else None
        self.api_key = api_key or new_key()
        self.secret_key = secret_key or new_key()
        self.state = State()
        self.clock = clock or Clock()
        self.audit_log = AuditLog(self.clock)
        self.scheduler = Scheduler(self.state.lock, "cloudstack-sim-scheduler", self.clock)
        self.jobs = Jobs(self.state, self.scheduler, self.audit_log, self.timings, self.dice)
        self.routers = RouterOps(self)
        self.system_vms = SystemVmOps(self)
        self.hostops = HostOps(self)
        self.templates = TemplateOps(self)
        self.api = Api(self)
        self.server = SimulatorServer((host, port), self)
        bound_host, bound_port = self.server.server_address[:2]
        shown = "127.0.0.1" if bound_host in ("0.0.0.0", "") else bound_host
        self.base_url = f"http://{shown}:{bound_port}"
        self.port = bound_port
        self._thread: threading.Thread | None = None
        with self.state.lock:
            FleetBuilder(self.state, self.fleet, self.image_url, self.api_key, self.secret_key).build()
        self.audit_log.record("simulator.created", routers=len(self.state.tables["router"]),
                              zones=len(self.state.tables["zone"]), endpoint=self.endpoint)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> CloudStackSimulator:
        if self._thread is None:
            self.scheduler.start()
            self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                            name="cloudstack-sim-http", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server.server_close()
        self.scheduler.stop()
        self.hostops.availability.close()

    def __enter__(self) -> CloudStackSimulator:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ what tests and tools use
    @property
    def endpoint(self) -> str:
        return self.base_url + API_PATH

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults
        self.dice.faults = faults

    def audit(self) -> list[dict[str, Any]]:
        return self.audit_log.snapshot()

    def access_log(self) -> list[str]:
        """The last request lines (`GET /client/api?command=… HTTP/1.1 200`), as an access log has them."""
        return list(self.access)

    def image_url(self, hypervisor: str, version: str) -> str:
        return f"{self.base_url}/images/{images.file_name(hypervisor, version)}"

    def image_checksum(self, hypervisor: str, version: str, algorithm: str = "SHA-512") -> str:
        return images.checksum(images.image_bytes(images.file_name(hypervisor, version)), algorithm)

    def _host(self, host_id: str) -> Host:
        host = self.state.table("host").get(host_id)
        if host is None:
            raise KeyError(f"no host {host_id}")
        return host

    def add_user_vm(self, host_id: str, name: str, memory: int = 1024, ha: bool = False,
                    state: str = "Running") -> str:
        """Test knob: a user VM (`memory` MiB, HA-enabled offering or not) placed on a host (a Stopped one has the
        host as its last host only, as in CloudStack); its uuid."""
        with self.state.lock:
            host = self._host(host_id)
            assert host.cluster is not None
            vm = self.state.add(UserVm(uuid=self.state.new_uuid(), db_id=self.state.next_id("vm"), name=name,
                                       display_name=name, zone=host.cluster.zone, state=state,
                                       host=None if state == "Stopped" else host, last_host=host,
                                       memory=memory, ha_enable=ha, account=self.state.admin,
                                       hypervisor=host.hypervisor, created=self.clock.time()))
            self.audit_log.record("vm.created", vm=vm.uuid, name=name, host=host.uuid, memory=memory, ha=ha)
            return vm.uuid

    def vm_counts(self) -> dict[str, dict[str, int]]:
        """How often each VM (by uuid) was migrated, stopped and restarted since the simulator started."""
        with self.state.lock:
            return {uuid: dict(counts) for uuid, counts in self.hostops.maintenance.counts.items()}

    def host_unreachable(self, host_id: str, seconds: float) -> None:
        """Test knob: the host's hypervisor stops answering for `seconds` of the simulator's time (a reboot)."""
        with self.state.lock:
            self.hostops.availability.lose(self._host(host_id), seconds)

    def set_host_state(self, host_id: str, state: str) -> None:
        """Test knob: the host's agent status (Up, Disconnected, Alert, Down, Connecting)."""
        if state not in HOST_STATES:
            raise ValueError(f"unknown host state {state!r}; known: {', '.join(HOST_STATES)}")
        with self.state.lock:
            host = self.state.table("host").get(host_id)
            if host is None:
                raise KeyError(f"no host {host_id}")
            self.hostops.set_state(host, state=state)
