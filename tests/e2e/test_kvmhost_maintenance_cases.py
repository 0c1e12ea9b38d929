"""KvmHost maintenance as a user expects it, case by case: real lab hosts registered in one lab CloudStack cluster
(which pings them, so a reboot shows there), the KvmHost reconciler in process (each pass as the operator runs it,
the status kept between passes), the group's lock on real Leases of the `kube` fixture's API server. What happened
is read from the simulator's audit log, the lab hosts' power logs and the Leases, never from how long it took.

- a VM CloudStack cannot move (ErrorInMaintenance): Failed naming the VM, the host given back as it was (Enabled,
  or Disabled again), never rebooted, the slot released, not tried again for the generation; the next generation
  runs it;
- a blocker (a peer down, a peer in maintenance that holds no slot, too little memory on the peers or on any one
  of them for a VM, a VM of the host starting): waiting with the reason, nothing touched; once it is gone, the maintenance runs;
- the maintenance window closed: waiting for it, nothing touched; one under way (resumed) is finished;
- the webhook's `before` and `after` notices around the host's maintenance; a refused `before`: nothing touched;
- Observe: the due maintenance is drift, nothing touched; `stackops plan` lists it;
- an agent version change: under maintenance (drained, installed, given back, not rebooted) or in place; a version
  the repository lacks leaves the emptied host in maintenance, and the next generation takes it from there;
- a slot whose holder stopped renewing it is taken once its TTL has passed."""
from __future__ import annotations

import asyncio
import contextlib
import datetime
import io
import logging
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client as kube_client
from kubernetes import config as kube_config
from pydantic import SecretStr
from support.credentials import secret
from support.kube import Kube
from support.wait import wait_for
from support.webhook import NoticeReceiver

from stackops.api.kvmhost import HostMaintenanceStatus, KvmHostSpec
from stackops.drivers.cloudstack import CloudStackPool
from stackops.drivers.maintenance_lock import MaintenanceLocks
from stackops.drivers.ssh import SSHPool
from stackops.plan import plan_files
from stackops.reconcile.base import Context, Outcome, ReconcileError
from stackops.reconcile.kvmhost import KvmHostReconciler
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.manifests import cloudstack_secret, kvmhost_manifests

T = TypeVar("T")
CLOUDSTACK = "lab-cloudstack"
GROUP = "lab-zone-1-kvm"
TIMINGS = Timings(host_connect=0.3, host_maintenance=0.2, job=0.05, vm_migrate=0.2, ping_timeout=0.4, kvm_ping=0.2,
                  host_investigate=0.4)
IN_MAINTENANCE = ("PrepareForMaintenance", "ErrorInPrepareForMaintenance", "Maintenance", "ErrorInMaintenance")
HOOK = {"webhookURLSecretRef": {"name": "hook", "key": "url"}, "allowLocalAddresses": True}
MIB = 1024 * 1024


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Loop:
    """An event loop of its own thread: the reconciler's passes run there, the test waits on the machine's
    clock (support.wait) in between."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=600)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@dataclass
class Node:
    """One KvmHost: its lab host, its pass's Context (status kept between passes), its Events."""

    host: Any
    ctx: Context
    events: list = field(default_factory=list)
    last: Outcome | ReconcileError | None = None

    @property
    def status(self) -> dict[str, Any]:
        return self.ctx.status

    @property
    def record(self) -> dict[str, Any]:
        return self.ctx.status.get("maintenance") or {}


