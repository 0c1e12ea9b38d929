"""KVM lab hosts as the operator will meet them: SSH with a pinned host key, private hostname and files, real
Open vSwitch (userspace datapath), a libvirtd that listens on TCP only once configured and restarted, a
`systemctl` that answers like systemd, hosts that reach each other, and a teardown that leaves nothing."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from stackops_lab.hosts import LabHost, LabHosts, all_pids, list_netns, readlink_quiet

REPO = Path(__file__).resolve().parents[2]
LIBVIRT_TCP = 'listen_tls = 0\nlisten_tcp = 1\ntcp_port = "16509"\nauth_tcp = "none"\nmdns_adv = 0\n'


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LabHost]]:
    """Two hosts of this module's own (its tests change them)."""
    manager = LabHosts(tmp_path_factory.mktemp("lab-hosts-test"))
    try:
        yield manager.create(2)
    finally:
        manager.destroy()


def pinned_client(host: LabHost, host_key: str | None = None, client_key_pem: str | None = None,
                  ) -> paramiko.SSHClient:
    """An SSH connection as root that trusts exactly `host_key` (default: the host's own) and nothing else."""
    client = paramiko.SSHClient()
    key_type, blob = (host_key or host.host_key).split()[:2]
    client.get_host_keys().add(host.address, key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(blob)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(client_key_pem or host.client_key_pem))
    client.connect(host.address, username="root", pkey=key, look_for_keys=False, allow_agent=False,
                   timeout=15, banner_timeout=15, auth_timeout=15)
    return client


def ssh(host: LabHost, command: str) -> tuple[int, str, str]:
    with pinned_client(host) as client:
        _, stdout, stderr = client.exec_command(command, timeout=120)
        status = stdout.channel.recv_exit_status()
        return status, stdout.read().decode(), stderr.read().decode()


def ok(host: LabHost, command: str) -> str:
    status, out, err = ssh(host, command)
    assert status == 0, f"{host.name}: `{command}` exited {status}\nstdout: {out}\nstderr: {err}"
    return out


def virsh_version(host: LabHost) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", f"qemu+tcp://{host.address}/system", "version"],
                          capture_output=True, text=True, timeout=90)


def conffile_md5(path: str) -> str:
    output = subprocess.run(["dpkg-query", "-W", "-f=${Conffiles}\n"], capture_output=True, text=True,
                            check=True).stdout
    for line in output.splitlines():
        words = line.split()
        if words and words[0] == path:
            return words[1]
    raise AssertionError(f"dpkg knows no conffile {path}")


# --------------------------------------------------------------------------- the session fixture


def test_session_fixture_gives_what_tests_need(lab_hosts: list[LabHost]) -> None:
    assert len(lab_hosts) == 2
    first, second = lab_hosts
    assert first.name != second.name and first.address != second.address
    assert first.address.rsplit(".", 1)[0] == second.address.rsplit(".", 1)[0], "one subnet"
    for host in lab_hosts:
        assert host.host_key.startswith("ssh-ed25519 AAAA") and len(host.host_key.split()) == 2
        assert Path(host.client_key_path).read_text() == host.client_key_pem
        paramiko.Ed25519Key.from_private_key(io.StringIO(host.client_key_pem))
        assert host.nics == ["eno49", "eno50"]
        assert host.run("hostname").stdout.strip() == host.name
        for nic in host.nics:
            link = host.run(f"ip -o link show {nic}")
            assert link.returncode == 0 and ",UP" in link.stdout, link
            assert host.run(f"ip -o addr show dev {nic} scope global").stdout == "", "spare NICs have no address"
            assert not Path(f"/sys/class/net/{nic}").exists(), "spare NICs are inside the host only"
        assert ok(host, "ovs-vsctl --version").startswith("ovs-vsctl (Open vSwitch)")


# --------------------------------------------------------------------------- SSH


def test_ssh_accepts_only_the_pinned_host_key(hosts: list[LabHost]) -> None:
    host, other = hosts
    with pinned_client(host) as client:
        _, stdout, _ = client.exec_command("hostname")
        assert stdout.read().decode().strip() == host.name
    with pytest.raises(paramiko.BadHostKeyException):
        pinned_client(host, host_key=other.host_key)  # another host's key pinned: refused
    unknown = paramiko.SSHClient()
    unknown.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        unknown.connect(host.address, username="root", pkey=paramiko.Ed25519Key.from_private_key(
            io.StringIO(host.client_key_pem)), look_for_keys=False, allow_agent=False, timeout=15)
    unknown.close()
    stranger = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()
    with pytest.raises(paramiko.AuthenticationException):
        pinned_client(host, client_key_pem=stranger)  # a key root has not authorized
    assert "passwordauthentication no" in host.run("sshd -T").stdout.lower()


