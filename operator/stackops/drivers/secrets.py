"""Reading Secrets by reference (api/references.py finds them in a spec). Values are wrapped in pydantic's
SecretStr, whose repr and str hide them, so they cannot reach status, Events or logs by accident."""
from __future__ import annotations

import base64
import functools
from typing import Any

from pydantic import SecretStr

from ..api.references import NeededSecret
from ..destinations import ANNOTATION, NOWHERE, Destinations, DestinationsInvalid
from ..status import Reason, plain
from . import kube

PARSED_LISTS = 64  # distinct allow-lists kept parsed


class SecretError(Exception):
    """A referenced Secret or key is missing or unreadable. The message names them, never a value."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = plain(reason)  # a status.Reason member, kept as its plain string


class SecretData(dict[str, SecretStr]):
    """One Secret's keys and values, and where its credentials may be sent (its `stackops.io/allowed-destinations`
    annotation; none: nowhere a spec chooses)."""

    def __init__(self, values: dict[str, SecretStr] | None = None, destinations: Destinations = NOWHERE):
        super().__init__(values or {})
        self.destinations = destinations


@functools.lru_cache(maxsize=PARSED_LISTS)
def _parsed(text: str) -> Destinations:
    """Secrets are read on every pass: an allow-list naming hundreds of hosts is parsed once, not on each of them
    (bench/scale.py: 650 passes parsing the 500 addresses of one Secret, 2 ms each, made several MiB of the
    operator's peak memory in short-lived objects). Destinations is immutable; a list that does not parse is not
    kept."""
    return Destinations.parse(text)


def parse_destinations(namespace: str, name: str, annotations: dict[str, str] | None) -> Destinations:
    """The Secret's allow-list; SecretError `CredentialDestinationsInvalid` quoting the entry that does not parse."""
    text = (annotations or {}).get(ANNOTATION)
    if text is None:
        return NOWHERE
    try:
        return _parsed(str(text))
    except DestinationsInvalid as error:
        raise SecretError(Reason.CREDENTIAL_DESTINATIONS_INVALID,
                          f"Secret {namespace}/{name}: annotation {ANNOTATION}: {error}") from None


class SecretReader:
    """Reads Secrets from the resource's namespace with the Kubernetes client (verb `get` only)."""

    def __init__(self, core_api: Any):
        self._core = core_api

    async def read(self, namespace: str, needed: list[NeededSecret]) -> dict[str, SecretData]:
        """Secret name → key → value, for every needed key; raises SecretError naming what is missing."""
        result: dict[str, SecretData] = {}
        for item in needed:
            if item.name not in result:
                result[item.name] = await kube.call(self._read_one, namespace, item.name)
            missing = [k for k in item.keys if k not in result[item.name]]
            if missing:
                raise SecretError(Reason.SECRET_KEY_MISSING,
                                  f"Secret {namespace}/{item.name} ({item.path}) has no key {', '.join(missing)}")
        return result

    def _read_one(self, namespace: str, name: str) -> SecretData:
        from kubernetes.client.exceptions import ApiException

        try:
            secret = self._core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                raise SecretError(Reason.SECRET_NOT_FOUND, f"Secret {namespace}/{name} not found") from None
            if error.status == 403:
                raise SecretError(Reason.SECRET_FORBIDDEN, f"not allowed to read Secret {namespace}/{name}") from None
            raise SecretError(Reason.SECRET_UNREADABLE,
                              f"reading Secret {namespace}/{name} failed: HTTP {error.status}") from None
        values: dict[str, SecretStr] = {}
        for key, encoded in (secret.data or {}).items():
            values[key] = SecretStr(base64.b64decode(encoded).decode("utf-8", errors="replace"))
        for key, plain in (secret.string_data or {}).items():
            values[key] = SecretStr(plain)
        annotations = getattr(getattr(secret, "metadata", None), "annotations", None)
        return SecretData(values, parse_destinations(namespace, name, annotations))

