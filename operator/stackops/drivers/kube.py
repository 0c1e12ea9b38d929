"""The Kubernetes API client for what kopf does not do for us (reading Secrets, status checkpoints, peering).

The client is blocking: its calls run in threads of their own (`call`, `WORKERS`), so XenAPI calls or SSH commands
hanging on dead hosts never hold up a Secret read or a status patch, nor the other way round.
"""
from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

from .workers import Workers

T = TypeVar("T")
DEFAULT_WORKERS = 8  # Kubernetes API calls at once (short requests; kopf's own go through its aiohttp client)
WORKERS = Workers("kube", DEFAULT_WORKERS)


def use_workers(size: int) -> None:
    """Run Kubernetes client calls in `size` threads (`stackops run --kube-workers`); before the first call."""
    global WORKERS
    WORKERS = Workers("kube", size)


async def call(func: Callable[..., T], *args: Any) -> T:
    """`func(*args)`, a blocking Kubernetes client call, in one of the `WORKERS` threads."""
    return await WORKERS.run(func, *args)


def core_api() -> Any:
    """A CoreV1Api from the in-cluster ServiceAccount, or else from KUBECONFIG / ~/.kube/config."""
    from kubernetes import client, config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        config.load_kube_config()
    return client.CoreV1Api()


def custom_objects_api() -> Any:
    """A CustomObjectsApi configured like `core_api()` (call that first)."""
    from kubernetes import client

    return client.CustomObjectsApi()
