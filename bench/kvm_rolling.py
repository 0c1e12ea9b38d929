#!/usr/bin/env python3
"""A rolling restart (`maintenance.restartAfter`) of a cluster of N KVM lab hosts, registered in the lab CloudStack,
with the KvmHost reconciler run in process, one asyncio task per KvmHost re-running its passes after each pass's
requeue as the operator would (a host waiting for its group's lock comes back after `maintenance_requeue`).

Real pieces: the lab hosts (stackops_lab.hosts: a reboot ends every process in the host, clears its runtime state
and boots it again from its disk after `--down-seconds`), the lab CloudStack (its own cluster, `bench-kvm`, of these
hosts only; user VMs on every host; it pings the hosts on SSH, Timings.kvm_ping, so a host down is Disconnected
there), and the maintenance lock: Leases in a kube-apiserver of its own (stackops_lab.controlplane, etcd +
kube-apiserver started by this script and stopped at its end), through drivers/maintenance_lock.py as
`stackops run` uses it. Prints, per cluster size:

- the wall time from the spec change (restartAfter set on every KvmHost at once) to every KvmHost's maintenance
  Completed, and its turns' (the first host's Draining → the last host's Done, as status.maintenance says);
- the ideal: hosts × (drain + reboot + back) / maxUnavailable, each measured per host from the simulators' own
  records in the same run and summed: drain, CloudStack's resource state PrepareForMaintenance → Maintenance (its
  audit: the VMs migrated away); reboot, the lab host's power log from `rebooting, down` to `up` (the shutdown
  before it, services stopping once `systemctl reboot` is asked, is not in it: shown apart, from the host's
  Rebooting checkpoint); back, that `up` → the host Up in CloudStack again (the ping finds it, the agent
  connects). What the ideal leaves out — the lock's turns (the time between turns is shown), the maintainer's
  polls and requeues, SSH waits, the probe after the reboot, cancelHostMaintenance — is the difference; and the
  ratio wall / ideal;
- reboots per host (must be 1, from the power logs), VM stops and HA restarts in CloudStack (must be 0), migrations
  per VM, the most hosts in CloudStack maintenance at once (PrepareForMaintenance … ErrorInMaintenance, replayed
  from the simulator's audit of resource states: must be ≤ maxUnavailable) and the most down at once (power logs);
- SSH round trips per host maintenance (the SSH pool's counters between the host's Draining and Done checkpoints)
  and per host over the whole roll (the waiting passes' probes included).

The maintainer's poll and requeue are those of `stackops run` (2 s and 5 s) unless --poll-seconds/--requeue-seconds
say otherwise. Exits 1 when a limit is missed (a KvmHost not Completed, a host not rebooted exactly once, a VM
stopped, more hosts in maintenance or down at once than maxUnavailable, a Lease still held); no limit is set on
time. --json prints the figures as one JSON object instead (tests/e2e/test_kvm_rolling_bench.py). Needs root (lab
hosts are namespaces).

    .venv/bin/python bench/kvm_rolling.py [--hosts 3 6] [--vms-per-host 2] [--max-unavailable 1] [--down-seconds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.cloudstack import CloudStackClient, CloudStackPool
from stackops.drivers.maintenance_lock import MaintenanceLocks
from stackops.drivers.secrets import SecretData, parse_destinations
from stackops.drivers.ssh import SSHPool
from stackops.reconcile.base import Context, Outcome, ReconcileError
from stackops.reconcile.kvmhost import KvmHostReconciler
from stackops_lab import controlplane
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.hosts import LabHost, LabHosts
from stackops_lab.manifests import CLOUDSTACK_SECRET, SSH_SECRET, kvmhost_manifests

from rolling_report import report  # bench/, beside this script

CLUSTER, ZONE, POD = "bench-kvm", "lab-zone-1", "lab-zone-1-pod-1"
IN_MAINTENANCE = ("PrepareForMaintenance", "ErrorInPrepareForMaintenance", "Maintenance", "ErrorInMaintenance")
PASS_LIMIT_SECONDS = 1800.0  # a roll not done by then is stopped (a missed limit), not waited for forever


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Host:
    """One KvmHost as the operator keeps it: its status between passes, checkpoints written at once. Each
    maintenance checkpoint is noted with the time and the host's SSH round trips so far."""

    def __init__(self, lab: LabHost, namespace: str, name: str, spec: dict[str, Any], secrets: dict[str, Any],
                 pool: SSHPool):
        self.lab, self.namespace, self.name, self.document = lab, namespace, name, spec
        self.secrets, self.pool = secrets, pool
        self.generation = 1
        self.status: dict[str, Any] = {}
        self.marks: list[tuple[float, str, str, int]] = []  # (time, step, phase, SSH round trips so far)
        self.events: list[tuple[str, str, str]] = []
        self.outcome: Outcome | None = None
        self.error = ""  # the last pass's ReconcileError
        self.power: list[tuple[float, str]] = []  # the power log since the spec change, read at the end

    @property
    def spec(self) -> KvmHostSpec:
        return KvmHostSpec.model_validate(self.document)

    async def checkpoint(self, fields: dict[str, Any]) -> None:
        self.status.update(fields)
        record = fields.get("maintenance")
        if isinstance(record, dict):
            self.marks.append((time.monotonic(), str(record.get("step")), str(record.get("phase")),
                               self.pool.counters(self.lab.address).round_trips))

    def context(self) -> Context:
        return Context(namespace=self.namespace, name=self.name, generation=self.generation, spec=self.spec,
                       status=dict(self.status), secrets=self.secrets,
                       event=lambda kind, reason, message: self.events.append((kind, reason, message)),
                       logger=logging.getLogger(f"bench.{self.name}"), checkpoint=self.checkpoint)

    async def once(self, reconciler: KvmHostReconciler) -> float | None:
        """One pass; when the operator would pass again (None: not before the spec changes, Stalled)."""
        try:
            self.outcome = await reconciler.reconcile(self.context())
        except ReconcileError as error:  # the handler writes it as a condition; the status written so far stays
            self.error = f"{error.reason}: {error}"
            return error.delay if error.retry else None
        self.error = ""
        self.status.update(self.outcome.fields)
        return self.outcome.requeue_after if self.outcome.requeue_after is not None else reconciler.maintenance_requeue

    def ready(self) -> bool:
        return self.outcome is not None and any(c.type == "Ready" and c.status == "True"
                                                for c in self.outcome.conditions)

    def maintenance(self) -> dict[str, Any]:
        return self.status.get("maintenance") or {}

    def finished(self, request: str) -> bool:
        record = self.maintenance()
        return record.get("request") == request and record.get("phase") in ("Completed", "Failed")

    def why(self) -> str:
        if self.error:
            return self.error
        if self.outcome is None:
            return "no pass"
        return "; ".join(f"{c.type}={c.status} {c.reason}: {c.message[:160]}" for c in self.outcome.conditions
                         if c.type in ("Ready", "Reconciling", "Stalled"))