class Cluster:
    """The lab hosts registered in the lab CloudStack's KVM cluster, a KvmHost reconciler for them."""

    def __init__(self, hosts: list[Any], sim: CloudStackSimulator, locks: MaintenanceLocks, namespace: str) -> None:
        self.hosts, self.sim, self.locks, self.namespace = hosts, sim, locks, namespace
        self.loop = Loop()

        async def make() -> tuple[CloudStackPool, SSHPool, KvmHostReconciler]:
            cloudstack, ssh = CloudStackPool(poll_interval=0.1), SSHPool()
            return cloudstack, ssh, KvmHostReconciler(ssh, cloudstack, locks=lambda ns: locks, maintenance_poll=0.2,
                                                      maintenance_requeue=0.5)
        self.cloudstack, self.ssh, self.reconciler = self.loop.run(make())
        self.reconciler.maintenance_lock_wait = 0.0  # a pass finding the lock held says so at once, not waiting in it
        self.secrets: dict[str, Any] = {CLOUDSTACK: {
            "url": SecretStr(sim.endpoint), "apiKey": SecretStr(sim.api_key), "secretKey": SecretStr(sim.secret_key),
            "allowPlainHTTP": SecretStr("true")}}
        self.nodes = [self.node(host) for host in hosts]

    def node(self, host: Any) -> Node:
        status: dict[str, Any] = {}
        events: list = []

        async def checkpoint(fields: dict[str, Any]) -> None:
            status.update(fields)

        secrets = {**self.secrets, "lab-kvm-ssh": secret({"ssh-privatekey": host.client_key_pem}, host.address)}
        ctx = Context(namespace=self.namespace, name=host.name, generation=1, spec=self.spec_for(host),
                      status=status, secrets=secrets, event=lambda *e: events.append(e),
                      logger=logging.getLogger("e2e"), checkpoint=checkpoint)
        return Node(host, ctx, events)

    def document_for(self, host: Any, policy: str = "Manage", packages: dict[str, Any] | None = None,
                     **maintenance: Any) -> dict[str, Any]:
        """The host's KvmHost manifest: the lab's layout, registered in the cluster, `maintenance` in its spec."""
        document = kvmhost_manifests([host], self.namespace)[1]
        document["spec"]["cloudstack"] = {"connection": {"secretRef": {"name": CLOUDSTACK}}, "zone": "lab-zone-1",
                                          "pod": "lab-zone-1-pod-1", "cluster": GROUP}
        document["spec"]["maintenance"] = {"hostTimeoutSeconds": 120, **maintenance}
        document["spec"]["managementPolicy"] = policy
        if packages:
            document["spec"]["packages"] = packages
        return document

    def spec_for(self, host: Any, **kwargs: Any) -> KvmHostSpec:
        return KvmHostSpec.model_validate(self.document_for(host, **kwargs)["spec"])

    def set_spec(self, node: Node, generation: int | None = None, **kwargs: Any) -> None:
        node.ctx.spec = self.spec_for(node.host, **kwargs)
        node.ctx.generation = generation or node.ctx.generation + 1

    def reconcile(self, node: Node) -> Outcome | ReconcileError:
        """One pass, its fields and conditions kept in status as the operator keeps them; a ReconcileError is
        returned."""
        try:
            outcome = self.loop.run(self.reconciler.reconcile(node.ctx))
        except ReconcileError as error:
            node.last = error
            return error
        node.status.update(outcome.fields)
        node.status["conditions"] = [(c.type, c.status, c.reason, c.message) for c in outcome.conditions]
        node.last = outcome
        return outcome

    def converge(self, node: Node, until: Any, passes: int = 40) -> Outcome | ReconcileError:
        """Passes until `until(outcome)`, at most `passes` of them (each waits for what it waits for)."""
        for _ in range(passes):
            outcome = self.reconcile(node)
            if until(outcome):
                return outcome
            if isinstance(outcome, Outcome) and outcome.requeue_after:
                time.sleep(min(outcome.requeue_after, 0.5))
        raise AssertionError(f"{node.host.name}: not there after {passes} passes: {describe(node.last)}\n"
                             f"{node.events[-10:]}")

    def register(self) -> None:
        for node in self.nodes:
            self.converge(node, lambda o: node.status.get("cloudstackHostState") == "Up")

    def cloudstack_host(self, node: Node) -> Any:
        with self.sim.state.lock:
            return next(h for h in self.sim.state.values("host") if h.address == node.host.address)

    def state(self, node: Node) -> tuple[str, str]:
        with self.sim.state.lock:
            host = self.cloudstack_host(node)
            return host.state, host.resource_state

    def touched(self, node: Node, since: int) -> list[str]:
        """The host's CloudStack state changes and maintenance calls since `since` in the audit log."""
        name = self.cloudstack_host(node).name
        return [f"{e['event']} {e.get('state', '')}/{e.get('resourcestate', '')}".rstrip("/")
                for e in self.sim.audit()[since:]
                if e.get("name") == name and e["event"].startswith(("host.state", "host.maintenance"))]

    def maintenance_states(self, node: Node, since: int) -> list[str]:
        """The host's CloudStack resource states since `since`, each as it changed."""
        name = self.cloudstack_host(node).name
        return [e["resourcestate"] for e in self.sim.audit()[since:] if e["event"] == "host.state"
                and e.get("name") == name and e["resourcestate"] != e["from"]["resourcestate"]]

    def held(self) -> list[str]:
        return [h.holder for h in self.locks.held(GROUP) if not h.expired]

    def close(self) -> None:
        async def close() -> None:
            await self.cloudstack.close()
        self.loop.run(close())
        self.ssh.close_all()
        self.loop.close()