# --------------------------------------------------------------------------- private hostname and files


def test_each_host_has_its_own_hostname_and_files(hosts: list[LabHost]) -> None:
    host, other = hosts
    assert ok(host, "hostname").strip() == host.name
    assert ok(other, "hostname").strip() == other.name
    assert socket.gethostname() not in (host.name, other.name)
    marker = f"stackops-test-{uuid.uuid4().hex}"
    for directory in ("/etc/libvirt", "/etc/cloudstack/agent", "/etc/openvswitch", "/tmp", "/root",
                      "/var/log/libvirt", "/var/lib/libvirt", "/run"):
        ok(host, f"echo {marker} > {directory}/{marker}")
        assert ok(host, f"cat {directory}/{marker}").strip() == marker
        status, _, _ = ssh(other, f"test -e {directory}/{marker}")
        assert status == 1, f"{directory}/{marker} written on {host.name} is visible on {other.name}"
        assert not Path(directory, marker).exists(), f"{directory}/{marker} leaked onto the machine"


def test_config_files_start_as_the_packages_ship_them(make_lab_hosts) -> None:
    (host,) = make_lab_hosts(1)
    for path in ("/etc/libvirt/libvirtd.conf", "/etc/libvirt/qemu.conf", "/etc/default/libvirtd"):
        content = host.run(f"cat {path}", timeout=30)
        assert content.returncode == 0, content.stderr
        assert hashlib.md5(content.stdout.encode()).hexdigest() == conffile_md5(path), f"{path} is not pristine"
    assert host.run("cmp /etc/ssh/sshd_config /usr/share/openssh/sshd_config").returncode == 0
    assert host.run("grep -E '^[[:space:]]*listen_tcp' /etc/libvirt/libvirtd.conf").returncode == 1
    assert host.run("grep -E '^LIBVIRTD_ARGS' /etc/default/libvirtd").returncode == 1
    assert host.run("ovs-vsctl list-br").stdout == ""
    properties = host.run("cat /etc/cloudstack/agent/agent.properties").stdout
    assert "\nguid=\n" in properties and "\nhost=localhost\n" in properties and "# " in properties
    log4j = host.run("cat /etc/cloudstack/agent/log4j-cloud.xml").stdout
    assert 'value="INFO"' in log4j and "DEBUG" not in log4j
    listening = host.run("ss -Hltn").stdout
    assert ":16509" not in listening and f"{host.address}:22" in listening
    assert host.run("ls /etc/ssh/ssh_host_*").stdout.split() == [
        "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub"], "only the host's own key"


def test_packages_are_the_machines_and_the_host_cannot_change_them(hosts: list[LabHost]) -> None:
    host, _ = hosts
    for package in ("qemu-system-x86", "libvirt-daemon-system", "libvirt-clients", "bridge-utils",
                    "openvswitch-switch", "cloudstack-agent"):
        status, out, _ = ssh(host, f"dpkg-query -W -f='${{db:Status-Status}}' {package}")
        assert (status, out) == (0, "installed"), f"{package} is not installed on {host.name}"
    # the cloudstack-agent stand-in is a package of the host's own dpkg database, with its conffiles
    conffiles = ok(host, "dpkg-query -W -f='${Conffiles}' cloudstack-agent").split()
    assert "/etc/cloudstack/agent/agent.properties" in conffiles
    for path, md5 in zip(conffiles[0::2], conffiles[1::2]):
        assert ok(host, f"md5sum {path}").split()[0] == md5, f"{path} is not as the stand-in package ships it"
    machine = subprocess.run(["dpkg-query", "-W", "cloudstack-agent"], capture_output=True, text=True)
    assert machine.returncode != 0, "the stand-in is registered on the host only"
    status, _, err = ssh(host, "touch /usr/bin/stackops-test")
    assert status != 0 and "Read-only file system" in err
    status, _, err = ssh(host, "touch /var/lib/dpkg/stackops-test && touch /var/lib/apt/stackops-test")
    assert status == 0, err
    assert not Path("/var/lib/dpkg/stackops-test").exists() and not Path("/var/lib/apt/stackops-test").exists()


# --------------------------------------------------------------------------- Open vSwitch


