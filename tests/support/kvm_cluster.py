"""A KVM cluster for rolling-maintenance tests through the real operator (tests/conftest.py's `operator`, deploy/
RBAC, real Leases) against the real kube-apiserver: N KVM lab hosts (tests/e2e/conftest.py's `make_lab_hosts`; their
reboots are real, `set_down_seconds` keeps them short), a lab CloudStack with a KVM cluster of their own (no
simulated peer), each host a KvmHost registering it there through the operator, user VMs placed on every host (their
memory fits the Enabled hosts less one), one host Disabled in CloudStack (`updateHost allocationstate=Disable`).

The lab CloudStack pings each host over SSH (`Timings.kvm_ping`), so a rebooting host shows Disconnected there.

What a test asserts comes from audit logs, never from sampling a moment:
- `Mark`: where the records stood (CloudStack's audit, the hosts' boot counts) before a request;
- `maintenance_spans` / `down_spans`: per host, when it was in CloudStack maintenance (its `host.state` records)
  and when it was down (its power log), on the machine's monotonic clock, which both logs use; `most_at_once`
  counts the most spans open together;
- `rebooted`, `vm_stops`, `cloudstack_states`, `held_slots`, `plan`.

    with kvm_cluster(kube, operator, make_lab_hosts, count=6) as cluster:
        mark = cluster.mark()
        request = cluster.restart_all()
        cluster.wait_completed(request)
        assert cluster.most_at_once(cluster.maintenance_spans(mark)) == 1
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from stackops.drivers.cloudstack import CloudStackClient
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.hosts import LabHosts
from stackops_lab.manifests import SSH_SECRET, allowed, kvmhost_manifests
from support.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
# CloudStack's ping (0.3 s, timeout 0.4 s) finds a rebooting host down (DOWN_SECONDS, then its boot) long before it
# is up again: every reboot shows as Disconnected there.
CS_TIMINGS = Timings(host_connect=0.3, host_maintenance=0.2, job=0.05, vm_migrate=0.2, ping_timeout=0.4,
                     kvm_ping=0.3)
DOWN_SECONDS = 1.5
ZONE, POD, CLUSTER = "lab-zone-1", "lab-zone-1-pod-1", "e2e-kvm-rolling"
MANAGEMENT_VLAN = 123  # with vlan_management: each host's address on VLAN bridge mgmt0 of cloudbr0 (eth0 its uplink)
IN_MAINTENANCE = ("PrepareForMaintenance", "ErrorInPrepareForMaintenance", "Maintenance", "ErrorInMaintenance")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Mark:
    """Where the records stood: the index in CloudStack's audit log, each host's boot count, the machine's
    monotonic time."""

    audit: int
    boots: dict[str, int]
    t: float


@dataclass(frozen=True)
class Span:
    host: str
    start: float
    end: float | None  # None: still open at the end of the records
    what: str = ""


@dataclass
class KvmCluster:
    kube: Any
    operator: Any
    namespace: str
    sim: CloudStackSimulator
    hosts: list[Any]  # LabHost, in order
    documents: list[dict[str, Any]]
    disabled: str  # the lab host (and CloudStack host) name Disabled in CloudStack before any maintenance
    host_ids: dict[str, str] = field(default_factory=dict)  # lab host name → CloudStack host uuid
    vms: dict[str, list[str]] = field(default_factory=dict)  # lab host name → uuids of the VMs placed on it

    # ------------------------------------------------------------------ names

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosts]

    @staticmethod
    def kvmhost(host_name: str) -> str:
        """The KvmHost of a lab host (stackops_lab.manifests names them lab-<host>)."""
        return f"lab-{host_name}"

    def host(self, name: str) -> Any:
        return next(h for h in self.hosts if h.name == name)

    # ------------------------------------------------------------------ Kubernetes

    def kubectl(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.kube.kubectl(*args, **kwargs)

    def objects(self) -> dict[str, dict[str, Any]]:
        """The KvmHosts, by lab host name."""
        found = json.loads(self.kubectl("get", "kvmhosts", "-n", self.namespace, "-o", "json").stdout)["items"]
        by_name = {o["metadata"]["name"]: o for o in found}
        return {h.name: by_name[self.kvmhost(h.name)] for h in self.hosts if self.kvmhost(h.name) in by_name}

    @staticmethod
    def status(obj: dict[str, Any]) -> dict[str, Any]:
        return obj.get("status") or {}

    def maintenance_records(self) -> dict[str, dict[str, Any]]:
        return {n: self.status(o).get("maintenance") or {} for n, o in self.objects().items()}

    def patch(self, name: str, spec: dict[str, Any]) -> None:
        """`kubectl patch --type merge` of one KvmHost's spec (by lab host name)."""
        self.kubectl("patch", "kvmhost", self.kvmhost(name), "-n", self.namespace, "--type", "merge",
                     "-p", json.dumps({"spec": spec}))

    def patch_all(self, spec: dict[str, Any]) -> None:
        for name in self.names:
            self.patch(name, spec)

    def restart_all(self) -> str:
        """A rolling restart: the same `restartAfter` (now, to the second, after every host's boot) on every
        KvmHost; the request as status.maintenance.request records it."""
        time.sleep(1.1)  # restartAfter is to the second: every host booted before it
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.patch_all({"maintenance": {"restartAfter": when}})
        return f"restartAfter {when}"

    def fail_on_failed(self, records: dict[str, dict[str, Any]]) -> None:
        for name, record in records.items():
            assert record.get("phase") != "Failed", \
                f"{name}: maintenance Failed: {record.get('reason')}: {record.get('message')}\n{self.diagnostics()}"

    def completed(self, request: str) -> bool:
        """Whether every KvmHost's maintenance is Completed for a request that contains `request` (a Failed one
        fails the test at once, with the diagnostics)."""
        records = self.maintenance_records()
        self.fail_on_failed(records)
        return len(records) == len(self.hosts) and all(
            r.get("phase") == "Completed" and request in str(r.get("request", "")).split("; ")
            for r in records.values())

    def wait_completed(self, request: str, timeout: float = 600) -> None:
        try:
            wait_for(lambda: self.completed(request), timeout=timeout, what=f"{request} Completed on every KvmHost",
                     interval=0.5)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.diagnostics()}") from None

    def held_slots(self) -> list[str]:
        """The maintenance lock's Leases of the namespace that have a holder."""
        leases = json.loads(self.kubectl("get", "leases", "-n", self.namespace, "-o", "json").stdout)["items"]
        return [lease["metadata"]["name"] for lease in leases if (lease.get("spec") or {}).get("holderIdentity")]

    def slots(self) -> list[str]:
        leases = json.loads(self.kubectl("get", "leases", "-n", self.namespace, "-o", "json").stdout)["items"]
        return [lease["metadata"]["name"] for lease in leases
                if lease["metadata"]["name"].startswith("stackops-maintenance-")]

    def events(self) -> str:
        return self.kubectl("get", "events", "-n", self.namespace, "--sort-by=.lastTimestamp", "-o",
                            "custom-columns=T:.lastTimestamp,O:.involvedObject.name,R:.reason,M:.message").stdout

    # ------------------------------------------------------------------ records

    def mark(self) -> Mark:
        return Mark(len(self.sim.audit()), {h.name: h.boots() for h in self.hosts}, time.monotonic())

    def host_states(self, since: Mark | None = None) -> list[dict[str, Any]]:
        """CloudStack's `host.state` records of the cluster's hosts since `since`, in order."""
        names = set(self.names)
        return [e for e in self.sim.audit()[since.audit if since else 0:]
                if e["event"] == "host.state" and e.get("name") in names]

    def history(self, since: Mark | None = None) -> list[str]:
        return [f"{e['t']:.2f} {e['name']} {e.get('state')}/{e.get('resourcestate')}" for e in self.host_states(since)]

    def maintenance_spans(self, since: Mark, *, states: Sequence[str] = IN_MAINTENANCE,
                          clock: str = "t") -> list[Span]:
        """Per host, each stretch in CloudStack maintenance (its resource state in `states`: by default from
        PrepareForMaintenance to Enabled/Disabled again), on the machine's monotonic clock (`clock` "t", as the
        power logs) or its wall clock ("time", as `date` on a host)."""
        spans: list[Span] = []
        opened: dict[str, float] = {}
        for event in self.host_states(since):
            name, inside = event["name"], event.get("resourcestate") in states
            if inside and name not in opened:
                opened[name] = event[clock]
            elif not inside and name in opened:
                spans.append(Span(name, opened.pop(name), event[clock], "maintenance"))
        spans += [Span(name, start, None, "maintenance") for name, start in opened.items()]
        return sorted(spans, key=lambda s: s.start)

    def down_spans(self, since: Mark) -> list[Span]:
        """Per host, each stretch it was down (its power log: `rebooting` or `powered off` to the next `up`)."""
        spans: list[Span] = []
        for host in self.hosts:
            down: float | None = None
            for t, message in host.power_log():
                if t < since.t:
                    continue
                if ": rebooting" in message or ": powered off" in message:
                    down = t if down is None else down
                elif ": up " in message and down is not None:
                    spans.append(Span(host.name, down, t, "down"))
                    down = None
            if down is not None:
                spans.append(Span(host.name, down, None, "down"))
        return sorted(spans, key=lambda s: s.start)

    @staticmethod
    def most_at_once(spans: Sequence[Span]) -> int:
        """The most spans open at the same time (one that ends as another starts does not overlap it)."""
        points = sorted([(s.start, 1) for s in spans] + [(s.end, -1) for s in spans if s.end is not None],
                        key=lambda p: (p[0], p[1]))
        most = now = 0
        for _, step in points:
            now += step
            most = max(most, now)
        return most

    def rebooted(self, since: Mark) -> dict[str, int]:
        """How many times each host came up again since `since` (its boot count)."""
        return {h.name: h.boots() - since.boots[h.name] for h in self.hosts}

    def vm_stops(self) -> dict[str, dict[str, int]]:
        """VMs stopped or restarted (CloudStack's counts, since the simulator started): should be empty."""
        return {uuid: c for uuid, c in self.sim.vm_counts().items() if c.get("stops", 0) or c.get("restarts", 0)}

    def migrations(self) -> int:
        return sum(c.get("migrations", 0) for c in self.sim.vm_counts().values())

    def cloudstack_states(self) -> dict[str, tuple[str, str]]:
        """Each host's (state, resource state) in CloudStack now."""
        names = set(self.names)
        with self.sim.state.lock:
            return {h.name: (h.state, h.resource_state) for h in self.sim.state.values("host") if h.name in names}

    def expected_states(self) -> dict[str, tuple[str, str]]:
        return {n: ("Up", "Disabled" if n == self.disabled else "Enabled") for n in self.names}

    def vm_placement(self) -> dict[str, str]:
        """Each placed VM's host now when it runs (uuid → host name; "" when it does not run or is on none)."""
        with self.sim.state.lock:
            return {vm.uuid: vm.host.name if vm.host is not None and vm.state == "Running" else ""
                    for vm in self.sim.state.values("uservm") if any(vm.uuid in v for v in self.vms.values())}

    def reachable_on_spec_address(self) -> dict[str, bool]:
        """Whether SSH answers on the address of each KvmHost's spec."""
        found = {}
        for name, obj in self.objects().items():
            try:
                socket.create_connection((obj["spec"]["address"], 22), timeout=10).close()
                found[name] = True
            except OSError:
                found[name] = False
        return found

    def plan(self) -> tuple[int, str]:
        """`stackops plan` of the KvmHosts as they are in the cluster now (with the Secrets of the lab): its exit
        code (0: nothing to change, 2: changes) and output."""
        documents = []
        for document in self.documents:
            if document["kind"] == "KvmHost":
                live = json.loads(self.kubectl("get", "kvmhost", document["metadata"]["name"], "-n", self.namespace,
                                               "-o", "json").stdout)
                document = {"apiVersion": document["apiVersion"], "kind": "KvmHost",
                            "metadata": {"name": live["metadata"]["name"], "namespace": self.namespace},
                            "spec": live["spec"]}
            documents.append(document)
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "kvmhosts.yaml"
            path.write_text(yaml.safe_dump_all(documents))
            env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "operator"), str(REPO / "lab"),
                                                              env.get("PYTHONPATH")]))
            result = subprocess.run([sys.executable, "-m", "stackops.cli", "plan", f"-f={path}"], cwd=REPO, env=env,
                                    capture_output=True, text=True, timeout=300)
        return result.returncode, result.stdout + result.stderr

    def operator_log(self, lines: int = 80) -> str:
        try:
            text = Path(self.operator.log_path).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def diagnostics(self, since: Mark | None = None) -> str:
        """What a failure message shows: every KvmHost's maintenance record and progress, CloudStack's host
        history, the hosts' power logs, Events, the operator log's tail."""
        parts = ["maintenance records:"]
        with contextlib.suppress(Exception):
            for name, obj in self.objects().items():
                status = self.status(obj)
                parts.append(f"  {name}: {status.get('maintenanceProgress')} {json.dumps(status.get('maintenance'))}")
        parts.append("CloudStack host states:\n  " + "\n  ".join(self.history(since)))
        for host in self.hosts:
            with contextlib.suppress(Exception):
                parts.append(f"{host.name} power: " + "; ".join(f"{t:.2f} {m}" for t, m in host.power_log()[-6:]))
        with contextlib.suppress(Exception):
            parts.append("events:\n" + self.events())
        parts.append("operator log (tail):\n" + self.operator_log())
        return "\n".join(parts)