async def converge(reconciler: KvmHostReconciler, hosts: list[Host], passes: int = 20) -> None:
    """Every host configured and registered (Up in CloudStack), before the roll."""
    async def one(host: Host) -> None:
        for _ in range(passes):
            again = await host.once(reconciler)
            if host.ready() and not host.error:
                return
            await asyncio.sleep(min(again or 0.5, 0.5))
        raise RuntimeError(f"{host.name} is not Ready after {passes} passes: {host.why()}")
    await asyncio.gather(*(one(h) for h in hosts))


async def keep_reconciling(reconciler: KvmHostReconciler, host: Host, hosts: list[Host], request: str,
                           deadline: float) -> None:
    """The operator's passes over one KvmHost: again after each pass's requeue, until its maintenance for
    `request` has ended (Completed or Failed), or another host's has Failed (the roll stops there: a host left in
    CloudStack maintenance blocks the others for good)."""
    while not host.finished(request):
        if any(h.finished(request) and h.maintenance().get("phase") == "Failed" for h in hosts):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{host.name}: the roll is not done after {PASS_LIMIT_SECONDS:.0f}s: {host.why()}")
        again = await host.once(reconciler)
        if host.finished(request):
            return
        if again is None:
            raise RuntimeError(f"{host.name} is Stalled before its maintenance: {host.why()}")
        await asyncio.sleep(again)


