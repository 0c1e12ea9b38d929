"""A configured KvmHost's registration in CloudStack (`addHost`), its state there, and its removal (maintenance,
then `deleteHost`) under `deletionPolicy: Delete`.

The host is found in CloudStack by its management address (`ipaddress`), so a host added by hand before the
operator took over is adopted, not added twice. It is looked up (`observe`) only once it matches its spec; a host
that is not there is added by the plan's registration stage (`AddHost`, see reconcile/registration.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from ... import status as st
from ...api.kvmhost import CloudStackHost, KvmHostSpec
from ...drivers.cloudstack import (CloudStackClient, CloudStackError, CloudStackParameterError, CloudStackPool,
                                   CloudStackUnsupportedVersion)
from .. import cloudstack
from ..base import Action, Context, ReconcileError
from ..maintenance import MAINTENANCE_TIMEOUT_SECONDS, wait_for_maintenance
from ..registration import Registration
from .reasons import Reason

REGISTERED = st.ConditionType.REGISTERED

CONNECTING_REQUEUE_SECONDS = 5.0
DOING = "registering the host in CloudStack"


@dataclass(frozen=True)
class AddHost(Action):
    address: str
    zone: str
    pod: str
    cluster: str

    operation = "add"
    failure_reason = st.Reason.REGISTRATION_FAILED

    def describe(self) -> str:
        return f"add host {self.address} to CloudStack cluster {self.cluster} (zone {self.zone}, pod {self.pod})"


@dataclass
class HostInCloudStack:
    """What CloudStack shows of the host: its record (None: not registered) and, for a host that is not there,
    where addHost puts it (the ids of the spec's zone, pod and cluster). `AddHost` records CloudStack's answer here."""

    host: dict[str, Any] | None
    zone_id: str = ""
    pod_id: str = ""
    cluster_id: str = ""


def describe_state(host: dict[str, Any]) -> str:
    state = str(host.get("state", "Unknown"))
    resource = str(host.get("resourcestate", "Enabled"))
    return state if resource == "Enabled" else f"{state}/{resource}"


async def find_host(client: CloudStackClient, address: str) -> dict[str, Any] | None:
    for host in await client.list("listHosts", type="Routing"):
        if host.get("ipaddress") == address or host.get("name") == address:
            return host
    return None


async def placement(client: CloudStackClient, settings: CloudStackHost) -> tuple[str, str, str]:
    """Zone, pod and cluster ids from their names; a missing one is a spec problem (Stalled)."""
    zones = [z for z in await client.list("listZones", name=settings.zone) if z.get("name") == settings.zone]
    if not zones:
        raise ReconcileError(st.Reason.ZONE_NOT_FOUND,
                             f"CloudStack has no zone {settings.zone!r} (spec.cloudstack.zone)", retry=False,
                             conditions=[st.ConditionState(REGISTERED, "False", st.Reason.ZONE_NOT_FOUND)])
    zone_id = str(zones[0]["id"])
    pods = [p for p in await client.list("listPods", zoneid=zone_id, name=settings.pod) if p.get("name") == settings.pod]
    if not pods:
        raise ReconcileError(st.Reason.POD_NOT_FOUND,
                             f"zone {settings.zone} has no pod {settings.pod!r} (spec.cloudstack.pod)", retry=False,
                             conditions=[st.ConditionState(REGISTERED, "False", st.Reason.POD_NOT_FOUND)])
    pod_id = str(pods[0]["id"])
    clusters = [c for c in await client.list("listClusters", zoneid=zone_id, podid=pod_id, name=settings.cluster)
                if c.get("name") == settings.cluster]
    if not clusters:
        raise ReconcileError(Reason.CLUSTER_NOT_FOUND, f"pod {settings.pod} has no cluster {settings.cluster!r} "
                             "(spec.cloudstack.cluster)", retry=False,
                             conditions=[st.ConditionState(REGISTERED, "False", Reason.CLUSTER_NOT_FOUND)])
    cluster = clusters[0]
    if str(cluster.get("hypervisortype", "KVM")).upper() != "KVM":
        raise ReconcileError(Reason.CLUSTER_NOT_KVM, f"cluster {settings.cluster} is a "
                             f"{cluster.get('hypervisortype')} cluster", retry=False,
                             conditions=[st.ConditionState(REGISTERED, "False", Reason.CLUSTER_NOT_KVM)])
    return zone_id, pod_id, str(cluster["id"])


def failure(error: CloudStackError, doing: str) -> ReconcileError:
    if isinstance(error, CloudStackUnsupportedVersion):  # nothing was sent; a person must upgrade CloudStack
        return ReconcileError(error.reason, f"{doing}: {error}", retry=False,
                              conditions=[st.ConditionState(REGISTERED, "False", error.reason, str(error))])
    refused = isinstance(error, CloudStackParameterError)
    condition = st.ConditionState(REGISTERED, "False", st.Reason.REGISTRATION_FAILED, str(error))
    return ReconcileError(Reason.REGISTRATION_REFUSED if refused else error.reason, f"{doing}: {error}", retry=True,
                          delay=30.0, conditions=[condition])


def reported(condition: st.ConditionState, **more: Any) -> Registration:
    """What registration found; while Ready waits for it, Ready's reason is CloudStackHost and the condition's
    (`CloudStackHostConnecting`)."""
    return Registration(condition, reason=f"{Reason.CLOUDSTACK_HOST}{condition.reason}", **more)


def registered(host: dict[str, Any]) -> Registration:
    """The host's state in CloudStack as status shows it: Registered once it is Up and Enabled — or Disabled, an
    allocation state a person chose and stackops keeps (maintenance puts it back): settled, not in progress."""
    state = describe_state(host)
    up = host.get("state") == "Up" and host.get("resourcestate", "Enabled") in ("Enabled", "Disabled")
    reason = Reason.UP if up else str(host.get("state", "Unknown"))
    message = f"CloudStack host {host.get('name')} ({host.get('id')}) is {state}"
    requeue = None if up else CONNECTING_REQUEUE_SECONDS if host.get("state") == "Connecting" else 30.0
    return reported(st.ConditionState(REGISTERED, "True" if up else "False", reason, message),
                    fields={"cloudstackHostId": str(host.get("id")), "cloudstackHostState": state},
                    requeue_after=requeue)


def status(found: HostInCloudStack | None, *, driver: bool) -> Registration:
    """What status says of the registration: the host's state there; or why it is not looked at (no CloudStack
    driver in this process; the host does not match its spec yet); or that it is not there (left alone under
    Observe)."""
    if not driver:
        return reported(st.ConditionState(REGISTERED, "Unknown", Reason.NO_CLOUDSTACK_DRIVER,
                                          "this process cannot reach CloudStack"))
    if found is None:
        return reported(st.ConditionState(REGISTERED, "False", Reason.WAITING_FOR_CONFIGURATION,
                                          "the host is registered once it matches the spec"))
    if found.host is None:
        return reported(st.ConditionState(REGISTERED, "False", st.Reason.NOT_REGISTERED,
                                          "the host is not in CloudStack (left alone under Observe)"))
    return registered(found.host)


def client(pool: CloudStackPool, ctx: Context, spec: KvmHostSpec) -> CloudStackClient:
    assert spec.cloudstack is not None
    return cloudstack.client_for(pool, ctx, spec.cloudstack.connection.secret_ref.name,
                                 condition=st.ConditionType.REGISTERED)


async def observe(pool: CloudStackPool, ctx: Context, spec: KvmHostSpec) -> HostInCloudStack:
    """The host in CloudStack; for a host that is not there, where it goes (a zone, pod or cluster CloudStack does
    not have stalls the pass, under Observe too)."""
    settings = spec.cloudstack
    assert settings is not None
    api = client(pool, ctx, spec)
    try:
        await cloudstack.record_version(api, ctx)
        host = await find_host(api, spec.address)
        if host is not None:
            return HostInCloudStack(host)
        zone_id, pod_id, cluster_id = await placement(api, settings)
    except CloudStackError as error:
        ctx.event("Warning", st.Reason.REGISTRATION_FAILED, f"looking up {spec.address} in CloudStack failed: "
                  f"{error.errortext}")
        raise failure(error, DOING) from None
    return HostInCloudStack(None, zone_id, pod_id, cluster_id)


def plan(spec: KvmHostSpec, found: HostInCloudStack) -> list[Action]:
    """Pure: the host added where the spec says when CloudStack does not have it."""
    settings = spec.cloudstack
    if settings is None or found.host is not None:
        return []
    return [AddHost(spec.address, settings.zone, settings.pod, settings.cluster)]


def password(ctx: Context, spec: KvmHostSpec) -> SecretStr | None:
    """The host password addHost hands CloudStack (which logs in to the host with it), when the spec names one; its
    Secret must allow both (else CredentialNotAllowed, nothing sent)."""
    settings = spec.cloudstack
    assert settings is not None
    ref = settings.password_secret_ref
    if ref is None:
        return None
    to = {**cloudstack.endpoint(ctx, settings.connection.secret_ref.name), spec.address: spec.address}
    return ctx.credential(ref.name, ref.key, to=to, what="addHost in CloudStack")


async def add(pool: CloudStackPool, ctx: Context, spec: KvmHostSpec, found: HostInCloudStack) -> None:
    """`addHost` (the host's password, when the spec names one, in the POST body); CloudStack's answer (the host,
    usually Connecting) is recorded in `found`."""
    settings = spec.cloudstack
    assert settings is not None
    params: dict[str, Any] = {"zoneid": found.zone_id, "podid": found.pod_id, "clusterid": found.cluster_id,
                              "hypervisor": "KVM", "url": f"http://{spec.address}", "username": settings.username}
    secret = password(ctx, spec)
    if secret is not None:
        params["password"] = secret  # a SecretStr: the driver sends it as a POST
    if settings.host_tags:
        params["hosttags"] = ",".join(settings.host_tags)
    try:
        answer = await client(pool, ctx, spec).call("addHost", **params)
    except CloudStackError as error:
        raise failure(error, DOING) from None
    hosts = answer.get("host") or []
    found.host = hosts[0] if hosts else {"id": "", "state": "Connecting", "name": spec.address}


async def deregister(pool: CloudStackPool, ctx: Context, spec: KvmHostSpec) -> None:
    """Maintenance (CloudStack migrates the VMs away), wait for it, then delete the host."""
    api = client(pool, ctx, spec)
    try:
        host = await find_host(api, spec.address)
        if host is None:
            return
        host_id = str(host["id"])
        if host.get("resourcestate") not in ("Maintenance", "PrepareForMaintenance"):
            await api.run("prepareHostForMaintenance", id=host_id, timeout=MAINTENANCE_TIMEOUT_SECONDS)
            ctx.event("Normal", "Applied", f"put CloudStack host {host.get('name')} into maintenance")
        present = await wait_for_maintenance(api, host_id, str(host.get("name")))
        if present:
            await api.call("deleteHost", id=host_id)
            ctx.event("Normal", "Applied", f"deleted host {host.get('name')} from CloudStack")
    except CloudStackError as error:
        raise ReconcileError(error.reason, f"removing the host from CloudStack: {error}", delay=30.0) from None
