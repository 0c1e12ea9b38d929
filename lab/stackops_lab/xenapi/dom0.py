"""XenServer dom0 stand-ins: KVM lab hosts (stackops_lab.hosts) standing for XenServer hosts' dom0 over SSH.

`XenLab(..., dom0s={"xen1": lab_host, …})` serves each host's XenAPI at its lab host's address, from a
socket bound inside the lab host's network namespace (server.netns_socket), and keeps in the lab host what a
dom0 keeps on disk:

- `/etc/xensource-inventory` (`KEY='value'` lines): written when the lab starts and by every XenLab method
  that changes it (write_inventory, set_inventory_uuid, clone); xapi reads it at every start, so an edit made
  over SSH is what xapi takes at the next `service xapi start` (or lab.restart_xapi / a boot).
- `/var/lib/xcp/state.db`, xapi's state DB (a stand-in: the pool database itself stays in the simulator):
  present while Machine.state_db is; removed by remove_state_db; deleting it over SSH has the same effect at
  the next xapi start (a fresh standalone pool whose host UUID is the inventory's INSTALLATION_UUID), and xapi
  creates it again when it starts without one.
- `service xapi stop|start|restart|status` (the lab's systemctl shim, hostfiles.py, runs `stackops-lab-xapi`):
  it talks to this host's control endpoint, an HTTP server the lab binds on 127.0.0.1 inside the same network
  namespace (so only that host reaches it and the lab knows which host calls), its address in
  `/etc/stackops-lab/xapi-control`. `stop`: the host's XenAPI port refuses connections, sessions are gone.
  `start` sends the inventory file's text and whether the state DB exists; a malformed inventory (a line that
  is not KEY='value', INSTALLATION_UUID missing or not a UUID) fails the start (HTTP 400, the shim prints the
  reason and exits 1) and xapi stays stopped; otherwise xapi starts as Lifecycle.restart_xapi does and the
  answer comes once it serves (systemd's xapi.service is Type=notify: `start` returns when xapi is ready).
- `/etc/xensource/xapi-ssl.pem` with TLS: the host's key and certificate, read when xapi starts (tls.py).
- network partitions: `lab.dom0s.cut_off(name, addresses)` cuts those addresses (e.g. the machine's, where the
  operator runs) from that host only, at the network (iptables in the lab host); `reconnect(name)` ends it.
  The XenAPI simulator's own pool (which supporter follows which master) does not see it: a partition between
  the hosts themselves is not modelled.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid as uuidlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackops_lab.xenapi.server import adopt_socket, netns_socket
from stackops_lab.xenapi.state import Machine, new_uuid

if TYPE_CHECKING:
    from stackops_lab.hosts import LabHost
    from stackops_lab.xenapi.simulator import XenHostSpec, XenLab

log = logging.getLogger(__name__)
INVENTORY_PATH = "/etc/xensource-inventory"
STATE_DB_PATH = "/var/lib/xcp/state.db"
CONTROL_PATH = "/etc/stackops-lab/xapi-control"
START_TIMEOUT = 60.0  # how long `service xapi start` waits for xapi to serve
LINE = re.compile(r"""([A-Za-z_][A-Za-z0-9_]*)=(?:'([^'\n]*)'|"([^"\n]*)"|([^'"\s]*))""")  # also "value" or bare
STATE_DB = """<?xml version="1.0" encoding="UTF-8"?>
<!-- stackops lab: xapi's state DB stand-in; the pool database itself is kept by the lab's XenAPI simulator -->
<database><manifest><pair key="schema_major_vsn" value="5"/><pair key="schema_minor_vsn" value="786"/></manifest>
</database>
"""


def new_inventory(spec: XenHostSpec) -> dict[str, str]:
    """/etc/xensource-inventory of a fresh install of `spec` (new INSTALLATION_UUID and CONTROL_DOMAIN_UUID)."""
    return {"PRODUCT_BRAND": spec.product_brand, "PRODUCT_NAME": "xenenterprise",
            "PRODUCT_VERSION": spec.product_version, "PRODUCT_VERSION_TEXT": spec.product_version,
            "PLATFORM_NAME": "XCP", "PLATFORM_VERSION": spec.platform_version, "BUILD_NUMBER": spec.build_number,
            "INSTALLATION_UUID": new_uuid(), "CONTROL_DOMAIN_UUID": new_uuid(),
            "MANAGEMENT_INTERFACE": "xenbr0", "MANAGEMENT_ADDRESS_TYPE": "IPv4", "PRIMARY_DISK": "/dev/sda",
            "BACKUP_PARTITION": "/dev/sda2", "DOM0_MEM": "4096", "DOM0_VCPUS": "4"}


def format_inventory(inventory: dict[str, str]) -> str:
    bad = [key for key, value in inventory.items() if not LINE.fullmatch(f"{key}='{value}'")]
    if bad:
        raise ValueError(f"inventory entries {bad} cannot be written as KEY='value' lines")
    return "".join(f"{key}='{value}'\n" for key, value in inventory.items())


