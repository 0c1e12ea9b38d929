"""KVM lab hosts: real Linux hosts on one machine, each a set of namespaces running the real daemons.

A lab host is a network namespace (`stackops-lab<slot>-<name>`) with an `eth0` on the lab's own subnet, plus
mount, UTS and PID namespaces created at each boot by the host's init (`hostinit.py`, PID 1 of the host), which
the host's power (`hostpower.py`, in the network namespace, outside the host's PID namespace) starts. Inside it:

- its own hostname, and private files where a KVM host keeps its state: an overlay on /etc (so every edit under
  /etc stays on that host; /etc/libvirt, /etc/openvswitch, /etc/cloudstack and /etc/ssh/sshd_config start as a
  fresh install ships them), bind mounts of the host's directory on /root, /var/log, /var/lib/libvirt,
  /var/lib/openvswitch, /var/cache/libvirt, /var/lib/xcp and /var/cache/apt, and tmpfs on /run and /tmp. /usr
  stays the machine's (read-only): a package installed on the machine is installed on every host.
- its own package state: overlays on the dpkg database (the machine's, plus a stand-in cloudstack-agent
  registered as installed unless the host is created without it), /var/lib/apt (an empty package index) and
  /var/cache/debconf, and its own /etc/apt whose only source is the lab's repository (aptrepo.py: stand-in
  cloudstack-agent .debs, bind-mounted read-only on /srv). `apt-get install cloudstack-agent` works in a host
  and changes only that host; it never reaches the machine's Debian mirrors or the Internet.
- real daemons: sshd (own ed25519 host key, root key login), Open vSwitch (ovsdb-server + ovs-vswitchd;
  there is no kernel datapath, bridges need `datapath_type=netdev`), libvirtd (fresh config: no TCP listener
  until the operator configures one), and a `systemctl`/`service` shim on the PATH (also over
  /usr/bin/systemctl) that starts, stops and reports them; cloudstack-agent is a stand-in unit.
- spare NICs to bond: veth pairs `eno49`/`eno49-peer`, `eno50`/`eno50-peer`, up, without addresses.
- a XenServer dom0 stand-in when a lab XenAPI simulator is given the host (`XenLab(dom0s={name: host})`,
  xenapi/dom0.py): the simulator serves that XenServer host's XenAPI at the host's address (a socket in the
  host's network namespace, `LabHost.netns_path`) and keeps /etc/xensource-inventory and /var/lib/xcp/state.db
  in the host; the shims' `service xapi stop|start|restart|status` (a unit only while
  /etc/stackops-lab/xapi-control exists) drive that host's xapi.
- network partitions: `cut_off(addresses)` drops what reaches the host from those addresses (iptables in its
  network namespace; `cut_off([host.gateway])` cuts the machine, hence the operator, from that host only),
  `reconnect()` ends it.

Reboots (issue 15): `reboot`, `shutdown -r now`, `systemctl reboot` in the host (the shim; what
`LabHost.reboot()` runs) make its init stop the services and end every process of the host (SSH connections
drop); its power then clears the runtime state of the host's network namespace (every non-hardware link, the
addresses, routes, MTUs), keeps it down `downSeconds` (LabHosts.create(reboot_down_seconds=…),
LabHost.set_down_seconds) and boots it again from its directory: fresh /run and /tmp, a new boot id
(/proc/sys/kernel/random/boot_id in the host), eth0's address and route from the host's configuration, sshd,
Open vSwitch (bridges from conf.db), libvirtd, and the cloudstack-agent stand-in when installed and enabled.
`poweroff`/`halt` leave it off until `LabHost.power_on()`. `LabHost.power_events()` lists what happened, in order.

The lab's subnet is 10.250.<slot>.0/24 on a bridge `stackops-lab<slot>` (10.250.<slot>.1) that exists only for
the lab; hosts are .11, .12, … Several labs on one machine take different slots. Nothing else on the machine
is touched. `destroy` stops every host (its init is PID 1 of the host's PID namespace, so all its processes
go with it), deletes namespaces, veths, VLAN interfaces and the bridge, and removes the files.

The lab's switch (the Linux bridge, not VLAN-aware) passes tagged frames between hosts, but the machine takes
part in untagged traffic only: a host's address on a VLAN is out of its reach unless the lab carries that VLAN,
`LabHosts.carry_vlan(vlan, cidr)`: a tap `stackops<slot>v<vlan>` with the machine's address `cidr` (in the hosts'
subnet of that VLAN), joined to the bridge by a relay in user space (vlanrelay.py: the machine's kernel has
neither VLAN devices nor VLAN filtering), kept in the state file and removed with the lab.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from stackops_lab import aptrepo, hostfiles
from stackops_lab.controlplane import (
    ClusterInfo,
    LabError,
    Progress,
    format_duration,
    ignore_progress,
    process_alive,
    process_command,
    require_packages,
    tail,
    write_private,
)

# What a lab host runs, installed on the machine by scripts/install-system-deps.sh.
HOST_PACKAGES = (
    "openssh-server",
    "openvswitch-switch",
    "libvirt-daemon-system",
    "libvirt-clients",
    "qemu-system-x86",
    "qemu-utils",
    "bridge-utils",
    "iproute2",
    "iputils-ping",
    "iptables",  # LabHost.cut_off: network partitions
)
HOSTINIT = Path(__file__).with_name("hostinit.py")
HOSTPOWER = Path(__file__).with_name("hostpower.py")
# How long a rebooting host stays down (no process, no address) between its shutdown and its next boot, by
# default; LabHosts.create(reboot_down_seconds=…) and LabHost.set_down_seconds change it.
REBOOT_DOWN_SECONDS = 2.0
REBOOT_TIMEOUT_SECONDS = 120.0
# systemd's multi-call names of the systemctl shim (hostfiles.SYSTEMCTL), in the hosts' /usr/local/sbin
POWER_COMMANDS = ("reboot", "shutdown", "poweroff", "halt")
STATE_FILE = "hosts.json"
WORKDIR = "hosts"
SUBNET_PREFIX = "10.250"
MAX_SLOTS = 64
MAX_HOSTS = 200
FIRST_HOST_OCTET = 11
FIRST_SERVICE_OCTET = 200  # machine_addresses: lab services' own addresses on the bridge
SPARE_NICS = ("eno49", "eno50")
SERVICES = ("openvswitch-switch", "libvirtd", "ssh")
START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 15.0
OPAQUE_XATTR = "trusted.overlay.opaque"
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_ENV = {"PATH": HOST_PATH, "HOME": "/root", "LANG": "C.UTF-8", "USER": "root", "LOGNAME": "root"}
# Mount points the host's private directories go on; they exist once HOST_PACKAGES are installed.
PRIVATE_DIRS = {
    "root": "/root",
    "var-log": "/var/log",
    "var-lib-libvirt": "/var/lib/libvirt",
    "var-lib-openvswitch": "/var/lib/openvswitch",
    "var-cache-libvirt": "/var/cache/libvirt",
    "var-lib-stackops": "/var/lib/stackops",  # the operator's rollback checkpoints
    "var-lib-xcp": "/var/lib/xcp",  # xapi's state DB when the host stands in a XenServer dom0 (xenapi/dom0.py)
}
# Mount points of PRIVATE_DIRS that the lab may create on the machine (empty) when the machine lacks them.
CREATED_MOUNT_POINTS = ("/var/lib/stackops", "/var/lib/xcp")
APT_ARCHIVES = Path("/var/cache/apt/archives")
# The host's /etc/apt: only the lab's repository as a source, none of the machine's configuration.
APT_SOURCES_LIST = f"""\
# stackops lab: this host's only package source is the lab's own repository (stand-in CloudStack packages).
{aptrepo.SOURCE_LINE}
"""
APT_ETC_DIRS = ("apt.conf.d", "auth.conf.d", "keyrings", "preferences.d", "sources.list.d", "trusted.gpg.d")
DEBCONF_CACHE = "/var/cache/debconf"
CUT_CHAIN = "STACKOPS-LAB-CUT"  # LabHost.cut_off's rules, in the host's network namespace
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"  # in a host: its own, new at each boot (hostinit.py)


# --------------------------------------------------------------------------- hosts


@dataclass
class LabHost:
    """One running lab host, as tests and the operator's users see it."""

    name: str
    address: str
    host_key: str  # the host's public key line, "ssh-ed25519 AAAA…", to pin
    client_key_path: Path  # root's login key (OpenSSH format, ed25519)
    nics: list[str]  # spare NICs inside the host, e.g. ["eno49", "eno50"]
    netns: str
    veth: str  # the machine-side end of the host's eth0
    directory: Path
    pid: int = 0  # the host's power (hostpower.py) the lab started: it boots the host, again at each reboot
    init_pid: int = 0  # PID 1 of the host (hostinit.py) of the current boot, grandchild of `pid` (via `unshare`)
    init_started: int = 0  # its start time (clock ticks after boot): pids get reused

    @property
    def client_key_pem(self) -> str:
        return self.client_key_path.read_text()

    @property
    def gateway(self) -> str:
        """The machine's address on the lab's bridge (10.250.<slot>.1): the one address of the machine a host
        reaches (its 127.0.0.1 is its own), where a server for the hosts binds."""
        return f"{self.address.rsplit('.', 1)[0]}.1"

    @property
    def netns_path(self) -> str:
        """The host's network namespace (for setns(2), `nsenter --net=`)."""
        return f"/run/netns/{self.netns}"

    def run(
        self, command: str, timeout: float = 60, check: bool = False, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`sh -c command` inside the host's namespaces (as root, like an SSH session), for inspection. A host
        that is down (rebooting, powered off) raises LabError."""
        if not self.alive():
            raise LabError(f"{self.name} is down (rebooting, powered off or stopped)")
        result = subprocess.run(
            ["nsenter", f"--target={self.init_pid}", "--mount", "--uts", "--net", "--pid", "--wd=/root",
             "--", "/bin/sh", "-c", command],
            env=HOST_ENV, input=input, capture_output=True, text=True, timeout=timeout, check=False,
        )
        if check and result.returncode != 0:
            raise LabError(f"{self.name}: `{command}` exited {result.returncode}: {result.stderr.strip()}")
        return result

    def cut_off(self, sources: Sequence[str], *, reject: bool = False) -> None:
        """A network partition between `sources` and this host only: from now on, what arrives from those addresses
        is dropped (`reject`: refused at once, a TCP reset or ICMP port-unreachable, as a firewall may) by
        iptables in the host's own network namespace, replies to this host's own connections included. The
        other hosts still reach it, and it them. `reconnect` ends it. E.g. `cut_off([host.gateway])` cuts the
        machine (the operator) from this host only."""
        target = ["REJECT", "--reject-with", "tcp-reset"] if reject else ["DROP"]
        self.iptables("-N", CUT_CHAIN, check=False)  # exists already: cut off from more sources
        if self.iptables("-C", "INPUT", "-j", CUT_CHAIN, check=False).returncode != 0:
            self.iptables("-I", "INPUT", "1", "-j", CUT_CHAIN)
        for source in sources:
            if reject:
                self.iptables("-A", CUT_CHAIN, "-s", source, "-p", "tcp", "-j", *target)
            self.iptables("-A", CUT_CHAIN, "-s", source, "-j",
                          *(["REJECT", "--reject-with", "icmp-port-unreachable"] if reject else target))

    def reconnect(self) -> None:
        """Undo every `cut_off`."""
        self.iptables("-F", CUT_CHAIN, check=False)

    def iptables(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`iptables ARGS` in the host's network namespace."""
        return ip("netns", "exec", self.netns, "iptables", "-w", *args, check=check)

    def alive(self) -> bool:
        """Whether the host is up: its init of the current boot runs (`init_pid` follows reboots)."""
        if is_host_init(self.init_pid, self.init_started, self.directory):
            return True
        if not is_power_of(self.pid, self.directory):
            return False
        init_pid, started = find_init(self.pid)
        if not is_host_init(init_pid, started, self.directory):
            return False
        self.init_pid, self.init_started = init_pid, started
        return True

    def powered(self) -> bool:
        """Whether the host exists (its power runs): up, rebooting or powered off, not stopped by the lab."""
        return is_power_of(self.pid, self.directory)

    # ---------------------------------------------------------------- reboots

    def boot_id(self) -> str:
        """This boot's id, as the host shows it (/proc/sys/kernel/random/boot_id: new at each boot)."""
        return self.run(f"cat {BOOT_ID_PATH}", check=True).stdout.strip()

    def boots(self) -> int:
        """How many times the host has come up (power.log's `up` events; 1 after its creation)."""
        return sum(1 for line in self.power_events() if ": up " in line)

    def power_events(self) -> list[str]:
        """What the host's power did, in order (hostpower.py): "boot N: starting", "boot N: up boot_id=…",
        "boot N: rebooting, down Ss", "boot N: powered off …", "power button", "boot N: stopped by the lab"."""
        return [message for _, message in self.power_log()]

    def power_log(self) -> list[tuple[float, str]]:
        """`power_events` with the time of each (time.monotonic() of the machine, seconds)."""
        try:
            lines = (self.directory / "power.log").read_text().splitlines()
        except OSError:
            return []
        return [(float(line.split(" ", 1)[0]), line.split(" ", 1)[1]) for line in lines if " " in line]

    def set_down_seconds(self, seconds: float) -> None:
        """How long the host stays down at its reboots (read by its power while the host is down: lowering it
        shortens a reboot under way)."""
        if seconds < 0:
            raise LabError(f"a reboot cannot take {seconds}s")
        path = self.directory / "init.json"
        config = json.loads(path.read_text())
        config["downSeconds"] = seconds
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(config, indent=2) + "\n")
        os.replace(temporary, path)

    def reboot(self, down_seconds: float | None = None, wait: bool = True,
               timeout: float = REBOOT_TIMEOUT_SECONDS) -> None:
        """Reboot the host as an operator would (`systemctl reboot` inside it): its services stop, every process
        ends (SSH connections drop), its network's runtime state goes, it stays down `down_seconds` (if given;
        else as set), then boots from its directory. `wait`: return once it is up again."""
        if down_seconds is not None:
            self.set_down_seconds(down_seconds)
        before = self.boots()
        result = self.run("systemctl reboot")
        if result.returncode not in (0, -signal.SIGTERM, 128 + signal.SIGTERM):  # the shutdown may end it first
            raise LabError(f"{self.name}: `systemctl reboot` exited {result.returncode}: {result.stderr.strip()}")
        if wait:
            self.wait_up(before, timeout)

    def wait_up(self, boots_before: int, timeout: float = REBOOT_TIMEOUT_SECONDS) -> None:
        """Wait until the host has come up again after `boots_before` boots (see `boots`) and the machine reaches
        its sshd (right after a boot the machine's ARP entry for the host may still be a failed one: "No route to
        host" for a moment, as after a real reboot)."""
        deadline = time.monotonic() + timeout
        while self.boots() <= boots_before or not self.alive() or not self.answers(22):
            events = self.power_events()
            if events and ": failed: " in events[-1]:
                raise LabError(f"{self.name} failed to boot: {events[-1]}")
            if not self.powered():
                raise LabError(f"{self.name} is stopped")
            if time.monotonic() > deadline:
                raise LabError(f"{self.name} not up again after {timeout:.0f}s: {events[-3:]}")
            time.sleep(0.05)

    def answers(self, port: int) -> bool:
        """Whether a TCP connection from the machine to the host's address and `port` is accepted."""
        try:
            socket.create_connection((self.address, port), timeout=2).close()
        except OSError:
            return False
        return True

    def power_on(self) -> None:
        """Press the power button of a host powered off from inside (`poweroff`, `halt`): it boots again."""
        if not self.powered():
            raise LabError(f"{self.name} is stopped (its power is gone): create the lab's hosts again")
        with_signal(self.pid, signal.SIGUSR1)

    def processes(self) -> list[int]:
        """Pids (as the machine sees them) of every process in the host's PID namespace."""
        if not self.alive():
            return []
        try:
            namespace = os.readlink(f"/proc/{self.init_pid}/ns/pid")
        except OSError:
            return []
        return [pid for pid in all_pids() if readlink_quiet(f"/proc/{pid}/ns/pid") == namespace]

    def memory_rss(self) -> int:
        """Resident memory of all the host's processes, in bytes."""
        return sum(process_rss(pid) for pid in self.processes())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "address": self.address, "hostKey": self.host_key,
            "clientKeyPath": str(self.client_key_path), "nics": self.nics, "netns": self.netns,
            "veth": self.veth, "directory": str(self.directory), "pid": self.pid, "initPid": self.init_pid,
            "initStarted": self.init_started,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabHost:
        return cls(
            name=data["name"], address=data["address"], host_key=data["hostKey"],
            client_key_path=Path(data["clientKeyPath"]), nics=list(data["nics"]), netns=data["netns"],
            veth=data["veth"], directory=Path(data["directory"]), pid=int(data.get("pid", 0)),
            init_pid=int(data.get("initPid", 0)), init_started=int(data.get("initStarted", 0)),
        )


