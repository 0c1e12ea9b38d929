"""KvmHost networking that survives a reboot (issue 15): the spec's bridges, ports, addresses and MTUs written as
the distribution's network configuration (ifupdown with Open vSwitch's stanzas on apt hosts, network-scripts'
ifcfg files on EL), read back by the probe, rewritten when they differ, removed when the spec drops them."""
from __future__ import annotations

import base64
import copy
import dataclasses
import io
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from support.kvmhost_probe import OWNER, SPEC, probe_output

from stackops.api.kvmhost import KvmHostSpec
from stackops.reconcile.kvmhost import network
from stackops.reconcile.kvmhost.actions import RunCommand, WriteFile
from stackops.reconcile.kvmhost.paths import IFCFG_DIR, NETWORK_INTERFACES, NETWORK_STACKOPS
from stackops.reconcile.kvmhost.plan import plan, plan_removal
from stackops.reconcile.kvmhost.probe import parse

# cloudbr0 with every kind of member: a NIC, a bond, a tunnel, an internal port, and mgmt0 (VLAN 123) carrying the
# management address
FULL: dict[str, Any] = {
    "address": "10.123.0.11",
    "ssh": SPEC["ssh"],
    "openvswitch": {"bridges": [{
        "name": "cloudbr0", "datapathType": "netdev", "mtu": 9000, "addresses": ["192.0.2.11/24"],
        "ports": ["eth0"],
        "bonds": [{"name": "bond0", "interfaces": ["eno49", "eno50"]}],
        "tunnels": [{"name": "vxlan0", "remoteIP": "10.250.0.12", "key": 5001}],
        "internalPorts": [{"name": "vi0", "addresses": ["10.9.0.11/24"], "mtu": 1500}],
        "vlanBridges": [{"name": "mgmt0", "vlan": 123, "addresses": ["10.123.0.11/24", "10.124.0.11/24"]}],
    }]},
}

DEBIAN = """\
# Written by stackops for KvmHost lab/kvm1: the Open vSwitch bridges, ports, addresses and MTUs ifupdown sets up.
# Rewritten when it differs from the KvmHost's spec: change the spec, not this file.

auto cloudbr0
allow-ovs cloudbr0
iface cloudbr0 inet static
    ovs_type OVSBridge
    ovs_ports eth0 bond0 vxlan0 vi0 mgmt0
    ovs_extra set Bridge cloudbr0 datapath_type=netdev
    mtu 9000
    address 192.0.2.11/24

allow-cloudbr0 eth0
iface eth0 inet manual
    ovs_bridge cloudbr0
    ovs_type OVSPort
    mtu 9000

allow-cloudbr0 bond0
iface bond0 inet manual
    ovs_bridge cloudbr0
    ovs_type OVSBond
    ovs_bonds eno49 eno50
    ovs_options bond_mode=balance-tcp lacp=active other_config:lacp-time=fast

allow-cloudbr0 vxlan0
iface vxlan0 inet manual
    ovs_bridge cloudbr0
    ovs_type OVSTunnel
    ovs_tunnel_type vxlan
    ovs_tunnel_options options:remote_ip=10.250.0.12 options:key=5001

allow-cloudbr0 vi0
iface vi0 inet static
    ovs_bridge cloudbr0
    ovs_type OVSIntPort
    mtu 1500
    address 10.9.0.11/24

allow-cloudbr0 mgmt0
iface mgmt0 inet static
    ovs_type OVSBridge
    ovs_options cloudbr0 123
    address 10.123.0.11/24

iface mgmt0 inet static
    address 10.124.0.11/24
"""


def spec(data: dict[str, Any] = FULL, **changes: Any) -> KvmHostSpec:
    data = copy.deepcopy(data)
    data.update(changes)
    return KvmHostSpec.model_validate(data)


def file_actions(actions: list[Any]) -> list[Any]:
    return [a for a in actions if isinstance(a, WriteFile) and a.path in (NETWORK_STACKOPS, NETWORK_INTERFACES)
            or isinstance(a, RunCommand) and NETWORK_STACKOPS in a.argv()]


def test_the_debian_file_has_open_vswitchs_stanzas_for_every_object() -> None:
    assert network.debian_file(spec(), OWNER) == DEBIAN
    assert network.debian_file(spec(openvswitch={}), OWNER) is None


