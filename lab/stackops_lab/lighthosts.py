"""Light lab hosts: hundreds of SSH servers on one machine, each with its own address and host key, for scale
benchmarks (bench/scale.py). A light host runs nothing but an OpenSSH server: no Open vSwitch, no libvirtd, no
private /etc (the KVM lab hosts of hosts.py have all that, and cost too much to run 500 of).

Layout (slot s uses the network 10.<251+s>.0.0/16, free on this machine and apart from the lab's 10.250.x.x):

- hosts are grouped in cells of up to 50; cell k is a network namespace `stackops-light<s>-<k>` joined to the
  machine by a veth pair (`stklt<s>-<k>` on the machine, `eth0` inside) on the point-to-point /31
  10.<n>.0.<2k>/31 (the machine's end is the host's `gateway`);
- a cell's hosts are 10.<n>.<k>.10, .11, …: the cell has a `local 10.<n>.<k>.0/24 dev lo` route (no address per
  host, so `ip addr` in a host stays as short as on a real one) and the machine routes 10.<n>.<k>.0/24 through
  the cell: one neighbour entry per cell, whatever the number of hosts;
- each host is one `sshd -D` (its own config, host key and `ListenAddress`) started with `ip netns exec` in a
  mount namespace of its own where /run, /root, /var/lib/apt/lists and /var/cache/apt are empty tmpfs: no daemon
  of the machine answers a probe (so `ovs-vsctl`, `virsh`, `systemctl` find nothing), root's home has no dot
  files (bash under sshd reads ~/.bashrc even for a command: the machine's may run `pyenv init` and the like on
  every round trip), apt's package lists are empty (a probe's `apt-cache` costs milliseconds, not the second it
  costs against the machine's lists) and nothing in a session writes apt's cache. Root logs in with the light
  lab's client key only.

A session sees the machine's /usr and /etc (read them, do not write them: there is no overlay as on the KVM lab
hosts). Cells have no default route: a host reaches only the machine's addresses on 10.<n>.0.0/24 (where a lab
server, e.g. the release source, binds on `LightHost.gateway`).

The lab directory keeps the state (`lighthosts.json`) and the files; a link `stklt<s>-claim` (an empty bridge, down) whose alias
is the lab directory claims the slot. `stop()` ends every process in the cells, deletes the links and
namespaces and removes the files; a slot whose owner is gone (a crashed bench) is swept when `start` needs it,
and `python -m stackops_lab.lighthosts down --dir DIR` or `sweep_all()` cleans up by hand.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from stackops_lab.controlplane import LabError, Progress, ignore_progress, process_alive, spawn, write_private
from stackops_lab.hosts import ip, ip_batch, link_alias, link_exists, list_netns

STATE_FILE = "lighthosts.json"
WORKDIR = "lighthosts"
FIRST_SECOND_OCTET = 251
SLOTS = 4  # 10.251 … 10.254
HOSTS_PER_CELL = 50
MAX_CELLS = 127  # the cells' /31 transit networks fit 10.<n>.0.0/24
MAX_HOSTS = 2000
FIRST_HOST_OCTET = 10
SSHD = "/usr/sbin/sshd"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
# Run in the host's own mount namespace (`ip netns exec` makes one, slave to the machine's): empty /run (sshd's
# privilege separation directory is made there), an empty /root, empty apt lists and cache, then the sshd.
LAUNCH = (
    "mount -t tmpfs -o mode=0755,size=4m stackops-light /run && mkdir -m 0755 /run/sshd"
    " && mount -t tmpfs -o mode=0700,size=4m stackops-light /root"
    " && mount -t tmpfs -o mode=0755,size=4m stackops-light /var/lib/apt/lists"
    " && mount -t tmpfs -o mode=0755,size=16m stackops-light /var/cache/apt"
    ' && exec "$0" -D -e -f "$1"'
)
# `sshd -t` (the configuration check before the hosts start) also wants /run/sshd: the same empty /run, in a
# private mount namespace of its own (`unshare --mount`), so nothing is ever made under the machine's /run.
CHECK = (
    "mount -t tmpfs -o mode=0755,size=4m stackops-light /run && mkdir -m 0755 /run/sshd"
    ' && exec "$0" -t -f "$1"'
)
SSHD_CONFIG = """\
# stackops light lab host {name}: an OpenSSH server only, on its own address with its own host key.
ListenAddress {address}:22
HostKey {host_key}
PidFile none
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 2000
MaxSessions 64
UseDNS no
PrintMotd no
PrintLastLog no
LogLevel ERROR
"""


@dataclass
class LightHost:
    """One running light host."""

    name: str
    address: str
    host_key: str  # "ssh-ed25519 AAAA…", to pin
    client_key_path: Path  # root's login key (OpenSSH format, ed25519)
    gateway: str  # the machine's address the host reaches (its cell's transit address)
    netns: str
    config: Path
    pid: int = 0  # the sshd

    @property
    def client_key_pem(self) -> str:
        return self.client_key_path.read_text()

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    def alive(self) -> bool:
        return _is_our_sshd(self.pid, self.config)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "hostKey": self.host_key,
                "clientKeyPath": str(self.client_key_path), "gateway": self.gateway, "netns": self.netns,
                "config": str(self.config), "pid": self.pid}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LightHost:
        return cls(name=data["name"], address=data["address"], host_key=data["hostKey"],
                   client_key_path=Path(data["clientKeyPath"]), gateway=data["gateway"], netns=data["netns"],
                   config=Path(data["config"]), pid=int(data.get("pid", 0)))


class LightHosts:
    """The light hosts of one lab directory: `start(count)`, `hosts`, `client_key_path`, `stop()`."""

    def __init__(self, lab_dir: Path) -> None:
        self.lab_dir = Path(lab_dir).absolute()
        self.state_file = self.lab_dir / STATE_FILE
        self.workdir = self.lab_dir / WORKDIR

    # ------------------------------------------------------------------ public

    @property
    def client_key_path(self) -> Path:
        return self.workdir / "id_ed25519"

    @property
    def known_hosts_path(self) -> Path:
        return self.workdir / "known_hosts"

    @property
    def hosts(self) -> list[LightHost]:
        state = self.read_state()
        return [LightHost.from_json(h) for h in state.get("hosts", [])] if state else []

    def addresses(self) -> list[tuple[str, str]]:
        """(address, host key) of every host."""
        return [(host.address, host.host_key) for host in self.hosts]

    def start(self, count: int, progress: Progress = ignore_progress, *, persistent: bool = False) -> list[LightHost]:
        """Start `count` light hosts (after removing any this lab directory had); returns them once every one
        accepts TCP connections on port 22. They belong to this process: once it is gone (a crash), the next
        `start` that needs their slot sweeps them, unless `persistent` (kept until `stop`)."""
        if not 1 <= count <= MAX_HOSTS:
            raise LabError(f"light hosts: 1 to {MAX_HOSTS}, not {count}")
        check_prerequisites()
        self.stop()
        started = time.monotonic()
        self.workdir.mkdir(parents=True, mode=0o755)
        slot = self.claim_slot()
        prefix = network_prefix(slot)
        owner = 0 if persistent else os.getpid()
        state: dict[str, Any] = {"slot": slot, "owner": owner, "ownerStarted": _start_time(owner) if owner else 0,
                                 "cells": [], "hosts": []}
        try:
            self.write_state(state)
            client_key = self.write_client_key()
            authorized_keys = self.workdir / "authorized_keys"
            write_private(authorized_keys, client_key.with_suffix(".pub").read_bytes())
            cells = (count + HOSTS_PER_CELL - 1) // HOSTS_PER_CELL
            progress(f"creating {count} light host(s) in {cells} cell(s) on {prefix}.0.0/16…")
            hosts: list[LightHost] = []
            for k in range(1, cells + 1):
                netns, veth, gateway = self.create_cell(slot, k)
                state["cells"].append({"netns": netns, "veth": veth})
                self.write_state(state)
                for j in range(min(HOSTS_PER_CELL, count - len(hosts))):
                    hosts.append(self.prepare_host(len(hosts) + 1, f"{prefix}.{k}.{FIRST_HOST_OCTET + j}", gateway,
                                                   netns, client_key, authorized_keys))
            check_config(hosts[0].config)
            log = self.workdir / "sshd.log"
            for host in hosts:
                host.pid = spawn_sshd(host, log)
            state["hosts"] = [host.to_json() for host in hosts]
            self.write_state(state)
            self.known_hosts_path.write_text("".join(f"{h.address} {h.host_key}\n" for h in hosts))
            wait_listening(hosts, log)
        except BaseException:
            self.stop()
            raise
        progress(f"{count} light host(s) ready in {time.monotonic() - started:.1f}s")
        return hosts

    def stop(self, progress: Progress = ignore_progress) -> None:
        """End every process of this lab's hosts, delete their links and namespaces, remove the files
        (idempotent; also after a crash, from the state file and the slot's names)."""
        state = self.read_state()
        slots = {int(state["slot"])} if state and "slot" in state else set()
        slots |= {slot for slot in range(SLOTS) if link_alias(claim_link(slot)) == str(self.lab_dir)}
        hosts = [LightHost.from_json(h) for h in state.get("hosts", [])] if state else []
        for host in hosts:
            if host.alive():
                _signal(host.pid, signal.SIGTERM)
        for slot in sorted(slots):
            sweep_slot(slot)
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.state_file.unlink(missing_ok=True)
        if hosts:
            progress(f"removed {len(hosts)} light host(s)")

    def processes(self) -> list[int]:
        """Pids of every process in this lab's cells (the sshds and their sessions), for accounting."""
        state = self.read_state()
        if not state:
            return []
        pids: list[int] = []
        for cell in state.get("cells", []):
            pids += netns_pids(cell["netns"])
        return pids

    # ------------------------------------------------------------------ slot, cells, hosts

    def claim_slot(self) -> int:
        """The first slot that is free (or whose owner is gone: swept), claimed by creating its claim link."""
        for slot in range(SLOTS):
            claim = claim_link(slot)
            if link_exists(claim):
                if owner_alive(Path(link_alias(claim))):
                    continue
                sweep_slot(slot)
            network = f"{network_prefix(slot)}.0.0/16"
            if machine_uses(network):
                continue
            created = ip("link", "add", claim, "type", "bridge", check=False)  # (no dummy driver everywhere)
            if created.returncode != 0:
                continue  # taken meanwhile
            ip("link", "set", "dev", claim, "alias", str(self.lab_dir))
            return slot
        raise LabError(f"no free light-host network among 10.{FIRST_SECOND_OCTET}-"
                       f"{FIRST_SECOND_OCTET + SLOTS - 1}.0.0/16")

    def create_cell(self, slot: int, k: int) -> tuple[str, str, str]:
        if k > MAX_CELLS:
            raise LabError(f"at most {MAX_CELLS} cells")
        prefix = network_prefix(slot)
        netns, veth = f"stackops-light{slot}-{k}", f"stklt{slot}-{k}"
        outside, inside = f"{prefix}.0.{2 * k}", f"{prefix}.0.{2 * k + 1}"
        ip_batch([f"netns add {netns}", f"link add {veth} type veth peer name eth0 netns {netns}",
                  f"addr add {outside}/31 dev {veth}", f"link set dev {veth} up"])
        ip_batch(["link set dev lo up", f"addr add {inside}/31 dev eth0", "link set dev eth0 up",
                  f"route add local {prefix}.{k}.0/24 dev lo",
                  f"route add {prefix}.0.0/24 via {outside} dev eth0"], netns=netns)
        ip("route", "add", f"{prefix}.{k}.0/24", "via", inside, "dev", veth)
        return netns, veth, outside

    def prepare_host(self, index: int, address: str, gateway: str, netns: str, client_key: Path,
                     authorized_keys: Path) -> LightHost:
        name = f"light{index}"
        directory = self.workdir / name
        directory.mkdir(mode=0o700)
        key = ed25519.Ed25519PrivateKey.generate()
        key_path = directory / "ssh_host_ed25519_key"
        write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                  serialization.NoEncryption()))
        host_key = public_line(key)
        config = directory / "sshd_config"
        config.write_text(SSHD_CONFIG.format(name=name, address=address, host_key=key_path,
                                             authorized_keys=authorized_keys))
        return LightHost(name=name, address=address, host_key=host_key, client_key_path=client_key,
                         gateway=gateway, netns=netns, config=config)

    def write_client_key(self) -> Path:
        key = ed25519.Ed25519PrivateKey.generate()
        path = self.client_key_path
        write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                              serialization.NoEncryption()))
        path.with_suffix(".pub").write_text(public_line(key) + " stackops-light-lab\n")
        return path

    # ------------------------------------------------------------------ state

    def write_state(self, state: dict[str, Any]) -> None:
        self.lab_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=1) + "\n")
        os.replace(temporary, self.state_file)

    def read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None


