#!/usr/bin/env python3
"""Scale: the operator, as deployed (deploy/ RBAC, a ServiceAccount token, `stackops run`), with N KvmHosts in
`Observe` against light lab hosts (an sshd each, stackops_lab.lighthosts) and M each of XenPool (Observe, the lab
XenAPI simulator, a pool of two each), SystemVMTemplate (Observe, one lab CloudStack) and CloudStackRelease
(Observe, built on a light host from the lab release source).

Measures, in this order:
  convergence    operator start → every object has status.observedGeneration == generation
  resync round   objects due (lastReconcileTime + resyncIntervalSeconds) → every resyncing object's
                 lastReconcileTime advanced; per object lag = seen − due
  mass update    a spec change to every resyncing object (resyncIntervalSeconds → 86400) → all observed
  idle           operator CPU over a quiet window (nothing due, nothing changed), its RSS and threads at the end
  latency        apply → status: a spec change to K KvmHosts, one at a time, until observedGeneration matches
  memory         operator peak RSS (VmHWM, with children) and threads: now, and the most seen (sampled every
                 0.2 s from the operator's start, so a shorter burst can be missed); at the peak, how many
                 are paramiko Transport threads (one per established SSH connection) and how many the rest
CPU is the operator's (utime + stime) as % of one core; the machine's and the lab's share are shown beside it
(the lab — light hosts, simulators, kube-apiserver, etcd — runs on the same cores).

    .venv/bin/python bench/scale.py [--kvmhosts 500] [--others 50] [--resync 60] [--idle-seconds 60]
                                    [--latency-samples 50] [--operator-arg=--ssh-idle-seconds=30 …] [--json]

Uses $KUBECONFIG's cluster if set (no other stackops operator may run there), else starts a local control plane
for the run. Needs root (light hosts are network namespaces).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from stackops_lab import controlplane
from stackops_lab import operator as lab_operator
from stackops_lab.background import BackgroundSimulator
from stackops_lab.cloudstack.component import CloudStackComponent
from stackops_lab.cloudstack.component import running as cloudstack_running
from stackops_lab.lighthosts import LightHost, LightHosts
from stackops_lab.manifests import (CLOUDSTACK_SECRET, SSH_SECRET, XEN_SECRET, allowed, cloudstack_secret,
                                    cloudstackrelease_manifests, systemvmtemplate_manifests, xen_destinations)
from stackops_lab.xenapi.component import XenComponent

GROUP, VERSION = "stackops.io", "v1alpha1"
NAMESPACE = "scale-bench"
KINDS = {"KvmHost": "kvmhosts", "XenPool": "xenpools", "SystemVMTemplate": "systemvmtemplates",
         "CloudStackRelease": "cloudstackreleases"}
RESYNCING = ("KvmHost", "XenPool", "SystemVMTemplate")  # CloudStackReleases keep their default resync (3600 s,
# minimum 60): they take no part in the resync round
LONG_RESYNC = 86400
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
XEN_MAX_HOSTS = 200


def say(message: str) -> None:
    print(f"[scale] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes: CPU and memory


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu(pid: int, *, children: bool = False) -> float:
    """utime + stime (+ cutime + cstime of waited-for children) in seconds; 0 if gone."""
    try:
        fields = _stat(pid)
    except (OSError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / CLOCK_TICKS


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                kids = []
            found += kids
            todo += kids
    return found


def tree_cpu(pid: int) -> float:
    return process_cpu(pid, children=True) + sum(process_cpu(p, children=True) for p in descendants(pid))


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


@dataclass
class Snapshot:
    at: float
    operator: float
    lab: dict[str, float]  # group → CPU seconds
    busy: float
    total: float


@dataclass
class Accounting:
    """Where CPU goes: the operator's process tree, and the lab's processes (light hosts, simulators, control
    plane) for context. Its memory; the most threads it ran, sampled (`start_sampling`)."""

    operator_pid: int
    lab_pids: Callable[[], dict[str, list[int]]]  # group (control plane, light hosts, simulators) → pids
    peak_threads: int = 0
    peak_names: dict[str, int] = field(default_factory=dict)  # what the threads were at the peak
    stopping: threading.Event = field(default_factory=threading.Event)

    def start_sampling(self, interval: float = 0.2) -> None:
        def sample() -> None:
            while not self.stopping.wait(interval):
                count = self.threads()
                if count > self.peak_threads:
                    self.peak_threads, self.peak_names = count, self.thread_names()
        threading.Thread(target=sample, name="thread-sampler", daemon=True).start()

    def stop_sampling(self) -> None:
        self.stopping.set()

    def threads(self) -> int:
        return sum(status_kib(p, "Threads") for p in [self.operator_pid, *descendants(self.operator_pid)])

    def thread_names(self) -> dict[str, int]:
        """What the operator's threads are, as far as one sees from outside: Python 3.11 does not name its OS
        threads (every /proc/<pid>/task/*/comm is "python"), so this counts the operator's established TCP
        connections by remote port; each open SSH connection (remote port 22) holds one paramiko Transport
        thread. "other" is the rest: worker pools, the idle reaper, kopf/asyncio, the main thread."""
        pids = [self.operator_pid, *descendants(self.operator_pid)]
        total = sum(status_kib(p, "Threads") for p in pids)
        ports: dict[str, int] = {}
        for pid in pids:
            inodes = set()
            for fd in Path(f"/proc/{pid}/fd").glob("*"):
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
            for table in ("tcp", "tcp6"):
                try:
                    rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
                except OSError:
                    continue
                for row in rows:
                    fields = row.split()
                    if fields[3] == "01" and fields[9] in inodes:  # ESTABLISHED, this process's socket
                        port = f"tcp:{int(fields[2].rsplit(':', 1)[1], 16)}"
                        ports[port] = ports.get(port, 0) + 1
        ssh = ports.pop("tcp:22", 0)
        return {"sshTransports": ssh, "other": total - ssh,
                **{f"{port} connections": n for port, n in sorted(ports.items(), key=lambda item: -item[1])}}

    def snapshot(self) -> Snapshot:
        busy, total = machine_busy()
        lab = {group: sum(process_cpu(pid, children=True) for pid in pids) for group, pids in self.lab_pids().items()}
        return Snapshot(time.time(), tree_cpu(self.operator_pid), lab, busy, total)

    @staticmethod
    def window(start: Snapshot, end: Snapshot) -> dict[str, float]:
        seconds = max(end.at - start.at, 1e-6)
        return {"seconds": round(seconds, 1),
                "operatorCpuSeconds": round(end.operator - start.operator, 2),
                "operatorCpuPercent": round(100 * (end.operator - start.operator) / seconds, 1),
                "labCpuPercent": {group: round(100 * (end.lab.get(group, 0) - start.lab.get(group, 0)) / seconds)
                                  for group in end.lab},
                "machineBusyPercent": round(100 * (end.busy - start.busy) / max(end.total - start.total, 1e-6), 1),
                "machineCores": os.cpu_count() or 1}

    def memory(self) -> dict[str, int]:
        pids = [self.operator_pid, *descendants(self.operator_pid)]
        return {"peakRssMiB": round(sum(status_kib(p, "VmHWM") for p in pids) / 1024),
                "rssMiB": round(sum(status_kib(p, "VmRSS") for p in pids) / 1024),
                "threads": sum(status_kib(p, "Threads") for p in pids),
                "peakThreads": max(self.peak_threads, sum(status_kib(p, "Threads") for p in pids)),
                "peakThreadNames": self.peak_names}


# --------------------------------------------------------------------------- watching the objects


@dataclass
class Seen:
    generation: int = 0
    observed: int = 0
    last_reconcile: str = ""
    ready_reason: str = ""
    observed_at: float = 0.0  # wall time the watch saw observedGeneration reach generation
    reconciled_at: list[tuple[float, str]] = field(default_factory=list)  # (seen, lastReconcileTime) changes


class Tracker:
    """One watch per kind in the bench namespace; every object's generation, observedGeneration and
    lastReconcileTime, with the time each change was seen."""

    def __init__(self, api_client: Any, namespace: str):
        from kubernetes import client

        self.api = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.objects: dict[tuple[str, str], Seen] = {}
        self.condition = threading.Condition()
        self.stopping = threading.Event()
        self.events = 0
        self.threads = [threading.Thread(target=self._watch, args=(kind, plural), daemon=True, name=f"watch-{kind}")
                        for kind, plural in KINDS.items()]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def _update(self, kind: str, body: dict[str, Any], now: float) -> None:
        meta, status = body.get("metadata") or {}, body.get("status") or {}
        with self.condition:
            seen = self.objects.setdefault((kind, meta["name"]), Seen())
            seen.generation = int(meta.get("generation") or 0)
            observed = int(status.get("observedGeneration") or 0)
            if observed != seen.observed and observed >= seen.generation:
                seen.observed_at = now
            seen.observed = observed
            last = str(status.get("lastReconcileTime") or "")
            if last and last != seen.last_reconcile:
                seen.reconciled_at.append((now, last))
            seen.last_reconcile = last
            ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
            seen.ready_reason = f"{ready.get('status', '?')}/{ready.get('reason', '-')}"
            self.events += 1
            self.condition.notify_all()

    def _watch(self, kind: str, plural: str) -> None:
        from kubernetes import watch

        while not self.stopping.is_set():
            try:
                listed = self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, plural)
                now = time.time()
                for item in listed.get("items", []):
                    self._update(kind, item, now)
                version = listed["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(self.api.list_namespaced_custom_object, GROUP, VERSION,
                                              self.namespace, plural, resource_version=version, timeout_seconds=120)
                for event in stream:
                    if self.stopping.is_set():
                        return
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._update(kind, event["object"], time.time())
            except Exception as error:  # noqa: BLE001 - a dropped watch (410 Gone, timeouts) is listed again
                if not self.stopping.is_set():
                    say(f"watch {plural}: {type(error).__name__}: {str(error)[:120]}; listing again")
                    time.sleep(0.5)

    def wait(self, predicate: Callable[[dict[tuple[str, str], Seen]], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self.condition:
            while not predicate(self.objects):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
                self.condition.wait(min(left, 1.0))

    def snapshot(self) -> dict[tuple[str, str], Seen]:
        with self.condition:
            return {key: Seen(s.generation, s.observed, s.last_reconcile, s.ready_reason, s.observed_at,
                              list(s.reconciled_at)) for key, s in self.objects.items()}


def all_observed(keys: list[tuple[str, str]]) -> Callable[[dict[tuple[str, str], Seen]], bool]:
    def check(objects: dict[tuple[str, str], Seen]) -> bool:
        return all(k in objects and objects[k].generation and objects[k].observed >= objects[k].generation
                   for k in keys)
    return check


def parse_time(value: str) -> float:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = max(0, math.ceil(fraction * len(ordered)) - 1)
    return ordered[index]


# --------------------------------------------------------------------------- the lab


class ReleaseSource(BackgroundSimulator):
    """The lab release source (`stackops lab release-source`), served on the light hosts' gateway."""

    name = "release-source"
    module = "stackops_lab.release.cli"
    state = "release-source.json"

    def __init__(self, bind: str):
        self.bind = bind

    def arguments(self, lab_dir: Path) -> list[str]:
        return ["--directory", str(lab_dir / "release-source"), "--bind", self.bind]


def kvmhost_manifest(host: LightHost, index: int, resync: int) -> dict[str, Any]:
    """A KvmHost for a light host, in Observe: a bridge with a VLAN bridge, libvirt over TCP, agent settings."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "KvmHost",
        "metadata": {"name": f"kvm-{index:04d}", "namespace": NAMESPACE},
        "spec": {
            "managementPolicy": "Observe",
            "address": host.address,
            "ssh": {"user": "root", "privateKeySecretRef": {"name": SSH_SECRET}, "hostKey": host.host_key},
            "openvswitch": {"bridges": [{"name": "cloudbr0", "datapathType": "netdev",
                                         "vlanBridges": [{"name": "mgmt0", "vlan": 123}]}]},
            "libvirt": {"listenTls": False, "listenTcp": True, "tcpPort": 16509, "authTcp": "none",
                        "mdnsAdv": False},
            "cloudstackAgent": {"properties": {"network.bridge.type": "openvswitch"}, "logLevel": "DEBUG"},
            "resyncIntervalSeconds": resync,
        },
    }


def xenpool_manifest(xen: dict[str, Any], index: int, resync: int) -> dict[str, Any]:
    pools = xen["pools"]
    pool = pools[index % len(pools)]
    members = [{"name": name, "address": xen["hosts"][name]["address"]} for name in pool["members"]]
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "XenPool",
        "metadata": {"name": f"xen-{index:04d}", "namespace": NAMESPACE},
        "spec": {"managementPolicy": "Observe", "members": members, "master": pool["master"],
                 "credentialsSecretRef": {"name": XEN_SECRET}, "tls": {"plainHTTP": True},
                 "xenapiPort": xen["port"],
                 "ha": {"enabled": True, "heartbeatSR": {"type": "nfs"}, "timeoutSeconds": 180,
                        "allowFewerThanThreeHosts": True},
                 "vmHARestartPriority": {"policy": "Clear"}, "resyncIntervalSeconds": resync},
    }


def manifests(hosts: list[LightHost], xen: dict[str, Any] | None, cloudstack: Any, release: dict[str, Any] | None,
              others: int, resync: int, lab_dir: Path) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/ssh-auth",
         "metadata": {"name": SSH_SECRET, "namespace": NAMESPACE,
                      "annotations": allowed(*(host.address for host in hosts))},
         "stringData": {"ssh-privatekey": hosts[0].client_key_pem}}]
    documents += [kvmhost_manifest(host, i, resync) for i, host in enumerate(hosts)]
    if xen is not None:
        documents.append({"apiVersion": "v1", "kind": "Secret",
                          "metadata": {"name": XEN_SECRET, "namespace": NAMESPACE,
                                       "annotations": xen_destinations(xen)},
                          "stringData": {"username": xen["username"], "password": xen["password"]}})
        documents += [xenpool_manifest(xen, i, resync) for i in range(others)]
    if cloudstack is not None:
        documents.append(cloudstack_secret(cloudstack, NAMESPACE))
        template = systemvmtemplate_manifests(cloudstack, NAMESPACE)[-1]
        for i in range(others):
            document = json.loads(json.dumps(template))
            document["metadata"]["name"] = f"systemvm-{i:04d}"
            document["spec"].update(managementPolicy="Observe", resyncIntervalSeconds=resync)
            documents.append(document)
    if release is not None:
        for i in range(others):
            builder = hosts[i % len(hosts)]
            document = cloudstackrelease_manifests(release, [builder], NAMESPACE)[0]
            document["metadata"]["name"] = f"release-{i:04d}"
            document["spec"]["managementPolicy"] = "Observe"
            document["spec"]["builder"]["workDir"] = str(lab_dir / "release-work" / f"release-{i:04d}")
            document["spec"]["publish"]["directory"] = str(lab_dir / "release-publish" / f"release-{i:04d}")
            documents.append(document)
    return documents


def create_all(api_client: Any, documents: list[dict[str, Any]]) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    try:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    except ApiException as error:
        if error.status != 409:
            raise
    for document in documents:
        if document["kind"] == "Secret":
            core.create_namespaced_secret(NAMESPACE, document)
        else:
            custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, KINDS[document["kind"]], document)


def other_operators(api_client: Any) -> list[str]:
    """Peers of the stackops peering seen alive (another operator would pause ours, or share the work)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        peering = client.CustomObjectsApi(api_client).get_cluster_custom_object(
            "kopf.dev", "v1", "clusterkopfpeerings", "stackops")
    except ApiException:
        return []
    alive = []
    now = datetime.datetime.now(datetime.timezone.utc)
    for peer, info in (peering.get("status") or {}).items():
        try:
            last = datetime.datetime.fromisoformat(str(info.get("lastseen")).replace("Z", "+00:00"))
            if last.tzinfo is None:
                last = last.replace(tzinfo=datetime.timezone.utc)
            if (now - last).total_seconds() < float(info.get("lifetime", 60)):
                alive.append(peer)
        except (TypeError, ValueError):
            continue
    return alive


# --------------------------------------------------------------------------- phases


def lags(before: dict[tuple[str, str], Seen], after: dict[tuple[str, str], Seen], keys: list[tuple[str, str]],
         interval: int) -> tuple[list[float], list[float], list[float]]:
    """(due times, seen times, lags) of the first lastReconcileTime change after `before`."""
    due, seen, lag = [], [], []
    for key in keys:
        last = parse_time(before[key].last_reconcile)
        change = next((at for at, value in after[key].reconciled_at if value != before[key].last_reconcile
                       and parse_time(value) > last), None)
        if change is None:
            continue
        due.append(last + interval)
        seen.append(change)
        lag.append(change - (last + interval))
    return due, seen, lag


def run(args: argparse.Namespace, lab_dir: Path) -> dict[str, Any]:
    from kubernetes import config as kube_config

    results: dict[str, Any] = {"kvmhosts": args.kvmhosts, "others": args.others, "resyncSeconds": args.resync,
                               "operatorArgs": list(args.operator_arg)}
    cleanup: list[Callable[[], None]] = []
    try:
        # -- the cluster
        external = os.environ.get("KUBECONFIG")
        if external:
            cluster = controlplane.external_cluster(external)
        else:
            plane = controlplane.LocalControlPlane(lab_dir / "controlplane")
            cleanup.append(plane.stop)
            cluster = plane.start(say)
        api_client = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))
        lab_operator.install(cluster.kubeconfig, say)
        busy = other_operators(api_client)
        if busy:
            raise RuntimeError(f"another stackops operator runs in this cluster ({', '.join(busy)}): it would "
                               "pause ours or share the work; use a cluster of its own (unset KUBECONFIG)")
        plane_pids = [pid for pid in cluster.pids.values()]

        # -- the lab: light hosts, simulators
        started = time.monotonic()
        light = LightHosts(lab_dir / "light")
        cleanup.append(light.stop)
        hosts = light.start(max(args.kvmhosts, 1), say)
        xen = cloudstack = release = None
        simulators: list[tuple[BackgroundSimulator, Path]] = []
        if args.others:
            pool_hosts = min(2 * args.others, XEN_MAX_HOSTS)
            xen_component = XenComponent(hosts=pool_hosts, pool_size=2)
            cleanup.append(lambda: xen_component.stop(lab_dir, say))
            xen = xen_component.start(lab_dir, None, say)
            simulators.append((xen_component, lab_dir))
            cloudstack_component = CloudStackComponent(routers=args.routers, redundant_pairs=args.routers // 4)
            cleanup.append(lambda: cloudstack_component.stop(lab_dir, say))
            cloudstack_component.start(lab_dir, None, say)
            cloudstack = cloudstack_running(lab_dir)
            simulators.append((cloudstack_component, lab_dir))
            source = ReleaseSource(hosts[0].gateway)
            cleanup.append(lambda: source.stop(lab_dir, say))
            release = source.start(lab_dir, None, say)
            simulators.append((source, lab_dir))
        say(f"lab ready in {time.monotonic() - started:.1f}s")

        def lab_pids() -> dict[str, list[int]]:
            pids = {"controlPlane": list(plane_pids), "lightHosts": light.processes(), "simulators": []}
            for component, directory in simulators:
                found = component.running(directory)
                if found:
                    pids["simulators"].append(int(found["pid"]))
            return pids

        # -- the objects (the operator is not running yet: it starts on a full cluster, as after a restart)
        documents = manifests(hosts[: args.kvmhosts], xen, cloudstack, release, args.others, args.resync, lab_dir)
        started = time.monotonic()
        create_all(api_client, documents)
        objects = [(d["kind"], d["metadata"]["name"]) for d in documents if d["kind"] in KINDS]
        resyncing = [key for key in objects if key[0] in RESYNCING]
        results["objects"] = {kind: sum(1 for k, _ in objects if k == kind) for kind in KINDS}
        say(f"created {len(objects)} objects in {time.monotonic() - started:.1f}s")
        tracker = Tracker(api_client, NAMESPACE)
        tracker.start()
        cleanup.append(tracker.stop)

        # -- the operator
        token = lab_operator.service_account_token(cluster.kubeconfig)
        config = lab_operator.token_kubeconfig(cluster.kubeconfig, token, lab_dir / "operator-kubeconfig")
        operator = lab_operator.LocalOperator(kubeconfig=config, log_path=lab_dir / "operator.log",
                                              verbose=args.operator_verbose, args=tuple(args.operator_arg))
        cleanup.append(operator.stop)
        say(f"starting the operator (log {operator.log_path})")
        t0 = time.time()
        operator.start()
        assert operator.process is not None
        accounting = Accounting(operator.process.pid, lab_pids)
        accounting.start_sampling()
        cleanup.append(accounting.stop_sampling)
        first = accounting.snapshot()
        first.at = t0

        # -- convergence
        tracker.wait(all_observed(objects), args.timeout, "every object's observedGeneration")
        converged = tracker.snapshot()
        done = max(converged[key].observed_at for key in objects)
        end = accounting.snapshot()
        end.at = done
        per_kind = {kind: round(max(converged[k].observed_at for k in objects if k[0] == kind) - t0, 1)
                    for kind in KINDS if any(k[0] == kind for k in objects)}
        reasons: dict[str, dict[str, int]] = {}
        for (kind, _), seen in converged.items():
            reasons.setdefault(kind, {}).setdefault(seen.ready_reason, 0)
            reasons[kind][seen.ready_reason] += 1
        results["convergence"] = {"seconds": round(done - t0, 1), "perKind": per_kind, "ready": reasons,
                                  **Accounting.window(first, end), **accounting.memory()}
        say(f"converged in {done - t0:.1f}s: {reasons}")

        # -- a resync round (lastReconcileTime + interval → lastReconcileTime advanced, for every resyncing object)
        if resyncing:
            before = converged
            due_first = min(parse_time(before[k].last_reconcile) for k in resyncing) + args.resync
            time.sleep(max(0.0, due_first - time.time()))
            start = accounting.snapshot()

            def advanced(objects_now: dict[tuple[str, str], Seen]) -> bool:
                return all(objects_now[k].last_reconcile != before[k].last_reconcile for k in resyncing)

            tracker.wait(advanced, args.resync + args.timeout, "every object's lastReconcileTime to advance")
            after = tracker.snapshot()
            due, seen, lag = lags(before, after, resyncing, args.resync)
            end = accounting.snapshot()
            end.at = max(seen)
            start.at = min(due)
            results["resync"] = {
                "seconds": round(max(seen) - min(due), 1),
                "dueSpreadSeconds": round(max(due) - min(due), 1),
                "lagP50": round(percentile(lag, 0.5), 1), "lagP95": round(percentile(lag, 0.95), 1),
                "lagMax": round(max(lag), 1), **Accounting.window(start, end)}
            say(f"resync round: {results['resync']}")

        # -- a spec change to every resyncing object (and nothing due afterwards: the idle window follows)
        if resyncing:
            from kubernetes import client

            custom = client.CustomObjectsApi(api_client)
            start = accounting.snapshot()
            for kind, name in resyncing:
                custom.patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, KINDS[kind], name,
                                                      {"spec": {"resyncIntervalSeconds": LONG_RESYNC}})
            patched = time.time()
            try:
                tracker.wait(all_observed(resyncing), args.timeout, "the mass update to be observed")
            except TimeoutError:
                pass  # reported below: objects whose status never showed the new generation
            after = tracker.snapshot()
            stuck = sorted(name for kind, name in resyncing if after[(kind, name)].observed < after[(kind, name)].generation)
            done = max(after[k].observed_at for k in resyncing)
            end = accounting.snapshot()
            end.at = done
            results["massUpdate"] = {"seconds": round(done - start.at, 1),
                                     "patchSeconds": round(patched - start.at, 1), "notObserved": stuck,
                                     **Accounting.window(start, end)}
            say(f"mass update: {results['massUpdate']}")

        # -- idle: nothing due, nothing changed
        time.sleep(args.settle_seconds)
        events = tracker.events
        start = accounting.snapshot()
        time.sleep(args.idle_seconds)
        end = accounting.snapshot()
        results["idle"] = {**Accounting.window(start, end), "statusEvents": tracker.events - events,
                           **accounting.memory()}
        say(f"idle: {results['idle']}")

        # -- apply → status latency, one KvmHost at a time
        kvm = [key for key in objects if key[0] == "KvmHost"]
        if kvm and args.latency_samples:
            from kubernetes import client

            custom = client.CustomObjectsApi(api_client)
            step = max(1, len(kvm) // args.latency_samples)
            picks = [kvm[(i * step) % len(kvm)] for i in range(args.latency_samples)]
            samples: list[float] = []
            start = accounting.snapshot()
            for index, (kind, name) in enumerate(picks):
                level = "INFO" if index % 2 == 0 else "WARN"
                before_patch = time.time()
                body = custom.patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, KINDS[kind], name,
                                                             {"spec": {"cloudstackAgent": {"logLevel": level}}})
                generation = int(body["metadata"]["generation"])
                tracker.wait(lambda objs, n=name, g=generation: objs[("KvmHost", n)].observed >= g, args.timeout,
                             f"{name} generation {generation}")
                samples.append(tracker.snapshot()[("KvmHost", name)].observed_at - before_patch)
            end = accounting.snapshot()
            results["latency"] = {"samples": len(samples), "p50": round(percentile(samples, 0.5), 2),
                                  "p95": round(percentile(samples, 0.95), 2), "max": round(max(samples), 2),
                                  **Accounting.window(start, end)}
            say(f"latency: {results['latency']}")

        results["memory"] = accounting.memory()
        results["operatorLog"] = str(operator.log_path)
        return results
    finally:
        for step in reversed(cleanup):
            try:
                step()
            except Exception as error:  # noqa: BLE001 - clean up the rest regardless
                say(f"cleanup: {type(error).__name__}: {error}")


def table(results: dict[str, Any]) -> str:
    lines = [f"scale: {results['kvmhosts']} KvmHosts, {results['others']} each of XenPool, SystemVMTemplate, "
             f"CloudStackRelease (all Observe); resyncIntervalSeconds {results['resyncSeconds']}"
             + (f"; operator {' '.join(results['operatorArgs'])}" if results["operatorArgs"] else "")]

    def cpu(window: dict[str, Any]) -> str:
        lab = window["labCpuPercent"]
        return (f"operator CPU {window['operatorCpuPercent']:5.1f}% of a core ({window['operatorCpuSeconds']:.1f}s); "
                f"lab: control plane {lab.get('controlPlane', 0)}%, light hosts {lab.get('lightHosts', 0)}%, "
                f"simulators {lab.get('simulators', 0)}%; machine busy {window['machineBusyPercent']:.0f}% "
                f"of {window['machineCores']} cores")

    c = results["convergence"]
    lines.append(f"  initial convergence      {c['seconds']:7.1f} s   {cpu(c)}")
    lines.append(f"    per kind (last seen)   " + ", ".join(f"{k} {v:.1f}s" for k, v in c["perKind"].items()))
    for kind, reasons in c["ready"].items():
        lines.append(f"    {kind:<22} Ready " + ", ".join(f"{r} x{n}" for r, n in sorted(reasons.items())))
    if "resync" in results:
        r = results["resync"]
        lines.append(f"  resync round             {r['seconds']:7.1f} s   (first due → last advanced; due spread "
                     f"{r['dueSpreadSeconds']:.1f}s)")
        lines.append(f"    lag after due          p50 {r['lagP50']:.1f}s  p95 {r['lagP95']:.1f}s  max "
                     f"{r['lagMax']:.1f}s")
        lines.append(f"    during the round       {cpu(r)}")
    if "massUpdate" in results:
        m = results["massUpdate"]
        lines.append(f"  spec change to all       {m['seconds']:7.1f} s   {cpu(m)}")
        if m["notObserved"]:
            lines.append(f"    never observed         {len(m['notObserved'])}: {', '.join(m['notObserved'][:8])}"
                         f"{' …' if len(m['notObserved']) > 8 else ''} (observedGeneration stayed behind)")
    i = results["idle"]
    lines.append(f"  idle ({i['seconds']:.0f} s window)       {i['statusEvents']:5d} status events seen")
    lines.append(f"    during the window      {cpu(i)}")
    lines.append(f"    at its end             RSS {i['rssMiB']} MiB, {i['threads']} threads")
    if "latency" in results:
        lt = results["latency"]
        lines.append(f"  apply→status latency     p50 {lt['p50']:.2f}s  p95 {lt['p95']:.2f}s  max {lt['max']:.2f}s "
                     f"({lt['samples']} KvmHosts one at a time)")
    mem = results["memory"]
    lines.append(f"  operator memory          peak RSS {mem['peakRssMiB']} MiB, now {mem['rssMiB']} MiB, "
                 f"{mem['threads']} threads (at most {mem['peakThreads']} seen)")
    if mem.get("peakThreadNames"):
        seen = ", ".join(f"{name} {n}" for name, n in mem["peakThreadNames"].items())
        lines.append(f"    at the thread peak     {seen}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kvmhosts", type=int, default=500)
    parser.add_argument("--others", type=int, default=50, help="XenPools, SystemVMTemplates, CloudStackReleases each")
    parser.add_argument("--resync", type=int, default=60, help="spec.resyncIntervalSeconds (at least 30)")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--settle-seconds", type=float, default=10.0, help="pause before the idle window")
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--routers", type=int, default=200, help="virtual routers of the lab CloudStack")
    parser.add_argument("--timeout", type=float, default=900.0, help="limit of each wait, in seconds")
    parser.add_argument("--operator-verbose", action="store_true", help="run the operator with --verbose")
    parser.add_argument("--operator-arg", action="append", default=[], metavar="ARG",
                        help="one more `stackops run` argument (repeatable; e.g. --operator-arg=--ssh-idle-seconds=30)")
    parser.add_argument("--keep", action="store_true", help="keep the bench directory (logs)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.resync < 30:
        parser.error("--resync: the models' minimum is 30")
    if os.geteuid() != 0:
        parser.error("needs root (light hosts are network namespaces)")
    lab_dir = Path(tempfile.mkdtemp(prefix="stackops-scale-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (the finally blocks) on SIGTERM too
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    try:
        results = run(args, lab_dir)
    except (TimeoutError, RuntimeError, controlplane.LabError) as error:
        say(f"error: {error}; logs in {lab_dir}")
        return 1
    print(json.dumps(results, indent=2) if args.json else table(results))
    if not args.keep:
        import shutil

        shutil.rmtree(lab_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
