"""KvmHost round trips on a real lab host (issue 13): a fresh host converges in one pass of at most 4 mutating round
trips after the probe (one Open vSwitch transaction per run of changes, one script for the other commands), with one
`Applied` Event per change."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from support.credentials import secret

from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.ssh import SSHPool
from stackops.reconcile.base import Context
from stackops.reconcile.kvmhost import KvmHostReconciler

SECRET = "kvm-ssh"


def test_a_fresh_host_converges_in_at_most_four_round_trips_after_the_probe(make_lab_hosts: Any) -> None:
    host, peer = make_lab_hosts(2)  # hosts of its own: the session's lab hosts are configured by other tests
    data: dict[str, Any] = {
        "address": host.address,
        "ssh": {"privateKeySecretRef": {"name": SECRET}, "hostKey": host.host_key},
        "openvswitch": {"bridges": [{
            "name": "cloudbr0", "datapathType": "netdev", "mtu": 9000,
            "bonds": [{"name": "bond0", "interfaces": list(host.nics[:2])}],
            "vlanBridges": [{"name": "mgmt0", "vlan": 123, "addresses": ["10.251.123.1/24"]},
                            {"name": "storage0", "vlan": 124}],
            "tunnels": [{"name": "vxlan0", "remoteIP": peer.address, "key": 5001}],
        }]},
        "cloudstackAgent": {"properties": {"network.bridge.type": "openvswitch"}, "logLevel": "DEBUG"},
    }
    events: list = []
    ctx = Context(namespace="lab", name=host.name, generation=1, spec=KvmHostSpec.model_validate(data), status={},
                  secrets={SECRET: secret({"ssh-privatekey": host.client_key_pem}, host.address)},
                  event=lambda *e: events.append(e), logger=logging.getLogger("e2e"))
    pool = SSHPool()
    try:
        outcome = asyncio.run(KvmHostReconciler(pool).reconcile(ctx))
        counters = pool.counters(host.address)
    finally:
        pool.close_all()
    assert any(c.type == "Ready" and c.status == "True" for c in outcome.conditions), outcome.conditions
    assert len(outcome.applied) >= 15
    assert counters.mutations <= 4 and counters.round_trips == counters.mutations + 2, counters  # + 2 probes
    assert [e for e in events if e[1] == "Applied"] == [("Normal", "Applied", a.describe()) for a in outcome.applied]