def condition(outcome: Any, kind: str = "Ready") -> tuple[str, str, str]:
    if isinstance(outcome, ReconcileError):
        return ("error", outcome.reason, str(outcome))
    found = [c for c in outcome.conditions if c.type == kind]
    return (found[0].status, found[0].reason, found[0].message) if found else ("", "", "")


def describe(outcome: Any) -> str:
    return " ".join(condition(outcome)) if outcome is not None else "no pass"


def reconciling(outcome: Any) -> tuple[str, str]:
    status, reason, message = condition(outcome, "Reconciling")
    return reason, message


def completed(node: Node) -> Any:
    def done(outcome: Any) -> bool:
        if node.record.get("generation") == node.ctx.generation:
            assert node.record.get("phase") != "Failed", node.record
        return node.record.get("phase") == "Completed" and node.record.get("generation") == node.ctx.generation
    return done


# ---------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    with kube.scratch_namespace("kvm-maint") as name:
        yield name


@pytest.fixture
def coordination(kube: Kube) -> Any:
    return kube_client.CoordinationV1Api(kube_config.new_client_from_config(config_file=kube.kubeconfig))


@pytest.fixture
def make_cluster(make_lab_hosts: Any, namespace: str, coordination: Any) -> Iterator[Any]:
    """`make_cluster(count=2)`: that many lab hosts registered in a lab CloudStack's KVM cluster."""
    with contextlib.ExitStack() as stack:
        def make(count: int = 2) -> Cluster:
            hosts = make_lab_hosts(count)
            for host in hosts:
                host.set_down_seconds(1.0)
            sim = stack.enter_context(CloudStackSimulator(fleet=Fleet(zones=1, routers=0, redundant_pairs=0),
                                                          timings=TIMINGS, ssh_key_path=str(hosts[0].client_key_path)))
            with sim.state.lock:  # the fleet's made-up hosts of the cluster neither take VMs nor block
                for made_up in sim.state.values("host"):
                    if made_up.cluster is not None and made_up.cluster.name == GROUP:
                        made_up.resource_state = "Disabled"
            lab = Cluster(hosts, sim, MaintenanceLocks(coordination, namespace), namespace)
            stack.callback(lab.close)
            lab.register()
            time.sleep(1.1)  # every host booted (and registered) a second before any restartAfter of the test
            return lab
        yield make


@pytest.fixture
def cluster(make_cluster: Any) -> Cluster:
    return make_cluster(2)


# ---------------------------------------------------------------------------------------------------- 1. a VM that stays


def shrink_on_drain(lab: Cluster, node: Node, peers: list[Node], mib: int) -> None:
    """As the lab CloudStack records `node` going PrepareForMaintenance (inside prepareHostForMaintenance, before
    any migration is tried), every peer's memory becomes `mib` MiB."""
    log = lab.sim.audit_log
    record = log.record
    name = lab.cloudstack_host(node).name
    hosts = [lab.cloudstack_host(peer) for peer in peers]

    def hooked(event: str, **fields: Any) -> dict[str, Any]:
        entry = record(event, **fields)
        if event == "host.state" and fields.get("name") == name and fields.get("resourcestate") == \
                "PrepareForMaintenance":
            for host in hosts:  # the simulator holds its state lock here
                host.memory_total = mib * MIB
        return entry

    log.record = hooked  # type: ignore[method-assign]


