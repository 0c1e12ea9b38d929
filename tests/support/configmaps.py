"""Shared by the ConfigMap tests (test_configmap_reader.py, test_kvmhost_signing_key_configmap.py): the ConfigMap
they reference (`repo-key`, key `signing-key.asc`), a Kubernetes core API that serves fixed ConfigMaps, a ConfigMap
manifest for `stackops plan`, and what the reader answers for each way the ConfigMap can be missing or refused."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

NAME, KEY = "repo-key", "signing-key.asc"
PATH = "spec.packages.signingKeyConfigMapRef"  # where a KvmHost references it


def stored(data: dict[str, str] | None = None, binary_data: dict[str, str] | None = None) -> SimpleNamespace:
    """A ConfigMap as the Kubernetes client returns it: `data`, and `binary_data` base64-encoded."""
    return SimpleNamespace(data=data, binary_data=binary_data)


class CoreAPI:
    """`read_namespaced_config_map` over fixed ConfigMaps (or an HTTP status); nothing else exists."""

    def __init__(self, maps: dict[str, Any] | None = None, status: int | None = None):
        self.maps = maps or {}
        self.status = status
        self.calls: list[tuple[str, str]] = []

    def read_namespaced_config_map(self, name: str, namespace: str) -> Any:
        self.calls.append((namespace, name))
        if self.status is not None:
            raise ApiException(status=self.status)
        if name not in self.maps:
            raise ApiException(status=404)
        return self.maps[name]


# (ConfigMaps, HTTP status) of a CoreAPI, and the reason and message of the reader's ConfigMapError when ConfigMap
# NAME with KEY is needed at PATH in namespace "lab"
READ_FAILURES = [
    pytest.param({}, None, "ConfigMapNotFound", f"ConfigMap lab/{NAME} not found", id="not-found"),
    pytest.param({}, 403, "ConfigMapForbidden", f"not allowed to read ConfigMap lab/{NAME}", id="forbidden"),
    pytest.param({}, 500, "ConfigMapUnreadable", f"reading ConfigMap lab/{NAME} failed: HTTP 500", id="http-500"),
    pytest.param({NAME: stored({"other": "value"})}, None, "ConfigMapKeyMissing",
                 f"ConfigMap lab/{NAME} ({PATH}) has no key {KEY}", id="key-missing"),
]


def config_map(namespace: str = "site", **sections: Any) -> dict[str, Any]:
    """The manifest of ConfigMap NAME in `namespace` with `sections` (data, binaryData), for `stackops plan`."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": namespace}, **sections}
