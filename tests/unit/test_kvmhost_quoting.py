"""Every string of a KvmHost spec that reaches a command stays one argument: shell metacharacters fed through each
field (bypassing the schema, as if it had a hole) are never interpreted by the remote shell."""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from support.specs import HOST_KEY
from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.ssh import build_command
from stackops.reconcile.kvmhost.plan import plan
from stackops.reconcile.kvmhost.probe import parse
from support.kvmhost_probe import probe_output

NASTY = ["x; touch {c}", "$(touch {c})", "`touch {c}`", "x | touch {c}", "x && touch {c}", "x > {c}",
         "x\ntouch {c}", "x' ; touch {c} ; '", 'x" ; touch {c} ; "', "x y"]


def nasty_spec(value: str) -> KvmHostSpec:
    """A spec with `value` in every string that reaches a command, built without validation."""
    ssh = {"privateKeySecretRef": {"name": "k"}, "hostKey": HOST_KEY}
    valid = KvmHostSpec.model_validate({"address": "10.250.0.11", "ssh": ssh})
    # Replace each validated section with an unvalidated one carrying the value.
    from stackops.api import kvmhost as api

    built_bridge = api.Bridge.model_construct(
        name=value, datapath_type="netdev", mtu=9000, ports=[value + "p"], addresses=[value + "/24"],
        bonds=[api.Bond.model_construct(name=value + "b", interfaces=[value + "1", value + "2"],
                                        bond_mode="balance-tcp", lacp="active", lacp_time="fast")],
        vlan_bridges=[api.VlanBridge.model_construct(name=value + "v", vlan=5, addresses=[value + "/25"], mtu=None)],
        tunnels=[api.Tunnel.model_construct(name=value + "t", type="vxlan", remote_ip=value, key=1)],
        internal_ports=[api.InternalPort.model_construct(name=value + "i", addresses=[value + "/26"], mtu=None)])
    manager = api.OVSDBManager.model_construct(protocol="ssl", address=value, port=6632,
                                               client_certificate="Generate", certificate_secret_ref=None,
                                               bootstrap_ca=True)
    return valid.model_copy(update={
        "packages": api.Packages.model_construct(install=True, repository_url=None, cloudstack_agent_version=None,
                                                 extra=[value]),
        "openvswitch": api.OpenVSwitch.model_construct(bridges=[built_bridge], manager=manager,
                                                       rollback_timeout_seconds=60),
        "qemu": api.Qemu.model_construct(vnc_listen=value),
        "cloudstack_agent": api.CloudStackAgent.model_construct(properties={value: value}, log_level="INFO"),
    })


@pytest.mark.parametrize("template", NASTY)
def test_every_argument_survives_the_remote_shell_intact(template: str, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    value = template.format(c=canary)
    spec = nasty_spec(value)
    observed = parse(probe_output(empty_ovs=True, addresses={"eth0": ["10.250.0.11/24"]}), 16509)
    actions = plan(spec, observed, "lab/kvm1")
    extra = [a for a in plan(spec, parse(probe_output(empty_ovs=True, packages={}), 16509), "lab/kvm1")]
    assert any(value in " ".join(a.argv()) for a in actions + extra), "the value reaches some command"
    for action in actions + extra:
        argv = list(action.argv())
        line = build_command(argv)
        assert shlex.split(line) == argv, line
        # What a POSIX shell makes of the line: the same words, and nothing run.
        echoed = subprocess.run(["sh", "-c", "printf '%s\\0' " + shlex.join(argv[1:])], capture_output=True,
                                text=True, check=True).stdout.split("\0")[:-1]
        assert echoed == argv[1:]
    assert not canary.exists()
