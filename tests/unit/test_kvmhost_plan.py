"""KvmHost observe parsing and planning, without a host: real `ovs-vsctl --format=json` output and the stock
Debian libvirtd.conf / qemu.conf as inputs."""
from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from support.kvmhost_probe import DATA, INSTALLED, OWNER, SPEC, probe_output
from stackops.api.kvmhost import KvmHostSpec
from stackops.reconcile.kvmhost import config
from stackops.reconcile.kvmhost.actions import (InstallPackages, OvsCommand, RefreshPackageIndex, RestartService,
                                                 WriteFile)
from stackops.reconcile.kvmhost.plan import AGENT_PROPERTIES, LIBVIRTD_CONF, PlanError, plan
from stackops.reconcile.kvmhost.probe import parse, sections

def spec(**changes: Any) -> KvmHostSpec:
    data = copy.deepcopy(SPEC)
    data.update(changes)
    return KvmHostSpec.model_validate(data)


def converged_files(s: KvmHostSpec) -> dict[str, str]:
    """The configuration files as they are after the operator edited them."""
    files = {}
    for action in plan(s, parse(probe_output(), 16509), OWNER):
        if isinstance(action, WriteFile):
            files[action.path] = action.content
    return files


def test_sections_split_the_probe_output() -> None:
    found = list(sections("junk\n@@a -\none\ntwo\n@@file /x y\nthree\n"))
    assert found == [("a", "-", "one\ntwo"), ("file", "/x y", "three")]


def test_parse_reads_the_ovs_database() -> None:
    observed = parse(probe_output(), 16509)
    ovs = observed.ovs
    assert ovs is not None
    assert set(ovs.bridges) == {"cloudbr0", "foreign0"}
    assert ovs.bridges["cloudbr0"].datapath_type == "netdev"
    assert ovs.ports["bond0"].interfaces == ("eno49", "eno50") and ovs.ports["bond0"].bridge == "cloudbr0"
    assert ovs.ports["bond0"].bond_mode == "balance-tcp" and ovs.ports["bond0"].other_config == {"lacp-time": "fast"}
    assert ovs.ports["mgmt0"].tag == 123 and ovs.ports["mgmt0"].fake_bridge
    assert ovs.interfaces["vxlan0"].options == {"remote_ip": "10.250.0.12", "key": "5001"}
    assert ovs.interfaces["cloudbr0"].mtu_request == 9000
    assert ovs.ports["eth9"].bridge == "foreign0" and not ovs.ports["eth9"].external_ids
    assert ovs.managers == ("ssl:10.20.0.5:6632",)
    assert observed.ovs_version == "3.1.0" and observed.libvirt_version == "9.0.0" and observed.qemu_version == "7.2.0"
    assert observed.package_manager == "apt" and observed.agent_version == "1.0"
    assert observed.libvirt_tcp_listening
    assert observed.files[LIBVIRTD_CONF].startswith("# Master libvirt daemon configuration file")


def test_matching_ovs_plans_no_ovs_change() -> None:
    s = spec()
    actions = [a for a in plan(s, parse(probe_output(), 16509), OWNER) if isinstance(a, OvsCommand)]
    assert actions == []


