"""A XenPool's registration as a CloudStack cluster, as the seed describes it: the pool is formed in XenServer
first, then added to CloudStack once (`addCluster` creates the cluster empty — CloudStack ignores a URL for a
CloudManaged cluster —, then `addHost` with the master's URL: CloudStack discovers every host of the pool and
takes the pool's UUID as the cluster's); hosts that join later are added with `addHost` of one of them (CloudStack discovers all new ones);
a host to be ejected is put into maintenance in CloudStack before it leaves the pool and deleted from CloudStack
after; while the master moves, the cluster is Unmanaged in CloudStack and Managed again afterwards.

The cluster is found by name in the zone and pod of the spec, so a pool added by hand is adopted, not added twice.
The XenAPI credentials CloudStack needs are the pool's own (`credentialsSecretRef`).

In a pass: the cluster and its hosts are read (`ClusterLink.observe`) once the pool has no problem; `plan` (pure)
says what registration changes (add the cluster, add the hosts that joined, remove the hosts that left), which the
pass applies as its registration stage (reconcile/registration.py); `status` says what registration found.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ... import status as st
from ...api.xenpool import CloudStackCluster, XenPoolSpec
from ...drivers.cloudstack import CloudStackClient, CloudStackError, CloudStackPool, CloudStackUnsupportedVersion
from .. import cloudstack
from ..cloudstack import client_for
from ..base import Action, Context, CredentialNotAllowed, ReconcileError
from ..maintenance import MAINTENANCE_TIMEOUT_SECONDS, wait_for_maintenance
from ..registration import Registration
from .observed import PoolFacts
from .reasons import Reason

REGISTERED = st.ConditionType.REGISTERED

POLL_SECONDS = 1.0
CONNECTING_REQUEUE_SECONDS = 5.0


@dataclass(frozen=True)
class AddCluster(Action):
    cluster: str
    master: str

    operation = "add"
    failure_reason = st.Reason.REGISTRATION_FAILED

    def describe(self) -> str:
        return f"add CloudStack cluster {self.cluster} for the pool of master {self.master}"


@dataclass(frozen=True)
class AddClusterHosts(Action):
    """`addHost` of the host at `address` (the master first): CloudStack discovers the pool's other new hosts."""

    cluster: str
    names: tuple[str, ...]
    address: str = ""

    operation = "add"
    failure_reason = st.Reason.REGISTRATION_FAILED

    def describe(self) -> str:
        return f"add host(s) {', '.join(self.names)} to CloudStack cluster {self.cluster}"


@dataclass(frozen=True)
class RemoveClusterHost(Action):
    cluster: str
    name: str
    host_id: str = ""

    disruptive = True
    operation = "remove"
    failure_reason = st.Reason.REGISTRATION_FAILED

    def describe(self) -> str:
        return f"remove host {self.name}, no longer in the pool, from CloudStack cluster {self.cluster}"


@dataclass(frozen=True)
class SetClusterManaged(Action):
    cluster: str
    managed: bool

    operation = "change"

    def describe(self) -> str:
        state = "Managed" if self.managed else "Unmanaged"
        return f"set CloudStack cluster {self.cluster} {state}"


REGISTERING = (AddCluster, AddClusterHosts, RemoveClusterHost)


@dataclass
class ClusterInCloudStack:
    """What CloudStack shows of the pool: its cluster (None: not registered) and the cluster's hosts. The
    registration stage records CloudStack's answers here."""

    cluster: dict[str, Any] | None
    hosts: list[dict[str, Any]] = field(default_factory=list)


def host_url(spec: XenPoolSpec, address: str) -> str:
    """`http://<address>` as CloudStack takes it; a non-default XenAPI port (labs) rides along."""
    return f"http://{address}" + (f":{spec.xenapi_port}" if spec.xenapi_port else "")


def refused(reason: str, message: str) -> ReconcileError:
    return ReconcileError(reason, message, retry=False,
                          conditions=[st.ConditionState(REGISTERED, "False", reason, message)])


def failed(error: CloudStackError, doing: str) -> ReconcileError:
    if isinstance(error, CloudStackUnsupportedVersion):  # nothing was sent; a person must upgrade CloudStack
        return refused(error.reason, f"{doing}: {error}")
    condition = st.ConditionState(REGISTERED, "False", st.Reason.REGISTRATION_FAILED, str(error))
    return ReconcileError(st.Reason.REGISTRATION_FAILED, f"{doing}: {error}", delay=30.0, conditions=[condition])


