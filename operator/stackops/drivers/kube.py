"""The Kubernetes API client for what kopf does not do for us (reading Secrets)."""
from __future__ import annotations

import os
from typing import Any


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
