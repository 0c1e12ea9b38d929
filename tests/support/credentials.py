"""Secrets for tests that build a Context by hand: values and the destinations their annotation allows."""
from __future__ import annotations

from pydantic import SecretStr

from stackops.destinations import Destinations
from stackops.drivers.secrets import SecretData


def secret(values: dict[str, str | SecretStr], *allowed: str) -> SecretData:
    """A Secret's values (plain or SecretStr) whose `stackops.io/allowed-destinations` lists `allowed`."""
    return SecretData({k: v if isinstance(v, SecretStr) else SecretStr(v) for k, v in values.items()},
                      Destinations.parse(" ".join(allowed)))