async def zone_and_pod(client: CloudStackClient, settings: CloudStackCluster) -> tuple[str, str]:
    zones = [z for z in await client.list("listZones", name=settings.zone) if z.get("name") == settings.zone]
    if not zones:
        raise refused(st.Reason.ZONE_NOT_FOUND,
                      f"CloudStack has no zone {settings.zone!r} (spec.cloudstack.zone)")
    zone_id = str(zones[0]["id"])
    pods = [p for p in await client.list("listPods", zoneid=zone_id, name=settings.pod) if p.get("name") == settings.pod]
    if not pods:
        raise refused(st.Reason.POD_NOT_FOUND,
                      f"zone {settings.zone} has no pod {settings.pod!r} (spec.cloudstack.pod)")
    return zone_id, str(pods[0]["id"])


async def find_cluster(client: CloudStackClient, settings: CloudStackCluster, zone_id: str,
                       pod_id: str) -> dict[str, Any] | None:
    found = [c for c in await client.list("listClusters", zoneid=zone_id, podid=pod_id, name=settings.cluster)
             if c.get("name") == settings.cluster]
    if not found:
        return None
    cluster = found[0]
    if str(cluster.get("hypervisortype", "")).lower() != "xenserver":
        raise refused(Reason.CLUSTER_NOT_XENSERVER, f"CloudStack cluster {settings.cluster} is a "
                      f"{cluster.get('hypervisortype')} cluster, not XenServer")
    return cluster


