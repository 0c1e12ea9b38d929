"""Reading ConfigMaps by reference, for values a spec may keep out of Secrets because they are not secret (a
package repository's OpenPGP public key). Read like Secrets (drivers/secrets.py): by name, verb `get` only, in the
resource's namespace (api/references.py finds them in a spec); a missing or unreadable one is an error whose
reason and message name it."""
from __future__ import annotations

import base64
from typing import Any

from ..api.references import NeededConfigMap
from ..status import Reason, plain
from . import kube


class ConfigMapError(Exception):
    """A referenced ConfigMap or key is missing or unreadable: reason `ConfigMapNotFound`, `ConfigMapKeyMissing`,
    `ConfigMapForbidden` or `ConfigMapUnreadable`."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = plain(reason)  # a status.Reason member, kept as its plain string


def missing_keys(namespace: str, item: NeededConfigMap, values: dict[str, str]) -> None:
    """ConfigMapError `ConfigMapKeyMissing` when `values` lacks a key `item` needs."""
    missing = [k for k in item.keys if k not in values]
    if missing:
        raise ConfigMapError(Reason.CONFIG_MAP_KEY_MISSING,
                             f"ConfigMap {namespace}/{item.name} ({item.path}) has no key {', '.join(missing)}")


class ConfigMapReader:
    """Reads ConfigMaps from the resource's namespace with the Kubernetes client (verb `get` only)."""

    def __init__(self, core_api: Any):
        self._core = core_api

    async def read(self, namespace: str, needed: list[NeededConfigMap]) -> dict[str, dict[str, str]]:
        """ConfigMap name → key → value (`data`, and `binaryData` decoded as UTF-8); ConfigMapError naming what is
        missing."""
        result: dict[str, dict[str, str]] = {}
        for item in needed:
            if item.name not in result:
                result[item.name] = await kube.call(self._read_one, namespace, item.name)
            missing_keys(namespace, item, result[item.name])
        return result

    def _read_one(self, namespace: str, name: str) -> dict[str, str]:
        from kubernetes.client.exceptions import ApiException

        try:
            config_map = self._core.read_namespaced_config_map(name, namespace)
        except ApiException as error:
            if error.status == 404:
                raise ConfigMapError(Reason.CONFIG_MAP_NOT_FOUND, f"ConfigMap {namespace}/{name} not found") from None
            if error.status == 403:
                raise ConfigMapError(Reason.CONFIG_MAP_FORBIDDEN, f"not allowed to read ConfigMap {namespace}/{name}") \
                    from None
            raise ConfigMapError(Reason.CONFIG_MAP_UNREADABLE,
                                 f"reading ConfigMap {namespace}/{name} failed: HTTP {error.status}") from None
        values = {key: base64.b64decode(encoded).decode("utf-8", errors="replace")
                  for key, encoded in (config_map.binary_data or {}).items()}
        values.update(config_map.data or {})
        return values


async def read_config_maps(reader: ConfigMapReader | None, namespace: str,
                           needed: list[NeededConfigMap]) -> dict[str, dict[str, str]]:
    """The ConfigMaps `needed` (none: {} without a request). Without a reader (a caller that reads no ConfigMaps) a
    reference is ConfigMapUnreadable."""
    if not needed:
        return {}
    if reader is None:
        raise ConfigMapError(Reason.CONFIG_MAP_UNREADABLE, f"{needed[0].path}: ConfigMap {namespace}/{needed[0].name} "
                             "cannot be read here")
    return await reader.read(namespace, needed)