# --------------------------------------------------------------------------- helpers


def network_prefix(slot: int) -> str:
    return f"10.{FIRST_SECOND_OCTET + slot}"


def claim_link(slot: int) -> str:
    return f"stklt{slot}-claim"


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise LabError("light hosts need root (network and mount namespaces); run as root")
    missing = [tool for tool in ("ip", "unshare") if shutil.which(tool) is None]
    if not Path(SSHD).exists():
        missing.append(f"{SSHD} (openssh-server)")
    if missing:
        raise LabError(f"missing on this machine: {', '.join(missing)}; run `make deps`")


def check_config(config: Path) -> None:
    """`sshd -t` on a host's configuration, in a private mount namespace whose /run holds an empty /run/sshd (the
    machine may have none: sshd is not running on it, or it was never started since boot)."""
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    result = subprocess.run([unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", CHECK, SSHD,
                             str(config)], capture_output=True, text=True, check=False, timeout=30)
    if result.returncode != 0:
        raise LabError(f"sshd refuses the light host configuration {config}: {result.stderr.strip()}")


def spawn_sshd(host: LightHost, log: Path) -> int:
    """The host's sshd in its own session (`ip netns exec` and sh exec: the pid becomes the sshd's)."""
    ip_binary = shutil.which("ip") or "/usr/sbin/ip"
    return spawn([ip_binary, "netns", "exec", host.netns, "/bin/sh", "-c", LAUNCH, SSHD, str(host.config)], log)