@dataclass
class HostsState:
    slot: int
    bridge: str
    gateway: str
    hosts: list[LabHost] = field(default_factory=list)
    # VLANs the machine takes part in (carry_vlan): VLAN → its tap ("device"), bridge port ("port"), relay ("pid")
    vlans: dict[int, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"slot": self.slot, "bridge": self.bridge, "gateway": self.gateway,
                "hosts": [host.to_json() for host in self.hosts],
                "vlans": {str(vlan): carried for vlan, carried in self.vlans.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostsState:
        return cls(slot=int(data["slot"]), bridge=data["bridge"], gateway=data["gateway"],
                   hosts=[LabHost.from_json(host) for host in data.get("hosts", [])],
                   vlans={int(vlan): dict(carried) for vlan, carried in data.get("vlans", {}).items()})


class LabHosts:
    """The KVM hosts of one lab directory (state in `<lab_dir>/hosts.json`, files in `<lab_dir>/hosts/`)."""

    def __init__(self, lab_dir: Path) -> None:
        self.lab_dir = Path(lab_dir).absolute()
        self.state_file = self.lab_dir / STATE_FILE
        self.workdir = self.lab_dir / WORKDIR

    # ------------------------------------------------------------------ public

    @property
    def repository(self) -> Path:
        """The lab's apt repository (what hosts see as /srv/stackops-lab-repo)."""
        return self.workdir / aptrepo.SRV / aptrepo.REPO_NAME

    def create(self, count: int, progress: Progress = ignore_progress,
               missing_packages: Sequence[str] = (), reboot_down_seconds: float = REBOOT_DOWN_SECONDS,
               ) -> list[LabHost]:
        """Start `count` fresh hosts (after removing any this lab had) and return them once all are ready.
        `missing_packages` (of the lab repository's, e.g. cloudstack-agent): not installed on the hosts, so that
        the KvmHost reconciler has them to install. `reboot_down_seconds`: how long a rebooting host stays down."""
        if not 1 <= count <= MAX_HOSTS:
            raise LabError(f"a lab has 1 to {MAX_HOSTS} hosts, not {count}")
        unknown = sorted(set(missing_packages) - set(aptrepo.PACKAGES))
        if unknown:
            raise LabError(f"a lab host can start without {', '.join(aptrepo.PACKAGES)} only (the packages of the "
                           f"lab's repository), not {', '.join(unknown)}")
        check_prerequisites()
        self.destroy(progress)
        started = time.monotonic()
        self.lab_dir.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(mode=0o755)
        state = self.claim_slot()
        try:
            self.write_state(state)
            template = self.build_template(progress)
            aptrepo.build(self.workdir / aptrepo.SRV)
            client_key = self.write_client_key()
            shims = self.write_shims()
            progress(f"creating {count} KVM lab host(s) on {state.bridge} ({SUBNET_PREFIX}.{state.slot}.0/24)…")
            for index in range(1, count + 1):
                host = self.new_host(state, index, client_key)
                state.hosts.append(host)
                self.write_state(state)
                self.prepare_files(host, template, shims, tuple(missing_packages), reboot_down_seconds)
                self.create_network(state, host)
            self.start_inits(state, progress)
            self.write_known_hosts(state.hosts)
        except BaseException:
            self.destroy()
            raise
        progress(f"{count} KVM lab host(s) ready in {format_duration(time.monotonic() - started)}")
        return state.hosts

    def destroy(self, progress: Progress = ignore_progress) -> None:
        """Stop this lab's hosts and remove their namespaces, links and files (idempotent)."""
        state = self.read_state()
        bridges = self.our_bridges()
        if state is None and not bridges and not self.workdir.exists():
            return
        hosts = state.hosts if state else []
        for carried in (state.vlans.values() if state else ()):
            self.remove_vlan(carried)
        self.stop_hosts(hosts)
        for host in hosts:
            kill_namespace_processes(host.netns)
            if link_exists(host.veth):
                ip("link", "del", host.veth, check=False)
            if netns_exists(host.netns):
                ip("netns", "del", host.netns, check=False)
        for bridge in bridges:
            self.sweep_slot(int(bridge.removeprefix("stackops-lab")))
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.state_file.unlink(missing_ok=True)
        if hosts:
            progress(f"removed {len(hosts)} KVM lab host(s)")

    def machine_addresses(self, count: int, first_octet: int = FIRST_SERVICE_OCTET) -> list[str]:
        """`count` more addresses of the machine on the lab's bridge, 10.250.<slot>.<first_octet>…, for a lab service
        (the XenServer hosts' endpoints) that the lab hosts and the node's Pods reach as they reach the machine's
        gateway address; they go with the bridge. Idempotent."""
        state = self.read_state()
        if state is None:
            raise LabError("the lab has no hosts (and so no bridge): start them first (`stackops lab up --hosts N`)")
        if not 0 < count <= 255 - first_octet:
            raise LabError(f"{count} addresses from .{first_octet} do not fit in the lab's subnet")
        addresses = [f"{SUBNET_PREFIX}.{state.slot}.{first_octet + index}" for index in range(count)]
        taken = sorted(set(addresses) & {host.address for host in state.hosts})
        if taken:
            raise LabError(f"{', '.join(taken)} belong to lab hosts: a lab with this many hosts has no room for "
                           f"{count} service addresses from .{first_octet}")
        ip_batch([f"addr replace {address}/32 dev {state.bridge}" for address in addresses])
        return addresses

    def carry_vlan(self, vlan: int, cidr: str) -> str:
        """Make the machine take part in VLAN `vlan` of the lab's switch, with the address `cidr` (e.g.
        10.251.<slot>.1/24). The machine's kernel has no VLAN devices, so a relay (vlanrelay.py) does it in user
        space: a veth pair `stackops<slot>p<vlan>` (a port of the lab's bridge) / `stackops<slot>q<vlan>`, whose
        frames tagged `vlan` the relay passes untagged to a tap `stackops<slot>v<vlan>` carrying `cidr`, and back
        tagged. Returns the tap's name; all of it goes with the lab (or `drop_vlan`)."""
        state = self.read_state()
        if state is None:
            raise LabError("the lab has no hosts")
        if not 1 <= vlan <= 4094:
            raise LabError(f"no VLAN {vlan}: 1 to 4094")
        if vlan in state.vlans:
            return state.vlans[vlan]["device"]
        names = {kind: f"stackops{state.slot}{kind}{vlan}" for kind in "vpq"}  # ≤ 15 characters: slot < 100
        state.vlans[vlan] = {"device": names["v"], "port": names["p"], "pid": 0}
        self.write_state(state)  # before the links: destroy removes them whatever happens next
        ip_batch([f"link add {names['p']} type veth peer name {names['q']}",
                  f"link set dev {names['p']} alias {self.lab_dir}", f"link set dev {names['p']} master {state.bridge}",
                  f"link set dev {names['p']} up", f"link set dev {names['q']} up"])
        log = open(self.workdir / f"vlanrelay-{vlan}.log", "ab")
        relay = subprocess.Popen([sys.executable, "-I", "-S", str(Path(__file__).with_name("vlanrelay.py")),
                                  names["q"], names["v"], str(vlan)], stdout=subprocess.PIPE, stderr=log,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        state.vlans[vlan]["pid"] = relay.pid
        self.write_state(state)
        assert relay.stdout is not None
        if relay.stdout.readline().strip() != b"ready":
            raise LabError(f"the VLAN {vlan} relay did not start: "
                           f"{(self.workdir / f'vlanrelay-{vlan}.log').read_text()[-2000:]}")
        relay.stdout.close()
        ip_batch([f"link set dev {names['v']} alias {self.lab_dir}", f"addr add {cidr} dev {names['v']}",
                  f"link set dev {names['v']} up"])
        return names["v"]

    def drop_vlan(self, vlan: int) -> None:
        """Stop carrying `vlan`: the relay ends (its tap with it), the veth pair goes."""
        state = self.read_state()
        if state is None or vlan not in state.vlans:
            return
        self.remove_vlan(state.vlans.pop(vlan))
        self.write_state(state)

    def remove_vlan(self, carried: dict[str, Any]) -> None:
        pid = int(carried.get("pid", 0))
        try:
            if pid and b"vlanrelay.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)
        except (OSError, ProcessLookupError):
            pass
        port = carried["port"]
        if link_exists(port) and link_alias(port) == str(self.lab_dir):
            ip("link", "del", port, check=False)

    def running(self) -> list[LabHost] | None:
        """The hosts if every one of them runs, else None."""
        state = self.read_state()
        if state is None or not state.hosts or not all(host.powered() for host in state.hosts):
            return None
        return state.hosts

    # ------------------------------------------------------------------ slot and network

    def claim_slot(self) -> HostsState:
        """Create the lab's bridge in the first free slot; the bridge (named by slot) is the claim."""
        used = machine_ipv4_networks()
        for slot in range(MAX_SLOTS):
            bridge = f"stackops-lab{slot}"
            subnet = ipaddress.ip_network(f"{SUBNET_PREFIX}.{slot}.0/24")
            if link_exists(bridge) or any(subnet.overlaps(network) for network in used):
                continue
            created = ip("link", "add", "name", bridge, "type", "bridge", "nf_call_iptables", "0",
                         "nf_call_ip6tables", "0", "nf_call_arptables", "0", check=False)
            if created.returncode != 0:
                continue  # another lab took it first
            gateway = f"{SUBNET_PREFIX}.{slot}.1"
            ip("link", "set", "dev", bridge, "alias", str(self.lab_dir))  # whose bridge it is
            ip_batch([f"addr add {gateway}/24 dev {bridge}", f"link set dev {bridge} up"])
            return HostsState(slot=slot, bridge=bridge, gateway=gateway)
        raise LabError(f"no free lab subnet among {SUBNET_PREFIX}.0-{MAX_SLOTS - 1}.0/24 on this machine")

    def our_bridges(self) -> list[str]:
        """The lab bridges whose alias names this lab directory (normally one)."""
        return [path.name for path in Path("/sys/class/net").glob("stackops-lab*")
                if path.name.removeprefix("stackops-lab").isdigit() and link_alias(path.name) == str(self.lab_dir)]

    def sweep_slot(self, slot: int) -> None:
        """Remove what is left of our slot: its namespaces and the bridge, if the bridge is ours."""
        bridge = f"stackops-lab{slot}"
        if not link_exists(bridge) or link_alias(bridge) != str(self.lab_dir):
            return
        prefix = f"stackops-lab{slot}-"
        for netns in list_netns():
            if netns.startswith(prefix):
                kill_namespace_processes(netns)
                ip("netns", "del", netns, check=False)
        for name in bridge_ports(bridge):
            ip("link", "del", name, check=False)
        ip("link", "del", bridge, check=False)

    def new_host(self, state: HostsState, index: int, client_key: Path) -> LabHost:
        name = f"kvm{index}"
        return LabHost(
            name=name,
            address=f"{SUBNET_PREFIX}.{state.slot}.{FIRST_HOST_OCTET + index - 1}",
            host_key="",
            client_key_path=client_key,
            nics=list(SPARE_NICS),
            netns=f"stackops-lab{state.slot}-{name}",
            veth=f"stackops{state.slot}-{index}",
            directory=self.workdir / name,
        )

    def create_network(self, state: HostsState, host: LabHost) -> None:
        """The host's hardware: its netns, eth0 cabled to the lab's bridge, the spare NICs (veth pairs inside it).
        Addresses, routes and links up are the host's own configuration, applied at each boot (hostinit.py)."""
        ip_batch([
            f"netns add {host.netns}",
            f"link add {host.veth} type veth peer name eth0 netns {host.netns}",
            f"link set dev {host.veth} master {state.bridge} up",
        ])
        commands = [f"link add {nic} type veth peer name {nic}-peer" for nic in host.nics]
        if commands:
            ip_batch(commands, netns=host.netns)

    # ------------------------------------------------------------------ files

    def build_template(self, progress: Progress) -> Path:
        """The stock files every host starts with, as the Debian packages ship them."""
        template = self.workdir / "template"
        template.mkdir()
        conffiles = dpkg_conffiles()
        copy_tree_pristine(Path("/etc/libvirt"), template / "libvirt", conffiles, progress)
        copy_file_pristine(Path("/etc/default/libvirtd"), template / "default-libvirtd", conffiles, progress)
        shutil.copyfile("/usr/share/openssh/sshd_config", template / "sshd_config")
        run_checked(["ovsdb-tool", "create", str(template / "conf.db"),
                     "/usr/share/openvswitch/vswitch.ovsschema"])
        return template

    def write_client_key(self) -> Path:
        key = ed25519.Ed25519PrivateKey.generate()
        path = self.workdir / "id_ed25519"
        write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                              serialization.NoEncryption()))
        path.with_suffix(".pub").write_text(public_line(key) + " stackops-lab\n")
        return path

    def write_shims(self) -> Path:
        sbin = self.workdir / "sbin"
        sbin.mkdir()
        for name, text in (("systemctl", hostfiles.SYSTEMCTL), ("service", hostfiles.SERVICE),
                           ("stackops-lab-xapi", hostfiles.XAPI_CONTROL)):
            (sbin / name).write_text(text)
            (sbin / name).chmod(0o755)
        for name in POWER_COMMANDS:  # as systemd's: links to systemctl, which acts on its name
            (sbin / name).symlink_to("systemctl")
        return sbin

    def prepare_files(self, host: LabHost, template: Path, shims: Path,
                      missing_packages: tuple[str, ...] = (),
                      reboot_down_seconds: float = REBOOT_DOWN_SECONDS) -> None:
        directory = host.directory
        directory.mkdir(mode=0o755)
        overlays = [("etc", "/etc"), ("dpkg", "/var/lib/dpkg"), ("apt-lib", "/var/lib/apt")]
        if Path(DEBCONF_CACHE).is_dir():
            overlays.append(("debconf", DEBCONF_CACHE))  # maintainer scripts' answers stay on the host
        for name, _ in overlays:
            (directory / f"{name}-upper").mkdir(mode=0o755)
            (directory / f"{name}-work").mkdir()
        etc = directory / "etc-upper"
        # /etc/libvirt and /etc/openvswitch: only what the packages ship (opaque: the machine's copy is hidden)
        shutil.copytree(template / "libvirt", etc / "libvirt", symlinks=True)
        (etc / "openvswitch").mkdir()
        shutil.copyfile(template / "conf.db", etc / "openvswitch" / "conf.db")
        (etc / "default").mkdir()
        shutil.copy2(template / "default-libvirtd", etc / "default" / "libvirtd")
        agent_installed = aptrepo.AGENT not in missing_packages
        agent = etc / "cloudstack" / "agent"
        if agent_installed:  # what the package installed (without it, dpkg creates them when it is installed)
            agent.mkdir(parents=True)
            for path, content in aptrepo.agent_files(hostfiles.AGENT_VERSION).items():
                (agent / Path(path).name).write_text(content)
        elif Path("/etc/cloudstack").exists():
            (etc / "cloudstack").mkdir()  # opaque and empty: the machine's is hidden
        # apt: the lab's repository as the only source, an empty package index and cache (apt-get update fills it)
        apt = etc / "apt"
        apt.mkdir()
        for name in APT_ETC_DIRS:
            (apt / name).mkdir()
        (apt / "sources.list").write_text(APT_SOURCES_LIST)
        (directory / "apt-lib-upper" / "lists" / "partial").mkdir(parents=True)
        (directory / "var-cache-apt" / "archives" / "partial").mkdir(parents=True)
        # sshd: the pristine config plus the lab's drop-in, the host's own key, none of the machine's keys
        ssh = etc / "ssh"
        (ssh / "sshd_config.d").mkdir(parents=True)
        shutil.copyfile(template / "sshd_config", ssh / "sshd_config")
        (ssh / "sshd_config.d" / "stackops-lab.conf").write_text(
            hostfiles.SSHD_DROP_IN.format(address=host.address))
        host_key = ed25519.Ed25519PrivateKey.generate()
        write_private(ssh / "ssh_host_ed25519_key", host_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
        host.host_key = public_line(host_key)
        (ssh / "ssh_host_ed25519_key.pub").write_text(f"{host.host_key} root@{host.name}\n")
        for machine_key in Path("/etc/ssh").glob("ssh_host_*"):
            if not (ssh / machine_key.name).exists():
                whiteout(ssh / machine_key.name)
        for opaque in (etc / "libvirt", etc / "openvswitch", etc / "cloudstack", ssh / "sshd_config.d", apt,
                       directory / "apt-lib-upper" / "lists"):
            if opaque.is_dir():
                os.setxattr(opaque, OPAQUE_XATTR, b"y")
        (etc / "hostname").write_text(f"{host.name}\n")
        (etc / "hosts").write_text(
            f"127.0.0.1\tlocalhost\n{host.address}\t{host.name}.lab.stackops {host.name}\n\n"
            "# The following lines are desirable for IPv6 capable hosts\n"
            "::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n")
        (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")
        # the host's own /root, /var/log, /var/lib/libvirt, /var/lib/openvswitch, /var/cache/libvirt
        root = directory / "root"
        (root / ".ssh").mkdir(mode=0o700, parents=True)
        root.chmod(0o700)
        for dotfile in ("bashrc", "profile"):
            source = Path(f"/usr/share/base-files/dot.{dotfile}")
            if source.is_file():
                shutil.copyfile(source, root / f".{dotfile}")
        write_private(root / ".ssh" / "authorized_keys",
                      host.client_key_path.with_suffix(".pub").read_bytes())
        copy_skeleton(Path("/var/lib/libvirt"), directory / "var-lib-libvirt")
        copy_skeleton(Path("/var/cache/libvirt"), directory / "var-cache-libvirt")
        (directory / "var-lib-openvswitch").mkdir()
        (directory / "var-lib-stackops").mkdir()
        (directory / "var-lib-xcp").mkdir()
        for log_dir in ("libvirt/qemu", "openvswitch", "apt", *(("cloudstack/agent",) if agent_installed else ())):
            (directory / "var-log" / log_dir).mkdir(parents=True)
        # the host's own package database, where the cloudstack-agent stand-in is an installed package (or not)
        write_dpkg_database(directory / "dpkg-upper", agent if agent_installed else None)
        mounts: list[dict[str, Any]] = [
            {"kind": "overlay", "target": target, "upper": str(directory / f"{name}-upper"),
             "work": str(directory / f"{name}-work")}
            for name, target in overlays
        ]
        mounts += [{"kind": "bind", "source": str(directory / name), "target": target}
                   for name, target in {**PRIVATE_DIRS, "var-cache-apt": "/var/cache/apt"}.items()]
        # the lab's apt repository, the same for every host, read-only
        mounts.append({"kind": "bind", "source": str(self.workdir / aptrepo.SRV), "target": "/srv",
                       "readonly": True})
        # /usr stays the machine's, read-only: nothing run in a host (apt, dpkg, pip) changes the machine
        mounts.append({"kind": "bind", "source": "/usr", "target": "/usr", "recursive": True, "readonly": True})
        mounts.append({"kind": "bind", "source": str(shims), "target": "/usr/local/sbin", "readonly": True})
        for name, target in (("systemctl", "/usr/bin/systemctl"), ("service", "/usr/sbin/service")):
            if Path(target).exists():
                mounts.append({"kind": "bind", "source": str(shims / name), "target": target, "readonly": True})
        mounts.append({"kind": "tmpfs", "target": "/run", "mode": "0755",
                       "dirs": [["/run/sshd", "0755"], ["/run/lock", "1777"], ["/run/openvswitch", "0755"],
                                ["/run/network", "0755"]]})
        mounts.append({"kind": "tmpfs", "target": "/tmp", "mode": "1777"})  # last: the lab dir may be in /tmp
        spare = [name for nic in host.nics for name in (nic, f"{nic}-peer")]
        config = {
            "hostname": host.name, "mounts": mounts, "services": list(SERVICES),
            # started at the boots after the first when installed and enabled (the first leaves it to the operator)
            "enabledServices": [aptrepo.AGENT],
            # the host's network configuration, applied at each boot (hostinit.py), and its hardware links, the
            # only ones a power cycle keeps (hostpower.py)
            "network": {"device": "eth0", "address": f"{host.address}/24", "gateway": host.gateway, "up": spare},
            "hardware": ["lo", "eth0", *spare],
            "downSeconds": reboot_down_seconds,
        }
        (directory / "init.json").write_text(json.dumps(config, indent=2) + "\n")

    def write_known_hosts(self, hosts: Sequence[LabHost]) -> None:
        lines = "".join(f"{host.address} {host.host_key}\n" for host in hosts)
        (self.workdir / "known_hosts").write_text(lines)

    # ------------------------------------------------------------------ processes

    def start_inits(self, state: HostsState, progress: Progress) -> None:
        """Start every host's init, then wait until each reports ready (or fails)."""
        pending: dict[int, LabHost] = {}
        for host in state.hosts:
            read_end, write_end = os.pipe()
            os.set_inheritable(write_end, True)
            command = ["ip", "netns", "exec", host.netns,
                       sys.executable, "-I", "-S", str(HOSTPOWER), str(host.directory), str(write_end)]
            try:
                host.pid = spawn_logged(command, host.directory / "init.log")
            finally:
                os.close(write_end)
            pending[read_end] = host
            self.write_state(state)
        messages: dict[int, bytes] = {fd: b"" for fd in pending}
        deadline = time.monotonic() + START_TIMEOUT_SECONDS + 2 * len(state.hosts)
        failures: list[str] = []
        try:
            while messages:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    names = ", ".join(pending[fd].name for fd in messages)
                    raise LabError(f"lab hosts not ready after {START_TIMEOUT_SECONDS:.0f}s: {names}"
                                   + "".join(self.init_log_tail(pending[fd]) for fd in messages))
                readable, _, _ = select.select(list(messages), [], [], min(remaining, 1.0))
                for fd in readable:
                    chunk = os.read(fd, 4096)
                    messages[fd] += chunk
                    if chunk and not chunk.endswith(b"\n"):
                        continue  # the host's power writes one line and keeps the pipe open: no EOF
                    host, message = pending[fd], messages.pop(fd).decode(errors="replace").strip()
                    os.close(fd)
                    if message != "ready":
                        failures.append(f"{host.name}: {message or 'its init exited'}{self.init_log_tail(host)}")
                        continue
                    host.init_pid, host.init_started = find_init(host.pid)
                    if not host.alive():
                        failures.append(f"{host.name}: its init is gone{self.init_log_tail(host)}")
        finally:
            for fd in messages:
                os.close(fd)
        self.write_state(state)
        if failures:
            raise LabError("lab hosts failed to start:\n" + "\n".join(failures))

    def init_log_tail(self, host: LabHost) -> str:
        return f"\n  last lines of {host.directory / 'init.log'}:\n{tail(host.directory / 'init.log', 15)}"

    def stop_hosts(self, hosts: Sequence[LabHost]) -> None:
        """SIGTERM every host's power (it stops the host's init, PID 1 of the host, whose exit kills all the
        host's processes, and boots nothing again), then wait."""
        inits = []
        for host in hosts:
            init_pid = host.init_pid if host.alive() else 0
            if is_power_of(host.pid, host.directory):
                with_signal(host.pid, signal.SIGTERM)
            elif init_pid:
                with_signal(init_pid, signal.SIGTERM)
            if init_pid:
                inits.append((host, init_pid))
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for host, init_pid in inits:
            while process_alive(init_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if process_alive(init_pid) and is_host_init(init_pid, 0, host.directory):
                with_signal(init_pid, signal.SIGKILL)
        for host in hosts:
            if is_power_of(host.pid, host.directory):
                end = time.monotonic() + 5
                while process_alive(host.pid) and time.monotonic() < end:
                    time.sleep(0.05)
                if process_alive(host.pid) and is_power_of(host.pid, host.directory):
                    with_signal(host.pid, signal.SIGKILL)  # its `unshare` dies with it, and the host with that
        for host, init_pid in inits:
            end = time.monotonic() + 5
            while process_alive(init_pid) and time.monotonic() < end:
                time.sleep(0.05)
            if process_alive(init_pid):
                raise LabError(f"{host.name}: its init (pid {init_pid}) survived SIGKILL")

    # ------------------------------------------------------------------ state

    def write_state(self, state: HostsState) -> None:
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state.to_json(), indent=2) + "\n")
        os.replace(temporary, self.state_file)

    def read_state(self) -> HostsState | None:
        try:
            return HostsState.from_json(json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError, KeyError):
            return None


def create(lab_dir: Path, count: int, progress: Progress = ignore_progress,
           missing_packages: Sequence[str] = ()) -> list[LabHost]:
    return LabHosts(lab_dir).create(count, progress, missing_packages)


def destroy(lab_dir: Path, progress: Progress = ignore_progress) -> None:
    LabHosts(lab_dir).destroy(progress)


class HostsComponent:
    """`stackops lab up --hosts N` starts N KVM lab hosts; `stackops lab down` removes them."""

    name = "hosts"

    def __init__(self, count: int = 0) -> None:
        self.count = count

    def start(self, lab_dir: Path, cluster: ClusterInfo, progress: Progress) -> None:
        if self.count <= 0:
            return
        manager = LabHosts(lab_dir)
        hosts = manager.running()
        if hosts is not None and len(hosts) == self.count:
            progress(f"the {len(hosts)} KVM lab host(s) already run")
        else:
            hosts = manager.create(self.count, progress)
        for host in hosts:
            progress(f"  {host.name}  {host.address}  {host.host_key}")
        progress(f"  log in: ssh -i {manager.workdir / 'id_ed25519'} "
                 f"-o UserKnownHostsFile={manager.workdir / 'known_hosts'} root@{hosts[0].address}")

    def stop(self, lab_dir: Path, progress: Progress) -> None:
        LabHosts(lab_dir).destroy(progress)


# --------------------------------------------------------------------------- helpers: machine


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise LabError("lab hosts need root (network, mount and PID namespaces); run as root")
    require_packages(HOST_PACKAGES)
    missing = [tool for tool in ("ip", "unshare", "nsenter", "ovsdb-tool") if shutil.which(tool) is None]
    for mount_point in CREATED_MOUNT_POINTS:
        Path(mount_point).mkdir(mode=0o755, exist_ok=True)
    missing += [tool for tool in ("dpkg-deb", "apt-get") if shutil.which(tool) is None]
    missing += [target for target in (*PRIVATE_DIRS.values(), "/var/cache/apt", "/srv") if not Path(target).is_dir()]
    if missing:
        raise LabError(f"missing on this machine: {', '.join(missing)}; run `make deps`")


def ip(*args: str, check: bool = True, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    command = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    if check and result.returncode != 0:
        raise LabError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")
    return result


def ip_batch(commands: Sequence[str], netns: str | None = None) -> None:
    command = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    result = subprocess.run(command, input="\n".join(commands) + "\n", capture_output=True, text=True,
                            check=False, timeout=60)
    if result.returncode != 0:
        raise LabError(f"`{' '.join(command)}` failed: {result.stderr.strip()}\ncommands: {commands}")


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def link_alias(name: str) -> str:
    try:
        return Path(f"/sys/class/net/{name}/ifalias").read_text().strip()
    except OSError:
        return ""


def bridge_ports(bridge: str) -> list[str]:
    try:
        return sorted(path.name for path in Path(f"/sys/class/net/{bridge}/brif").iterdir())
    except OSError:
        return []


def list_netns() -> list[str]:
    try:
        return sorted(path.name for path in Path("/run/netns").iterdir())
    except OSError:
        return []


def netns_exists(name: str) -> bool:
    return name in list_netns()


def machine_ipv4_networks() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks of the machine's routes and addresses (the default route excluded)."""
    networks = []
    for command in (["ip", "-4", "-o", "addr", "show"], ["ip", "-4", "route", "show", "table", "all"]):
        output = subprocess.run(command, capture_output=True, text=True, check=False).stdout
        for line in output.splitlines():
            words = line.split()
            candidates = words[3:4] if command[3] == "addr" else words[:2]
            for word in candidates:
                if word in ("default", "local", "broadcast", "unicast", "multicast", "blackhole"):
                    continue
                try:
                    networks.append(ipaddress.ip_network(word, strict=False))
                except ValueError:
                    continue
    return [network for network in networks if isinstance(network, ipaddress.IPv4Network)
            and network.prefixlen > 0 and not network.is_loopback]


def kill_namespace_processes(netns: str) -> None:
    """Kill whatever still runs in one of our network namespaces (it would keep the namespace alive)."""
    if not netns_exists(netns):
        return
    result = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False)
    pids = [int(word) for word in result.stdout.split() if word.isdigit() and int(word) != os.getpid()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with_signal(pid, sig)
        deadline = time.monotonic() + 5
        while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [pid for pid in pids if process_alive(pid)]
        if not pids:
            return


def with_signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def spawn_logged(command: list[str], log: Path) -> int:
    """Start `command` in its own session with a clean environment, output to `log`; its pid."""
    executable = shutil.which(command[0])
    if executable is None:
        raise LabError(f"{command[0]} not found")
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(executable, command, dict(HOST_ENV), file_actions=file_actions, setsid=True)


def run_checked(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        raise LabError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")
    return result.stdout


def all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def readlink_quiet(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def process_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def start_time(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def is_power_of(pid: int, directory: Path) -> bool:
    """Whether `pid` is the `hostpower.py <directory>` the lab started for a host."""
    if not pid or not process_alive(pid):
        return False
    command = process_command(pid)
    return str(HOSTPOWER) in command and str(directory) in command


def is_host_init(pid: int, started: int, directory: Path) -> bool:
    """Whether `pid` is the init (hostinit.py) of the host in `directory` (and, if given, started then)."""
    if not pid or not process_alive(pid):
        return False
    command = process_command(pid)
    if str(HOSTINIT) not in command or str(directory) not in command or Path(command[0]).name == "unshare":
        return False
    return not started or start_time(pid) == started


def only_child(pid: int) -> int:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return int(children[0]) if children else 0


def find_init(power_pid: int) -> tuple[int, int]:
    """The init of a host's current boot (the only child of the `unshare --fork` its power started) and its
    start time; (0, 0) while the host is down."""
    pid = only_child(only_child(power_pid)) if power_pid else 0
    return (pid, start_time(pid)) if pid else (0, 0)


# --------------------------------------------------------------------------- helpers: files


@dataclass(frozen=True)
class Conffile:
    md5: str
    package: str
    version: str
    architecture: str


def dpkg_conffiles() -> dict[str, Conffile]:
    """Every conffile dpkg knows, with the checksum of the version its package shipped."""
    output = run_checked(["dpkg-query", "-W", "-f=${binary:Package}\t${Version}\t${Architecture}\n${Conffiles}\n"])
    result: dict[str, Conffile] = {}
    package = version = architecture = ""
    for line in output.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            package, version, architecture = (line.split("\t") + ["", "", ""])[:3]
            package = package.split(":")[0]
            continue
        words = line.split()
        if len(words) >= 2 and "obsolete" not in words[2:]:
            result[words[0]] = Conffile(words[1], package, version, architecture)
    return result


def pristine_bytes(path: Path, conffiles: dict[str, Conffile], progress: Progress) -> bytes:
    """The file as its package ships it: the machine's copy if unmodified, else from the cached .deb."""
    data = path.read_bytes()
    entry = conffiles.get(str(path))
    if entry is None or hashlib.md5(data).hexdigest() == entry.md5:  # noqa: S324 - dpkg's own checksum
        return data
    shipped = from_cached_deb(entry, path)
    if shipped is not None:
        return shipped
    progress(f"warning: {path} was changed on this machine and {entry.package}'s .deb is not cached; "
             "lab hosts get the machine's copy")
    return data


def from_cached_deb(entry: Conffile, path: Path) -> bytes | None:
    version = entry.version.replace(":", "%3a")
    for architecture in (entry.architecture, "all"):
        deb = APT_ARCHIVES / f"{entry.package}_{version}_{architecture}.deb"
        if not deb.is_file():
            continue
        with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as process:
            assert process.stdout is not None
            with tarfile.open(fileobj=process.stdout, mode="r|") as archive:
                for member in archive:
                    if member.isfile() and member.name.lstrip(".") == str(path):
                        extracted = archive.extractfile(member)
                        data = extracted.read() if extracted else None
                        process.kill()
                        return data
    return None


def copy_file_pristine(source: Path, target: Path, conffiles: dict[str, Conffile], progress: Progress) -> None:
    target.write_bytes(pristine_bytes(source, conffiles, progress))
    info = source.stat()
    os.chmod(target, stat.S_IMODE(info.st_mode))
    os.chown(target, info.st_uid, info.st_gid)


def mirror_directory(source: Path, target: Path) -> Path:
    """`target` created (if missing) with the mode and owner of the directory `source`."""
    target.mkdir(exist_ok=True)
    info = source.stat()
    os.chmod(target, stat.S_IMODE(info.st_mode))
    os.chown(target, info.st_uid, info.st_gid)
    return target


def copy_tree_pristine(source: Path, target: Path, conffiles: dict[str, Conffile], progress: Progress) -> None:
    for directory, dirnames, filenames in os.walk(source):
        here = Path(directory)
        there = mirror_directory(here, target / here.relative_to(source))
        for name in [*filenames, *(d for d in dirnames if (here / d).is_symlink())]:
            path = here / name
            if path.is_symlink():
                os.symlink(os.readlink(path), there / name)
            elif path.is_file():
                copy_file_pristine(path, there / name, conffiles, progress)


def copy_skeleton(source: Path, target: Path) -> None:
    """The directories of `source` (modes and owners), without their files: a fresh package's state dirs."""
    for directory, _, _ in os.walk(source):
        here = Path(directory)
        mirror_directory(here, target / here.relative_to(source))


def write_dpkg_database(upper: Path, agent_etc: Path | None) -> None:
    """The machine's dpkg status plus the cloudstack-agent stand-in (its conffiles with their checksums), unless
    `agent_etc` is None (a host without cloudstack-agent: the machine's status as it is)."""
    if agent_etc is None:
        return
    status = Path("/var/lib/dpkg/status").read_text()
    conffiles = {f"/etc/cloudstack/agent/{path.name}": hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324
                 for path in sorted(agent_etc.iterdir())}
    (upper / "status").write_text(status.rstrip("\n") + "\n\n" + hostfiles.agent_dpkg_status(conffiles))
    info = upper / "info"
    info.mkdir()
    directories = ["/.", "/etc", "/etc/cloudstack", "/etc/cloudstack/agent"]
    (info / "cloudstack-agent.list").write_text("\n".join([*directories, *conffiles]) + "\n")
    (info / "cloudstack-agent.conffiles").write_text("\n".join(conffiles) + "\n")


def whiteout(path: Path) -> None:
    """An overlayfs whiteout: the lower (machine's) file is hidden in the host."""
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def public_line(key: ed25519.Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