def spans(hosts: list[Host], ids: dict[str, str], cs_audit: list[dict], since: float) -> dict[str, dict[str, float]]:
    """Per host, from the simulators' records after `since`: drain (CloudStack PrepareForMaintenance →
    Maintenance), reboot (power log `rebooting` → `up`), back (that `up` → the host Up in CloudStack again)."""
    result = {}
    for host in hosts:
        found: dict[str, float] = {}
        for t, message in host.power:
            if t < since:
                continue
            if ": rebooting" in message:
                found.setdefault("down", t)
            elif ": up " in message and "down" in found:
                found.setdefault("up", t)
        for e in cs_audit:
            if e["event"] != "host.state" or e.get("host") != ids.get(host.lab.address):
                continue
            if e["resourcestate"] == "PrepareForMaintenance":
                found.setdefault("drain_from", e["t"])
            elif e["resourcestate"] == "Maintenance" and "drain_from" in found:
                found.setdefault("drain_to", e["t"])
            if "up" in found and e["state"] == "Up" and e["t"] >= found["up"] \
                    and e["from"]["state"] != "Up":
                found.setdefault("back", e["t"])
        result[host.name] = {
            "drain": found["drain_to"] - found["drain_from"] if "drain_to" in found else 0.0,
            "reboot": found["up"] - found["down"] if "up" in found else 0.0,
            "back": found["back"] - found["up"] if "back" in found else 0.0}
        asked = next((m[0] for m in host.marks if m[1] == "Rebooting"), None)
        shutdown = found["down"] - asked if asked is not None and "down" in found else 0.0
        result[host.name]["shutdown"] = shutdown  # not in the ideal: the host's services stopping
    return result


def most_in_maintenance(uuids: set[str], cs_audit: list[dict]) -> int:
    """The most hosts of `uuids` in a maintenance resource state at once, replaying the audit."""
    state: dict[str, str] = {}
    most = 0
    for e in cs_audit:
        if e["event"] == "host.state" and e.get("host") in uuids:
            state[e["host"]] = e["resourcestate"]
            most = max(most, sum(1 for s in state.values() if s in IN_MAINTENANCE))
    return most


def most_down(hosts: list[Host], since: float) -> int:
    """The most hosts down at once (power logs: from the shutdown's end, `rebooting`, to `up`)."""
    changes = []
    for host in hosts:
        for t, message in host.power:
            if t >= since and ": rebooting" in message:
                changes.append((t, 1))
            elif t >= since and ": up " in message:
                changes.append((t, -1))
    down = most = 0
    for _, change in sorted(changes):
        down += change
        most = max(most, down)
    return most


def round_trips(host: Host) -> int | None:
    """SSH round trips of the host's maintenance: between its first checkpoint (Draining) and its last (Done)."""
    begun = next((m for m in host.marks if m[1] == "Draining"), None)
    ended = next((m for m in host.marks if m[2] == "Completed"), None)
    return ended[3] - begun[3] if begun is not None and ended is not None else None


def handovers(hosts: list[Host]) -> float:
    """The time no host was in its turn between the first Draining and the last Done (a slot free, the next host
    not yet back for it: its requeue, its probe, the peers' checks), summed."""
    turns = sorted((begun[0], ended[0]) for h in hosts
                   if (begun := next((m for m in h.marks if m[1] == "Draining"), None)) is not None
                   and (ended := next((m for m in h.marks if m[2] == "Completed"), None)) is not None)
    idle, reached = 0.0, turns[0][1] if turns else 0.0
    for begun, ended in turns[1:]:
        idle += max(0.0, begun - reached)
        reached = max(reached, ended)
    return idle


