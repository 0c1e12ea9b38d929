"""PID 1 of a stackops lab host (run by `stackops_lab.hosts`, standard library only, never imported).

Started as `ip netns exec <netns> unshare --mount --uts --pid --fork --mount-proc --propagation private --
python3 -I -S hostinit.py <host dir> <ready fd>` it is inside the host's network, mount, UTS and PID
namespaces. It sets the hostname, gives the host its private files (overlays on /etc and the package databases,
bind mounts from the host directory, a read-only /usr, tmpfs on /run and /tmp), starts the host's services
through the lab's `systemctl` shim, reports "ready" (or "error: …") on the ready fd, then reaps orphans until it
is told to stop. When it exits, the kernel kills every other process of the host (all are in its PID namespace).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time

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


def start_services(services: list[str]) -> None:
    for service in services:
        result = subprocess.run(
            ["/usr/local/sbin/systemctl", "start", service], env=SERVICE_ENV, cwd="/",
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )
        sys.stdout.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"systemctl start {service} failed ({result.returncode}): "
                               f"{(result.stdout + result.stderr).strip()[-2000:]}")


def report(fd: int, message: str) -> None:
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


def stop(signum: int, frame: object) -> None:
    sys.exit(0)


def main() -> int:
    host_dir, ready_fd = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with open(os.path.join(host_dir, "init.json")) as handle:
            config = json.load(handle)
        socket.sethostname(config["hostname"])
        drop_namespace_mounts()
        set_up_files(config)
        os.chdir("/")
        start_services(config["services"])
    except BaseException as error:  # noqa: BLE001 - everything goes back to the lab as one line
        report(ready_fd, f"error: {error}".replace("\n", " | "))
        raise
    report(ready_fd, "ready")
    print(f"{config['hostname']}: ready", flush=True)
    reap_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
