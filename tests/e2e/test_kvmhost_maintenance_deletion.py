"""Deleting a KvmHost whose maintenance is under way ends the maintenance first, whatever its deletionPolicy, so that
nothing is left half-done (a real lab host registered in the lab CloudStack, the reconciler in process): a host
still being drained is given back (its maintenance cancelled, Enabled, the slot released, the record Failed, never
rebooted); a host already emptied goes through its reboot and comes back (Enabled, rebooted once, Completed)."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import SecretStr
from support.credentials import secret
from support.memory_lock import MemoryLocks
from support.wait import wait_for

from stackops.api.kvmhost import HostMaintenanceStatus, KvmHostSpec
from stackops.drivers.cloudstack import CloudStackPool
from stackops.drivers.ssh import SSHPool
from stackops.reconcile.base import Context
from stackops.reconcile.kvmhost import KvmHostReconciler
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.manifests import kvmhost_manifests

CLOUDSTACK = "lab-cloudstack"
TIMINGS = Timings(host_connect=0.3, host_maintenance=0.2, job=0.05, vm_migrate=0.2, ping_timeout=0.4, kvm_ping=0.2)


def spec_for(host: Any) -> KvmHostSpec:
    document = kvmhost_manifests([host], "lab")[1]
    document["spec"]["cloudstack"] = {"connection": {"secretRef": {"name": CLOUDSTACK}}, "zone": "lab-zone-1",
                                      "pod": "lab-zone-1-pod-1", "cluster": "lab-zone-1-kvm"}
    document["spec"]["maintenance"] = {"hostTimeoutSeconds": 120}
    return KvmHostSpec.model_validate(document["spec"])  # deletionPolicy Orphan


def context(host: Any, sim: CloudStackSimulator, status: dict[str, Any], events: list) -> Context:
    secrets = {"lab-kvm-ssh": secret({"ssh-privatekey": host.client_key_pem}, host.address),
               CLOUDSTACK: {"url": SecretStr(sim.endpoint), "apiKey": SecretStr(sim.api_key),
                            "secretKey": SecretStr(sim.secret_key), "allowPlainHTTP": SecretStr("true")}}

    async def checkpoint(fields: dict[str, Any]) -> None:
        status.update(fields)

    return Context(namespace="lab", name=host.name, generation=1, spec=spec_for(host), status=status,
                   secrets=secrets, event=lambda *e: events.append(e), logger=logging.getLogger("e2e"),
                   checkpoint=checkpoint)


def cloudstack_state(sim: CloudStackSimulator, address: str) -> tuple[str, str]:
    with sim.state.lock:
        host = next(h for h in sim.state.values("host") if h.address == address)
        return host.state, host.resource_state


def test_deletion_mid_maintenance_ends_it(make_lab_hosts: Any) -> None:
    hosts = make_lab_hosts(2)
    for host in hosts:
        host.set_down_seconds(1.0)
    locks = MemoryLocks()
    with CloudStackSimulator(fleet=Fleet(zones=1, routers=0, redundant_pairs=0), timings=TIMINGS,
                             ssh_key_path=str(hosts[0].client_key_path)) as sim:
        async def go() -> None:
            pool = CloudStackPool(poll_interval=0.1)
            reconciler = KvmHostReconciler(SSHPool(), pool, locks=lambda namespace: locks, maintenance_poll=0.2)
            contexts = []
            for host in hosts:
                status: dict[str, Any] = {}
                ctx = context(host, sim, status, [])
                contexts.append(ctx)
                for _ in range(20):
                    outcome = await reconciler.reconcile(ctx)
                    status.update(outcome.fields)
                    if status.get("cloudstackHostState") == "Up":
                        break
                    await asyncio.sleep(0.3)
            client = pool.get(sim.endpoint, sim.api_key, SecretStr(sim.secret_key))
            draining, emptied = contexts
            for ctx, host in zip(contexts, hosts):  # each host as a killed operator left it: in maintenance
                found = next(h for h in await client.list("listHosts", type="Routing") if h["ipaddress"] == host.address)
                await client.run("prepareHostForMaintenance", id=found["id"])
                locks.acquire("lab-zone-1-kvm", f"lab/{host.name}", 900, 2, {"address": host.address})
            boot_id = hosts[1].boot_id()
            draining.status["maintenance"] = HostMaintenanceStatus(
                request="restartAfter 2026-12-07T00:00:00Z", step="Draining", generation=1, group="lab-zone-1-kvm",
                state_before="Enabled", reboot=True).model_dump(by_alias=True)
            emptied.status["maintenance"] = HostMaintenanceStatus(
                request="restartAfter 2026-12-07T00:00:00Z", step="Rebooting", generation=1, group="lab-zone-1-kvm",
                state_before="Enabled", reboot=True, boot_id=boot_id).model_dump(by_alias=True)
            assert reconciler.in_flight(draining.status) and reconciler.in_flight(emptied.status)
            for ctx in contexts:
                await reconciler.finalize(ctx)
            assert draining.status["maintenance"]["phase"] == "Failed", draining.status["maintenance"]
            assert "deleted" in draining.status["maintenance"]["message"]
            assert emptied.status["maintenance"]["phase"] == "Completed", emptied.status["maintenance"]
            await pool.close()

        boots = [h.boots() for h in hosts]
        asyncio.run(go())
        wait_for(lambda: cloudstack_state(sim, hosts[1].address) == ("Up", "Enabled"), timeout=60,
                 what="the emptied host Up and Enabled", interval=0.2)
        assert cloudstack_state(sim, hosts[0].address) == ("Up", "Enabled"), "the draining host given back"
    assert [h.boots() - b for h, b in zip(hosts, boots)] == [0, 1], "only the emptied host rebooted, once"
    assert locks.held("lab-zone-1-kvm") == [], "both slots released"
