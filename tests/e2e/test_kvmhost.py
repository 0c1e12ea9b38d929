"""The KvmHost reconciler against real lab hosts (sshd, Open vSwitch, libvirtd in namespaces), in process, so that
the SSH driver's counters can be read: converge from a fresh host, then zero mutations and one round trip per
observe; drift repaired; Observe leaves drift alone; wrong host key runs nothing."""
from __future__ import annotations

import subprocess

import pytest
from support.kvmhost_lab import SECRET, context, converge, ready, reconcile, spec_for

from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.ssh import SSHPool
from stackops.reconcile.base import ReconcileError
from stackops.reconcile.kvmhost import KvmHostReconciler

def test_fresh_host_converges_then_stays_quiet(lab_hosts: list, pool: SSHPool) -> None:
    host, peer = lab_hosts[0], lab_hosts[1]
    events: list = []
    reconciler = KvmHostReconciler(pool)
    ctx = context(host, spec_for(host, peer), events)
    outcome = converge(reconciler, ctx)
    assert ready(outcome), [c for c in outcome.conditions] + [outcome.drift]
    assert any(e[1] == "Applied" for e in events)

    show = host.run("ovs-vsctl show").stdout
    for expected in ("cloudbr0", "bond0", "mgmt0", "tag: 123", "storage0", "tag: 124", "vxlan0",
                     'remote_ip="' + peer.address + '"', "datapath_type: netdev"):
        assert expected in show, show
    assert host.run("ovs-vsctl get Interface cloudbr0 mtu_request").stdout.strip() == "9000"
    assert host.run("cat /etc/cloudstack/agent/agent.properties").stdout.count(
        "network.bridge.type=openvswitch") == 1
    virsh = subprocess.run(["virsh", "-c", f"qemu+tcp://{host.address}/system", "version"],
                           capture_output=True, text=True, timeout=30)
    assert virsh.returncode == 0, virsh.stderr

    pool.reset_counters(host.address)
    again = reconcile(reconciler, ctx)
    counters = pool.counters(host.address)
    assert ready(again) and again.applied == []
    assert counters.mutations == 0 and counters.round_trips == 1, counters


def test_drift_is_repaired_and_observe_leaves_it(lab_hosts: list, pool: SSHPool) -> None:
    host, peer = lab_hosts[0], lab_hosts[1]
    events: list = []
    reconciler = KvmHostReconciler(pool)
    spec = spec_for(host, peer)
    assert ready(converge(reconciler, context(host, spec, events)))

    host.run("ovs-vsctl del-br storage0")
    host.run("sed -i 's/^listen_tcp = 1/listen_tcp = 0/' /etc/libvirt/libvirtd.conf")
    observe = spec.model_copy(update={"management_policy": "Observe"})
    observed = reconcile(reconciler, context(host, observe, events))
    assert not ready(observed)
    assert any("storage0" in a.describe() for a in observed.drift or [])
    assert any("listen_tcp" in a.describe() for a in observed.drift or [])
    assert "storage0" not in host.run("ovs-vsctl list-br").stdout, "Observe changed nothing"

    repaired = converge(reconciler, context(host, spec, events))
    assert ready(repaired)
    assert "storage0" in host.run("ovs-vsctl list-br").stdout
    assert host.run("grep -c '^listen_tcp = 1' /etc/libvirt/libvirtd.conf").stdout.strip() == "1"


def test_wrong_host_key_runs_nothing(lab_hosts: list, pool: SSHPool) -> None:
    host, peer = lab_hosts[0], lab_hosts[1]
    wrong = lab_hosts[1].host_key
    spec = spec_for(host, peer, ssh={"privateKeySecretRef": {"name": SECRET}, "hostKey": wrong})
    with pytest.raises(ReconcileError) as refused:
        reconcile(KvmHostReconciler(pool), context(host, spec, []))
    assert refused.value.reason == "HostKeyMismatch"
    assert pool.counters(host.address).round_trips == 0
    assert any(c.type == "Reachable" and c.status == "False" for c in refused.value.conditions)


def test_spec_values_never_run_as_code(lab_hosts: list, pool: SSHPool) -> None:
    host, peer = lab_hosts[0], lab_hosts[1]
    canary = "/tmp/stackops-canary"
    host.run(f"rm -f {canary}")
    nasty = f"$(touch {canary}); `touch {canary}` | touch {canary} && touch {canary}"
    spec = spec_for(host, peer, cloudstackAgent={"properties": {"guest.cpu.model": nasty,
                                                               "network.bridge.type": "openvswitch"}})
    assert ready(converge(reconcile_target := KvmHostReconciler(pool), context(host, spec, [])))
    assert reconcile_target is not None
    assert host.run(f"test -e {canary}; echo $?").stdout.strip() == "1", "a spec value was executed"
    assert f"guest.cpu.model={nasty}" in host.run("cat /etc/cloudstack/agent/agent.properties").stdout


def test_ovsdb_manager_with_a_generated_client_certificate(lab_hosts: list, pool: SSHPool) -> None:
    host, peer = lab_hosts[0], lab_hosts[1]
    manager = {"protocol": "ssl", "address": peer.address, "port": 6632, "clientCertificate": "Generate"}
    base = spec_for(host, peer).model_dump(by_alias=True, exclude_none=True)
    base["openvswitch"]["manager"] = manager
    spec = KvmHostSpec.model_validate(base)
    outcome = converge(KvmHostReconciler(pool), context(host, spec, []))
    assert ready(outcome), outcome.drift
    assert outcome.fields["manager"]["target"] == f"ssl:{peer.address}:6632"
    assert outcome.fields["manager"]["certificateFingerprint"].count(":") == 19  # SHA-1, as NSX shows it
    assert "ovsclient-cert.pem" in host.run("ovs-vsctl get-ssl").stdout
    assert host.run("ovs-vsctl get-manager").stdout.strip() == f"ssl:{peer.address}:6632"