def test_a_fresh_apt_host_gets_the_file_and_the_source_line_then_plans_nothing() -> None:
    s = spec()
    host = parse(probe_output(files={NETWORK_INTERFACES: None, NETWORK_STACKOPS: None}), 16509)
    written = file_actions(plan(s, host, OWNER))
    assert [(a.path, a.operation, a.backup) for a in written] == [
        (NETWORK_STACKOPS, "add", False), (NETWORK_INTERFACES, "add", True)]
    assert written[0].content == DEBIAN
    assert written[1].content == "source /etc/network/interfaces.d/*\n"
    converged = parse(probe_output(files={a.path: a.content for a in written}), 16509)
    assert file_actions(plan(s, converged, OWNER)) == []


@pytest.mark.parametrize("main", ["source /etc/network/interfaces.d/*\n",
                                  "  source-directory /etc/network/interfaces.d\n",
                                  "auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*  \n"])
def test_a_main_file_that_sources_the_directory_is_left_alone(main: str) -> None:
    actions = network.plan_network(spec(), OWNER, "apt", {NETWORK_INTERFACES: main, NETWORK_STACKOPS: DEBIAN})
    assert actions == []


def test_a_main_file_without_the_source_line_gets_it_appended_and_keeps_every_other_byte() -> None:
    main = "# the installer's\nauto lo\niface lo inet loopback\n#source /etc/network/interfaces.d/*"
    (action,) = network.plan_network(spec(), OWNER, "apt", {NETWORK_INTERFACES: main, NETWORK_STACKOPS: DEBIAN})
    assert action.content == main + "\nsource /etc/network/interfaces.d/*\n"


def test_a_hand_edit_of_the_file_is_drift_and_rewritten() -> None:
    edited = DEBIAN.replace("address 10.123.0.11/24", "address 10.123.0.99/24")
    (action,) = network.plan_network(spec(), OWNER, "apt", {NETWORK_INTERFACES: network.SOURCE_LINE + "\n",
                                                           NETWORK_STACKOPS: edited})
    assert isinstance(action, WriteFile) and action.content == DEBIAN and action.operation == "change"
    assert action.describe() == \
        f"write the network configuration {NETWORK_STACKOPS} (rewritten, it differs from the spec)"


def test_a_spec_change_rewrites_the_file() -> None:
    data = copy.deepcopy(FULL)
    data["openvswitch"]["bridges"][0]["vlanBridges"][0]["vlan"] = 124
    (action,) = network.plan_network(spec(data), OWNER, "apt", {NETWORK_INTERFACES: network.SOURCE_LINE,
                                                                NETWORK_STACKOPS: DEBIAN})
    assert "ovs_options cloudbr0 124" in action.content


def test_the_file_is_removed_when_the_spec_drops_the_bridges_but_only_when_stackops_wrote_it() -> None:
    files = {NETWORK_INTERFACES: network.SOURCE_LINE, NETWORK_STACKOPS: DEBIAN}
    (action,) = network.plan_network(spec(openvswitch={}), OWNER, "apt", files)
    assert isinstance(action, RunCommand) and action.argv() == ("rm", "-f", NETWORK_STACKOPS)
    assert action.operation == "remove"
    foreign = {NETWORK_STACKOPS: "auto br9\niface br9 inet manual\n"}
    assert network.plan_network(spec(openvswitch={}), OWNER, "apt", foreign) == []


def test_a_host_without_a_package_manager_gets_no_network_file() -> None:
    assert network.plan_network(spec(), OWNER, None, {}) == []


def ifcfg(name: str) -> str:
    return network.ifcfg_files(spec(), OWNER)[f"{IFCFG_DIR}/ifcfg-{name}"]


