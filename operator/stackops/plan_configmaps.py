"""ConfigMaps for `stackops plan`, without a cluster: the ConfigMap manifests found among the files, matched by
namespace and name like the operator reads them (drivers/configmaps.py).

Only from the files, never from the environment: a ConfigMap holds nothing secret (a package repository's public
key), so the repository can keep it in plain text next to the resource. The environment variables
`STACKOPS_SECRET_<NAME>_<KEY>` stand in for Secrets kept sealed or encrypted (plan_secrets.py); one named after a
ConfigMap would read as a Secret of that name. A ConfigMap manifest of the wrong shape (`data` not a mapping, a value
not a string, `binaryData` not base64) is reported, where a resource needs it, by file, document, field and line."""
from __future__ import annotations

import base64
import binascii
from typing import Any

from .api.references import NeededConfigMap
from .drivers.configmaps import ConfigMapError, missing_keys
from .plan_manifests import Manifest
from .status import Reason


class ManifestConfigMaps:
    def __init__(self) -> None:
        self._manifests: dict[tuple[str, str], dict[str, str]] = {}
        self._broken: dict[tuple[str, str], str] = {}

    def add(self, namespace: str, document: dict[str, Any], manifest: Manifest | None = None) -> None:
        metadata = document.get("metadata")
        name = str((metadata if isinstance(metadata, dict) else {}).get("name") or "")
        values: dict[str, str] = {}

        def broken(field: str, path: list[str], what: str) -> None:
            line = manifest.line(path) if manifest is not None else None
            where = f" ({manifest.where}{f', line {line}' if line else ''})" if manifest is not None else ""
            self._broken.setdefault((namespace, name), f"ConfigMap {namespace}/{name}{where}: {field} {what}")

        for section in ("binaryData", "data"):
            entries = document.get(section)
            if entries is not None and not isinstance(entries, dict):
                broken(section, [section], "is not a mapping of keys to values")
                continue
            for key, value in (entries or {}).items():
                if not isinstance(value, str):
                    broken(f"{section}.{key}", [section, key], "is not a string")
                elif section == "data":
                    values[str(key)] = value
                else:
                    try:
                        values[str(key)] = base64.b64decode(value, validate=True).decode("utf-8", "replace")
                    except (binascii.Error, ValueError):
                        broken(f"binaryData.{key}", [section, key], "is not base64")
        self._manifests[(namespace, name)] = values

    def read(self, namespace: str, needed: list[NeededConfigMap]) -> dict[str, dict[str, str]]:
        """ConfigMap name → key → value for every needed key, like ConfigMapReader.read; ConfigMapError names what
        is missing and where it was looked for."""
        result: dict[str, dict[str, str]] = {}
        for item in needed:
            if (namespace, item.name) in self._broken:
                raise ConfigMapError(Reason.CONFIG_MAP_UNREADABLE, self._broken[(namespace, item.name)])
            if (namespace, item.name) not in self._manifests:
                raise ConfigMapError(Reason.CONFIG_MAP_NOT_FOUND, f"{item.path}: no ConfigMap {namespace}/{item.name} "
                                     "in the files (a ConfigMap is read from the files only, not from the environment)")
            result[item.name] = self._manifests[(namespace, item.name)]
            missing_keys(namespace, item, result[item.name])
        return result