def test_fresh_host_gets_bridge_bond_vlan_tunnel_mtu_in_order() -> None:
    actions = plan(spec(), parse(probe_output(empty_ovs=True, addresses={"eth0": ["10.250.0.11/24"]}), 16509), OWNER)
    ovs = [a for a in actions if isinstance(a, OvsCommand)]
    assert [a.args[0] for a in ovs] == ["add-br", "add-bond", "add-br", "add-port", "set", "set", "set", "set"]
    create_bridge, bond, vlan, tunnel, mtu, *_ = (a.argv() for a in ovs)
    assert create_bridge == ("ovs-vsctl", "--timeout=30", "add-br", "cloudbr0", "--", "set", "Bridge", "cloudbr0",
                             "datapath_type=netdev", "external_ids:stackops-owner=lab/kvm1")
    assert bond[2:9] == ("add-bond", "cloudbr0", "bond0", "eno49", "eno50", "bond_mode=balance-tcp", "lacp=active")
    assert "other_config:lacp-time=fast" in bond
    assert vlan[2:6] == ("add-br", "mgmt0", "cloudbr0", "123")
    assert "options:remote_ip=10.250.0.12" in tunnel and "options:key=5001" in tunnel and "type=vxlan" in tunnel
    assert mtu[2:] == ("set", "Interface", "cloudbr0", "mtu_request=9000")
    assert ovs[-1].argv()[2:] == ("set", "Interface", "mgmt0",
                                  'external_ids:stackops-addresses="10.250.1.11/24,10.250.2.11/24"')
    ip = [a.argv() for a in actions if a.argv()[0] == "ip"]
    assert ip == [("ip", "addr", "add", "10.250.1.11/24", "dev", "mgmt0"),
                  ("ip", "addr", "add", "10.250.2.11/24", "dev", "mgmt0"), ("ip", "link", "set", "mgmt0", "up")]
    assert not any(a.disruptive for a in actions)


def test_owned_leftovers_are_removed_foreign_objects_never() -> None:
    s = spec(openvswitch={"bridges": [{"name": "cloudbr0", "datapathType": "netdev", "mtu": 9000,
                                       "bonds": [{"name": "bond0", "interfaces": ["eno49", "eno50"]}]}]})
    removed = [a.argv()[2:] for a in plan(s, parse(probe_output(), 16509), OWNER) if isinstance(a, OvsCommand)]
    assert ("del-br", "mgmt0") in removed and ("del-port", "cloudbr0", "vxlan0") in removed
    assert not any("foreign0" in args or "eth9" in args for args in removed)


def test_dropped_address_is_removed_only_because_stackops_recorded_it() -> None:
    data = copy.deepcopy(SPEC)
    data["openvswitch"]["bridges"][0]["vlanBridges"][0]["addresses"] = ["10.250.1.11/24"]
    actions = plan(KvmHostSpec.model_validate(data), parse(probe_output(addresses={
        "mgmt0": ["10.250.1.11/24", "10.250.2.11/24", "192.0.2.7/24"]}), 16509), OWNER)
    argvs = [a.argv() for a in actions]
    assert ("ip", "addr", "del", "10.250.2.11/24", "dev", "mgmt0") in argvs
    assert not any("192.0.2.7/24" in argv for argv in argvs), "an address stackops did not add is never removed"


def test_changed_vlan_tag_rebuilds_the_fake_bridge_and_is_disruptive() -> None:
    data = copy.deepcopy(SPEC)
    data["openvswitch"]["bridges"][0]["vlanBridges"][0]["vlan"] = 124
    actions = [a for a in plan(KvmHostSpec.model_validate(data), parse(probe_output(), 16509), OWNER)
               if isinstance(a, OvsCommand)]
    assert len(actions) == 1 and actions[0].disruptive
    assert actions[0].args[:2] == ("del-br", "mgmt0") and "124" in actions[0].args


def test_interface_on_a_foreign_bridge_is_refused() -> None:
    data = copy.deepcopy(SPEC)
    data["openvswitch"]["bridges"][0]["ports"] = ["eth9"]
    with pytest.raises(PlanError) as refused:
        plan(KvmHostSpec.model_validate(data), parse(probe_output(), 16509), OWNER)
    assert refused.value.reason == "InterfaceInUse" and "foreign0" in str(refused.value)


def test_missing_packages_are_installed_first_and_alone() -> None:
    packages = {k: v for k, v in INSTALLED.items() if k not in ("openvswitch-switch", "cloudstack-agent")}
    actions = plan(spec(), parse(probe_output(packages=packages), 16509), OWNER)
    assert [type(a) for a in actions] == [RefreshPackageIndex, InstallPackages], "the host has no package index"
    assert actions[-1].argv()[-2:] == ("openvswitch-switch", "cloudstack-agent")