def test_ovs_netdev_bridge_fake_bridge_vxlan_and_bond(hosts: list[LabHost]) -> None:
    host, other = hosts
    ok(host, "ovs-vsctl add-br br0 -- set bridge br0 datapath_type=netdev"
             " && ovs-vsctl add-br mgmt0 br0 123"
             f" && ovs-vsctl add-port br0 vxlan0 -- set interface vxlan0 type=vxlan options:remote_ip={other.address}"
             " && ovs-vsctl add-port br0 vi0 -- set interface vi0 type=internal"
             " && ovs-vsctl add-bond br0 bond0 eno49 eno50 bond_mode=balance-tcp lacp=active"
             " other_config:lacp-time=fast")
    try:
        show = ok(host, "ovs-vsctl show")
        for expected in ("Bridge br0", "datapath_type: netdev", "Port mgmt0", "tag: 123", "type: vxlan",
                         f'remote_ip="{other.address}"', "Port bond0", "Interface eno49", "Interface eno50"):
            assert expected in show, show
        assert "error" not in show.lower(), show
        assert ok(host, "ovs-vsctl --bare --columns=error list Interface").strip() == ""
        assert "bond_mode: balance-tcp" in ok(host, "ovs-appctl bond/show bond0")
        for link in ("br0", "mgmt0", "vi0"):
            assert host.run(f"ip -o link show {link}").returncode == 0, f"{link} is not a link in {host.name}"
            assert other.run(f"ip -o link show {link}").returncode != 0, f"{link} appeared in {other.name}"
        assert ok(other, "ovs-vsctl list-br") == "", "each host has its own OVS database"
        ok(host, "ip addr add 192.0.2.254/32 dev vi0 && ip link set vi0 up")
        assert "192.0.2.254" in host.run("ip -o addr show dev vi0").stdout
    finally:
        ssh(host, "ovs-vsctl --if-exists del-br br0")


# --------------------------------------------------------------------------- libvirtd and the systemctl shim


def test_libvirtd_listens_on_tcp_once_configured_and_restarted(hosts: list[LabHost]) -> None:
    host, other = hosts
    assert virsh_version(host).returncode != 0, "a fresh libvirtd does not listen on TCP"
    before = ok(host, "systemctl show -p MainPID --value libvirtd").strip()

    ok(host, f"printf '{LIBVIRT_TCP}' >> /etc/libvirt/libvirtd.conf && systemctl restart libvirtd")
    assert virsh_version(host).returncode != 0, "as on Debian, listen_tcp needs libvirtd --listen"

    ok(host, "sed -i 's/^#LIBVIRTD_ARGS=\"--listen\"/LIBVIRTD_ARGS=\"--listen\"/' /etc/default/libvirtd"
             " && systemctl restart libvirtd")
    assert ok(host, "systemctl is-active libvirtd").strip() == "active"
    after = ok(host, "systemctl show -p MainPID --value libvirtd").strip()
    assert after not in ("", "0", before), "restart started a new libvirtd"
    version = virsh_version(host)
    assert version.returncode == 0, version.stderr
    assert "Using library: libvirt" in version.stdout and "Running hypervisor: QEMU" in version.stdout
    assert virsh_version(other).returncode != 0, "the other host's libvirtd config is its own"


def test_restart_with_a_broken_config_fails_like_systemd(hosts: list[LabHost]) -> None:
    _, host = hosts
    ok(host, "cp /etc/default/libvirtd /root/libvirtd.default"
             " && echo 'LIBVIRTD_ARGS=\"--listen\"' >> /etc/default/libvirtd")
    try:
        status, _, err = ssh(host, "systemctl restart libvirtd")
        assert status == 1 and "libvirtd.service failed" in err, err  # --listen needs TLS certificates
        status, out, _ = ssh(host, "systemctl is-active libvirtd")
        assert (status, out.strip()) == (3, "failed")
        assert "/etc/pki/CA/cacert.pem" in ok(host, "cat /var/log/libvirt/libvirtd.log")
    finally:
        ok(host, "cp /root/libvirtd.default /etc/default/libvirtd && systemctl restart libvirtd")
    assert ok(host, "systemctl is-active libvirtd").strip() == "active"


def test_systemctl_and_service_answer_like_systemd(hosts: list[LabHost]) -> None:
    host, _ = hosts

    def run(command: str) -> tuple[int, str]:
        status, out, err = ssh(host, command)
        return status, out.strip() + err.strip()

    assert run("systemctl is-active cloudstack-agent") == (3, "inactive")
    assert run("systemctl start cloudstack-agent.service")[0] == 0
    assert run("systemctl is-active cloudstack-agent") == (0, "active")
    status, out = run("systemctl status cloudstack-agent")
    assert status == 0 and "cloudstack-agent.service - CloudStack Agent" in out and "active (running)" in out
    assert run("service cloudstack-agent restart")[0] == 0
    assert "Agent started" in ok(host, "cat /var/log/cloudstack/agent/agent.log")
    assert run("systemctl stop cloudstack-agent")[0] == 0
    assert run("service cloudstack-agent status")[0] == 3
    assert run("systemctl is-active --quiet cloudstack-agent") == (3, "")

    assert run("systemctl is-active openvswitch-switch ssh libvirtd") == (0, "active\nactive\nactive")
    assert run("systemctl status no-such-unit")[0] == 4
    assert run("systemctl start no-such-unit")[0] == 5
    assert run("systemctl is-active no-such-unit") == (3, "inactive")
    assert run("/usr/bin/systemctl is-active sshd.service") == (0, "active"), "systemd's own path is the shim too"
    assert run("systemctl mask libvirtd.socket libvirtd-ro.socket")[0] == 0
    assert run("systemctl is-enabled libvirtd.socket") == (1, "masked")

    ok(host, "ovs-vsctl add-br brx -- set bridge brx datapath_type=netdev")
    vswitchd = ok(host, "cat /run/openvswitch/ovs-vswitchd.pid").strip()
    assert run("systemctl restart openvswitch-switch")[0] == 0
    assert ok(host, "cat /run/openvswitch/ovs-vswitchd.pid").strip() != vswitchd
    assert "brx" in ok(host, "ovs-vsctl list-br"), "the database survives a restart"
    assert host.run("ip -o link show brx").returncode == 0
    ok(host, "ovs-vsctl del-br brx")

    assert run("systemctl restart ssh")[0] == 0
    assert ok(host, "hostname").strip() == host.name, "sshd is back after its restart"


