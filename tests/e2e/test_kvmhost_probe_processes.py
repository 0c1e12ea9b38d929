"""How many processes the KvmHost probe starts on a real lab host (issue 18): at most 10 once the operator knows the
host's binaries, counted under strace (stackops_lab.spawns: every process the probe's shell creates, a subshell
too; the lab's `systemctl` shim counts as the one process systemctl is on a real host).

The host is first converged into the state that costs the probe most: a checkpoint of a guarded change on it (its
date and files), the OVSDB client certificate from a Secret (their digests), a bridge with a bond, VLAN bridges,
a tunnel and eth0. The probe counted is the one the reconciler runs next (its arguments: the binaries it knows);
the first probe of a host also runs the three `--version`, and finds the same."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support.credentials import secret

from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.ssh import SSHPool
from stackops.reconcile.base import Context
from stackops.reconcile.kvmhost import KvmHostReconciler
from stackops.reconcile.kvmhost.plan import probe_arguments
from stackops.reconcile.kvmhost.probe import SCRIPT, Probe
from stackops_lab.spawns import spawned_by

MOST = 10
VERSIONS = ["/usr/bin/ovs-vsctl", "/usr/sbin/libvirtd", "/usr/bin/qemu-system-x86_64"]


def client_certificate() -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kvm client")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now)
                   .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return {"tls.crt": certificate.public_bytes(serialization.Encoding.PEM).decode(),
            "tls.key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode()}


def test_a_probe_starts_at_most_ten_processes(make_lab_hosts: Callable[..., list]) -> None:
    host = make_lab_hosts(1)[0]
    spec = KvmHostSpec.model_validate({
        "address": host.address,
        "ssh": {"privateKeySecretRef": {"name": "kvm-ssh"}, "hostKey": host.host_key},
        "openvswitch": {
            "bridges": [{"name": "cloudbr0", "datapathType": "netdev", "ports": ["eth0"],  # guarded: a checkpoint
                         "bonds": [{"name": "bond0", "interfaces": list(host.nics[:2])}],
                         "vlanBridges": [{"name": "mgmt0", "vlan": 123, "addresses": ["10.251.123.1/24"]}],
                         "tunnels": [{"name": "vxlan0", "remoteIP": host.gateway, "key": 5001}]}],
            "manager": {"protocol": "ssl", "address": host.gateway, "port": 6632, "clientCertificate": "Secret",
                        "certificateSecretRef": {"name": "ovs-client"}}},
        "cloudstackAgent": {"properties": {"network.bridge.type": "openvswitch"}},
    })
    ctx = Context(namespace="lab", name=host.name, generation=1, spec=spec, status={},
                  secrets={"kvm-ssh": secret({"ssh-privatekey": host.client_key_pem}, host.address),
                           "ovs-client": secret(client_certificate(), host.address)},
                  event=lambda *_: None, logger=logging.getLogger("e2e"))
    pool = SSHPool()
    reconciler = KvmHostReconciler(pool)
    try:
        outcome: Any = None
        for _ in range(4):
            outcome = asyncio.run(reconciler.reconcile(ctx))
            if any(c.type == "Ready" and c.status == "True" for c in outcome.conditions):
                break
        assert any(c.type == "Ready" and c.status == "True" for c in outcome.conditions), outcome.conditions
    finally:
        pool.close_all()

    owner = f"lab/{host.name}@{host.address}"  # as the reconciler names the host to its Probe
    arguments = reconciler.probe.arguments(owner, probe_arguments(spec))
    assert len(arguments[0].split()) == 3, "the reconciler knows the versions of the three binaries"
    known = spawned_by(host, SCRIPT, arguments)
    assert known.exit_status == 0
    assert known.count <= MOST, known.commands
    assert len(set(known.commands)) == len(known.commands), f"each program once: {known.commands}"
    assert "(subshell)" not in known.commands and not set(VERSIONS[1:]) & set(known.commands), known.commands

    first = spawned_by(host, SCRIPT, ["", *probe_arguments(spec)])  # a host the operator has not probed yet
    assert first.exit_status == 0
    assert sorted(first.commands) == sorted(known.commands + VERSIONS), (first.commands, known.commands)

    # both are whole probes of the converged host, and find the same
    probe = Probe()
    first_facts = probe.parse(owner, first.stdout, spec.libvirt.tcp_port)
    known_facts = reconciler.probe.parse(owner, known.stdout, spec.libvirt.tcp_port)
    assert dataclasses.replace(known_facts, host_time=None) == dataclasses.replace(first_facts, host_time=None)
    assert len(known_facts.checkpoints) == 1 and len(known_facts.client_files) == 2
    assert known_facts.ovs is not None and "bond0" in known_facts.ovs.ports and known_facts.qemu_version