@pytest.mark.parametrize("before", ["Enabled", "Disabled"])
def test_a_vm_cloudstack_cannot_move_fails_the_maintenance_and_gives_the_host_back(make_cluster: Any,
                                                                                  before: str) -> None:
    """The peers have room for every VM when the maintenance starts, and lose it as CloudStack begins the drain (each
    keeps 4096 MiB: VMs started elsewhere meanwhile): the small VM moves, the big one stays, CloudStack gives up
    (ErrorInMaintenance). The host is given back as it was (a Disabled host enabled for prepareHostForMaintenance is
    disabled again); the next generation, once the peers have room, runs the maintenance."""
    lab = make_cluster(3)
    sim = lab.sim
    first, *peers = lab.nodes
    shrink_on_drain(lab, first, peers, 4096)
    with sim.state.lock:
        sim.state.global_values.update({"max.retries": "2", "migrate.retry.interval": "0.1"})
        if before == "Disabled":
            sim.hostops.set_state(lab.cloudstack_host(first), resource_state="Disabled")
    host_id = lab.cloudstack_host(first).uuid
    sim.add_user_vm(host_id, "tenant-big", memory=6144)
    sim.add_user_vm(host_id, "tenant-small", memory=512)
    since, boots = len(sim.audit()), first.host.boots()
    restart = utc_now()
    lab.set_spec(first, restartAfter=restart)
    failed = lab.converge(first, lambda o: first.record.get("phase") == "Failed")
    assert isinstance(failed, ReconcileError) and failed.reason == "MaintenanceFailed", describe(failed)
    record = first.record
    assert record["step"] == "Draining" and "ErrorInMaintenance" in record["message"], record
    assert "tenant-big (Running)" in record["message"] and "tenant-small" not in record["message"], record
    assert record["stateBefore"] == before
    assert [e["name"] for e in sim.audit()[since:] if e["event"] == "vm.migrated"] == ["tenant-small"]
    assert [e["event"] for e in sim.audit()[since:] if e["event"].startswith("vm.migration")] == \
        ["vm.migration.failed"] * 2, "tried max.retries times"
    enabled = ["Enabled"] if before == "Disabled" else []
    states = [*enabled, "PrepareForMaintenance", "ErrorInPrepareForMaintenance", "ErrorInMaintenance", "Enabled",
              *(["Disabled"] if before == "Disabled" else [])]
    assert lab.maintenance_states(first, since) == states, "CloudStack gave up; the maintenance cancelled"
    assert lab.state(first) == ("Up", before), "given back as it was"
    assert first.host.boots() == boots, "never rebooted"
    assert lab.held() == [], "the slot released"
    # later passes of the same generation: Stalled with the VM named, nothing tried again
    again = lab.reconcile(first)
    assert condition(again, "Stalled")[:2] == ("True", "MaintenanceFailed"), describe(again)
    assert "tenant-big" in condition(again, "Stalled")[2]
    lab.reconcile(first)
    assert lab.maintenance_states(first, since) == states, "not tried again for the generation"
    assert all(c.get("stops", 0) == 0 for c in sim.vm_counts().values()), "no VM stopped"
    # the peers given room and the spec changed (a new generation): the maintenance runs
    del sim.audit_log.record  # the class's own again
    with sim.state.lock:
        for peer in peers:
            lab.cloudstack_host(peer).memory_total = 64 * 1024 * MIB
    lab.set_spec(first, restartAfter=restart, hostTimeoutSeconds=180)
    lab.converge(first, completed(first))
    assert lab.maintenance_states(first, since)[len(states):] == [
        *enabled, "PrepareForMaintenance", "Maintenance", "Enabled", *(["Disabled"] if before == "Disabled" else [])]
    assert lab.state(first) == ("Up", before) and first.host.boots() == boots + 1 and lab.held() == []


# ---------------------------------------------------------------------------------------------------- 2. blockers


def test_blockers_make_it_wait_untouched_and_it_runs_once_they_are_gone(cluster: Cluster) -> None:
    lab, sim = cluster, cluster.sim
    first, peer = lab.nodes
    since, boots = len(sim.audit()), first.host.boots()
    lab.set_spec(first, restartAfter=utc_now())

    def waits(why: str) -> str:
        outcome = lab.reconcile(first)
        reason, message = reconciling(outcome)
        assert reason == "MaintenanceWaiting" and why in message, describe(outcome)
        assert first.status.get("maintenanceProgress", "").startswith("waiting: ")
        assert lab.touched(first, since) == [] and lab.held() == [] and first.record == {}, "nothing touched"
        return message

    # a peer down: powered off from inside, CloudStack's ping loses it
    peer.host.run("poweroff")
    wait_for(lambda: lab.state(peer)[0] in ("Alert", "Down", "Disconnected"), timeout=60,
             what="the peer not Up in CloudStack", interval=0.1)
    waits(f"CloudStack host {lab.cloudstack_host(peer).name} is ")
    peer.host.power_on()
    wait_for(lambda: lab.state(peer) == ("Up", "Enabled"), timeout=120, what="the peer Up again", interval=0.1)

    # a peer in maintenance that holds no slot (put there by hand)
    client = sim_client(lab)
    lab.loop.run(client.run("prepareHostForMaintenance", id=lab.cloudstack_host(peer).uuid))
    wait_for(lambda: lab.state(peer)[1] == "Maintenance", timeout=60, what="the peer in Maintenance", interval=0.1)
    waits(f"CloudStack host {lab.cloudstack_host(peer).name} is in Maintenance")
    lab.loop.run(client.run("cancelHostMaintenance", id=lab.cloudstack_host(peer).uuid))

    # too little free memory on the peers for the host's VMs
    with sim.state.lock:
        lab.cloudstack_host(peer).memory_total = 1024 * MIB
    sim.add_user_vm(lab.cloudstack_host(first).uuid, "tenant-a", memory=2048)
    waits("the Up and Enabled peers have 1024 MiB free for the 1 VM(s) of this host, which need 2048 MiB")
    assert first.host.boots() == boots

    # the blockers gone: the maintenance runs
    with sim.state.lock:
        lab.cloudstack_host(peer).memory_total = 64 * 1024 * MIB
    lab.converge(first, completed(first))
    assert lab.maintenance_states(first, since) == ["PrepareForMaintenance", "Maintenance", "Enabled"]
    assert first.host.boots() == boots + 1 and lab.state(first) == ("Up", "Enabled") and lab.held() == []
    assert [e["name"] for e in sim.audit()[since:] if e["event"] == "vm.migrated"] == ["tenant-a"]