def test_el_hosts_get_one_ifcfg_file_per_interface() -> None:
    files = network.ifcfg_files(spec(), OWNER)
    assert sorted(Path(p).name for p in files) == [
        "ifcfg-bond0", "ifcfg-cloudbr0", "ifcfg-eth0", "ifcfg-mgmt0", "ifcfg-vi0", "ifcfg-vxlan0"]
    assert ifcfg("cloudbr0").splitlines()[2:] == [
        "DEVICE=cloudbr0", "ONBOOT=yes", "DEVICETYPE=ovs", "TYPE=OVSBridge", "BOOTPROTO=static",
        "IPADDR=192.0.2.11", "PREFIX=24", "MTU=9000", 'OVS_EXTRA="set Bridge cloudbr0 datapath_type=netdev"']
    assert ifcfg("eth0").splitlines()[2:] == [
        "DEVICE=eth0", "ONBOOT=yes", "DEVICETYPE=ovs", "TYPE=OVSPort", "OVS_BRIDGE=cloudbr0", "BOOTPROTO=none",
        "MTU=9000"]
    assert ifcfg("mgmt0").splitlines()[2:] == [
        "DEVICE=mgmt0", "ONBOOT=yes", "DEVICETYPE=ovs", "TYPE=OVSBridge", "BOOTPROTO=static",
        "IPADDR=10.123.0.11", "PREFIX=24", "IPADDR1=10.124.0.11", "PREFIX1=24", 'OVS_OPTIONS="cloudbr0 123"']
    assert ifcfg("bond0").splitlines()[2:] == [
        "DEVICE=bond0", "ONBOOT=yes", "DEVICETYPE=ovs", "TYPE=OVSBond", "OVS_BRIDGE=cloudbr0", "BOOTPROTO=none",
        'BOND_IFACES="eno49 eno50"',
        'OVS_OPTIONS="bond_mode=balance-tcp lacp=active other_config:lacp-time=fast"']
    assert ifcfg("vxlan0").splitlines()[2:] == [
        "DEVICE=vxlan0", "ONBOOT=yes", "DEVICETYPE=ovs", "TYPE=OVSTunnel", "OVS_BRIDGE=cloudbr0", "BOOTPROTO=none",
        "OVS_TUNNEL_TYPE=vxlan", 'OVS_TUNNEL_OPTIONS="options:remote_ip=10.250.0.12 options:key=5001"']
    assert ifcfg("vi0").splitlines()[2:] == [
        "DEVICE=vi0", "ONBOOT=yes", "DEVICETYPE=ovs", "TYPE=OVSIntPort", "OVS_BRIDGE=cloudbr0", "BOOTPROTO=static",
        "IPADDR=10.9.0.11", "PREFIX=24", "MTU=1500"]
    assert all(text.startswith(network.MARKER) for text in files.values())


def test_ifcfg_files_are_sourceable_shell_with_the_values_written() -> None:
    for path, text in network.ifcfg_files(spec(), OWNER).items():
        out = subprocess.run(["sh", "-c", f'{text}\nprintf "%s|%s|%s" "$DEVICE" "$OVS_OPTIONS" "$BOND_IFACES"'],
                             capture_output=True, text=True, check=True).stdout
        assert out.split("|")[0] == Path(path).name.removeprefix("ifcfg-")
    assert subprocess.run(["sh", "-c", ifcfg("mgmt0") + '\nprintf %s "$OVS_OPTIONS"'], capture_output=True,
                          text=True, check=True).stdout == "cloudbr0 123"


def test_el_plan_writes_missing_and_differing_files_replaces_a_foreign_one_and_removes_owned_leftovers() -> None:
    wanted = network.ifcfg_files(spec(), OWNER)
    files: dict[str, str | None] = dict(wanted)
    files[f"{IFCFG_DIR}/ifcfg-eth0"] = "DEVICE=eth0\nBOOTPROTO=static\nIPADDR=10.123.0.11\n"  # the installer's
    files[f"{IFCFG_DIR}/ifcfg-vi0"] = wanted[f"{IFCFG_DIR}/ifcfg-vi0"].replace("MTU=1500", "MTU=9000")  # drift
    del files[f"{IFCFG_DIR}/ifcfg-bond0"]
    files[f"{IFCFG_DIR}/ifcfg-old0"] = network.MARKER + " for KvmHost lab/kvm1\nDEVICE=old0\n"  # dropped
    files[f"{IFCFG_DIR}/ifcfg-lo"] = "DEVICE=lo\n"  # not stackops'
    actions = network.plan_network(spec(), OWNER, "dnf", files)
    assert [(a.describe()) for a in actions] == [
        f"write the network configuration {IFCFG_DIR}/ifcfg-eth0 (replaced, it was not written by stackops)",
        f"write the network configuration {IFCFG_DIR}/ifcfg-bond0 (written)",
        f"write the network configuration {IFCFG_DIR}/ifcfg-vi0 (rewritten, it differs from the spec)",
        f"remove the network configuration {IFCFG_DIR}/ifcfg-old0 (no longer in the spec)",
    ]
    assert all(not a.backup for a in actions if isinstance(a, WriteFile))  # network-scripts reads every ifcfg-*
    assert network.plan_network(spec(), OWNER, "yum", {**wanted, f"{IFCFG_DIR}/ifcfg-lo": "DEVICE=lo\n"}) == []


