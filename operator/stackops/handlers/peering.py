"""Startup: wait until the CRDs are served, then make sure the operator's peering objects exist.

`kubectl apply -k deploy/` creates the CRDs and the Deployment together, so the operator may start before its
resources are served; it waits for them (resources are resolved once, after startup). The peering objects are
created here rather than in deploy/ because an object in the same apply as its CRD cannot be mapped yet: the
ClusterKopfPeering when the operator watches every namespace, else a KopfPeering in each watched namespace
(`stackops run --namespace …`, deploy/namespaced/), where its Role allows it.
"""
from __future__ import annotations

import datetime
import functools
import getpass
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import kopf

from ..api.kinds import KINDS
from ..drivers import kube

PEERING_GROUP = "kopf.dev"
PEERING_VERSION = "v1"
PEERING_PLURAL = "clusterkopfpeerings"
NAMESPACED_PEERING_PLURAL = "kopfpeerings"
CRD_RETRY_SECONDS = 5


def missing_resources(custom_api: Any, *, namespaced: bool = False) -> list[str]:
    """The operator's resources (and the peering resource it uses) the API server does not serve yet."""
    from kubernetes.client.exceptions import ApiException

    wanted = {(k.group, k.version): set() for k in KINDS}
    for k in KINDS:
        wanted[(k.group, k.version)].add(k.plural)
    peering = NAMESPACED_PEERING_PLURAL if namespaced else PEERING_PLURAL
    wanted.setdefault((PEERING_GROUP, PEERING_VERSION), set()).add(peering)
    missing = []
    for (group, version), plurals in wanted.items():
        try:
            served = {r.name for r in custom_api.get_api_resources(group, version).resources or []}
        except ApiException as error:
            if error.status != 404:
                raise
            served = set()
        missing += [f"{plural}.{group}" for plural in sorted(plurals - served)]
    return missing


def _peering_body(kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/part-of": "stackops"}}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": f"{PEERING_GROUP}/{PEERING_VERSION}", "kind": kind, "metadata": metadata}


def ensure_cluster_peering(custom_api: Any, name: str) -> bool:
    """Create the ClusterKopfPeering `name` unless it exists; True when created."""
    from kubernetes.client.exceptions import ApiException

    try:
        custom_api.create_cluster_custom_object(PEERING_GROUP, PEERING_VERSION, PEERING_PLURAL,
                                                _peering_body("ClusterKopfPeering", name))
    except ApiException as error:
        if error.status == 409:
            return False
        raise
    return True


def ensure_namespaced_peering(custom_api: Any, name: str, namespace: str) -> bool:
    """Create the KopfPeering `name` in `namespace` unless it exists; True when created.

    A namespace that does not exist, or where the operator holds no Role, is a TemporaryError that says so (the
    startup handler retries it), not a traceback with a bare 403."""
    from kubernetes.client.exceptions import ApiException

    try:
        custom_api.create_namespaced_custom_object(PEERING_GROUP, PEERING_VERSION, namespace,
                                                   NAMESPACED_PEERING_PLURAL,
                                                   _peering_body("KopfPeering", name, namespace))
    except ApiException as error:
        if error.status == 409:
            return False
        if error.status == 403:
            raise kopf.TemporaryError(
                f"namespace {namespace!r} is watched (--namespace) but the operator may not create its "
                f"KopfPeering there: bind the Role of deploy/namespaced/ in that namespace",
                delay=CRD_RETRY_SECONDS) from None
        if error.status == 404:
            raise kopf.TemporaryError(f"namespace {namespace!r} is watched (--namespace) but does not exist",
                                      delay=CRD_RETRY_SECONDS) from None
        raise
    return True