def test_packages_install_false_is_stalled() -> None:
    with pytest.raises(PlanError) as refused:
        plan(spec(packages={"install": False}), parse(probe_output(packages={}), 16509), OWNER)
    assert refused.value.reason == "PackagesMissing"


def test_stock_libvirtd_conf_is_edited_key_by_key_and_converges() -> None:
    s = spec()
    files = converged_files(s)
    libvirtd = files[LIBVIRTD_CONF]
    stock = (DATA / "libvirtd.conf").read_text()
    assert libvirtd.count("\nlisten_tcp = 1\n") == 1 and 'tcp_port = "16509"' in libvirtd
    assert 'auth_tcp = "none"' in libvirtd and "listen_tls = 0" in libvirtd and "mdns_adv = 0" in libvirtd
    assert libvirtd.index("#listen_tcp = 1") < libvirtd.index("\nlisten_tcp = 1")  # under its commented default
    assert len(libvirtd.splitlines()) == len(stock.splitlines()) + 5, "only the five keys were added"
    assert 'vnc_listen = "0.0.0.0"' in files["/etc/libvirt/qemu.conf"]
    assert files["/etc/default/libvirtd"] == 'LIBVIRTD_ARGS="--listen"\n'
    assert files[AGENT_PROPERTIES].count("network.bridge.type=openvswitch") == 1
    assert "workers=5" in files[AGENT_PROPERTIES]

    after = parse(probe_output(files=files), 16509)
    assert plan(s, after, OWNER) == [], "a converged host plans nothing"


def test_duplicates_from_echo_appends_are_collapsed() -> None:
    text = "listen_tcp = 1\n#comment\nlisten_tcp = 1\n"
    assert config.needs_change(text, {"listen_tcp": True}, "libvirt")
    assert config.set_keys(text, {"listen_tcp": True}, "libvirt") == "listen_tcp = 1\n#comment\n"


def test_service_restarts_only_when_its_configuration_changed() -> None:
    s = spec()
    fresh = plan(s, parse(probe_output(), 16509), OWNER)
    restarts = [a.service for a in fresh if isinstance(a, RestartService)]
    assert restarts == ["libvirtd", "cloudstack-agent"]
    assert isinstance(fresh[-1], RestartService), "restarts come after the file changes"
    files = converged_files(s)
    settled = plan(s, parse(probe_output(files=files), 16509), OWNER)
    assert not any(isinstance(a, RestartService) for a in settled)
    stopped = plan(s, parse(probe_output(files=files, services={"libvirtd": "inactive"}), 16509), OWNER)
    assert [a.describe() for a in stopped] == ["start libvirtd (it is not running)"]


def test_log_level_is_set_in_log4j() -> None:
    s = spec(cloudstackAgent={"logLevel": "DEBUG"})
    writes = {a.path: a for a in plan(s, parse(probe_output(), 16509), OWNER) if isinstance(a, WriteFile)}
    edited = writes["/etc/cloudstack/agent/log4j-cloud.xml"].content
    assert config.log_level(edited) == "DEBUG" and edited.count("DEBUG") == 1


def test_file_writes_pass_the_path_as_an_argument_never_in_the_script() -> None:
    action = next(a for a in plan(spec(), parse(probe_output(), 16509), OWNER) if isinstance(a, WriteFile))
    argv = action.argv()
    assert argv[:2] == ("sh", "-c") and action.path not in argv[2] and argv[-1] == action.path
    assert base64.b64decode(action.stdin() or "") == action.content.encode()


def test_property_values_with_shell_characters_stay_data() -> None:
    value = "$(touch /tmp/canary); `id` | rm -rf / && echo"
    s = spec(cloudstackAgent={"properties": {"guest.cpu.model": value}})
    write = next(a for a in plan(s, parse(probe_output(), 16509), OWNER)
                 if isinstance(a, WriteFile) and a.path == AGENT_PROPERTIES)
    assert f"guest.cpu.model={value}\n" in write.content
    assert value not in " ".join(write.argv())
