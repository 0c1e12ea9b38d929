"""PID 1 of a stackops lab host (run by `stackops_lab.hostpower` at each boot, standard library only, never imported).

Started as `unshare --mount --uts --pid --fork --mount-proc --propagation private -- python3 -I -S hostinit.py
<host dir> <ready fd>` inside the host's network namespace, it boots the host in fresh mount, UTS and PID
namespaces: it sets the hostname, gives the host its private files (overlays on /etc and the package databases,
bind mounts from the host directory, a read-only /usr, fresh tmpfs on /run and /tmp), a new boot id
(/proc/sys/kernel/random/boot_id, a bind mount of /run/stackops-lab/boot_id), brings its network up and starts
its services in Debian's order: the hardware from init.json "network" (lo, the spare NICs, eth0's address and
default route), Open vSwitch (NETWORK_SERVICES, through the lab's `systemctl` shim: Debian starts
openvswitch-switch before networking.service), then, if the host has an /etc/network/interfaces and ifupdown is
installed, `ifup -a` (what networking.service runs: the host's own network configuration, e.g. the bridges,
VLAN bridges and addresses a KvmHost wrote to /etc/network/interfaces.d/stackops, whose `ovs-vsctl --may-exist`
commands need ovsdb-server and ovs-vswitchd up), then the other services (from the second boot on, also the
cloudstack-agent stand-in when installed and enabled, as its unit is); it reports "ready <boot id>" (or "error:
…") on the ready fd, then reaps orphans.

A lab deviation: eth0's address from init.json is set at every boot, before and whatever the host's network
configuration says (a real host's NIC would have only what its configuration gives it): the lab reaches a host
there, and a host whose eth0 a KvmHost made a port of an Open vSwitch bridge keeps that address on eth0 (with the
`netdev` datapath the kernel still sees eth0's frames, so it answers there too).

It ends on SIGTERM (the lab stopping the host: at once, exit 0), or on systemd's signals, sent by the shim's
`reboot`/`shutdown`/`poweroff`/`halt` and `systemctl reboot|poweroff|halt`: SIGRTMIN+5 reboot, SIGRTMIN+4
poweroff, SIGRTMIN+3 halt. Then it stops the services (`systemctl stop`, the agent first, sshd last), sends SIGTERM
to every other process of the host (SSH sessions included: their connections close), waits for them a little and
exits: REBOOT_STATUS for a reboot, 0 otherwise. When it exits, the kernel kills every process left in the host (all
are in its PID namespace); hostpower.py then clears the network and boots the host again or leaves it off.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MNT_DETACH = 0x2

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
LIBC.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

REBOOT_STATUS = 3  # hostpower.py boots the host again
BOOT_ID = "/run/stackops-lab/boot_id"
KERNEL_BOOT_ID = "/proc/sys/kernel/random/boot_id"
RTMIN = int(signal.SIGRTMIN)
SHUTDOWN_SIGNALS = {RTMIN + 5: "reboot", RTMIN + 4: "poweroff", RTMIN + 3: "halt"}  # systemd's
SHUTDOWN_GRACE_SECONDS = 5.0
NETWORK_SERVICES = ("openvswitch-switch",)  # started before `ifup -a`, the others after it

SERVICE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
}


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    result = LIBC.mount(
        source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
        data.encode() if data else None,
    )
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {fstype or 'bind'} {source} on {target} ({data or ''}): {os.strerror(error)}")


def umount(target: str) -> None:
    if LIBC.umount2(target.encode(), MNT_DETACH) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"umount {target}: {os.strerror(error)}")


def drop_namespace_mounts() -> None:
    """Unmount our copies of other network namespaces' /run/netns mounts: they would keep those alive."""
    with open("/proc/self/mountinfo") as handle:
        lines = handle.read().splitlines()
    for line in reversed(lines):
        fields = line.split()
        separator = fields.index("-")
        if fields[separator + 1] == "nsfs":
            target = fields[4].replace("\\040", " ")
            try:
                umount(target)
            except OSError:
                pass


