"""Credentials for `stackops plan`, without a cluster: Secret manifests found among the files, else environment
variables `STACKOPS_SECRET_<NAME>_<KEY>` (the Secret's name and the key upper-cased, every other character than
A-Z and 0-9 turned into `_`: Secret `cloudstack-api`, key `apiKey` → `STACKOPS_SECRET_CLOUDSTACK_API_APIKEY`).

A Secret manifest is matched by namespace and name, like the operator reads it; the environment is the way for a CI
job whose repository keeps Secrets sealed or encrypted (SOPS-encrypted values, `ENC[…]`, count as absent).

Where a Secret's credentials may be sent (`stackops.io/allowed-destinations`, see destinations.py) follows where its
values come from: from the manifest's annotation when every value comes from the files, and only from
`STACKOPS_DESTINATIONS_<NAME>` when any comes from the environment — the author of a branch can edit the manifests,
so a list in them must not open the way for a credential the CI job holds.
Values are SecretStr from the start: never printed. A Secret manifest of the wrong shape (`stringData` not a
mapping, a value not a string, `data` not base64) is reported, where a resource needs it, by file, document, field
and line, never by value."""
from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from pydantic import SecretStr

from .api.references import NeededSecret
from .destinations import ANNOTATION
from .drivers.secrets import SecretData, SecretError, parse_destinations
from .plan_manifests import Manifest
from .status import Reason

PREFIX = "STACKOPS_SECRET_"


def _encrypted(value: object) -> bool:
    """A SOPS-encrypted value (`ENC[AES256_GCM,data:…]`): not a credential; the environment must provide it."""
    return isinstance(value, str) and value.startswith("ENC[") and value.endswith("]")


def environment_name(secret: str, key: str) -> str:
    return PREFIX + re.sub(r"[^A-Z0-9]", "_", f"{secret}_{key}".upper())


def destinations_name(secret: str) -> str:
    """The variable holding a Secret's allowed destinations when its values come from the environment."""
    return "STACKOPS_DESTINATIONS_" + re.sub(r"[^A-Z0-9]", "_", secret.upper())


class ManifestSecrets:
    def __init__(self, environ: dict[str, str] | None = None):
        self.environ = environ or {}
        self._manifests: dict[tuple[str, str], dict[str, SecretStr]] = {}
        self._annotations: dict[tuple[str, str], dict[str, str]] = {}
        self._broken: dict[tuple[str, str], str] = {}

    def add(self, namespace: str, document: dict[str, Any], manifest: Manifest | None = None) -> None:
        metadata = document.get("metadata")
        name = str((metadata if isinstance(metadata, dict) else {}).get("name") or "")
        values: dict[str, SecretStr] = {}

        def broken(field: str, path: list[str], what: str) -> None:
            line = manifest.line(path) if manifest is not None else None
            where = f" ({manifest.where}{f', line {line}' if line else ''})" if manifest is not None else ""
            self._broken.setdefault((namespace, name), f"Secret {namespace}/{name}{where}: {field} {what}")

        for section in ("data", "stringData"):
            entries = document.get(section)
            if entries is not None and not isinstance(entries, dict):
                broken(section, [section], "is not a mapping of keys to values")
                continue
            for key, value in (entries or {}).items():
                if _encrypted(value):
                    continue
                if not isinstance(value, str):
                    broken(f"{section}.{key}", [section, key], "is not a string")
                elif section == "stringData":
                    values[str(key)] = SecretStr(value)
                else:
                    try:
                        values[str(key)] = SecretStr(base64.b64decode(value, validate=True).decode("utf-8", "replace"))
                    except (binascii.Error, ValueError):
                        broken(f"data.{key}", [section, key], "is not base64")
        self._manifests[(namespace, name)] = values
        annotations = (metadata if isinstance(metadata, dict) else {}).get("annotations")
        if isinstance(annotations, dict) and ANNOTATION in annotations:
            self._annotations[(namespace, name)] = {ANNOTATION: str(annotations[ANNOTATION])}

    def read(self, namespace: str, needed: list[NeededSecret]) -> dict[str, SecretData]:
        """Secret name → key → value for every needed key, like SecretReader.read; SecretError names what is
        missing and where it was looked for (never a value)."""
        result: dict[str, SecretData] = {}
        from_environment: set[str] = set()
        for item in needed:
            if (namespace, item.name) in self._broken:
                raise SecretError(Reason.SECRET_UNREADABLE, self._broken[(namespace, item.name)])
            values = result.setdefault(item.name, SecretData(self._manifests.get((namespace, item.name), {})))
            for key in item.keys + item.optional:
                if key not in values and environment_name(item.name, key) in self.environ:
                    values[key] = SecretStr(self.environ[environment_name(item.name, key)])
                    from_environment.add(item.name)
            missing = [k for k in item.keys if k not in values]
            if missing:
                where = (f"Secret {namespace}/{item.name} in the files has no key {', '.join(missing)}"
                         if (namespace, item.name) in self._manifests else
                         f"no Secret {namespace}/{item.name} in the files")
                variables = ", ".join(environment_name(item.name, k) for k in missing)
                raise SecretError(Reason.SECRET_NOT_FOUND,
                                  f"{item.path}: {where} and no {variables} in the environment")
        for name, values in result.items():
            if name in from_environment:
                variable = destinations_name(name)
                annotations = {ANNOTATION: self.environ[variable]} if variable in self.environ else None
            else:
                annotations = self._annotations.get((namespace, name))
            values.destinations = parse_destinations(namespace, name, annotations)
        return result