# ---------------------------------------------------------------------- set-up


async def _cloudstack(sim: CloudStackSimulator, call: Callable[[CloudStackClient], Any]) -> Any:
    api = CloudStackClient(sim.endpoint, sim.api_key, SecretStr(sim.secret_key))
    try:
        return await call(api)
    finally:
        await api.close()


def cloudstack(sim: CloudStackSimulator, command: str, **params: Any) -> Any:
    """One CloudStack API call to the lab CloudStack, as an admin would make it."""
    return asyncio.run(_cloudstack(sim, lambda api: api.call(command, **params)))


def add_cluster(sim: CloudStackSimulator, name: str = CLUSTER) -> None:
    async def add(api: CloudStackClient) -> None:
        [zone] = [z for z in await api.list("listZones") if z["name"] == ZONE]
        [pod] = [p for p in await api.list("listPods", zoneid=zone["id"]) if p["name"] == POD]
        await api.call("addCluster", clustername=name, clustertype="CloudManaged", hypervisor="KVM",
                       zoneid=zone["id"], podid=pod["id"])

    asyncio.run(_cloudstack(sim, add))


def management_address(host: Any) -> str:
    """A lab host's management address on VLAN MANAGEMENT_VLAN: 10.251.<slot>.<its eth0 address's last byte>."""
    _, _, slot, last = host.address.split(".")
    return f"10.251.{slot}.{last}"


