"""KvmHost rolling restarts through the operator (real API server, deploy/ RBAC, real Leases) with the operator killed
by SIGKILL 20 times: three KVM lab hosts registered in one lab CloudStack cluster (which pings them, so a reboot
shows there), a user VM on each, one host Disabled in CloudStack, rolled through four successive `restartAfter`
requests. Most kills land at a chosen step (killed from inside the lab CloudStack as its audit log records a host's
state change: the drain asked, the host drained, down for its reboot, back in maintenance, given back), the others
at a random moment. After each request: every host rebooted exactly once, no VM ever stopped, never two hosts in
maintenance at once, every host back (Enabled, the Disabled one Disabled), every maintenance Completed and no Lease
slot left held."""
from __future__ import annotations

import datetime
import json
import os
import random
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import yaml

from stackops_lab.audit import AuditLog
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.manifests import kvmhost_manifests
from support.kills import kill_series
from support.wait import wait_for

CS_TIMINGS = Timings(host_connect=0.3, host_maintenance=0.2, job=0.05, vm_migrate=0.2, ping_timeout=0.4,
                     kvm_ping=0.3)
DOWN_SECONDS = 1.0  # each reboot keeps the host down this long: CloudStack's ping sees it Disconnected
RANDOM_WINDOW = 6.0  # seconds after the operator (re)starts within which a random kill lands
IN_MAINTENANCE = ("PrepareForMaintenance", "ErrorInPrepareForMaintenance", "Maintenance", "ErrorInMaintenance")


@dataclass(frozen=True)
class At:
    """A kill as the lab CloudStack records the nth (after arming) `host.state` change with these fields."""

    fields: tuple[tuple[str, str], ...]
    nth: int = 1

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.fields) + (f" #{self.nth}" if self.nth > 1 else "")


def at(nth: int = 1, **fields: str) -> At:
    return At(tuple(sorted(fields.items())), nth)


RANDOM = None
# Per request, in order of the roll (whichever host takes the lock first): a step's kill comes after the previous.
REQUESTS: list[list[At | None]] = [
    [at(resourcestate="PrepareForMaintenance"), at(state="Disconnected"), at(state="Up", resourcestate="Maintenance"),
     at(resourcestate="Enabled"), RANDOM],
    [at(resourcestate="Maintenance"), at(state="Up", resourcestate="Maintenance"), RANDOM,
     at(resourcestate="PrepareForMaintenance"), RANDOM],
    [at(state="Disconnected"), at(resourcestate="Enabled", nth=2), at(state="Disconnected"), RANDOM, RANDOM],
    [at(resourcestate="PrepareForMaintenance", nth=2), at(resourcestate="Maintenance"), at(state="Disconnected"),
     RANDOM, RANDOM],
]
KILLS = 20