def wait_listening(hosts: list[LightHost], log: Path) -> None:
    pending = list(hosts)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while pending:
        still = []
        for host in pending:
            try:
                with socket.create_connection((host.address, 22), timeout=1):
                    pass
            except OSError:
                still.append(host)
        pending = still
        if not pending:
            return
        dead = [host for host in pending if not process_alive(host.pid)]
        if dead or time.monotonic() > deadline:
            names = ", ".join(h.name for h in (dead or pending)[:5])
            what = "exited" if dead else f"not listening after {START_TIMEOUT_SECONDS:.0f}s"
            raise LabError(f"light hosts {what}: {names}…\n{_tail(log)}")
        time.sleep(0.2)


def sweep_slot(slot: int) -> None:
    """Remove everything of a slot: processes in its cells, the machine-side links, the namespaces, the claim."""
    prefix = f"stackops-light{slot}-"
    cells = [name for name in list_netns() if name.startswith(prefix)]
    for netns in cells:
        kill_netns_processes(netns)
    for link in sorted(Path("/sys/class/net").glob(f"stklt{slot}-*")):
        ip("link", "del", link.name, check=False)
    for netns in cells:
        ip("netns", "del", netns, check=False)


def sweep_all() -> None:
    """Every light-host slot of this machine, whoever owned it (for a machine left in a mess)."""
    for slot in range(SLOTS):
        sweep_slot(slot)


