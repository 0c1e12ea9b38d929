"""A configured KvmHost's registration in CloudStack (`addHost`), its state there, and its removal (maintenance,
then `deleteHost`) under `deletionPolicy: Delete`.

The host is found in CloudStack by its management address (`ipaddress`), so a host added by hand before the
operator took over is adopted, not added twice.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ... import status as st
from ...api.kvmhost import CloudStackHost, KvmHostSpec
from ...drivers.cloudstack import (CloudStackClient, CloudStackError, CloudStackParameterError, CloudStackPool,
                                   CloudStackUnsupportedVersion)
from .. import cloudstack
from ..base import Action, Context, ReconcileError
from ..maintenance import MAINTENANCE_TIMEOUT_SECONDS, wait_for_maintenance

CONNECTING_REQUEUE_SECONDS = 5.0


@dataclass(frozen=True)
class AddHost(Action):
    address: str
    zone: str
    pod: str
    cluster: str

    operation = "add"

    def describe(self) -> str:
        return f"add host {self.address} to CloudStack cluster {self.cluster} (zone {self.zone}, pod {self.pod})"


@dataclass
class Registration:
    """What the registration step found and did, for status."""

    conditions: list[st.ConditionState]
    host_id: str | None = None
    state: str | None = None
    up: bool = False
    applied: list[Action] = field(default_factory=list)
    pending: list[Action] = field(default_factory=list)
    requeue_after: float | None = None


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
        raise ReconcileError("ZoneNotFound", f"CloudStack has no zone {settings.zone!r} (spec.cloudstack.zone)",
                             retry=False, conditions=[st.ConditionState("Registered", "False", "ZoneNotFound")])
    zone_id = str(zones[0]["id"])
    pods = [p for p in await client.list("listPods", zoneid=zone_id, name=settings.pod) if p.get("name") == settings.pod]
    if not pods:
        raise ReconcileError("PodNotFound", f"zone {settings.zone} has no pod {settings.pod!r} (spec.cloudstack.pod)",
                             retry=False, conditions=[st.ConditionState("Registered", "False", "PodNotFound")])
    pod_id = str(pods[0]["id"])
    clusters = [c for c in await client.list("listClusters", zoneid=zone_id, podid=pod_id, name=settings.cluster)
                if c.get("name") == settings.cluster]
    if not clusters:
        raise ReconcileError("ClusterNotFound", f"pod {settings.pod} has no cluster {settings.cluster!r} "
                             "(spec.cloudstack.cluster)", retry=False,
                             conditions=[st.ConditionState("Registered", "False", "ClusterNotFound")])
    cluster = clusters[0]
    if str(cluster.get("hypervisortype", "KVM")).upper() != "KVM":
        raise ReconcileError("ClusterNotKVM", f"cluster {settings.cluster} is a {cluster.get('hypervisortype')} "
                             "cluster", retry=False,
                             conditions=[st.ConditionState("Registered", "False", "ClusterNotKVM")])
    return zone_id, pod_id, str(cluster["id"])


def failure(error: CloudStackError, doing: str) -> ReconcileError:
    if isinstance(error, CloudStackUnsupportedVersion):  # nothing was sent; a person must upgrade CloudStack
        return ReconcileError(error.reason, f"{doing}: {error}", retry=False,
                              conditions=[st.ConditionState("Registered", "False", error.reason, str(error))])
    return ReconcileError(error.reason if not isinstance(error, CloudStackParameterError) else "RegistrationRefused",
                          f"{doing}: {error}", retry=True, delay=30.0,
                          conditions=[st.ConditionState("Registered", "False", "RegistrationFailed", str(error))])


def registered(host: dict[str, Any], applied: list[Action]) -> Registration:
    state = describe_state(host)
    up = host.get("state") == "Up" and host.get("resourcestate", "Enabled") == "Enabled"
    reason = "Up" if up else str(host.get("state", "Unknown"))
    message = f"CloudStack host {host.get('name')} ({host.get('id')}) is {state}"
    requeue = None if up else CONNECTING_REQUEUE_SECONDS if host.get("state") == "Connecting" else 30.0
    return Registration(conditions=[st.ConditionState("Registered", "True" if up else "False", reason, message)],
                        host_id=str(host.get("id")), state=state, up=up, applied=applied, requeue_after=requeue)


async def register(pool: CloudStackPool, ctx: Context, spec: KvmHostSpec, *, manage: bool) -> Registration:
    """Find the host in CloudStack; add it when missing (under Manage)."""
    settings = spec.cloudstack
    assert settings is not None
    client = cloudstack.client_for(pool, ctx, settings.connection.secret_ref.name, condition="Registered")
    try:
        await cloudstack.record_version(client, ctx)
        host = await find_host(client, spec.address)
        if host is not None:
            return registered(host, [])
        zone_id, pod_id, cluster_id = await placement(client, settings)
        action = AddHost(spec.address, settings.zone, settings.pod, settings.cluster)
        if not manage:
            return Registration(conditions=[st.ConditionState("Registered", "False", "NotRegistered",
                                                              "the host is not in CloudStack (left alone under Observe)")],
                                pending=[action])
        params: dict[str, Any] = {"zoneid": zone_id, "podid": pod_id, "clusterid": cluster_id, "hypervisor": "KVM",
                                  "url": f"http://{spec.address}", "username": settings.username}
        if settings.password_secret_ref is not None:
            ref = settings.password_secret_ref
            to = {**cloudstack.endpoint(ctx, settings.connection.secret_ref.name), spec.address: spec.address}
            # a SecretStr: the driver sends it as a POST; CloudStack logs in to the host with it
            params["password"] = ctx.credential(ref.name, ref.key, to=to, what="addHost in CloudStack")
        if settings.host_tags:
            params["hosttags"] = ",".join(settings.host_tags)
        answer = await client.call("addHost", **params)
    except CloudStackError as error:
        ctx.event("Warning", "RegistrationFailed", f"adding {spec.address} to CloudStack failed: {error.errortext}")
        raise failure(error, "registering the host in CloudStack") from None
    ctx.event("Normal", "Applied", action.describe())
    hosts = answer.get("host") or []
    host = hosts[0] if hosts else {"id": "", "state": "Connecting", "name": spec.address}
    return registered(host, [action])


async def deregister(pool: CloudStackPool, ctx: Context, spec: KvmHostSpec) -> None:
    """Maintenance (CloudStack migrates the VMs away), wait for it, then delete the host."""
    settings = spec.cloudstack
    assert settings is not None
    client = cloudstack.client_for(pool, ctx, settings.connection.secret_ref.name, condition="Registered")
    try:
        host = await find_host(client, spec.address)
        if host is None:
            return
        host_id = str(host["id"])
        if host.get("resourcestate") not in ("Maintenance", "PrepareForMaintenance"):
            await client.run("prepareHostForMaintenance", id=host_id, timeout=MAINTENANCE_TIMEOUT_SECONDS)
            ctx.event("Normal", "Applied", f"put CloudStack host {host.get('name')} into maintenance")
        present = await wait_for_maintenance(client, host_id, str(host.get("name")))
        if present:
            await client.call("deleteHost", id=host_id)
            ctx.event("Normal", "Applied", f"deleted host {host.get('name')} from CloudStack")
    except CloudStackError as error:
        raise ReconcileError(error.reason, f"removing the host from CloudStack: {error}", delay=30.0) from None