async def prepare(custom_api: Any, peering_name: str | None, logger: Any, namespaces: Sequence[str] = ()) -> None:
    """Wait for the CRDs; then create the peering object(s) named `peering_name` (None: standalone, no peering).

    `namespaces`: the watched namespaces, empty for all (cluster-wide peering)."""
    missing = await kube.call(functools.partial(missing_resources, custom_api, namespaced=bool(namespaces)))
    if missing:
        raise kopf.TemporaryError(f"waiting for the CRDs to be served: {', '.join(missing)} "
                                  f"(kubectl apply -k deploy/ installs them)", delay=CRD_RETRY_SECONDS)
    if not peering_name:
        return
    if not namespaces:
        if await kube.call(ensure_cluster_peering, custom_api, peering_name):
            logger.info(f"created ClusterKopfPeering {peering_name!r}")
        return
    for namespace in namespaces:
        if await kube.call(ensure_namespaced_peering, custom_api, peering_name, namespace):
            logger.info(f"created KopfPeering {peering_name!r} in namespace {namespace!r}")


def own_identity() -> str:
    """The operator's identity among peers: the Pod's name (`POD_ID`, from the Deployment's downward API), else the
    user, host and start of this process, as kopf makes it."""
    pod = os.environ.get("POD_ID")
    if pod:
        return pod
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d%H%M%S")
    return f"{getpass.getuser()}@{socket.gethostname()}/{started}/{secrets.token_hex(2)}"


def conflicting_peers(status: dict[str, Any], identity: str, priority: int,
                      now: datetime.datetime | None = None) -> list[str]:
    """The peers in a peering object's status for which kopf pauses this operator: every other live peer (last seen
    within its lifetime) with a higher or the same priority (kopf's rule, kopf/_core/engines/peering.py)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    found = []
    for peer, info in (status or {}).items():
        if peer == identity or not isinstance(info, dict):
            continue
        try:
            lastseen = info.get("lastseen")
            seen = now if lastseen is None else datetime.datetime.fromisoformat(str(lastseen).replace("Z", "+00:00"))
            if seen.tzinfo is None:
                seen = seen.replace(tzinfo=datetime.timezone.utc)
            alive = seen + datetime.timedelta(seconds=int(info.get("lifetime", 60))) > now
            stronger = int(info.get("priority", 0)) >= priority
        except (TypeError, ValueError):
            continue
        if alive and stronger:
            found.append(peer)
    return found


def peering_check(custom_api: Any, name: str | None, namespaces: Sequence[str], identity: str,
                  priority: Callable[[], int], cache_seconds: float = 1.0) -> Callable[[], Awaitable[bool]]:
    """`may_act()` for work the operator starts on its own (handlers/resync.py): False while kopf's peering pauses
    the operator in favour of another (`conflicting_peers` in the ClusterKopfPeering `name`, or in the KopfPeering of
    any watched namespace), or while the peering cannot be read. `name` None (standalone): always True. The answer is
    kept `cache_seconds`: a burst of due objects reads the peering once."""
    from kubernetes.client.exceptions import ApiException

    checked: list[tuple[float, bool]] = []

    def read(namespace: str | None) -> dict[str, Any]:
        try:
            if namespace is None:
                body = custom_api.get_cluster_custom_object(PEERING_GROUP, PEERING_VERSION, PEERING_PLURAL, name)
            else:
                body = custom_api.get_namespaced_custom_object(PEERING_GROUP, PEERING_VERSION, namespace,
                                                               NAMESPACED_PEERING_PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return {}  # not created yet: kopf itself acts then
            raise
        return body.get("status") or {}

    async def may_act() -> bool:
        if name is None:
            return True
        now = time.monotonic()
        if checked and now - checked[0][0] < cache_seconds:
            return checked[0][1]
        try:
            statuses = [await kube.call(read, namespace) for namespace in (namespaces or [None])]
            answer = not any(conflicting_peers(status, identity, priority()) for status in statuses)
        except Exception:  # the API server unreachable: nothing is started blind
            answer = False
        checked[:] = [(now, answer)]
        return answer

    return may_act