def move_to_vlan(kube: Any, namespace: str, hosts: list[Any], documents: list[dict[str, Any]]) -> None:
    """Each KvmHost's address moved onto VLAN bridge mgmt0 (VLAN MANAGEMENT_VLAN of cloudbr0, eth0 its uplink), as a
    user would: managed first at eth0's address with the VLAN bridge and its address in the spec (eth0 joining
    cloudbr0 goes under the operator's checkpoint), sshd told to listen there too (the lab's sshd listens on the
    lab address only), then `address` changed to it. The lab's switch carries the VLAN for the machine. Registration
    (`spec.cloudstack`) is left to the caller, at the new address. `documents` are updated in place."""
    lab = LabHosts(hosts[0].directory.parent.parent)
    slot = hosts[0].address.split(".")[2]
    lab.carry_vlan(MANAGEMENT_VLAN, f"10.251.{slot}.1/24")
    secret = documents[0]
    assert secret["metadata"]["name"] == SSH_SECRET
    secret["metadata"]["annotations"] = allowed(*(a for h in hosts for a in (h.address, management_address(h))))
    kvmhosts = [d for d in documents if d["kind"] == "KvmHost"]
    for host, document in zip(hosts, kvmhosts):
        spec = document["spec"]
        spec.pop("cloudstack", None)
        spec["openvswitch"] = {"bridges": [{
            "name": "cloudbr0", "datapathType": "netdev", "ports": ["eth0"],
            "vlanBridges": [{"name": "mgmt0", "vlan": MANAGEMENT_VLAN,
                             "addresses": [f"{management_address(host)}/24"]}],
        }], "rollbackTimeoutSeconds": 30}
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([d for d in documents if d["kind"] != "KvmHost"]
                                                              + kvmhosts))

    def objects() -> list[dict[str, Any]]:
        return json.loads(kube.kubectl("get", "kvmhosts", "-n", namespace, "-o", "json").stdout)["items"]

    def ready() -> bool:
        found = objects()
        return len(found) == len(hosts) and all(
            any(c["type"] == "Ready" and c["status"] == "True" and o["status"].get("observedGeneration")
                == o["metadata"]["generation"] for c in (o.get("status") or {}).get("conditions", []))
            for o in found)

    wait_for(ready, timeout=600, what="every KvmHost Ready with its VLAN bridge", interval=0.5)
    for host in hosts:
        host.run(f"echo 'ListenAddress {management_address(host)}' > /etc/ssh/sshd_config.d/management.conf"
                 " && systemctl restart ssh", check=True)
    for host, document in zip(hosts, kvmhosts):
        document["spec"]["address"] = management_address(host)