def test_the_lean_probe_reads_the_ifcfg_files_from_its_archive() -> None:
    text = ifcfg("mgmt0")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in ((f"{IFCFG_DIR[1:]}/ifcfg-mgmt0", text.encode()),
                           (f"{NETWORK_STACKOPS[1:]}", DEBIAN.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    output = (f"@@pm -\ndnf\n@@files {IFCFG_DIR[1:]}/ifcfg-mgmt0 {NETWORK_STACKOPS[1:]}\n"
              + base64.b64encode(buffer.getvalue()).decode() + "\n")
    host = parse(output, 16509)
    assert host.files[f"{IFCFG_DIR}/ifcfg-mgmt0"] == text
    assert host.files[NETWORK_STACKOPS] == DEBIAN
    assert host.files[NETWORK_INTERFACES] is None
    el = dataclasses.replace(host, files={**host.files, **network.ifcfg_files(spec(), OWNER)})
    assert network.plan_network(spec(), OWNER, el.package_manager, el.files) == []


@pytest.mark.skipif(shutil.which("ifquery") is None, reason="ifupdown is not installed")
def test_ifupdown_reads_the_file_as_written(tmp_path: Path) -> None:
    """ifupdown's own parser (ifquery) on the file: the bridge is auto, its members are allow-cloudbr0, and each
    stanza has the options ifupdown.sh reads."""
    interfaces = tmp_path / "interfaces"
    interfaces.write_text(DEBIAN)

    def ifquery(*args: str) -> str:
        return subprocess.run(["ifquery", "-i", str(interfaces), "--state-dir", str(tmp_path), *args],
                              capture_output=True, text=True, check=True).stdout

    assert ifquery("--list").split() == ["lo", "cloudbr0"]  # ifupdown always knows lo
    assert ifquery("--list", "--allow=cloudbr0").split() == ["eth0", "bond0", "vxlan0", "vi0", "mgmt0"]
    # the second stanza adds its address to the first's
    assert ifquery("mgmt0").splitlines() == [
        "ovs_type: OVSBridge", "ovs_options: cloudbr0 123", "address: 10.123.0.11", "broadcast: 10.123.0.255",
        "netmask: 255.255.255.0", "address: 10.124.0.11", "broadcast: 10.124.0.255", "netmask: 255.255.255.0"]
    assert ifquery("vi0").splitlines()[:3] == ["ovs_bridge: cloudbr0", "ovs_type: OVSIntPort", "mtu: 1500"]


def test_deletion_removes_the_network_file_last_unless_an_object_is_kept() -> None:
    host = parse(probe_output(files={NETWORK_STACKOPS: DEBIAN}), 16509)
    removal = plan_removal(host, OWNER, "10.250.0.11")  # the management address on eth0, outside Open vSwitch
    assert removal.kept == ()
    assert removal.actions[-1].argv() == ("rm", "-f", NETWORK_STACKOPS)
    assert removal.actions[-1].describe() == \
        f"remove the network configuration {NETWORK_STACKOPS} (deletionPolicy Delete)"
    # a file stackops did not write stays
    foreign = parse(probe_output(files={NETWORK_STACKOPS: "auto br9\n"}), 16509)
    assert all(NETWORK_STACKOPS not in a.argv() for a in plan_removal(foreign, OWNER, "10.250.0.11").actions)
    # the management path kept (the address on mgmt0): the file, which brings it back at boot, stays too
    on_vlan = dataclasses.replace(host, addresses={"mgmt0": ("10.250.0.11/24",), "eth0": ()})
    kept = plan_removal(on_vlan, OWNER, "10.250.0.11")
    assert kept.kept and all(NETWORK_STACKOPS not in a.argv() for a in kept.actions)
    # EL: the owned ifcfg files, never another
    el = dataclasses.replace(host, package_manager="dnf", files={
        **host.files, f"{IFCFG_DIR}/ifcfg-mgmt0": ifcfg("mgmt0"), f"{IFCFG_DIR}/ifcfg-lo": "DEVICE=lo\n"})
    assert [a.argv() for a in plan_removal(el, OWNER, "10.250.0.11").actions if isinstance(a, RunCommand)] == [
        ("rm", "-f", f"{IFCFG_DIR}/ifcfg-mgmt0")]