def test_a_vm_starting_on_the_host_makes_it_wait_untouched_then_it_runs(cluster: Cluster) -> None:
    """CloudStack refuses prepareHostForMaintenance while a VM of the host is starting or stopping ("Please wait for
    them to complete"): the maintenance waits for it, the host untouched, rather than failing for the generation."""
    lab, sim = cluster, cluster.sim
    first = lab.nodes[0]
    vm = sim.add_user_vm(lab.cloudstack_host(first).uuid, "tenant-starting", memory=512, state="Starting")
    since, boots = len(sim.audit()), first.host.boots()
    lab.set_spec(first, restartAfter=utc_now())
    outcome = lab.reconcile(first)
    reason, message = reconciling(outcome)
    assert reason == "MaintenanceWaiting" and "tenant-starting (Starting)" in message, describe(outcome)
    assert lab.touched(first, since) == [] and lab.held() == [] and first.record == {}
    with sim.state.lock:
        sim.state.by_uuid[vm].state = "Running"
    lab.converge(first, completed(first))
    assert lab.maintenance_states(first, since) == ["PrepareForMaintenance", "Maintenance", "Enabled"]
    assert first.host.boots() == boots + 1 and lab.held() == []


def test_a_vm_no_single_peer_can_hold_makes_it_wait_untouched(make_cluster: Any) -> None:
    """The peers have room for the host's VMs together but not for the big one on either (CloudStack moves a VM
    whole, to one host): the maintenance waits rather than drain a host CloudStack would give up on."""
    lab = make_cluster(3)
    sim = lab.sim
    first, *peers = lab.nodes
    with sim.state.lock:
        for peer in peers:
            lab.cloudstack_host(peer).memory_total = 4096 * MIB
    sim.add_user_vm(lab.cloudstack_host(first).uuid, "tenant-big", memory=6144)
    sim.add_user_vm(lab.cloudstack_host(first).uuid, "tenant-small", memory=512)
    since, boots = len(sim.audit()), first.host.boots()
    lab.set_spec(first, restartAfter=utc_now())
    outcome = lab.reconcile(first)
    reason, message = reconciling(outcome)
    assert reason == "MaintenanceWaiting" and "no Up and Enabled peer has 6144 MiB free for VM tenant-big (the " \
        "freest has 4096 MiB)" in message, describe(outcome)
    assert lab.touched(first, since) == [] and lab.held() == [] and first.record == {}
    with sim.state.lock:
        lab.cloudstack_host(peers[0]).memory_total = 8192 * MIB
    lab.converge(first, completed(first))
    assert lab.maintenance_states(first, since) == ["PrepareForMaintenance", "Maintenance", "Enabled"]
    assert first.host.boots() == boots + 1 and lab.held() == []


def sim_client(lab: Cluster) -> Any:
    return lab.cloudstack.get(lab.sim.endpoint, lab.sim.api_key, SecretStr(lab.sim.secret_key))


# ---------------------------------------------------------------------------------------------------- 3. window


def test_a_closed_window_leaves_the_host_untouched(cluster: Cluster) -> None:
    lab, sim = cluster, cluster.sim
    first = lab.nodes[0]
    since, boots = len(sim.audit()), first.host.boots()
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3)).strftime("%a")
    lab.set_spec(first, restartAfter=utc_now(), window={"days": [later], "start": "02:00", "durationMinutes": 60})
    for _ in range(2):
        outcome = lab.reconcile(first)
        reason, message = reconciling(outcome)
        assert reason == "WaitingForMaintenanceWindow" and "opens" in message, describe(outcome)
    assert first.status["maintenanceProgress"] == "waiting for the window"
    assert lab.touched(first, since) == [] and lab.held() == [] and first.record == {}
    assert first.host.boots() == boots


