"""Shared by the end-to-end KvmHost tests that run the reconciler in process against lab hosts (tests/e2e/conftest.py:
`lab_hosts`, `make_lab_hosts`): the spec of a host's usual layout, a pass's Context with the host's SSH key, and
passes run until Ready."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from support.credentials import secret

from stackops.api.kvmhost import KvmHostSpec
from stackops.reconcile.base import Context, Outcome
from stackops.reconcile.kvmhost import KvmHostReconciler

SECRET = "kvm-ssh"  # the Secret holding the host's SSH key ("ssh-privatekey")


def spec_for(host: Any, peer: Any, **changes: Any) -> KvmHostSpec:
    """A netdev bridge with a bond of two of `host`'s spare NICs, two VLAN bridges and a VXLAN tunnel to `peer`;
    the agent set to Open vSwitch. `changes` replace top-level fields of the spec."""
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
    data.update(changes)
    return KvmHostSpec.model_validate(data)


def context(host: Any, spec: KvmHostSpec, events: list, status: dict | None = None,
            secrets: dict[str, Any] | None = None) -> Context:
    """A pass over `host` in namespace lab: its SSH key in SECRET (allowed to go to the host's address only) and
    `secrets`; each Event appended to `events`."""
    return Context(namespace="lab", name=host.name, generation=1, spec=spec, status=status or {},
                   secrets={SECRET: secret({"ssh-privatekey": host.client_key_pem}, host.address), **(secrets or {})},
                   event=lambda *e: events.append(e), logger=logging.getLogger("e2e"))


def reconcile(reconciler: KvmHostReconciler, ctx: Context) -> Outcome:
    return asyncio.run(reconciler.reconcile(ctx))


def ready(outcome: Outcome) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in outcome.conditions)


def converge(reconciler: KvmHostReconciler, ctx: Context, passes: int = 4) -> Outcome:
    """Passes until one is Ready, at most `passes` after the first; the last pass's outcome."""
    outcome = reconcile(reconciler, ctx)
    for _ in range(passes):
        if ready(outcome):
            break
        outcome = reconcile(reconciler, ctx)
    return outcome
