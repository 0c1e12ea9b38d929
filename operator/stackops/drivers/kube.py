"""The Kubernetes API client for what kopf does not do for us (reading Secrets, status checkpoints, peering).

The client is blocking: its calls run in threads of their own (`call`, `WORKERS`), so XenAPI calls or SSH commands
hanging on dead hosts never hold up a Secret read or a status patch, nor the other way round.
"""
from __future__ import annotations

import os
import re
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


SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
CHECK_SECONDS = 30.0  # `check_server`'s one request: a server that has not answered by then is not answering


class ClusterUnavailable(Exception):
    """No Kubernetes API to work with: no credentials, an unusable kubeconfig, or a server that does not answer.
    Its message is one line for the user: what was looked for and what to do."""


class NoCredentials(ClusterUnavailable):
    """Neither an in-cluster ServiceAccount nor a usable kubeconfig (`stackops run` exits 2: how it was started)."""


def load_config() -> None:
    """Configure the kubernetes client as kopf's login does (handlers: `kopf.login_via_client`), so that both use the
    same credentials: the in-cluster ServiceAccount, or else KUBECONFIG / ~/.kube/config. `NoCredentials` when
    neither can be used."""
    import yaml
    from kubernetes import config
    from kubernetes.config import kube_config

    try:
        config.load_incluster_config()
        return
    except config.ConfigException as error:
        in_cluster = ("not in a Pod (KUBERNETES_SERVICE_HOST is not set)"
                      if not os.environ.get("KUBERNETES_SERVICE_HOST") else
                      f"in a Pod, but no ServiceAccount token at {SERVICE_ACCOUNT_TOKEN}"
                      if not os.path.exists(SERVICE_ACCOUNT_TOKEN) else f"in a Pod, but {error}")
    location = kube_config.KUBE_CONFIG_DEFAULT_LOCATION  # KUBECONFIG (read by the client) or ~/.kube/config
    paths = [path for path in location.split(os.pathsep) if path]
    try:
        config.load_kube_config()
        return
    except (config.ConfigException, OSError, yaml.YAMLError, ValueError, TypeError, AttributeError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        where = f"KUBECONFIG={location}" if os.environ.get("KUBECONFIG") else location
        if not any(os.path.exists(os.path.expanduser(path)) for path in paths):
            kubeconfig = f"no kubeconfig at {where}" + ("" if os.environ.get("KUBECONFIG") else
                                                          " (KUBECONFIG is not set)")
        else:
            kubeconfig = f"the kubeconfig at {where} is not usable: {reason}"
    raise NoCredentials(
        f"no Kubernetes credentials: {in_cluster}, and {kubeconfig}; set KUBECONFIG to a working "
        f"kubeconfig file, or run in a Pod with its ServiceAccount token mounted (automountServiceAccountToken: true)")


def check_server(timeout: float = CHECK_SECONDS) -> None:
    """One request (GET /version, no retries) to the API server `load_config` configured: `ClusterUnavailable` when
    it cannot be reached (refused, no route, TLS, timeout). Any HTTP answer will do: the server is there."""
    import urllib3
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    configuration = client.Configuration.get_default_copy()
    configuration.retries = 0
    api_client = client.ApiClient(configuration)
    try:
        request = api_client.param_serialize(method="GET", resource_path="/version", query_params=[],
                                             header_params={"Accept": "application/json"},
                                             auth_settings=["BearerToken"])
        api_client.call_api(*request, _request_timeout=timeout).read()
    except ApiException:
        pass
    except (urllib3.exceptions.HTTPError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        text = re.sub(r"^\w*Connection(Pool)?\([^)]*\): ", "", " ".join(str(reason).split()))
        raise ClusterUnavailable(f"cannot reach the Kubernetes API server at {configuration.host}: {text}; "
                                 f"check the cluster is up and its address in the kubeconfig") from None
    finally:
        api_client.close()


def core_api() -> "CoreReads":
    """The core API reads (`CoreReads`), configured from the in-cluster ServiceAccount, or else from KUBECONFIG /
    ~/.kube/config (`load_config`: `ClusterUnavailable` without either)."""
    from kubernetes import client

    load_config()
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