def test_a_maintenance_under_way_when_the_window_closes_is_finished(cluster: Cluster) -> None:
    """An operator restarted while the host reboots finds the window closed: the maintenance goes on to the end (a
    host is not left in CloudStack maintenance until the window opens again)."""
    lab, sim = cluster, cluster.sim
    first = lab.nodes[0]
    restart = utc_now()
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3)).strftime("%a")
    lab.set_spec(first, restartAfter=restart, window={"days": [later], "start": "02:00", "durationMinutes": 60})
    since, boots = len(sim.audit()), first.host.boots()
    # as a killed operator left it: the slot taken, the host emptied, the reboot about to be asked
    slot = lab.locks.acquire(GROUP, f"{lab.namespace}/{first.ctx.name}", 900, 1,
                             {"address": first.host.address, "stateBefore": "Enabled", "request": restart})
    assert slot is not None
    lab.loop.run(sim_client(lab).run("prepareHostForMaintenance", id=lab.cloudstack_host(first).uuid))
    wait_for(lambda: lab.state(first)[1] == "Maintenance", timeout=60, what="the host in Maintenance", interval=0.1)
    first.status["maintenance"] = HostMaintenanceStatus(
        request=f"restartAfter {restart}", phase="InProgress", step="Rebooting", generation=first.ctx.generation,
        group=GROUP, lock=slot.name, state_before="Enabled", reboot=True,
        boot_id=first.host.boot_id()).model_dump(by_alias=True)
    lab.reconcile(first)
    assert first.record["phase"] == "Completed", first.record
    assert any(e[1] == "ResumingMaintenance" for e in first.events)
    assert lab.maintenance_states(first, since) == ["PrepareForMaintenance", "Maintenance", "Enabled"]
    assert first.host.boots() == boots + 1 and lab.state(first) == ("Up", "Enabled") and lab.held() == []
    outcome = lab.reconcile(first)
    assert condition(outcome)[0] == "True", describe(outcome)  # done: nothing waits for the window


# ---------------------------------------------------------------------------------------------------- 4. notices


class Webhook(NoticeReceiver):
    """A local webhook keeping each notice with where the simulator's audit log and the host's boots stood when it
    arrived; serving from the start."""

    def __init__(self, lab: Cluster) -> None:
        super().__init__()
        self.notices: list[tuple[dict[str, Any], int, int]] = []
        self.lab, self.hosts = lab, {h.name: h for h in lab.hosts}
        self.start()
        lab.secrets["hook"] = {"url": SecretStr(self.url)}
        for node in lab.nodes:
            node.ctx.secrets["hook"] = lab.secrets["hook"]

    def keep(self, body: dict[str, Any]) -> None:
        self.notices.append((body, len(self.lab.sim.audit()), self.hosts[body["host"]].boots()))


def test_the_webhook_hears_before_and_after_the_host_maintenance(cluster: Cluster) -> None:
    lab, sim = cluster, cluster.sim
    first = lab.nodes[0]
    hook = Webhook(lab)
    try:
        since, boots = len(sim.audit()), first.host.boots()
        restart = utc_now()
        lab.set_spec(first, restartAfter=restart, notifications=HOOK)
        lab.converge(first, completed(first))
    finally:
        hook.close()
    assert [(n["host"], n["phase"]) for n, _, _ in hook.notices] == [(first.host.name, "before"),
                                                                      (first.host.name, "after")]
    (before, at_before, boots_before), (after, at_after, boots_after) = hook.notices
    assert before == {"kind": "KvmHost", "host": first.host.name, "namespace": lab.namespace,
                      "address": first.host.address, "group": GROUP, "phase": "before",
                      "request": f"restartAfter {restart}", "reboot": True, "packages": []}
    name = lab.cloudstack_host(first).name
    assert lab.touched(first, since)[0] == "host.state Up/PrepareForMaintenance"
    assert not [e for e in sim.audit()[since:at_before] if e.get("name") == name], "before: nothing touched yet"
    assert boots_before == boots and boots_after == boots + 1
    given_back = [i for i, e in enumerate(sim.audit()) if i >= since and e.get("name") == name
                  and e["event"] == "host.state" and e.get("resourcestate") == "Enabled"]
    assert given_back and given_back[-1] < at_after, "after: once the host was given back"
    assert lab.held() == []