def parse_inventory(text: str) -> dict[str, str]:
    """The inventory in `text`, validated as xapi needs it; ValueError says what is wrong."""
    inventory: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = LINE.fullmatch(line.strip())
        if match is None:
            raise ValueError(f"{INVENTORY_PATH}: line {number} is not KEY='value': {line[:80]!r}")
        key, *values = match.groups()
        inventory[key] = next(value for value in values if value is not None)
    if "INSTALLATION_UUID" not in inventory:
        raise ValueError(f"{INVENTORY_PATH}: INSTALLATION_UUID is missing")
    for key in ("INSTALLATION_UUID", "CONTROL_DOMAIN_UUID"):  # without CONTROL_DOMAIN_UUID dom0 gets a new one
        if key in inventory and not is_uuid(inventory[key]):
            raise ValueError(f"{INVENTORY_PATH}: {key} {inventory[key]!r} is not a UUID")
    return inventory


def is_uuid(text: str) -> bool:
    try:
        return str(uuidlib.UUID(text)) == text.lower()
    except ValueError:
        return False


def check_dom0s(names: list[str], dom0s: dict[str, LabHost]) -> None:
    if set(dom0s) != set(names):
        raise ValueError(f"dom0s: every host needs a lab host or none does (hosts {names}, dom0s {sorted(dom0s)})")
    addresses = [host.address for host in dom0s.values()]
    if len(set(addresses)) != len(addresses):
        raise ValueError("dom0s: two hosts on one lab host")


class Dom0:
    """One host's dom0 stand-in: its lab host's files and the control endpoint of `service xapi`."""

    def __init__(self, lab: XenLab, machine: Machine, host: LabHost) -> None:
        self.lab, self.machine, self.host = lab, machine, host
        self.control: ControlServer | None = None
        self.thread: threading.Thread | None = None

    def path(self, inside: str) -> Path:
        """A path of the lab host's own file tree (its mount namespace, through its init's root)."""
        return Path(f"/proc/{self.host.init_pid}/root") / inside.lstrip("/")

    # ------------------------------------------------------------------------------------------- files
    def write_inventory(self) -> None:
        write_file(self.path(INVENTORY_PATH), format_inventory(self.machine.inventory))

    def read_inventory(self) -> dict[str, str]:
        return parse_inventory(self.path(INVENTORY_PATH).read_text())

    def state_db_exists(self) -> bool:
        return self.path(STATE_DB_PATH).exists()

    def sync_state_db(self) -> None:
        if self.machine.state_db:
            write_file(self.path(STATE_DB_PATH), STATE_DB)
        else:
            self.path(STATE_DB_PATH).unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------------- control
    def bind(self) -> None:
        if self.control is None:
            self.control = ControlServer(self, netns_socket(self.host.netns_path, "127.0.0.1", 0, 16))

    def start(self) -> None:
        """The dom0's files as the lab knows them, and `service xapi` answering."""
        self.bind()
        assert self.control is not None
        self.write_inventory()
        self.sync_state_db()
        write_file(self.path(CONTROL_PATH), f"127.0.0.1:{self.control.server_address[1]}\n")
        if self.thread is None:
            self.thread = threading.Thread(target=self.control.serve_forever, kwargs={"poll_interval": 0.05},
                                           name=f"xenapi-lab-dom0-{self.machine.name}", daemon=True)
            self.thread.start()

    def stop(self) -> None:
        control, thread = self.control, self.thread
        self.control, self.thread = None, None
        if control is not None:
            if thread is not None:
                control.shutdown()
                thread.join(timeout=5)
            control.server_close()
        try:
            self.path(CONTROL_PATH).unlink(missing_ok=True)
            self.path(CONTROL_PATH).parent.rmdir()
        except OSError:
            pass  # not empty, or the lab host is gone

    def service_start(self, inventory_text: str | None, state_db: bool) -> str:
        """`service xapi start`: validate the inventory, then start xapi and wait until it serves."""
        with self.lab.state.lock:
            machine = self.machine
            if machine.power != "up":
                raise ValueError(f"{machine.name} is down")
            if machine.xapi == "stopped":
                if inventory_text is None:
                    raise ValueError(f"{INVENTORY_PATH}: No such file or directory")
                try:
                    inventory = parse_inventory(inventory_text)
                except ValueError as error:
                    self.lab.audit_log.record("xapi.start_failed", host=machine.name, error=str(error))
                    raise
                machine.inventory, machine.state_db = inventory, state_db
                self.lab.lifecycle.start_xapi(machine, self.lab.timings.xapi_restart, reason="service xapi start")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with self.lab.state.lock:
                if self.machine.serving:
                    return self.machine.inventory["INSTALLATION_UUID"]
                if self.machine.xapi == "stopped" or self.machine.power != "up" or not self.lab.running:
                    raise ValueError("xapi was stopped, or the host went down, while starting")
            time.sleep(0.02)
        raise TimeoutError(f"xapi did not start within {START_TIMEOUT:.0f}s")

    def service_stop(self) -> None:
        with self.lab.state.lock:
            if self.machine.power == "up" and self.machine.xapi != "stopped":
                self.lab.lifecycle.stop_xapi(self.machine, reason="service xapi stop")

    def service_status(self) -> dict[str, Any]:
        with self.lab.state.lock:
            machine = self.machine
            state = "stopped" if machine.power != "up" else machine.xapi
            return {"xapi": state, "uuid": machine.inventory.get("INSTALLATION_UUID", "")}