def owner_alive(lab_dir: Path) -> bool:
    try:
        state = json.loads((lab_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return False
    pid = int(state.get("owner", 0))
    if not pid:
        return True  # persistent: until `stop`
    return process_alive(pid) and _start_time(pid) == int(state.get("ownerStarted", -1))


def kill_netns_processes(netns: str) -> None:
    pids = [pid for pid in netns_pids(netns) if pid != os.getpid()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            _signal(pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS / 2
        while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [pid for pid in pids if process_alive(pid)]
        if not pids:
            return


def netns_pids(netns: str) -> list[int]:
    result = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False)
    return [int(word) for word in result.stdout.split() if word.isdigit()]


def machine_uses(network: str) -> bool:
    import ipaddress

    from stackops_lab.hosts import machine_ipv4_networks

    ours = ipaddress.ip_network(network)
    return any(ours.overlaps(other) for other in machine_ipv4_networks())


def public_line(key: ed25519.Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


def _is_our_sshd(pid: int, config: Path) -> bool:
    """The listener rewrites its command line into one string ("sshd: /usr/sbin/sshd -D -e -f <config> [listener]
    …"), so the configuration's path is looked for in the whole of it, not as one of its NUL-separated words."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return f" {config} ".encode() in command + b" "


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _start_time(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    """`python -m stackops_lab.lighthosts up --dir D --count N` / `down --dir D` / `sweep` (every slot)."""
    parser = argparse.ArgumentParser(prog="python -m stackops_lab.lighthosts", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "sweep"))
    parser.add_argument("--dir", type=Path, default=Path("/tmp/stackops-light"))
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args(argv)
    report = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    try:
        if args.command == "up":
            hosts = LightHosts(args.dir).start(args.count, report, persistent=True)
            for host in hosts:
                print(f"{host.name} {host.address} {host.host_key}")
            report(f"log in: ssh -i {hosts[0].client_key_path} -o UserKnownHostsFile="
                   f"{LightHosts(args.dir).known_hosts_path} root@{hosts[0].address}")
        elif args.command == "down":
            LightHosts(args.dir).stop(report)
        else:
            sweep_all()
    except LabError as error:
        report(f"error: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