class ClusterLink:
    """The pool's CloudStack cluster for one pass: one client, the zone/pod/cluster ids looked up once."""

    def __init__(self, cloudstack: CloudStackPool, ctx: Context, spec: XenPoolSpec):
        assert spec.cloudstack is not None
        self.ctx, self.spec, self.settings = ctx, spec, spec.cloudstack
        self.client = client_for(cloudstack, ctx, spec.cloudstack.connection.secret_ref.name, condition=REGISTERED)
        self.zone_id = self.pod_id = ""
        self.cluster: dict[str, Any] | None = None

    def credentials(self, address: str) -> dict[str, Any]:
        """The pool's XenAPI login for addHost of the host at `address`: CloudStack gets the password and logs in
        there, so the Secret must allow both. The password a SecretStr, which the driver sends as a POST."""
        ref = self.spec.credentials_secret_ref
        to = {**cloudstack.endpoint(self.ctx, self.settings.connection.secret_ref.name), address: address}
        try:
            password = self.ctx.credential(ref.name, "password", to=to, what="addHost in CloudStack")
        except CredentialNotAllowed as error:
            error.conditions = [st.ConditionState(REGISTERED, "False", error.reason, str(error))]
            raise
        return {"username": self.ctx.secret(ref.name, "username").get_secret_value(), "password": password}

    async def load(self) -> dict[str, Any] | None:
        try:
            if not self.zone_id:
                await cloudstack.record_version(self.client, self.ctx)
                self.zone_id, self.pod_id = await zone_and_pod(self.client, self.settings)
            self.cluster = await find_cluster(self.client, self.settings, self.zone_id, self.pod_id)
        except CloudStackError as error:
            raise failed(error, "looking up the CloudStack cluster") from None
        return self.cluster

    async def hosts(self) -> list[dict[str, Any]]:
        if self.cluster is None:
            return []
        return await self.client.list("listHosts", clusterid=self.cluster["id"], type="Routing")

    async def observe(self) -> ClusterInCloudStack:
        """The cluster and its hosts (the zone and pod looked up on the first call of the pass)."""
        cluster = await self.load()
        try:
            return ClusterInCloudStack(cluster, await self.hosts())
        except CloudStackError as error:
            self.ctx.event("Warning", st.Reason.REGISTRATION_FAILED, f"CloudStack cluster {self.settings.cluster}: "
                           f"{error.errortext}")
            raise failed(error, f"registering the pool as CloudStack cluster {self.settings.cluster}") from None

    # ------------------------------------------------------------------ managed state around a master change

    async def set_managed(self, managed: bool) -> Action | None:
        """Managed/Unmanaged; None when the cluster is not registered or already so."""
        cluster = await self.load()
        state = "Managed" if managed else "Unmanaged"
        if cluster is None or cluster.get("managedstate") == state:
            return None
        try:
            await self.client.call("updateCluster", id=cluster["id"], managedstate=state)
        except CloudStackError as error:
            raise failed(error, f"setting cluster {self.settings.cluster} {state}") from None
        action = SetClusterManaged(self.settings.cluster, managed)
        self.ctx.event("Normal", "Applied", action.describe())
        return action

    # ------------------------------------------------------------------ hosts leaving the pool

    async def maintain(self, address: str) -> None:
        """Put the CloudStack host at `address` into maintenance (CloudStack moves its VMs away) and wait."""
        if await self.load() is None:
            return
        try:
            host = next((h for h in await self.hosts() if h.get("ipaddress") == address), None)
            if host is None:
                return
            if host.get("resourcestate") not in ("Maintenance", "PrepareForMaintenance"):
                await self.client.run("prepareHostForMaintenance", id=host["id"], timeout=MAINTENANCE_TIMEOUT_SECONDS)
                self.ctx.event("Normal", "Applied", f"put CloudStack host {host.get('name')} into maintenance")
            await self.wait_for_maintenance(host)
        except CloudStackError as error:
            raise failed(error, f"putting CloudStack host {address} into maintenance") from None

    async def wait_for_maintenance(self, host: dict[str, Any]) -> None:
        await wait_for_maintenance(self.client, str(host["id"]), str(host.get("name")), poll=POLL_SECONDS)

    async def remove(self, host: dict[str, Any]) -> None:
        if host.get("resourcestate") != "Maintenance":
            await self.client.run("prepareHostForMaintenance", id=host["id"], timeout=MAINTENANCE_TIMEOUT_SECONDS)
            await self.wait_for_maintenance(host)
        await self.client.call("deleteHost", id=host["id"])

    async def deregister(self) -> None:
        """deletionPolicy Delete: every host of the cluster through maintenance and deleteHost, then
        deleteCluster. The XenServer pool itself is left as it is."""
        cluster = await self.load()
        if cluster is None:
            return
        try:
            for host in await self.hosts():
                await self.remove(host)
                self.ctx.event("Normal", "Applied",
                               RemoveClusterHost(self.settings.cluster, str(host.get("name"))).describe())
            await self.client.call("deleteCluster", id=cluster["id"])
        except CloudStackError as error:
            raise failed(error, f"removing CloudStack cluster {self.settings.cluster}") from None
        self.ctx.event("Normal", "Applied", f"deleted CloudStack cluster {self.settings.cluster}")

    # ------------------------------------------------------------------ the pass's registration stage

    def check_credentials(self, actions: Sequence[Action]) -> None:
        """Before anything is sent: the pool's password may go to CloudStack and the hosts the actions add."""
        for action in actions:
            if isinstance(action, AddClusterHosts):
                self.credentials(action.address)

    async def apply(self, action: Action, found: ClusterInCloudStack) -> None:
        """One registration action; the cluster CloudStack made is recorded in `found`."""
        try:
            if isinstance(action, AddCluster):
                # a CloudManaged cluster is created empty (CloudStack ignores a URL here); the addHost of the
                # master that follows makes CloudStack discover the pool and add all its hosts
                answer = await self.client.call(
                    "addCluster", clustername=self.settings.cluster, clustertype="CloudManaged",
                    hypervisor="XenServer", zoneid=self.zone_id, podid=self.pod_id)
                self.cluster = (answer.get("cluster") or [None])[0] or await self.load()
                if self.cluster is None:
                    raise ReconcileError(st.Reason.REGISTRATION_FAILED, "addCluster answered no cluster", delay=30.0)
                found.cluster = self.cluster
            elif isinstance(action, AddClusterHosts):
                assert found.cluster is not None
                await self.client.call("addHost", zoneid=self.zone_id, podid=self.pod_id,
                                       clusterid=found.cluster["id"], hypervisor="XenServer",
                                       url=host_url(self.spec, action.address), **self.credentials(action.address))
            elif isinstance(action, RemoveClusterHost):
                await self.remove(next(h for h in found.hosts if str(h.get("id")) == action.host_id))
            else:
                raise AssertionError(f"not a registration action: {action!r}")
        except CloudStackError as error:
            raise failed(error, f"registering the pool as CloudStack cluster {self.settings.cluster}") from None

    async def refresh(self, found: ClusterInCloudStack) -> None:
        """The cluster's hosts again, after the stage changed them."""
        try:
            found.hosts = await self.hosts()
        except CloudStackError as error:
            raise failed(error, f"registering the pool as CloudStack cluster {self.settings.cluster}") from None