def test_a_refused_before_notice_leaves_the_host_untouched_and_the_slot_free(cluster: Cluster) -> None:
    """Refused: nothing touched, the slot released, tried again (not Failed); once the webhook takes it, it runs."""
    lab, sim = cluster, cluster.sim
    first = lab.nodes[0]
    hook = Webhook(lab)
    try:
        hook.refuse.add((first.host.name, "before"))
        since, boots = len(sim.audit()), first.host.boots()
        lab.set_spec(first, restartAfter=utc_now(), notifications=HOOK)
        outcome = lab.reconcile(first)
        assert isinstance(outcome, ReconcileError) and outcome.reason == "NotificationFailed", describe(outcome)
        assert outcome.retry and "the host was not touched" in str(outcome) and "t0ken" not in str(outcome)
        assert [(n["host"], n["phase"]) for n, _, _ in hook.notices] == [(first.host.name, "before")]
        assert lab.touched(first, since) == [] and first.host.boots() == boots
        assert lab.held() == [], "the slot released"
        assert first.record == {}, "no maintenance recorded"
        hook.refuse.clear()
        lab.converge(first, completed(first))
    finally:
        hook.close()
    assert [(n["host"], n["phase"]) for n, _, _ in hook.notices] == [
        (first.host.name, "before"), (first.host.name, "before"), (first.host.name, "after")]
    assert lab.maintenance_states(first, since) == ["PrepareForMaintenance", "Maintenance", "Enabled"]
    assert first.host.boots() == boots + 1 and lab.held() == []


# ---------------------------------------------------------------------------------------------------- 5. Observe


def test_observe_lists_the_due_maintenance_as_drift_and_touches_nothing(cluster: Cluster) -> None:
    lab, sim = cluster, cluster.sim
    first = lab.nodes[0]
    since, boots = len(sim.audit()), first.host.boots()
    restart = utc_now()
    lab.set_spec(first, policy="Observe", restartAfter=restart)
    outcome = lab.reconcile(first)
    assert isinstance(outcome, Outcome), describe(outcome)
    assert condition(outcome)[:2] == ("False", "DriftObserved"), describe(outcome)
    assert [a.describe() for a in outcome.drift] == [
        f"maintenance (restartAfter {restart}): take a maintenance slot of group {GROUP}, CloudStack maintenance "
        "(its VMs migrated away), reboot and wait for a clean probe, cancel the maintenance, Up and its state as "
        "before, release the slot"]
    assert outcome.applied == []
    assert lab.touched(first, since) == [] and lab.held() == [] and first.host.boots() == boots


def test_stackops_plan_lists_the_due_maintenance(cluster: Cluster, tmp_path: Path) -> None:
    lab, sim = cluster, cluster.sim
    first = lab.nodes[0]
    since, boots = len(sim.audit()), first.host.boots()
    restart = utc_now()
    document = lab.document_for(first.host, restartAfter=restart)
    document["metadata"]["name"] = first.ctx.name  # the KvmHost the passes converged (its name is in its files)
    manifests = [kvmhost_manifests([first.host], lab.namespace)[0], cloudstack_secret(sim, lab.namespace), document]
    path = tmp_path / "kvmhost.yaml"
    path.write_text(yaml.safe_dump_all(manifests))
    out = io.StringIO()
    code = plan_files([path], out, namespace=lab.namespace)
    name = document["metadata"]["name"]
    assert out.getvalue().splitlines() == [
        f"KvmHost {lab.namespace}/{name} ({path}): 1 change",
        f"  ~ maintenance (restartAfter {restart}): take a maintenance slot of group {GROUP}, CloudStack "
        "maintenance (its VMs migrated away), reboot and wait for a clean probe, cancel the maintenance, Up and its "
        "state as before, release the slot (disruptive)",
        "1 resource: 1 to change, 0 unchanged"], out.getvalue()
    assert code == 2
    assert lab.touched(first, since) == [] and lab.held() == [] and first.host.boots() == boots


# ---------------------------------------------------------------------------------------------------- 6. packages


def installed_version(host: Any) -> str:
    return host.run("dpkg-query -W -f='${Version}' cloudstack-agent", check=True).stdout.strip()


def other_version(host: Any) -> tuple[str, str]:
    now = installed_version(host)
    assert now in ("4.19.1.0", "4.19.2.0"), now
    return now, "4.19.2.0" if now == "4.19.1.0" else "4.19.1.0"


