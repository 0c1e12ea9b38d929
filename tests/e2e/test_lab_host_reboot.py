"""A reboot that is a reboot in the lab (issue 15): `reboot` in a KVM lab host ends every process in it (the
caller's SSH connection drops), clears its runtime network state, keeps it down as long as configured, then boots
it again from its directory: a new boot id, the lab's own addresses back and runtime ones gone, Open vSwitch
bridges back from conf.db, libvirtd (configured on disk) and the enabled agent stand-in running again."""
from __future__ import annotations

import base64
import contextlib
import io
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest

from support.wait import wait_for

from stackops_lab.controlplane import LabError
from stackops_lab.hosts import LabHost, LabHosts, list_netns

LIBVIRT_TCP = 'listen_tls = 0\nlisten_tcp = 1\ntcp_port = "16509"\nauth_tcp = "none"\nmdns_adv = 0\n'
WAIT_SECONDS = 120.0  # a failure's limit, never a measure


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabHosts, LabHost]]:
    manager = LabHosts(tmp_path_factory.mktemp("lab-host-reboot"))
    try:
        (host,) = manager.create(1, reboot_down_seconds=0.5)
        yield manager, host
    finally:
        manager.destroy()


def pinned_client(host: LabHost) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    key_type, blob = host.host_key.split()[:2]
    client.get_host_keys().add(host.address, key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(blob)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(host.client_key_pem))
    client.connect(host.address, username="root", pkey=key, look_for_keys=False, allow_agent=False,
                   timeout=15, banner_timeout=15, auth_timeout=15)
    return client


def ok(host: LabHost, command: str) -> str:
    with pinned_client(host) as client:
        _, stdout, stderr = client.exec_command(command, timeout=120)
        out = stdout.read().decode()
        status = stdout.channel.recv_exit_status()
        assert status == 0, f"`{command}` exited {status}: {out} {stderr.read().decode()}"
        return out


def wait_until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    wait_for(condition, timeout=WAIT_SECONDS, what=what, interval=0.05)


def virsh_version(host: LabHost) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", f"qemu+tcp://{host.address}/system", "version"],
                          capture_output=True, text=True, timeout=90)


def addresses(host: LabHost) -> set[str]:
    return set(ok(host, "ip -o -4 addr show | awk '{print $2, $4}'").splitlines())


def test_ssh_reboot_drops_the_session_clears_runtime_state_and_boots_from_disk(lab) -> None:
    _, host = lab
    boot_id = ok(host, "cat /proc/sys/kernel/random/boot_id").strip()
    assert boot_id == host.boot_id() != Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    lab_addresses = addresses(host)
    assert f"eth0 {host.address}/24" in lab_addresses
    # what a reboot must keep (on disk) and what it must lose (runtime only)
    ok(host, "ovs-vsctl add-br cloudbr0 -- set bridge cloudbr0 datapath_type=netdev"
             " && ovs-vsctl add-port cloudbr0 mgmt0 -- set interface mgmt0 type=internal"
             " && ip addr add 198.51.100.10/24 dev mgmt0 && ip link set mgmt0 up"
             " && ip addr add 192.0.2.77/32 dev eth0 && ip link add br7 type bridge"
             " && touch /run/stackops-test /etc/stackops-test")
    ok(host, f"printf '{LIBVIRT_TCP}' >> /etc/libvirt/libvirtd.conf"
             " && sed -i 's/^#LIBVIRTD_ARGS=\"--listen\"/LIBVIRTD_ARGS=\"--listen\"/' /etc/default/libvirtd"
             " && systemctl restart libvirtd && systemctl start cloudstack-agent")
    assert virsh_version(host).returncode == 0
    assert {"eth0 192.0.2.77/32", "mgmt0 198.51.100.10/24"} <= addresses(host)
    pids_before = set(host.processes())
    boots = host.boots()
    host.set_down_seconds(600)  # down until the test lowers it: the down state is observed, not raced
    seen = len(host.power_events())

    client = pinned_client(host)
    transport = client.get_transport()
    assert transport is not None
    session = transport.open_session()
    session.exec_command("sleep 600")  # a session open across the reboot
    _, stdout, _ = client.exec_command("reboot")
    wait_until(lambda: not transport.is_active(), "the caller's SSH connection dropped")
    assert session.recv_exit_status() == -1, "the session ended without an exit status: the host went away"
    client.close()

    wait_until(lambda: any("rebooting, down 600s" in e for e in host.power_events()[seen:]), "down")
    assert not host.alive() and host.processes() == [] and host.powered()
    with pytest.raises(LabError, match="is down"):
        host.run("true")
    inside = subprocess.run(["ip", "-n", host.netns, "-o", "addr", "show"], capture_output=True, text=True)
    assert host.address not in inside.stdout and "192.0.2.77" not in inside.stdout, inside.stdout
    links = subprocess.run(["ip", "-n", host.netns, "-o", "link", "show"], capture_output=True, text=True).stdout
    assert "br7" not in links and "mgmt0" not in links and "cloudbr0" not in links, links
    with pytest.raises(OSError):  # unreachable on its address: no answer at all
        socket.create_connection((host.address, 22), timeout=3).close()

    host.set_down_seconds(0.5)
    host.wait_up(boots)

    events = host.power_events()[-4:]
    assert [e.split(": ", 1)[1].split(" boot_id")[0] for e in events] == [
        "up", "rebooting, down 600s", "starting", "up"], events
    new_boot_id = ok(host, "cat /proc/sys/kernel/random/boot_id").strip()
    assert new_boot_id != boot_id and f"boot_id={new_boot_id}" in events[-1]
    assert not set(host.processes()) & pids_before, "every process of the last boot is gone"
    after = addresses(host)
    assert lab_addresses <= after, "the addresses the lab configures come back"
    assert not {a for a in after if "192.0.2.77" in a or "198.51.100.10" in a}, "runtime addresses are gone"
    assert "cloudbr0" in ok(host, "ovs-vsctl list-br").split(), "bridges persist in conf.db"
    wait_until(lambda: host.run("ip -o link show mgmt0").returncode == 0, "mgmt0 recreated by ovs-vswitchd")
    assert ok(host, "ls /run/stackops-test /etc/stackops-test 2>&1; true").count("No such file") == 1
    assert ok(host, "systemctl is-active openvswitch-switch libvirtd ssh cloudstack-agent").split() == ["active"] * 4
    version = virsh_version(host)
    assert version.returncode == 0, version.stderr
    assert ok(host, "hostname").strip() == host.name


