"""KvmHost registration in the lab CloudStack: a configured lab host is added with `addHost` (which the simulator
checks for real: libvirtd on TCP, agent.properties over SSH), ends `Registered` with host state Up; under
`deletionPolicy: Delete` deletion goes through maintenance and removes it; an unknown cluster stalls."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from pydantic import SecretStr
from support.credentials import secret

from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.cloudstack import CloudStackPool
from stackops.drivers.ssh import SSHPool
from stackops.reconcile.base import Context, Outcome, ReconcileError
from stackops.reconcile.kvmhost import KvmHostReconciler
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.manifests import kvmhost_manifests

CLOUDSTACK = "lab-cloudstack"


def spec_for(host: Any, **cloudstack: Any) -> KvmHostSpec:
    document = kvmhost_manifests([host], "lab")[1]
    document["spec"]["cloudstack"] = {"connection": {"secretRef": {"name": CLOUDSTACK}}, "zone": "lab-zone-1",
                                      "pod": "lab-zone-1-pod-1", "cluster": "lab-zone-1-kvm",
                                      "hostTags": ["lab", "ovs"], **cloudstack}
    document["spec"]["deletionPolicy"] = "Delete"
    return KvmHostSpec.model_validate(document["spec"])


def context(host: Any, sim: CloudStackSimulator, spec: KvmHostSpec, events: list) -> Context:
    secrets = {"lab-kvm-ssh": secret({"ssh-privatekey": host.client_key_pem}, host.address),
               CLOUDSTACK: {"url": SecretStr(sim.endpoint), "apiKey": SecretStr(sim.api_key),
                            "secretKey": SecretStr(sim.secret_key), "allowPlainHTTP": SecretStr("true")}}
    return Context(namespace="lab", name=host.name, generation=1, spec=spec, status={}, secrets=secrets,
                   event=lambda *e: events.append(e), logger=logging.getLogger("e2e"))


def condition(outcome: Outcome, type_: str) -> Any:
    return next((c for c in outcome.conditions if c.type == type_), None)


async def until_ready(reconciler: KvmHostReconciler, ctx: Context, passes: int = 12) -> Outcome:
    outcome = await reconciler.reconcile(ctx)
    for _ in range(passes):
        if condition(outcome, "Ready").status == "True":
            break
        await asyncio.sleep(min(outcome.requeue_after or 0.5, 0.5))
        outcome = await reconciler.reconcile(ctx)
    return outcome


def test_registered_up_then_removed_through_maintenance(make_lab_hosts) -> None:
    (host,) = make_lab_hosts(1)
    timings = Timings(host_connect=1.0, host_maintenance=0.5, job=0.05)
    with CloudStackSimulator(fleet=Fleet(zones=1, routers=4, redundant_pairs=1), timings=timings,
                             ssh_key_path=str(host.client_key_path)) as sim:
        events: list = []

        async def go() -> tuple[Outcome, Outcome, list]:
            pool = CloudStackPool(poll_interval=0.1)
            reconciler = KvmHostReconciler(SSHPool(), pool)
            ctx = context(host, sim, spec_for(host), events)
            first = await reconciler.reconcile(ctx)
            outcome = await until_ready(reconciler, ctx)
            hosts = await pool.get(sim.endpoint, sim.api_key, SecretStr(sim.secret_key)).list(
                "listHosts", type="Routing")
            again = await reconciler.reconcile(ctx)  # converged: nothing added twice
            await reconciler.finalize(ctx)
            after = await pool.get(sim.endpoint, sim.api_key, SecretStr(sim.secret_key)).list(
                "listHosts", type="Routing")
            await pool.close()
            return first, outcome, [hosts, again, after]

        first, outcome, (hosts, again, after) = asyncio.run(go())
        audit = sim.audit()

    assert condition(outcome, "Ready").status == "True", outcome.conditions
    registered = condition(outcome, "Registered")
    assert registered.status == "True" and registered.reason == "Up"
    ours = [h for h in hosts if h.get("ipaddress") == host.address]
    assert len(ours) == 1 and ours[0]["state"] == "Up" and ours[0]["hosttags"] == "lab,ovs"
    assert outcome.fields["cloudstackHostId"] == ours[0]["id"] and outcome.fields["cloudstackHostState"] == "Up"
    assert again.applied == [] and condition(again, "Registered").status == "True"
    assert sum(1 for e in audit if e.get("event") == "host.added") == 1
    assert any("add host" in e[2] for e in events if e[1] == "Applied")
    # deletion: maintenance first, then the host is gone
    order = [e["event"] for e in audit if e.get("event") in ("host.state", "host.deleted") and
             (e.get("host") == ours[0]["id"] or e.get("id") == ours[0]["id"])]
    assert order and order[-1] == "host.deleted"
    assert any("maintenance" in e[2] for e in events if e[1] == "Applied")
    assert not [h for h in after if h.get("ipaddress") == host.address]


def test_unknown_cluster_stalls_naming_it(make_lab_hosts) -> None:
    (host,) = make_lab_hosts(1)
    with CloudStackSimulator(fleet=Fleet(zones=1, routers=2, redundant_pairs=0),
                             ssh_key_path=str(host.client_key_path)) as sim:
        async def go() -> None:
            pool = CloudStackPool()
            reconciler = KvmHostReconciler(SSHPool(), pool)
            try:
                await until_ready(reconciler, context(host, sim, spec_for(host, cluster="no-such-cluster"), []))
            finally:
                await pool.close()

        with pytest.raises(ReconcileError) as refused:
            asyncio.run(go())
    assert refused.value.reason == "ClusterNotFound" and not refused.value.retry
    assert "no-such-cluster" in str(refused.value)