def test_an_agent_version_change_under_maintenance_drains_installs_and_gives_back(cluster: Cluster) -> None:
    lab, sim = cluster, cluster.sim
    first = lab.nodes[0]
    old, new = other_version(first.host)
    sim.add_user_vm(lab.cloudstack_host(first).uuid, "tenant-a", memory=512)
    since, boots = len(sim.audit()), first.host.boots()
    lab.set_spec(first, packages={"cloudstackAgentVersion": new})  # packageChanges: UnderMaintenance (default)
    lab.converge(first, completed(first))
    assert first.record["packages"] == [f"cloudstack-agent {old} → {new}"] and first.record["reboot"] is False
    assert installed_version(first.host) == new
    assert lab.maintenance_states(first, since) == ["PrepareForMaintenance", "Maintenance", "Enabled"]
    installed = [e for e in first.events if e[1] == "PackageInstalled" or "install cloudstack-agent" in e[2]]
    assert installed, first.events
    assert first.host.boots() == boots, "not rebooted (no reboot asked)"
    assert lab.state(first) == ("Up", "Enabled") and lab.held() == []
    assert [e["name"] for e in sim.audit()[since:] if e["event"] == "vm.migrated"] == ["tenant-a"]


def test_an_agent_version_change_in_place_is_installed_without_maintenance(cluster: Cluster) -> None:
    lab, sim = cluster, cluster.sim
    first = lab.nodes[0]
    _, new = other_version(first.host)
    since, boots = len(sim.audit()), first.host.boots()
    lab.set_spec(first, packages={"cloudstackAgentVersion": new}, packageChanges="InPlace")
    lab.converge(first, lambda o: condition(o)[0] == "True" and installed_version(first.host) == new)
    assert lab.maintenance_states(first, since) == [], "no maintenance"
    assert first.record == {} and lab.held() == [] and first.host.boots() == boots


def test_a_failed_install_leaves_the_host_in_maintenance_and_the_next_generation_takes_it_from_there(
        cluster: Cluster) -> None:
    """A version the repository lacks fails once the host is empty: the host stays in CloudStack maintenance (no VM
    is placed on it), the slot is released; the next generation of the spec installs a version it has and gives
    the host back (docs/guide/troubleshooting.md: "or let the next generation of the spec try again")."""
    lab, sim = cluster, cluster.sim
    first = lab.nodes[0]
    old, new = other_version(first.host)
    since, boots = len(sim.audit()), first.host.boots()
    lab.set_spec(first, packages={"cloudstackAgentVersion": "9.9.9.9"})
    failed = lab.converge(first, lambda o: first.record.get("phase") == "Failed")
    assert isinstance(failed, ReconcileError) and failed.reason == "PackageInstallFailed", describe(failed)
    assert first.record["step"] == "Updating" and "left in CloudStack maintenance" in first.record["message"]
    assert lab.state(first)[1] == "Maintenance" and lab.held() == [] and installed_version(first.host) == old
    lab.set_spec(first, packages={"cloudstackAgentVersion": new})
    lab.converge(first, completed(first))
    assert installed_version(first.host) == new and first.record["stateBefore"] == "Enabled"
    assert lab.maintenance_states(first, since) == ["PrepareForMaintenance", "Maintenance", "Enabled"]
    assert lab.state(first) == ("Up", "Enabled") and lab.held() == [] and first.host.boots() == boots


# ---------------------------------------------------------------------------------------------------- 7. vanished holder


def test_a_slot_whose_holder_stopped_renewing_is_taken_once_its_ttl_passed(cluster: Cluster, coordination: Any) -> None:
    lab, sim = cluster, cluster.sim
    first = lab.nodes[0]
    moment = [datetime.datetime.now(datetime.timezone.utc)]
    ghost = MaintenanceLocks(coordination, lab.namespace, clock=lambda: moment[0])
    slot = ghost.acquire(GROUP, f"{lab.namespace}/vanished", 3600, 1, {"address": "192.0.2.1",
                                                                       "stateBefore": "Enabled"})
    assert slot is not None
    since, boots = len(sim.audit()), first.host.boots()
    lab.set_spec(first, restartAfter=utc_now())
    outcome = lab.reconcile(first)
    reason, message = reconciling(outcome)
    assert reason == "MaintenanceWaiting" and f"held by {lab.namespace}/vanished" in message, describe(outcome)
    assert lab.touched(first, since) == []
    moment[0] -= datetime.timedelta(seconds=3601)  # its last renewal: longer ago than its TTL
    assert ghost.renew(slot) is not None
    assert lab.held() == [], "the slot is free once its TTL passed"
    lab.converge(first, completed(first))
    assert first.record["lock"] == slot.name
    assert lab.maintenance_states(first, since) == ["PrepareForMaintenance", "Maintenance", "Enabled"]
    assert first.host.boots() == boots + 1 and lab.held() == []
    leases = coordination.list_namespaced_lease(lab.namespace).items
    assert [(lease.metadata.name, lease.spec.holder_identity) for lease in leases] == [(slot.name, None)]