class Dom0s:
    """The lab's dom0 stand-ins by host name; file syncing starts with the lab (start) and ends with it."""

    def __init__(self, lab: XenLab, hosts: dict[str, LabHost]) -> None:
        self.by_name = {name: Dom0(lab, lab.state.machine(name), host) for name, host in hosts.items()}
        self.active = False

    def __getitem__(self, name: str) -> Dom0:
        return self.by_name[name]

    def bind(self) -> None:
        for dom0 in self.by_name.values():
            dom0.bind()

    def start(self) -> None:
        for dom0 in self.by_name.values():
            dom0.start()
        self.active = True
        for dom0 in self.by_name.values():
            if dom0.lab.tls is not None:
                dom0.lab.tls.dom0_written(dom0.machine)

    def stop(self) -> None:
        self.active = False
        for dom0 in self.by_name.values():
            dom0.stop()

    def cut_off(self, name: str, sources: list[str], *, reject: bool = False) -> None:
        """A network partition between `sources` and host `name` only (LabHost.cut_off), in the audit log as
        net.cut: e.g. the machine's address on the lab bridge (`LabHost.gateway`: the operator) cut from the
        master, while the supporters still reach it. The simulator's own view of the pool is not changed."""
        self.by_name[name].host.cut_off(sources, reject=reject)
        self.by_name[name].lab.audit_log.record("net.cut", host=name, sources=list(sources), reject=reject)

    def reconnect(self, name: str) -> None:
        self.by_name[name].host.reconnect()
        self.by_name[name].lab.audit_log.record("net.reconnected", host=name)

    def inventory_written(self, machine: Machine) -> None:
        if self.active:
            self.by_name[machine.name].write_inventory()

    def state_db_changed(self, machine: Machine) -> None:
        if self.active:
            self.by_name[machine.name].sync_state_db()

    def inventory(self, machine: Machine) -> dict[str, str]:
        return self.by_name[machine.name].read_inventory() if self.active else dict(machine.inventory)

    def load(self, machine: Machine, strict: bool) -> None:
        """What xapi reads at start: the inventory file and whether the state DB exists. A malformed inventory
        raises ValueError if `strict`, else it is recorded (xapi.inventory_error) and the last one kept."""
        if not self.active:
            return
        dom0 = self.by_name[machine.name]
        try:
            inventory, state_db = dom0.read_inventory(), dom0.state_db_exists()
        except (OSError, ValueError) as error:
            if strict:
                raise ValueError(str(error)) from None
            dom0.lab.audit_log.record("xapi.inventory_error", host=machine.name, error=str(error))
            return
        machine.inventory, machine.state_db = inventory, state_db


def write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.stackops-lab")
    temporary.write_text(text)
    temporary.chmod(0o644)
    temporary.replace(path)


class ControlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, dom0: Dom0, sock: Any) -> None:
        self.dom0 = dom0
        super().__init__(("127.0.0.1", 0), ControlHandler, bind_and_activate=False)
        adopt_socket(self, sock)


class ControlHandler(BaseHTTPRequestHandler):
    """GET /status → {"xapi": running|starting|stopped, "uuid"}; POST /stop; POST /start with
    {"inventory": text or null, "state_db": bool} → 200 {"uuid"} once xapi serves, 400 with the reason."""

    server: ControlServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        log.debug("dom0 %s: " + format, self.server.dom0.machine.name, *args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != "/status":
            return self.reply(404, {"error": "not found"})
        self.reply(200, self.server.dom0.service_status())

    def do_POST(self) -> None:  # noqa: N802
        dom0 = self.server.dom0
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path == "/stop":
                dom0.service_stop()
                return self.reply(200, dom0.service_status())
            if self.path == "/start":
                inventory = body.get("inventory")
                uuid = dom0.service_start(inventory if isinstance(inventory, str) else None,
                                          bool(body.get("state_db")))
                return self.reply(200, {"xapi": "running", "uuid": uuid})
        except (ValueError, TimeoutError) as error:
            return self.reply(400, {"error": str(error)})
        self.reply(404, {"error": "not found"})

    def reply(self, status: int, data: dict[str, Any]) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