def plan(spec: XenPoolSpec, facts: PoolFacts, found: ClusterInCloudStack) -> list[Action]:
    """Pure: the cluster added when CloudStack does not have it (with the pool's master); live pool hosts it does
    not have added (one addHost: CloudStack discovers the others); hosts that left the pool removed from it, with
    Eject in allowedDestructiveActions."""
    settings = spec.cloudstack
    assert settings is not None
    names = {m.address: m.name for m in spec.members}
    actions: list[Action] = []
    if found.cluster is None:
        master = facts.master
        if master is None:
            return []
        actions.append(AddCluster(settings.cluster, names.get(master.address, master.name_label)))
    known = {h.get("ipaddress") for h in found.hosts}
    missing = sorted((h for h in facts.hosts.values() if h.address not in known and h.live),
                     key=lambda h: h.ref != facts.master_ref)  # the master first
    if missing:
        actions.append(AddClusterHosts(settings.cluster, tuple(sorted(names.get(h.address, h.name_label)
                                                                      for h in missing)), missing[0].address))
    if "Eject" in spec.allowed_destructive_actions:
        pool_addresses = {h.address for h in facts.hosts.values()}
        actions += [RemoveClusterHost(settings.cluster, str(h.get("name")), str(h.get("id"))) for h in found.hosts
                    if h.get("ipaddress") not in pool_addresses]
    return actions


def reported(condition: st.ConditionState, **more: Any) -> Registration:
    """What registration found; while Ready waits for it, Ready's reason is CloudStack and the condition's
    (`CloudStackHostsMissing`)."""
    return Registration(condition, reason=f"{Reason.CLOUDSTACK}{condition.reason}", **more)


def status(spec: XenPoolSpec, facts: PoolFacts, found: ClusterInCloudStack, applied: list[Action], *,
           manage: bool) -> Registration:
    """What registration found, for status: the cluster Up with every pool host, or what it waits for; `applied`:
    the registration actions of the pass (their hosts are still connecting)."""
    settings = spec.cloudstack
    assert settings is not None
    cluster, hosts = found.cluster, found.hosts
    if cluster is None:
        if facts.master is None:
            return reported(st.ConditionState(REGISTERED, "False", Reason.NO_MASTER, "the pool has no master"))
        return reported(st.ConditionState(REGISTERED, "False", st.Reason.NOT_REGISTERED,
                                          "the pool is not in CloudStack (left alone under Observe)"))
    pool_addresses = {h.address for h in facts.hosts.values()}
    known = {h.get("ipaddress") for h in hosts}
    absent = sorted(h.name_label for h in facts.hosts.values() if h.address not in known)
    extra = sorted(str(h.get("name")) for h in hosts if h.get("ipaddress") not in pool_addresses)
    down = sorted(f"{h.get('name')} {h.get('state')}" for h in hosts
                  if h.get("ipaddress") in pool_addresses and h.get("state") != "Up")
    name, cluster_id = settings.cluster, str(cluster.get("id"))
    fields = {"cloudstackClusterId": cluster_id}
    notices = []
    if extra:
        notices.append(f"CloudStack cluster {name} still has host(s) {', '.join(extra)} that left the pool"
                       + ("" if "Eject" in spec.allowed_destructive_actions else
                          "; add Eject to allowedDestructiveActions to remove them"))
    if cluster.get("managedstate") == "Unmanaged":
        reason, message = Reason.CLUSTER_UNMANAGED, f"CloudStack cluster {name} is Unmanaged"
    elif absent:
        reason, message = Reason.HOSTS_MISSING, f"not in CloudStack cluster {name}: {', '.join(absent)}"
    elif down:
        reason, message = Reason.HOSTS_NOT_UP, f"CloudStack cluster {name}: {', '.join(down)}"
    else:
        return reported(st.ConditionState(REGISTERED, "True", Reason.CLUSTER_UP,
                                          f"CloudStack cluster {name} ({cluster_id}): {len(hosts)} host(s) Up"),
                        fields=fields, notices=notices)
    connecting = any(h.get("state") == "Connecting" for h in hosts) or bool(applied)
    return reported(st.ConditionState(REGISTERED, "False", reason, message), fields=fields, notices=notices,
                    requeue_after=CONNECTING_REQUEUE_SECONDS if connecting or manage else None)