async def add_cluster(sim: CloudStackSimulator) -> None:
    api = CloudStackClient(sim.endpoint, sim.api_key, SecretStr(sim.secret_key))
    try:
        [zone] = [z for z in await api.list("listZones") if z["name"] == ZONE]
        [pod] = [p for p in await api.list("listPods", zoneid=zone["id"]) if p["name"] == POD]
        await api.call("addCluster", clustername=CLUSTER, clustertype="CloudManaged", hypervisor="KVM",
                       zoneid=zone["id"], podid=pod["id"])
    finally:
        await api.close()


def make_hosts(labs: list[LabHost], namespace: str, sim: CloudStackSimulator, pool: SSHPool,
               args: argparse.Namespace) -> list[Host]:
    documents = kvmhost_manifests(labs, namespace, cloudstack=sim)
    secret = documents[0]
    key = SecretData({"ssh-privatekey": SecretStr(secret["stringData"]["ssh-privatekey"])},
                     parse_destinations(namespace, SSH_SECRET, secret["metadata"].get("annotations")))
    secrets = {SSH_SECRET: key,
               CLOUDSTACK_SECRET: {"url": SecretStr(sim.endpoint), "apiKey": SecretStr(sim.api_key),
                                   "secretKey": SecretStr(sim.secret_key), "allowPlainHTTP": SecretStr("true")}}
    hosts = []
    for lab, document in zip(labs, documents[1:]):
        spec = document["spec"]
        spec["cloudstack"]["cluster"] = CLUSTER
        spec["maintenance"] = {"maxUnavailable": args.max_unavailable, "hostTimeoutSeconds": 600}
        hosts.append(Host(lab, namespace, document["metadata"]["name"], spec, secrets, pool))
    return hosts