def set_up_files(config: dict) -> None:
    for step in config["mounts"]:
        kind, target = step["kind"], step["target"]
        if kind == "overlay":
            mount("overlay", target, "overlay", 0,
                  f"lowerdir={target},upperdir={step['upper']},workdir={step['work']}")
        elif kind == "bind":
            mount(step["source"], target, None, MS_BIND | (MS_REC if step.get("recursive") else 0))
            if step.get("readonly"):
                mount("none", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        elif kind == "tmpfs":
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={step['mode']}")
            for directory, mode in step.get("dirs", []):
                os.makedirs(directory, exist_ok=True)
                os.chmod(directory, int(mode, 8))
        else:
            raise ValueError(f"unknown mount kind {kind!r}")


def show_boot_id(boot_id: str) -> None:
    """This boot's id in /run (a tmpfs of this boot), shown as the kernel's in this host's /proc."""
    os.makedirs(os.path.dirname(BOOT_ID), exist_ok=True)
    with open(BOOT_ID, "w") as handle:
        handle.write(boot_id + "\n")
    mount(BOOT_ID, KERNEL_BOOT_ID, None, MS_BIND)
    mount("none", KERNEL_BOOT_ID, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def ip_batch(commands: list[str]) -> None:
    result = subprocess.run(["ip", "-batch", "-"], input="\n".join(commands) + "\n", env=SERVICE_ENV,
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"ip -batch failed: {result.stderr.strip()} (commands: {commands})")


def start_network(network: dict) -> None:
    """The host's network hardware as init.json configures it: lo and the spare NICs up, eth0 with its address
    and default route."""
    commands = ["link set dev lo up"]
    commands += [f"link set dev {name} up" for name in network.get("up", [])]
    device = network.get("device")
    if device:
        commands += [f"addr add {network['address']} dev {device}", f"link set dev {device} up"]
        if network.get("gateway"):
            commands.append(f"route add default via {network['gateway']}")
    ip_batch(commands)


def apply_interfaces() -> None:
    """The host's own /etc/network/interfaces (`ifup -a`), if it has one and ifupdown is installed; what fails is
    in the init's log, the host boots on (as networking.service failing leaves a Debian host up)."""
    if not os.path.exists("/etc/network/interfaces"):
        return
    if shutil.which("ifup", path=SERVICE_ENV["PATH"]) is None:
        print("/etc/network/interfaces exists but ifupdown is not installed: not applied", flush=True)
        return
    os.makedirs("/run/network", exist_ok=True)
    result = subprocess.run(["ifup", "-a"], env=SERVICE_ENV, cwd="/", stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=120)
    sys.stdout.write(f"ifup -a exited {result.returncode}\n{result.stdout}{result.stderr}")


def systemctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/usr/local/sbin/systemctl", *args], env=SERVICE_ENV, cwd="/",
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def start_services(services: list[str]) -> None:
    for service in services:
        result = systemctl("start", service)
        sys.stdout.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"systemctl start {service} failed ({result.returncode}): "
                               f"{(result.stdout + result.stderr).strip()[-2000:]}")


def start_enabled(services: list[str]) -> None:
    """Units started at boot only when installed and enabled (from the second boot on: the lab's first boot
    leaves the agent to the operator)."""
    for service in services:
        if systemctl("-q", "is-enabled", service).returncode == 0:
            start_services([service])


def report(fd: int, message: str) -> None:
    if fd < 0:
        return
    try:
        os.write(fd, (message + "\n").encode())
        os.close(fd)
    except OSError:
        pass


def reap_forever() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(1)


class Shutdown(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


requested: list[str] = []  # a shutdown asked for while the host was still booting
booted = False


def stop(signum: int, frame: object) -> None:
    sys.exit(0)


def shutdown_requested(signum: int, frame: object) -> None:
    kind = SHUTDOWN_SIGNALS.get(signum, "poweroff")
    if not booted:
        requested.append(kind)
        return
    raise Shutdown(kind)


def shut_down(config: dict, kind: str) -> int:
    """Stop the services, end every other process of the host, and say what comes next."""
    global booted
    booted = False  # a second request while shutting down changes nothing
    print(f"{config['hostname']}: {kind}: stopping services", flush=True)
    for service in ["cloudstack-agent", *reversed(config["services"])]:
        try:
            systemctl("stop", service, timeout=60)
        except subprocess.TimeoutExpired:
            pass
    os.kill(-1, signal.SIGTERM)  # every process of the host but this one
    deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.05)
    print(f"{config['hostname']}: {kind}", flush=True)
    return REBOOT_STATUS if kind == "reboot" else 0


def main() -> int:
    host_dir, ready_fd = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    for number in SHUTDOWN_SIGNALS:
        signal.signal(number, shutdown_requested)
    global booted
    try:
        with open(os.path.join(host_dir, "init.json")) as handle:
            config = json.load(handle)
        boot_id = str(uuid.uuid4())
        boots = os.path.join(host_dir, "boots")  # before the mounts: the host directory may be under /tmp
        first_boot = not os.path.exists(boots)
        with open(boots, "a") as handle:
            handle.write(boot_id + "\n")
        socket.sethostname(config["hostname"])
        drop_namespace_mounts()
        set_up_files(config)
        os.chdir("/")
        show_boot_id(boot_id)
        start_network(config.get("network", {}))
        start_services([s for s in config["services"] if s in NETWORK_SERVICES])
        apply_interfaces()
        start_services([s for s in config["services"] if s not in NETWORK_SERVICES])
        if not first_boot:
            start_enabled(config.get("enabledServices", []))
    except BaseException as error:  # noqa: BLE001 - everything goes back to the lab as one line
        report(ready_fd, f"error: {error}".replace("\n", " | "))
        raise
    report(ready_fd, f"ready {boot_id}")
    print(f"{config['hostname']}: ready (boot id {boot_id})", flush=True)
    try:
        booted = True
        if requested:
            raise Shutdown(requested[0])
        reap_forever()
    except Shutdown as shutdown:
        return shut_down(config, shutdown.kind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
