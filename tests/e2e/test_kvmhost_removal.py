"""Deleting a KvmHost under `deletionPolicy: Delete` against real lab hosts (sshd, Open vSwitch in namespaces), the
reconciler driven in process: the Open vSwitch objects it created are gone afterwards and a hand-made bridge stays;
under `Orphan` nothing is removed; the bridge carrying the management path is kept (with a Warning Event) and the
host stays reachable; a bridge that also holds a hand-made port is kept, its own ports removed.

(In the lab, eth0 joining a bridge does not cut SSH: the bridges use the userspace datapath. On a kernel-datapath
host it would, which is why the removal never touches it.)
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from support.credentials import secret

from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.ssh import SSHPool
from stackops.reconcile.base import Context, Outcome
from stackops.reconcile.kvmhost import KvmHostReconciler
from stackops.reconcile.kvmhost.guard import CHECKPOINT_DIR
from stackops.reconcile.kvmhost.observed import OWNER_KEY

SECRET = "kvm-ssh"
NAMESPACE = "lab"
REMOTE = "198.51.100.7"  # a tunnel's far end; nothing needs to answer there


def spec_for(host: Any, bridges: list[dict[str, Any]], policy: str = "Delete") -> KvmHostSpec:
    return KvmHostSpec.model_validate({
        "address": host.address,
        "ssh": {"privateKeySecretRef": {"name": SECRET}, "hostKey": host.host_key, "connectTimeoutSeconds": 5},
        "openvswitch": {"bridges": [{"datapathType": "netdev", **b} for b in bridges], "rollbackTimeoutSeconds": 10},
        "cloudstackAgent": {"properties": {"network.bridge.type": "openvswitch"}},
        "deletionPolicy": policy,
    })


def context(host: Any, spec: KvmHostSpec, events: list) -> Context:
    return Context(namespace=NAMESPACE, name=host.name, generation=1, spec=spec, status={},
                   secrets={SECRET: secret({"ssh-privatekey": host.client_key_pem}, host.address)},
                   event=lambda *e: events.append(e), logger=logging.getLogger("e2e"))


def ready(outcome: Outcome) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in outcome.conditions)


def converge(reconciler: KvmHostReconciler, ctx: Context, passes: int = 5) -> Outcome:
    outcome = asyncio.run(reconciler.reconcile(ctx))
    for _ in range(passes):
        if ready(outcome):
            break
        outcome = asyncio.run(reconciler.reconcile(ctx))
    assert ready(outcome), [outcome.conditions, outcome.drift]
    return outcome


def finalize(reconciler: KvmHostReconciler, ctx: Context) -> None:
    asyncio.run(reconciler.finalize(ctx))


def bridges(host: Any) -> set[str]:
    return set(host.run("ovs-vsctl list-br", check=True).stdout.split())


def ports(host: Any, bridge: str) -> set[str]:
    return set(host.run(f"ovs-vsctl list-ports {bridge}", check=True).stdout.split())


def owned(host: Any) -> set[str]:
    """Names of bridges and ports marked as this host's KvmHost's."""
    found = set()
    for table in ("Bridge", "Port"):
        out = host.run(f"ovs-vsctl --bare --columns=name find {table} "
                       f"'external_ids:{OWNER_KEY}=\"{NAMESPACE}/{host.name}\"'", check=True).stdout
        found |= set(out.split())
    return found


def test_delete_removes_the_owned_objects_and_leaves_the_hand_made_ones(make_lab_hosts, pool: SSHPool) -> None:
    (host,) = make_lab_hosts(1)
    layout = [
        {"name": "cloudbr0", "mtu": 9000, "bonds": [{"name": "bond0", "interfaces": list(host.nics[:2])}],
         "vlanBridges": [{"name": "mgmt0", "vlan": 123, "addresses": ["10.251.123.1/24"]},
                         {"name": "storage0", "vlan": 124}],
         "tunnels": [{"name": "vxlan0", "remoteIP": REMOTE, "key": 5001}],
         "internalPorts": [{"name": "int0"}]},
        {"name": "cloudbr1", "tunnels": [{"name": "gre0", "type": "gre", "remoteIP": REMOTE}],
         "vlanBridges": [{"name": "guest0", "vlan": 200}]},
    ]
    events: list = []
    reconciler = KvmHostReconciler(pool)
    converge(reconciler, context(host, spec_for(host, layout), events))
    created = {"cloudbr0", "bond0", "mgmt0", "storage0", "vxlan0", "int0", "cloudbr1", "gre0", "guest0"}
    assert owned(host) == created
    # by hand, outside the operator: a bridge with a port of its own
    host.run("ovs-vsctl add-br handmade0 -- set Bridge handmade0 datapath_type=netdev "
             "-- add-port handmade0 hm0 -- set Interface hm0 type=internal", check=True)
    before = bridges(host)
    assert before == {"cloudbr0", "mgmt0", "storage0", "cloudbr1", "guest0", "handmade0"}
    agent_properties = host.run("cat /etc/cloudstack/agent/agent.properties", check=True).stdout
    libvirtd_conf = host.run("cat /etc/libvirt/libvirtd.conf", check=True).stdout

    # Orphan: the reconciler changes nothing (the handler does not even call it)
    events.clear()
    pool.reset_counters(host.address)
    finalize(reconciler, context(host, spec_for(host, layout, policy="Orphan"), events))
    assert pool.counters(host.address).round_trips == 0 and events == []
    assert bridges(host) == before and owned(host) == created

    # Delete: every owned object goes (ports before their bridge), each with an Applied Event
    finalize(reconciler, context(host, spec_for(host, layout), events))
    assert bridges(host) == {"handmade0"}
    assert ports(host, "handmade0") == {"hm0"}
    assert owned(host) == set()
    applied = [e[2] for e in events if e[1] == "Applied"]
    assert len(applied) == 10 and all(a.endswith("(deletionPolicy Delete)") for a in applied), applied
    # last, the ifupdown file that would bring them back at the next boot (nothing was kept)
    assert applied[-1] == "remove the network configuration /etc/network/interfaces.d/stackops (deletionPolicy Delete)"
    assert host.run("test -e /etc/network/interfaces.d/stackops").returncode == 1
    assert applied.index("remove bond bond0 from cloudbr0 (deletionPolicy Delete)") < \
        applied.index("remove bridge cloudbr0 (deletionPolicy Delete)")
    assert applied.index("remove VLAN bridge guest0 (deletionPolicy Delete)") < \
        applied.index("remove bridge cloudbr1 (deletionPolicy Delete)")
    assert not [e for e in events if e[0] == "Warning"], events
    assert "10.251.123.1" not in host.run("ip -4 -o addr show").stdout, "the address went with its VLAN bridge"
    # configuration files stay as the operator left them
    assert host.run("cat /etc/cloudstack/agent/agent.properties", check=True).stdout == agent_properties
    assert host.run("cat /etc/libvirt/libvirtd.conf", check=True).stdout == libvirtd_conf

    # again (the handler retries a finalizer that failed later on): one probe, nothing to do
    events.clear()
    pool.reset_counters(host.address)
    finalize(reconciler, context(host, spec_for(host, layout), events))
    counters = pool.counters(host.address)
    assert counters.round_trips == 1 and counters.mutations == 0 and events == []


def test_the_management_path_and_shared_bridges_are_kept(make_lab_hosts, pool: SSHPool) -> None:
    (host,) = make_lab_hosts(1)
    layout = [
        {"name": "cloudbr0", "ports": ["eth0"], "internalPorts": [{"name": "int0"}]},  # eth0: the management NIC
        {"name": "cloudbr1", "ports": [host.nics[0]], "vlanBridges": [{"name": "guest0", "vlan": 200}]},
        {"name": "cloudbr2", "ports": [host.nics[1]], "internalPorts": [{"name": "int2"}]},
    ]
    events: list = []
    reconciler = KvmHostReconciler(pool)
    try:
        converge(reconciler, context(host, spec_for(host, layout), events))
        assert any(e[1] == "ChangeConfirmed" for e in events), "eth0 joined cloudbr0 under a checkpoint"
        assert ports(host, "cloudbr0") == {"eth0", "int0"}
        # by hand: a port on cloudbr2 (as a VM's would be) — deleting cloudbr2 would delete it
        host.run("ovs-vsctl add-port cloudbr2 vm0 -- set Interface vm0 type=internal", check=True)

        events.clear()
        finalize(reconciler, context(host, spec_for(host, layout), events))
        assert bridges(host) == {"cloudbr0", "cloudbr2"}
        assert ports(host, "cloudbr0") == {"eth0", "int0"}, "the management path is untouched"
        assert ports(host, "cloudbr2") == {"vm0"}, "the shared bridge stays, its owned ports went"
        assert owned(host) == {"cloudbr0", "eth0", "int0", "cloudbr2"}
        warnings = {e[1]: e[2] for e in events if e[0] == "Warning"}
        assert set(warnings) == {"ManagementPathKept", "SharedObjectsKept"}, events
        path = warnings["ManagementPathKept"]
        assert "bridge cloudbr0" in path and "port eth0 on cloudbr0" in path and host.address in path
        assert "bridge cloudbr2 (it also holds vm0)" in warnings["SharedObjectsKept"]
        applied = [e[2] for e in events if e[1] == "Applied"]
        assert sorted(applied) == sorted([
            "remove VLAN bridge guest0 (deletionPolicy Delete)",
            f"remove port {host.nics[0]} from cloudbr1 (deletionPolicy Delete)",
            "remove bridge cloudbr1 (deletionPolicy Delete)",
            f"remove port {host.nics[1]} from cloudbr2 (deletionPolicy Delete)",
            "remove internal port int2 from cloudbr2 (deletionPolicy Delete)"])
        assert not any("cloudbr0" in a or "eth0" in a for a in applied)

        # the host is still reachable over a fresh connection: the deletion finishes (and would again)
        fresh = SSHPool()
        try:
            events.clear()
            asyncio.run(KvmHostReconciler(fresh).finalize(context(host, spec_for(host, layout), events)))
            assert fresh.counters(host.address).mutations == 0
        finally:
            fresh.close_all()
        assert [e[1] for e in events] == ["ManagementPathKept", "SharedObjectsKept"]
    finally:
        host.run(f'm=$(cat /etc/machine-id); for d in {CHECKPOINT_DIR}/*/; do '
                 '[ "$(cat "$d/machine-id" 2>/dev/null)" = "$m" ] && rm -rf "$d"; done; true')