async def roll(size: int, args: argparse.Namespace, kube: controlplane.ClusterInfo) -> dict[str, Any]:
    from kubernetes import client as kube_client
    from kubernetes import config as kube_config

    api_client = kube_config.new_client_from_config(config_file=str(kube.kubeconfig))
    namespace = f"bench-{size}-hosts-{int(time.time())}"  # one per roll, in the one control plane
    kube_client.CoreV1Api(api_client).create_namespace({"metadata": {"name": namespace}})
    locks = MaintenanceLocks(kube_client.CoordinationV1Api(api_client), namespace)

    lab = LabHosts(Path(tempfile.mkdtemp(prefix="stackops-bench-kvm-rolling-")))
    try:
        labs = lab.create(size, progress)
        for h in labs:
            h.set_down_seconds(args.down_seconds)
        timings = Timings(host_connect=args.connect_seconds, host_maintenance=0.5, job=0.05,
                          vm_migrate=args.migrate_seconds, kvm_ping=args.ping_seconds, ping_timeout=args.ping_timeout)
        with CloudStackSimulator(fleet=Fleet(zones=1, hypervisors=("KVM",), routers=0, redundant_pairs=0,
                                             hosts_per_cluster=1),
                                 timings=timings, ssh_key_path=str(labs[0].client_key_path)) as sim:
            await add_cluster(sim)
            pool = SSHPool()
            cloudstack = CloudStackPool(poll_interval=0.1)
            reconciler = KvmHostReconciler(pool, cloudstack, locks=lambda namespace: locks,
                                           maintenance_poll=args.poll_seconds, maintenance_requeue=args.requeue_seconds)
            try:
                hosts = make_hosts(labs, namespace, sim, pool, args)
                progress(f"{size} hosts: configuring and registering them in CloudStack…")
                await converge(reconciler, hosts)
                with sim.state.lock:
                    ids = {h.address: h.uuid for h in sim.state.values("host")
                           if h.cluster and h.cluster.name == CLUSTER}
                vms = [sim.add_user_vm(host_id, f"tenant-{address}-{i}", memory=512)
                       for address, host_id in sorted(ids.items()) for i in range(args.vms_per_host)]
                await asyncio.sleep(1.1)  # restartAfter is to the second: every host booted before it
                restart = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                request = f"restartAfter {restart}"
                cs_before = len(sim.audit())
                for host in hosts:
                    pool.reset_counters(host.lab.address)
                    host.document["maintenance"]["restartAfter"] = restart
                    host.generation += 1
                progress(f"{size} hosts: rolling restart ({request}), maxUnavailable {args.max_unavailable}…")
                started = time.monotonic()
                await asyncio.gather(*(keep_reconciling(reconciler, h, hosts, request, started + PASS_LIMIT_SECONDS)
                                       for h in hosts))
                done = [m[0] for h in hosts for m in h.marks if m[2] in ("Completed", "Failed")]
                wall = max(done, default=started) - started
                cs_audit = sim.audit()[cs_before:]
                counts = sim.vm_counts()
                trips_total = {h.name: pool.counters(h.lab.address).round_trips for h in hosts}
                leases = kube_client.CoordinationV1Api(api_client).list_namespaced_lease(namespace).items
                for h in hosts:  # read before the lab goes
                    h.power = [(t, m) for t, m in h.lab.power_log() if t >= started]
            finally:
                await cloudstack.close()
                pool.close_all()
    finally:
        lab.destroy(progress)
        shutil.rmtree(lab.lab_dir, ignore_errors=True)

    per_host = spans(hosts, ids, cs_audit, started)
    phases = {k: sum(h[k] for h in per_host.values()) for k in ("drain", "reboot", "back")}
    ideal = sum(phases.values()) / args.max_unavailable
    shutdown = sum(h["shutdown"] for h in per_host.values())
    firsts = [next((m[0] for m in h.marks if m[1] == "Draining"), None) for h in hosts]
    lasts = [next((m[0] for m in h.marks if m[2] == "Completed"), None) for h in hosts]
    turns = max(lasts) - min(firsts) if None not in firsts and None not in lasts else 0.0  # type: ignore[operator]
    handover = handovers(hosts)
    reboots = {h.name: sum(1 for _, m in h.power if ": rebooting" in m) for h in hosts}
    trips = {h.name: round_trips(h) for h in hosts}
    order = sorted(hosts, key=lambda h: next((m[0] for m in h.marks if m[1] == "Draining"), float("inf")))
    return {
        "hosts": size, "vmsPerHost": args.vms_per_host, "maxUnavailable": args.max_unavailable,
        "downSeconds": args.down_seconds, "pollSeconds": args.poll_seconds, "requeueSeconds": args.requeue_seconds,
        "phases": {h.name: h.maintenance().get("phase") for h in hosts},
        "failures": {h.name: h.maintenance().get("message") for h in hosts
                     if h.maintenance().get("phase") != "Completed"},
        "order": [h.name for h in order],
        "wallSeconds": wall, "turnsSeconds": turns, "idealSeconds": ideal, "handoverSeconds": handover,
        "shutdownSeconds": shutdown,
        "ratio": wall / ideal if ideal else None, "turnsRatio": turns / ideal if ideal else None,
        "phaseSeconds": phases, "perHost": per_host,
        "reboots": reboots,
        "cloudstack": {"vms": len(vms),
                       "migrationsPerVM": sum(counts.get(v, {}).get("migrations", 0) for v in vms) / max(len(vms), 1),
                       "stops": sum(c.get("stops", 0) for c in counts.values()),
                       "restarts": sum(c.get("restarts", 0) for c in counts.values())},
        "maxInMaintenance": most_in_maintenance(set(ids.values()), cs_audit),
        "maxDown": most_down(hosts, started),
        "lock": {"leases": len(leases), "heldAtEnd": sum(1 for lease in leases if lease.spec.holder_identity)},
        "sshRoundTripsPerMaintenance": statistics.mean(t for t in trips.values() if t is not None)
        if all(t is not None for t in trips.values()) else None,
        "sshRoundTripsPerHost": statistics.mean(trips_total.values()),
    }


