"""KvmHost networking survives a reboot (issue 15), against a real lab host, the reconciler driven in process: a host
whose management address sits on a VLAN bridge (mgmt0, VLAN 123 of cloudbr0, eth0 its uplink) comes back from a
real reboot (every process ends, the network's runtime state is cleared) with the address on mgmt0, reachable over
SSH there, and plans nothing: its ifupdown configuration (/etc/network/interfaces.d/stackops) brought it back.
A hand edit of that file is drift under Observe.

The lab's switch carries VLAN 123 for the machine (LabHosts.carry_vlan), so the machine reaches the host there.

How the management address gets onto the VLAN, as a user would do it: first the host is managed at the address it
answers on (eth0's), with the VLAN bridge and its new address in the spec (eth0 joining cloudbr0 is applied under
the guard's checkpoint); once the new address answers, `address` is changed to it.
"""
from __future__ import annotations

import asyncio
import logging
import subprocess
from pathlib import Path
from typing import Any

from support.credentials import secret
from support.kvmhost_lab import converge, ready
from support.wait import wait_for

from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.ssh import SSHPool
from stackops.reconcile.base import Context, Outcome
from stackops.reconcile.kvmhost import KvmHostReconciler
from stackops_lab.hosts import LabHosts

SECRET = "kvm-ssh"
NAMESPACE = "lab"
VLAN = 123
NETWORK_STACKOPS = "/etc/network/interfaces.d/stackops"  # spelled out: the test also runs against the code before it


def spec_for(host: Any, address: str, management: str, policy: str = "Manage") -> KvmHostSpec:
    return KvmHostSpec.model_validate({
        "managementPolicy": policy,
        "address": address,
        "ssh": {"privateKeySecretRef": {"name": SECRET}, "hostKey": host.host_key, "connectTimeoutSeconds": 5},
        "openvswitch": {"bridges": [{
            "name": "cloudbr0", "datapathType": "netdev", "ports": ["eth0"],
            "vlanBridges": [{"name": "mgmt0", "vlan": VLAN, "addresses": [f"{management}/24"]}],
        }], "rollbackTimeoutSeconds": 20},
        "cloudstackAgent": {"properties": {"network.bridge.type": "openvswitch"}},
    })


def context(host: Any, spec: KvmHostSpec, events: list, generation: int) -> Context:
    return Context(namespace=NAMESPACE, name=host.name, generation=generation, spec=spec, status={},
                   secrets={SECRET: secret({"ssh-privatekey": host.client_key_pem}, spec.address)},
                   event=lambda *e: events.append(e), logger=logging.getLogger("e2e"))


def converged(reconciler: KvmHostReconciler, ctx: Context) -> Outcome:
    outcome = converge(reconciler, ctx, passes=5)
    assert ready(outcome), [outcome.conditions, outcome.drift]
    return outcome


def test_the_management_address_on_a_vlan_bridge_survives_a_reboot(make_lab_hosts, pool: SSHPool) -> None:
    (host,) = make_lab_hosts(1)
    lab = LabHosts(host.directory.parent.parent)
    slot = host.address.split(".")[2]
    management = f"10.251.{slot}.{host.address.split('.')[3]}"
    device = lab.carry_vlan(VLAN, f"10.251.{slot}.1/24")
    assert len(device) <= 15 and f"10.251.{slot}.1/24" in subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", device], capture_output=True, text=True, check=True).stdout
    reconciler = KvmHostReconciler(pool)
    events: list = []

    # 1. managed at eth0's address: eth0 into cloudbr0 (guarded), mgmt0 on VLAN 123 with the new address
    converged(reconciler, context(host, spec_for(host, host.address, management), events, 1))
    # the lab's sshd listens on the lab address only (a real host's on all of them): now on the new one too
    host.run(f"echo 'ListenAddress {management}' > /etc/ssh/sshd_config.d/management.conf && systemctl restart ssh",
             check=True)
    # 2. managed at the new address, now reachable over VLAN 123
    ctx = context(host, spec_for(host, management, management), events, 2)
    converged(reconciler, ctx)
    stanzas = host.run(f"cat {NETWORK_STACKOPS}", check=True).stdout
    assert "allow-cloudbr0 mgmt0" in stanzas and "ovs_options cloudbr0 123" in stanzas, stanzas
    assert f"address {management}/24" in stanzas, stanzas

    boots = host.boots()
    host.reboot()
    assert host.boots() == boots + 1
    boot_log = (host.directory / "init.log").read_text().split("ready (boot id")[-2]  # the last boot's lines
    assert "ifup -a exited 0" in boot_log, boot_log
    assert f"{management}/24" in host.run("ip -4 -o addr show dev mgmt0", check=True).stdout
    # the reconciler reaches it at the management address (a fresh connection: the old one ended with the
    # reboot) and finds nothing to do
    events.clear()
    outcome = asyncio.run(reconciler.reconcile(ctx))
    assert ready(outcome), [outcome.conditions, outcome.drift]
    assert [e for e in events if e[1] == "Applied"] == [], events

    # Observe: a hand edit of the file is drift, and is left as it is
    host.run(f"sed -i 's/^    address {management}\\/24$/    address 10.251.{slot}.99\\/24/' {NETWORK_STACKOPS}",
             check=True)
    edited = host.run(f"cat {NETWORK_STACKOPS}", check=True).stdout
    assert edited != stanzas
    observe = context(host, spec_for(host, management, management, policy="Observe"), events, 3)
    outcome = asyncio.run(reconciler.reconcile(observe))
    assert any(NETWORK_STACKOPS in str(d) for d in outcome.drift), outcome.drift
    assert host.run(f"cat {NETWORK_STACKOPS}", check=True).stdout == edited

    # the lab stops carrying the VLAN: the machine's tap goes with its relay, the bridge's port with it
    lab.drop_vlan(VLAN)
    wait_for(lambda: not Path(f"/sys/class/net/{device}").exists(), timeout=10, what=f"{device} gone")
    assert not Path(f"/sys/class/net/stackops{slot}p{VLAN}").exists()
