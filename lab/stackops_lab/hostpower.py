"""The power and firmware of a stackops lab host (run by `stackops_lab.hosts`, standard library only, never imported).

Started as `ip netns exec <netns> python3 -I -S hostpower.py <host dir> <ready fd>`, it lives in the host's network
namespace but outside its PID namespace, and boots the host: `unshare --mount --uts --pid --fork --mount-proc …
hostinit.py` (PID 1 of the host, fresh mount, UTS and PID namespaces, so a fresh /run and /tmp). Whatever the
init reports on its ready pipe ("ready <boot id>" or "error: …") goes to `<host dir>/power.log`; the first boot's
answer is also passed on to the lab on `<ready fd>`.

When the host's init ends, every process of the host has ended with it (the kernel kills its PID namespace).
Then the runtime state of the host's network namespace is cleared as a power cycle clears it: every link that is
not hardware (`init.json` "hardware": lo, eth0, the spare NICs and their peers) is deleted (bridges, VLANs, bonds,
taps), the hardware links lose their addresses, MTU and master and go down, the routes go. The init's way out
says what comes next:
- exit status 3 (REBOOT_STATUS) or killed by SIGHUP (reboot(2) in a PID namespace): a reboot. The host stays
  down `init.json` "downSeconds" (read while it is down: lowering it shortens the wait), then boots again from
  its directory.
- anything else (exit 0: `poweroff`/`halt` in the host): the host stays off until SIGUSR1 (the power button,
  `LabHost.power_on`).
SIGTERM (the lab stopping the host) stops the init (SIGTERM) and ends this process; nothing boots again.

iptables rules are not cleared: in a lab host they are the lab's network partitions (LabHost.cut_off), which
belong to the network, not to the host. Sysctls of the network namespace are not reset either.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

REBOOT_STATUS = 3  # hostinit.py's exit status for a reboot
HOSTINIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostinit.py")
PR_SET_PDEATHSIG = 1
LIBC = ctypes.CDLL(None, use_errno=True)

stopping = False
power_button = False
child: subprocess.Popen[bytes] | None = None


def event(host_dir: str, message: str) -> None:
    """One line of `<host dir>/power.log`: a monotonic time (seconds) and what happened."""
    with open(os.path.join(host_dir, "power.log"), "a") as handle:
        handle.write(f"{time.monotonic():.3f} {message}\n")


def load_config(host_dir: str) -> dict:
    with open(os.path.join(host_dir, "init.json")) as handle:
        return json.load(handle)


def down_seconds(host_dir: str) -> float:
    try:
        return float(load_config(host_dir).get("downSeconds", 0))
    except (OSError, ValueError):
        return 0.0


def init_of(unshare_pid: int) -> int:
    try:
        with open(f"/proc/{unshare_pid}/task/{unshare_pid}/children") as handle:
            children = handle.read().split()
    except OSError:
        return 0
    return int(children[0]) if children else 0


def on_term(signum: int, frame: object) -> None:
    global stopping
    stopping = True
    if child is not None and child.poll() is None:
        target = init_of(child.pid) or child.pid  # no init yet: `unshare --kill-child` takes it with it
        try:
            os.kill(target, signal.SIGTERM)
        except ProcessLookupError:
            pass


def on_power_button(signum: int, frame: object) -> None:
    global power_button
    power_button = True


def die_with_parent() -> None:
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def read_line(fd: int) -> str:
    """The init's one line; EOF (the init ended before it reported) gives what was read."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def ip_lines(*args: str) -> list[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    return result.stdout.splitlines()


def clear_network(hardware: list[str]) -> None:
    """What a power cycle clears in the host's network namespace (see the module's doc)."""
    links = [line.split(":", 2)[1].strip().split("@")[0] for line in ip_lines("-o", "link", "show")]
    commands = [f"link del dev {name}" for name in links if name not in hardware]
    run_batch(commands)  # one by one: deleting a link may take others (a VLAN with its parent) with it
    commands = []
    for name in hardware:
        if name == "lo":
            continue
        commands += [f"link set dev {name} down", f"link set dev {name} nomaster",
                     f"addr flush dev {name}", f"link set dev {name} mtu 1500"]
    commands += ["link set dev lo down", "route flush table main"]
    run_batch(commands)
    subprocess.run(["ip", "-6", "route", "flush", "table", "main"], capture_output=True, check=False)


def run_batch(commands: list[str]) -> None:
    if commands:
        subprocess.run(["ip", "-force", "-batch", "-"], input="\n".join(commands) + "\n", capture_output=True,
                       text=True, check=False)


def boot(host_dir: str, number: int, lab_fd: int) -> int:
    """Boot the host once; return the wait status of its end (after reporting the boot on `lab_fd`)."""
    global child
    read_end, write_end = os.pipe()
    event(host_dir, f"boot {number}: starting")
    child = subprocess.Popen(
        ["unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc", "--kill-child", "--propagation",
         "private", "--", sys.executable, "-I", "-S", HOSTINIT, host_dir, str(write_end)],
        pass_fds=(write_end,), preexec_fn=die_with_parent, stdin=subprocess.DEVNULL,
    )
    os.close(write_end)
    message = read_line(read_end)
    os.close(read_end)
    words = message.split()
    if words[:1] == ["ready"]:
        event(host_dir, f"boot {number}: up boot_id={words[1] if len(words) > 1 else '?'}")
        message = "ready"
    else:
        event(host_dir, f"boot {number}: failed: {message or 'its init exited'}")
    if lab_fd >= 0:
        try:
            os.write(lab_fd, (message + "\n").encode())
        except OSError:
            pass
        os.close(lab_fd)
    child.wait()
    return child.returncode


def main() -> int:
    host_dir, lab_fd = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, on_power_button)
    global power_button
    number = 0
    while not stopping:
        config = load_config(host_dir)
        number += 1
        status = boot(host_dir, number, lab_fd)
        lab_fd = -1
        reboot = status in (REBOOT_STATUS, -signal.SIGHUP)
        clear_network(config.get("hardware", ["lo"]))
        if stopping:
            event(host_dir, f"boot {number}: stopped by the lab")
            break
        if reboot:
            down = down_seconds(host_dir)
            event(host_dir, f"boot {number}: rebooting, down {down:g}s")
            started = time.monotonic()
            while not stopping and time.monotonic() < started + down:
                time.sleep(0.05)
                down = down_seconds(host_dir)  # read while down: lowering it shortens this reboot
            continue
        event(host_dir, f"boot {number}: powered off (init status {status})")
        power_button = False
        while not stopping and not power_button:
            time.sleep(0.1)
        if power_button:
            event(host_dir, "power button")
    return 0


if __name__ == "__main__":
    sys.exit(main())