def show(f: dict[str, Any]) -> None:
    p = f["phaseSeconds"]
    print(f"cluster of {f['hosts']} KVM lab hosts, {f['vmsPerHost']} VMs per host, rolling restart, maxUnavailable "
          f"{f['maxUnavailable']}, down {f['downSeconds']:g}s per reboot (poll {f['pollSeconds']:g}s, requeue "
          f"{f['requeueSeconds']:g}s)")
    phases = sorted(set(f["phases"].values()), key=str)
    print(f"  maintenance              {'/'.join(map(str, phases))}  (order {', '.join(f['order'])})")
    for name, message in f["failures"].items():
        print(f"  {name} not Completed: {message}")
    print(f"  wall time, spec->done    {f['wallSeconds']:.1f}s")
    print(f"  wall time, turns         {f['turnsSeconds']:.1f}s  (first Draining -> last Done)")
    print(f"  ideal                    {f['idealSeconds']:.1f}s  = (CloudStack drain {p['drain']:.1f}s + reboot "
          f"{p['reboot']:.1f}s + back Up {p['back']:.1f}s) / {f['maxUnavailable']}")
    ratio, turns = (f"{r:.2f}" if r is not None else "-" for r in (f["ratio"], f["turnsRatio"]))
    print(f"  ratio                    {ratio}  (turns alone {turns})")
    print(f"  left out of the ideal    between turns (no host in its turn) {f['handoverSeconds']:.1f}s; the shutdown "
          f"(Rebooting -> down: services stopping) {f['shutdownSeconds']:.1f}s; the rest: polls, probe, cancel")
    print(f"  reboots per host         {'/'.join(map(str, sorted(set(f['reboots'].values()))))}")
    cs = f["cloudstack"]
    print(f"  CloudStack VMs           {cs['vms']}: migrations per VM {cs['migrationsPerVM']:.2f}, "
          f"stops {cs['stops']}, HA restarts {cs['restarts']}")
    print(f"  lock                     {f['lock']['leases']} Lease(s), held at the end: {f['lock']['heldAtEnd']}")
    print(f"  most hosts at once       {f['maxInMaintenance']} in CloudStack maintenance, {f['maxDown']} down")
    trips = f["sshRoundTripsPerMaintenance"]
    print(f"  SSH round trips per host {trips:.1f} in its maintenance (Draining -> Done), "
          f"{f['sshRoundTripsPerHost']:.1f} over the whole roll" if trips is not None else
          "  SSH round trips          not counted (a maintenance did not complete)")


def missed(f: dict[str, Any]) -> list[str]:
    limits = {"every KvmHost's maintenance Completed": set(f["phases"].values()) == {"Completed"},
              "every host rebooted exactly once": set(f["reboots"].values()) == {1},
              "no VM stopped": f["cloudstack"]["stops"] == 0 and f["cloudstack"]["restarts"] == 0,
              "every lock slot released": f["lock"]["heldAtEnd"] == 0,
              f"at most {f['maxUnavailable']} hosts in maintenance at once":
                  f["maxInMaintenance"] <= f["maxUnavailable"] and f["maxDown"] <= f["maxUnavailable"]}
    return [limit for limit, kept in limits.items() if not kept]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, nargs="+", default=[3, 6], help="cluster sizes, one roll each")
    parser.add_argument("--vms-per-host", type=int, default=2)
    parser.add_argument("--max-unavailable", type=int, default=1, help="spec.maintenance.maxUnavailable")
    parser.add_argument("--down-seconds", type=float, default=3.0, help="a rebooting lab host stays down this long")
    parser.add_argument("--migrate-seconds", type=float, default=0.5, help="one live migration in CloudStack")
    parser.add_argument("--ping-seconds", type=float, default=0.5, help="CloudStack pings the hosts this often")
    parser.add_argument("--ping-timeout", type=float, default=1.0, help="a host not answering is Disconnected then")
    parser.add_argument("--connect-seconds", type=float, default=1.0, help="an agent's connection: Connecting -> Up")
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="the maintainer's poll (stackops run: 1)")
    parser.add_argument("--requeue-seconds", type=float, default=5.0,
                        help="a host waiting for the lock tries again after this (stackops run: 5)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    plane = controlplane.LocalControlPlane(Path(tempfile.mkdtemp(prefix="stackops-bench-controlplane-")))
    try:
        kube = plane.start(progress)
        figures = [asyncio.run(roll(size, args, kube)) for size in args.hosts]
    finally:
        plane.stop(progress)
    return report(figures, as_json=args.json, show=show, missed=missed)


if __name__ == "__main__":
    sys.exit(main())
