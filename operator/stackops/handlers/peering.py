"""Startup: wait until the CRDs are served, then make sure the operator's peering object exists.

`kubectl apply -k deploy/` creates the CRDs and the Deployment together, so the operator may start before its
resources are served; it waits for them (resources are resolved once, after startup). The ClusterKopfPeering is
created here rather than in deploy/ because an object in the same apply as its CRD cannot be mapped yet.
"""
from __future__ import annotations

import asyncio
from typing import Any

import kopf

from ..api.kinds import KINDS

PEERING_GROUP = "kopf.dev"
PEERING_VERSION = "v1"
PEERING_PLURAL = "clusterkopfpeerings"
CRD_RETRY_SECONDS = 5


def missing_resources(custom_api: Any) -> list[str]:
    """The operator's resources (and the peering resource) the API server does not serve yet."""
    from kubernetes.client.exceptions import ApiException

    wanted = {(k.group, k.version): set() for k in KINDS}
    for k in KINDS:
        wanted[(k.group, k.version)].add(k.plural)
    wanted.setdefault((PEERING_GROUP, PEERING_VERSION), set()).add(PEERING_PLURAL)
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


def ensure_cluster_peering(custom_api: Any, name: str) -> bool:
    """Create the ClusterKopfPeering `name` unless it exists; True when created."""
    from kubernetes.client.exceptions import ApiException

    body = {"apiVersion": f"{PEERING_GROUP}/{PEERING_VERSION}", "kind": "ClusterKopfPeering",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "stackops"}}}
    try:
        custom_api.create_cluster_custom_object(PEERING_GROUP, PEERING_VERSION, PEERING_PLURAL, body)
    except ApiException as error:
        if error.status == 409:
            return False
        raise
    return True


async def prepare(custom_api: Any, peering_name: str | None, logger: Any) -> None:
    missing = await asyncio.to_thread(missing_resources, custom_api)
    if missing:
        raise kopf.TemporaryError(f"waiting for the CRDs to be served: {', '.join(missing)} "
                                  f"(kubectl apply -k deploy/ installs them)", delay=CRD_RETRY_SECONDS)
    if peering_name and await asyncio.to_thread(ensure_cluster_peering, custom_api, peering_name):
        logger.info(f"created ClusterKopfPeering {peering_name!r}")
