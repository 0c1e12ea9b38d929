"""The Kubernetes API client for what kopf does not do for us (reading Secrets, status checkpoints, peering).

The client is blocking: its calls run in threads of their own (`call`, `WORKERS`), so XenAPI calls or SSH commands
hanging on dead hosts never hold up a Secret read or a status patch, nor the other way round.
"""
from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

from .workers import Workers

T = TypeVar("T")
DEFAULT_WORKERS = 4  # Kubernetes API calls at once (short requests; kopf's own go through its aiohttp client)
WORKERS = Workers("kube", DEFAULT_WORKERS)


def use_workers(size: int) -> None:
    """Run Kubernetes client calls in `size` threads (`stackops run --kube-workers`); before the first call."""
    global WORKERS
    WORKERS = Workers("kube", size)


async def call(func: Callable[..., T], *args: Any) -> T:
    """`func(*args)`, a blocking Kubernetes client call, in one of the `WORKERS` threads."""
    return await WORKERS.run(func, *args)


def core_api() -> "CoreReads":
    """The core API reads (`CoreReads`), configured from the in-cluster ServiceAccount, or else from KUBECONFIG /
    ~/.kube/config."""
    from kubernetes import client, config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        config.load_kube_config()
    return CoreReads(client.ApiClient())


class CoreReads:
    """The two core API calls the operator makes, `read_namespaced_secret` and `read_namespaced_config_map`, made
    as the generated CoreV1Api makes them (same request, same V1Secret and V1ConfigMap models, ApiException on an
    error status) without importing it: core_v1_api.py is 30,000 lines, about 20 MiB of the operator's memory for
    these two calls."""

    def __init__(self, api_client: Any):
        self.api_client = api_client

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        return self._read("secrets", "V1Secret", name, namespace)

    def read_namespaced_config_map(self, name: str, namespace: str) -> Any:
        return self._read("configmaps", "V1ConfigMap", name, namespace)

    def _read(self, plural: str, model: str, name: str, namespace: str) -> Any:
        request = self.api_client.param_serialize(
            method="GET", resource_path=f"/api/v1/namespaces/{{namespace}}/{plural}/{{name}}",
            path_params={"name": name, "namespace": namespace}, query_params=[],
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
        response = self.api_client.call_api(*request)
        response.read()
        return self.api_client.response_deserialize(response, {"200": model}).data


def custom_objects_api() -> Any:
    """A CustomObjectsApi configured like `core_api()` (call that first)."""
    from kubernetes import client

    return client.CustomObjectsApi()
