"""Credentials for `stackops plan`, without a cluster: Secret manifests found among the files, else environment
variables `STACKOPS_SECRET_<NAME>_<KEY>` (the Secret's name and the key upper-cased, every other character than
A-Z and 0-9 turned into `_`: Secret `cloudstack-api`, key `apiKey` → `STACKOPS_SECRET_CLOUDSTACK_API_APIKEY`).

A Secret manifest is matched by namespace and name, like the operator reads it; the environment is the way for a CI
job whose repository keeps Secrets sealed or encrypted (SOPS-encrypted values, `ENC[…]`, count as absent).
Values are SecretStr from the start: never printed."""
from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from pydantic import SecretStr

from .drivers.secrets import Needed, SecretError

PREFIX = "STACKOPS_SECRET_"


def _encrypted(value: object) -> bool:
    """A SOPS-encrypted value (`ENC[AES256_GCM,data:…]`): not a credential; the environment must provide it."""
    return isinstance(value, str) and value.startswith("ENC[") and value.endswith("]")


def environment_name(secret: str, key: str) -> str:
    return PREFIX + re.sub(r"[^A-Z0-9]", "_", f"{secret}_{key}".upper())


class ManifestSecrets:
    def __init__(self, environ: dict[str, str] | None = None):
        self.environ = environ or {}
        self._manifests: dict[tuple[str, str], dict[str, SecretStr]] = {}
        self._broken: dict[tuple[str, str], str] = {}

    def add(self, namespace: str, document: dict[str, Any]) -> None:
        name = str((document.get("metadata") or {}).get("name") or "")
        values: dict[str, SecretStr] = {}
        for key, encoded in (document.get("data") or {}).items():
            if _encrypted(encoded):
                continue
            try:
                values[str(key)] = SecretStr(base64.b64decode(str(encoded), validate=True).decode("utf-8", "replace"))
            except (binascii.Error, ValueError):
                self._broken[(namespace, name)] = f"Secret {namespace}/{name}: data.{key} is not base64"
        for key, plain in (document.get("stringData") or {}).items():
            if not _encrypted(plain):
                values[str(key)] = SecretStr(str(plain))
        self._manifests[(namespace, name)] = values

    def read(self, namespace: str, needed: list[Needed]) -> dict[str, dict[str, SecretStr]]:
        """Secret name → key → value for every needed key, like SecretReader.read; SecretError names what is
        missing and where it was looked for (never a value)."""
        result: dict[str, dict[str, SecretStr]] = {}
        for item in needed:
            if (namespace, item.name) in self._broken:
                raise SecretError("SecretUnreadable", self._broken[(namespace, item.name)])
            values = result.setdefault(item.name, dict(self._manifests.get((namespace, item.name), {})))
            for key in item.keys:
                if key not in values and environment_name(item.name, key) in self.environ:
                    values[key] = SecretStr(self.environ[environment_name(item.name, key)])
            missing = [k for k in item.keys if k not in values]
            if missing:
                where = (f"Secret {namespace}/{item.name} in the files has no key {', '.join(missing)}"
                         if (namespace, item.name) in self._manifests else
                         f"no Secret {namespace}/{item.name} in the files")
                variables = ", ".join(environment_name(item.name, k) for k in missing)
                raise SecretError("SecretNotFound", f"{item.path}: {where} and no {variables} in the environment")
        return result