@contextlib.contextmanager
def kvm_cluster(kube: Any, operator: Any, make_lab_hosts: Callable[..., list[Any]], count: int = 6, *,
                vms_per_host: int = 2, vm_memory: int = 2048, host_memory: int = 8192, disabled_index: int = 1,
                down_seconds: float = DOWN_SECONDS, timings: Timings = CS_TIMINGS,
                spec: dict[str, Any] | None = None, vlan_management: bool = False,
                prefix: str = "e2e-kvmcluster") -> Iterator[KvmCluster]:
    """`count` lab hosts registered through the operator as KvmHosts in one lab CloudStack KVM cluster of their
    own, every one Up, `vms_per_host` VMs of `vm_memory` MiB on each (CloudStack gives each host `host_memory` MiB:
    the VMs must fit the Enabled hosts less one), then host number `disabled_index` Disabled through updateHost
    (None: none). `spec` is merged into every KvmHost's spec (top-level keys; `maintenance` gets
    hostTimeoutSeconds 300 unless given). `vlan_management`: each KvmHost's address (the one CloudStack has too) is
    on VLAN bridge mgmt0 (move_to_vlan) before it is registered. Everything is removed at the end (the KvmHosts
    deleted, Orphan)."""
    hosts = make_lab_hosts(count)
    for host in hosts:
        host.set_down_seconds(down_seconds)
    total = count * vms_per_host * vm_memory
    enabled = count - (1 if disabled_index is not None else 0)
    assert total <= (enabled - 1) * host_memory, \
        f"{total} MiB of VMs cannot fit {enabled - 1} Enabled hosts of {host_memory} MiB"
    namespace = f"{prefix}-{int(time.time())}"
    kube.kubectl("create", "namespace", namespace)
    with CloudStackSimulator(fleet=Fleet(zones=1, hypervisors=("KVM",), routers=0, redundant_pairs=0,
                                         hosts_per_cluster=1),
                             timings=timings, ssh_key_path=str(hosts[0].client_key_path)) as sim:
        add_cluster(sim)
        documents = kvmhost_manifests(hosts, namespace, cloudstack=sim)
        for document in documents:
            if document["kind"] == "KvmHost":
                document["spec"]["cloudstack"]["cluster"] = CLUSTER
                document["spec"]["resyncIntervalSeconds"] = 30
                document["spec"]["maintenance"] = {"hostTimeoutSeconds": 300}
                for key, value in (spec or {}).items():
                    document["spec"][key] = {**document["spec"].get(key, {}), **value} \
                        if isinstance(value, dict) and isinstance(document["spec"].get(key), dict) else value
        cluster = KvmCluster(kube, operator, namespace, sim, hosts, documents,
                             disabled=hosts[disabled_index].name if disabled_index is not None else "")
        try:
            if vlan_management:
                registration = {d["metadata"]["name"]: d["spec"]["cloudstack"] for d in documents
                                if d["kind"] == "KvmHost"}
                move_to_vlan(kube, namespace, hosts, documents)
                for document in documents:
                    if document["kind"] == "KvmHost":
                        document["spec"]["cloudstack"] = registration[document["metadata"]["name"]]
            kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))

            def registered() -> bool:
                objs = cluster.objects()
                return len(objs) == count and all(cluster.status(o).get("cloudstackHostState") == "Up"
                                                  for o in objs.values())

            try:
                wait_for(registered, timeout=600, what=f"{count} KvmHosts registered and Up", interval=0.5)
            except AssertionError as error:
                raise AssertionError(f"{error}\n{cluster.diagnostics()}") from None
            with sim.state.lock:
                found = {h.name: h for h in sim.state.values("host")
                         if h.cluster is not None and h.cluster.name == CLUSTER}
                assert sorted(found) == sorted(cluster.names), f"CloudStack's hosts of {CLUSTER}: {sorted(found)}"
                for host in found.values():
                    host.memory_total = host_memory * MIB
                cluster.host_ids = {name: host.uuid for name, host in found.items()}
            for name in cluster.names:
                cluster.vms[name] = [sim.add_user_vm(cluster.host_ids[name], f"tenant-{name}-{i}", memory=vm_memory)
                                     for i in range(vms_per_host)]
            if cluster.disabled:
                cloudstack(sim, "updateHost", id=cluster.host_ids[cluster.disabled], allocationstate="Disable")
                assert cluster.cloudstack_states()[cluster.disabled] == ("Up", "Disabled")
            yield cluster
        finally:
            if operator.process is None or operator.process.poll() is not None:
                operator.start()
            kube.kubectl("delete", "kvmhosts", "--all", "-n", namespace, "--wait=true", "--timeout=120s", check=False)
            kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