# --------------------------------------------------------------------------- network


def test_hosts_reach_each_other_and_the_machine_reaches_them(hosts: list[LabHost]) -> None:
    host, other = hosts
    ok(host, f"ping -c 1 -W 3 {other.address}")
    ok(other, f"ping -c 1 -W 3 {host.address}")
    for target in hosts:
        ping = subprocess.run(["ping", "-c", "1", "-W", "3", target.address], capture_output=True, text=True)
        assert ping.returncode == 0, ping.stdout + ping.stderr
    default = host.run("ip route show default").stdout
    assert default.startswith("default via ") and "dev eth0" in default


# --------------------------------------------------------------------------- teardown


def lab_traces(lab_dir: Path, names: set[str], namespaces: set[str]) -> list[str]:
    traces = []
    for pid in all_pids():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        spaces = {readlink_quiet(f"/proc/{pid}/ns/{kind}") for kind in ("pid", "net", "mnt", "uts")}
        if str(lab_dir) in command or spaces & namespaces:
            traces.append(f"process {pid}: {command}")
    traces += [f"netns {name}" for name in list_netns() if name in names]
    traces += [f"link {name}" for name in names if Path(f"/sys/class/net/{name}").exists()]
    traces += [f"mount {line}" for line in Path("/proc/self/mountinfo").read_text().splitlines()
               if str(lab_dir) in line]
    return traces


def test_teardown_leaves_no_namespace_link_mount_process_or_file(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    manager = LabHosts(lab_dir)
    hosts = manager.create(2)
    state = manager.read_state()
    assert state is not None
    names = {state.bridge, *(host.netns for host in hosts), *(host.veth for host in hosts)}
    namespaces = {readlink_quiet(f"/proc/{host.init_pid}/ns/{kind}")
                  for host in hosts for kind in ("pid", "net", "mnt", "uts")}
    assert "" not in namespaces and len(namespaces) == 8
    processes = [pid for host in hosts for pid in host.processes()]
    assert len(processes) >= 2 * 5, "init, ovsdb-server, ovs-vswitchd, libvirtd, sshd per host"
    assert lab_traces(lab_dir, names, namespaces), "the check sees a running lab"

    manager.destroy()

    assert lab_traces(lab_dir, names, namespaces) == []
    assert not (lab_dir / "hosts").exists() and not (lab_dir / "hosts.json").exists()
    manager.destroy()  # idempotent


def test_lab_up_and_down_with_hosts(tmp_path: Path) -> None:
    """`stackops lab up --hosts 2` prints each host's address and pinned key; `stackops lab down` removes all."""
    lab_dir = tmp_path / "lab"
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["STACKOPS_LAB_DIR"] = str(lab_dir)
    cli = [sys.executable, "-m", "stackops.cli", "lab"]
    try:
        up = subprocess.run([*cli, "up", "--provider", "local", "--hosts", "2"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stderr[-3000:]
        state = LabHosts(lab_dir).read_state()
        assert state is not None and len(state.hosts) == 2
        for host in state.hosts:
            assert f"{host.address}  {host.host_key}" in up.stderr, up.stderr
            with pinned_client(host) as client:
                _, stdout, _ = client.exec_command("systemctl is-active libvirtd openvswitch-switch ssh")
                assert stdout.read().decode().split() == ["active"] * 3
        names = {state.bridge, *(host.netns for host in state.hosts), *(host.veth for host in state.hosts)}
        namespaces = {readlink_quiet(f"/proc/{host.init_pid}/ns/pid") for host in state.hosts}
    finally:
        down = subprocess.run([*cli, "down"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert lab_traces(lab_dir, names, namespaces) == []
    assert not lab_dir.exists()
