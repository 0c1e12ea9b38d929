"""The operator's peering object, created at startup when missing, so `kubectl apply -k deploy/` needs one pass
(a ClusterKopfPeering in the same apply as its CRD cannot be mapped yet)."""
from __future__ import annotations

import asyncio
from typing import Any

PEERING_GROUP = "kopf.dev"
PEERING_VERSION = "v1"
PEERING_PLURAL = "clusterkopfpeerings"


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


async def ensure_cluster_peering_async(custom_api: Any, name: str, logger: Any) -> None:
    if await asyncio.to_thread(ensure_cluster_peering, custom_api, name):
        logger.info(f"created ClusterKopfPeering {name!r}")