def test_reboot_from_the_lab_api_the_cli_and_the_shutdown_command_take_the_configured_time(lab) -> None:
    manager, host = lab
    first = host.boot_id()
    host.reboot(down_seconds=1.0)  # `systemctl reboot` inside the host, then wait until it is up
    second = host.boot_id()
    assert second != first
    cli = subprocess.run([sys.executable, "-m", "stackops.cli", "lab", "--dir", str(manager.lab_dir), "reboot",
                          host.name], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0 and f"{host.name}: rebooted, up again" in cli.stderr, cli.stderr
    assert host.boot_id() not in (first, second)
    first = host.boot_id()

    boots = host.boots()
    with pinned_client(host) as client:
        client.exec_command("shutdown -r now")
        transport = client.get_transport()
        assert transport is not None
        wait_until(lambda: not transport.is_active(), "the caller's SSH connection dropped")
    host.wait_up(boots)
    assert host.boot_id() not in (first, second)
    log = host.power_log()
    downs = [(t, e) for t, e in log if "rebooting, down 1s" in e]
    assert len(downs) == 3
    for down_at, _ in downs:
        booted_at = next(t for t, e in log if t >= down_at and e.endswith(": starting"))
        assert booted_at - down_at >= 1.0, "down at least the configured time"


def test_poweroff_stays_off_until_the_power_button(lab) -> None:
    _, host = lab
    boots = host.boots()
    assert host.run("poweroff").returncode in (0, -15, 143), "done, or ended by the shutdown it started"
    wait_until(lambda: "powered off" in host.power_events()[-1], "powered off")
    assert not host.alive() and host.powered()
    host.power_on()
    host.wait_up(boots)
    assert ok(host, "systemctl is-active ssh").strip() == "active"


def test_reboot_refuses_outside_a_lab_host(lab) -> None:
    manager, _ = lab
    shim = manager.workdir / "sbin" / "reboot"
    result = subprocess.run([str(shim)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "not a stackops lab host's init" in result.stderr


def test_destroy_during_a_reboot_leaves_nothing(tmp_path: Path) -> None:
    manager = LabHosts(tmp_path / "lab")
    (host,) = manager.create(1, reboot_down_seconds=600)
    host.reboot(wait=False)
    wait_until(lambda: any("rebooting" in e for e in host.power_events()), "down")
    manager.destroy()
    assert host.netns not in list_netns() and not host.powered()
    assert subprocess.run(["pgrep", "-f", str(tmp_path / "lab")], capture_output=True).returncode == 1


@dataclass
class CloudStackHost:
    """A KVM lab host added to the lab CloudStack: its simulator, an API client and the host's id there."""
    sim: Any
    api: Any
    id: str

    def state(self) -> str:
        return str(self.api.listHosts(id=self.id)["host"][0]["state"])

    def state_changes(self) -> list[tuple[str, str]]:
        """The host's state changes in the simulator's audit log, (from, to)."""
        return [(e["from"]["state"], e["state"]) for e in self.sim.audit()
                if e["event"] == "host.state" and e["host"] == self.id and e["from"]["state"] != e["state"]]


@contextlib.contextmanager
def in_lab_cloudstack(host: LabHost, cluster: str, ping_timeout: float) -> Iterator[CloudStackHost]:
    """The lab CloudStack (short timings, its KVM ping giving up on the host after `ping_timeout`) with `host` added
    as a KVM host of `cluster`, Up."""
    from cs import CloudStack

    from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings

    if virsh_version(host).returncode != 0:  # addHost checks libvirtd on TCP, as CloudStack's discoverer does
        ok(host, f"printf '{LIBVIRT_TCP}' >> /etc/libvirt/libvirtd.conf"
                 " && sed -i 's/^#LIBVIRTD_ARGS=\"--listen\"/LIBVIRTD_ARGS=\"--listen\"/' /etc/default/libvirtd"
                 " && systemctl restart libvirtd")
    timings = Timings(host_connect=0.1, job=0.05, kvm_ping=0.1, ping_timeout=ping_timeout)
    with CloudStackSimulator(fleet=Fleet(routers=4, redundant_pairs=1), timings=timings,
                             ssh_key_path=str(host.client_key_path)) as sim:
        api = CloudStack(sim.endpoint, sim.api_key, sim.secret_key, poll_interval=0.05, fetch_result=True)
        zone = api.listZones(name="lab-zone-1")["zone"][0]
        pod = api.listPods(zoneid=zone["id"])["pod"][0]
        added = api.addHost(zoneid=zone["id"], podid=pod["id"], hypervisor="KVM", url=f"http://{host.address}",
                            clustername=cluster, username="root")["host"][0]
        cloudstack_host = CloudStackHost(sim, api, added["id"])
        wait_until(lambda: cloudstack_host.state() == "Up", "Up")
        yield cloudstack_host


RECONNECTED = [("Connecting", "Up"), ("Up", "Disconnected"), ("Disconnected", "Connecting"), ("Connecting", "Up")]


def test_the_lab_cloudstack_sees_a_disabled_rebooting_kvm_host_disconnected_then_up(lab) -> None:
    _, host = lab
    with in_lab_cloudstack(host, "lab-kvm-reboot", ping_timeout=0.2) as added:
        added.api.updateHost(id=added.id, allocationstate="Disable")  # as before any planned reboot
        host.set_down_seconds(600)
        boots = host.boots()
        seen = len(host.power_events())
        host.reboot(wait=False)
        wait_until(lambda: any("rebooting, down 600s" in e for e in host.power_events()[seen:]), "down")
        wait_until(lambda: added.state() == "Disconnected", "Disconnected while down")
        assert not host.alive()
        host.set_down_seconds(0.2)
        host.wait_up(boots)
        wait_until(lambda: added.state() == "Up", "Up again")
        assert added.state_changes() == RECONNECTED, added.state_changes()


def test_the_lab_cloudstack_sees_even_a_short_reboot_disconnected(lab) -> None:
    """A reboot far shorter than the ping timeout (0.1 s down, ping timeout 30 s): connects to a host back within
    the machine's ARP retries are only delayed, so a connection probe alone never finds it gone; the standing
    session the host's reboot ends does, at once."""
    _, host = lab
    with in_lab_cloudstack(host, "lab-kvm-short-reboot", ping_timeout=30.0) as added:
        wait_until(lambda: added.id in getattr(added.sim.hostops.availability, "links", {}),
                   "the agent's standing session to the host")
        added.api.updateHost(id=added.id, allocationstate="Disable")
        host.reboot(down_seconds=0.1)
        wait_until(lambda: any(e["event"] == "host.state" and e["host"] == added.id and e["state"] == "Connecting"
                               for e in added.sim.audit()), "reconnecting")
        wait_until(lambda: added.state() == "Up", "Up again")
        assert added.state_changes() == RECONNECTED, added.state_changes()