class Killer:
    """Kills the operator from inside the lab CloudStack as its audit log records the armed state change."""

    def __init__(self, log: AuditLog, operator: Any) -> None:
        self.log, self.operator = log, operator
        self.wanted: At | None = None
        self.seen = 0
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._record = log.record
        log.record = self._hooked  # type: ignore[method-assign]

    def arm(self, wanted: At) -> None:
        with self._lock:
            self.wanted, self.seen = wanted, 0
            self.done.clear()

    def _hooked(self, event: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            entry = self._record(event, **fields)
            wanted = self.wanted
            if wanted is not None and event == "host.state" and str(fields.get("name", "")).startswith("kvm") \
                    and all(str(fields.get(k)) == v for k, v in wanted.fields):
                self.seen += 1
                if self.seen == wanted.nth:
                    self.wanted = None
                    self.operator.kill()
                    self.done.set()
            return entry

    def close(self) -> None:
        self.log.record = self._record  # type: ignore[method-assign]


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_rolling_restarts_survive_sigkill(kube: Any, operator: Any, make_lab_hosts: Callable[..., Any]) -> None:
    seed = int(os.environ.get("STACKOPS_E2E_SEED", time.time()))
    rng = random.Random(seed)
    print(f"random seed {seed} (STACKOPS_E2E_SEED to repeat)")
    assert sum(len(kills) for kills in REQUESTS) == KILLS
    began = time.monotonic()
    hosts = make_lab_hosts(3)
    for host in hosts:
        host.set_down_seconds(DOWN_SECONDS)
    namespace = f"e2e-kvmroll-{int(time.time())}"
    kube.kubectl("create", "namespace", namespace)
    with CloudStackSimulator(fleet=Fleet(zones=1, routers=0, redundant_pairs=0), timings=CS_TIMINGS,
                             ssh_key_path=str(hosts[0].client_key_path)) as sim:
        documents = kvmhost_manifests(hosts, namespace, cloudstack=sim)

        def apply(restart: str | None) -> None:
            for document in documents:
                if document["kind"] == "KvmHost":
                    document["spec"]["resyncIntervalSeconds"] = 30
                    document["spec"]["maintenance"] = {"hostTimeoutSeconds": 120, "lockTtlSeconds": 120,
                                                       **({"restartAfter": restart} if restart else {})}
            kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))

        def objects() -> dict[str, dict[str, Any]]:
            found = json.loads(kube.kubectl("get", "kvmhosts", "-n", namespace, "-o", "json").stdout)["items"]
            return {o["metadata"]["name"]: o for o in found}

        def failed(objs: dict[str, dict[str, Any]]) -> None:
            for name, obj in objs.items():
                record = (obj.get("status") or {}).get("maintenance") or {}
                assert record.get("phase") != "Failed", f"{name}: {record.get('reason')}: {record.get('message')}"

        def registered() -> bool:
            objs = objects()
            return len(objs) == len(hosts) and all(
                (o.get("status") or {}).get("cloudstackHostState") == "Up" for o in objs.values())

        def rolled(request: str) -> bool:
            objs = objects()
            failed(objs)
            return all(((o.get("status") or {}).get("maintenance") or {}).get("phase") == "Completed" and
                       ((o.get("status") or {}).get("maintenance") or {}).get("request") == request
                       for o in objs.values())

        def killed() -> bool:
            failed(objects())
            return killer.done.is_set()

        apply(None)
        wait_for(registered, timeout=300, what="every KvmHost registered and Up", interval=0.5)
        with sim.state.lock:
            ids = {h.name: h.uuid for h in sim.state.values("host") if h.address in {x.address for x in hosts}}
        for name, host_id in ids.items():
            sim.add_user_vm(host_id, f"tenant-{name}", memory=512)
        disabled = hosts[1].name
        with sim.state.lock:
            host = next(h for h in sim.state.values("host") if h.name == disabled)
            sim.hostops.set_state(host, resource_state="Disabled")
        print(f"hosts registered {time.monotonic() - began:.1f}s after the start; {disabled} Disabled")

        killer = Killer(sim.audit_log, operator)
        kill = 0
        landed: dict[str, int] = {}
        try:
            for number, kills in enumerate(REQUESTS, 1):
                start, boots = len(sim.audit()), {h.name: h.boots() for h in hosts}
                started = time.monotonic()
                time.sleep(1.1)  # every host booted before the request
                restart = utc_now()
                def note(point: At | None, where: str) -> None:
                    nonlocal kill
                    kill += 1
                    landed[where] = landed.get(where, 0) + 1
                    print(f"kill {kill} (request {number}): {where}, {time.monotonic() - started:.1f}s in")

                kill_series(kills, begin=lambda: apply(restart), operator=operator, killer=killer, killed=killed,
                            rng=rng, window=RANDOM_WINDOW, timeout=180, landed=note)
                operator.start()
                wait_for(lambda: rolled(f"restartAfter {restart}"), timeout=400,
                         what=f"request {number} Completed on every host", interval=0.5)
                print(f"request {number}: converged {time.monotonic() - started:.1f}s after it")
                check(kube, namespace, sim, hosts, start, boots, disabled)
        finally:
            killer.close()
            if operator.process is None or operator.process.poll() is not None:
                operator.start()
            kube.kubectl("delete", "kvmhosts", "--all", "-n", namespace, "--wait=false", check=False)
    assert kill == KILLS
    print(f"{KILLS} kills: " + ", ".join(f"{n}× {p}" for p, n in sorted(landed.items())))
    events = kube.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "ResumingMaintenance" in events


def check(kube: Any, namespace: str, sim: CloudStackSimulator, hosts: list[Any], start: int,
          boots: dict[str, int], disabled: str) -> None:
    """The invariants of one request: `start` is where it began in CloudStack's audit log, `boots` the hosts' boot
    counts before it."""
    rebooted = {h.name: h.boots() - boots[h.name] for h in hosts}
    assert rebooted == {h.name: 1 for h in hosts}, f"reboots for this request: {rebooted}"
    names = {h.name for h in hosts}
    state: dict[str, str] = {}
    most = 0
    for event in sim.audit()[start:]:
        if event["event"] == "host.state" and event.get("name") in names:
            state[event["name"]] = event["resourcestate"]
            most = max(most, sum(1 for s in state.values() if s in IN_MAINTENANCE))
    assert most <= 1, "two hosts in maintenance at once"
    assert all(c.get("stops", 0) == 0 and c.get("restarts", 0) == 0 for c in sim.vm_counts().values()), \
        sim.vm_counts()
    with sim.state.lock:
        found = {h.name: (h.state, h.resource_state) for h in sim.state.values("host") if h.name in names}
    history = [f"{e.get('name')} {e.get('state')}/{e.get('resourcestate')}" for e in sim.audit()[start:]
               if e["event"] == "host.state" and e.get("name") in names]
    events = kube.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", "-o",
                          "custom-columns=T:.lastTimestamp,O:.involvedObject.name,R:.reason,M:.message").stdout
    assert found == {n: ("Up", "Disabled" if n == disabled else "Enabled") for n in names}, \
        f"{found}\nstates: {history}\nevents:\n{events}"
    leases = json.loads(kube.kubectl("get", "leases", "-n", namespace, "-o", "json").stdout)["items"]
    held = [lease["metadata"]["name"] for lease in leases if (lease.get("spec") or {}).get("holderIdentity")]
    assert not held, f"slots still held: {held}"
    for host in hosts:  # SSH answers on the address of its spec
        socket.create_connection((host.address, 22), timeout=10).close()
