"""The Secrets and ConfigMaps a spec references: found by walking the spec's models, with the keys each use needs
and the field path messages name (`spec.ssh.privateKeySecretRef`). The readers (drivers/secrets.py,
drivers/configmaps.py, and `stackops plan`'s from the manifests) take these plain values, never a spec."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from pydantic import BaseModel

from .common import ConfigMapKeySelector, SecretKeySelector, SecretReference


@dataclass(frozen=True)
class NeededSecret:
    """One Secret the spec references, the keys it must hold and those read when present."""

    path: str
    name: str
    keys: tuple[str, ...]
    optional: tuple[str, ...] = ()


@dataclass(frozen=True)
class NeededConfigMap:
    """One ConfigMap the spec references and the keys it must hold."""

    path: str
    name: str
    keys: tuple[str, ...]


def needed_secrets(spec: BaseModel, path: str = "spec") -> Iterator[NeededSecret]:
    """Every Secret reference in a spec, with the keys its use requires."""
    for found, where in _references(spec, path, (SecretKeySelector, SecretReference)):
        if isinstance(found, SecretKeySelector):
            yield NeededSecret(where, found.name, (found.key,))
        elif isinstance(found, SecretReference):
            yield NeededSecret(where, found.name, found.required_keys, found.optional_keys)


def needed_config_maps(spec: BaseModel, path: str = "spec") -> Iterator[NeededConfigMap]:
    """Every ConfigMap reference in a spec, with the key it names."""
    for found, where in _references(spec, path, (ConfigMapKeySelector,)):
        if isinstance(found, ConfigMapKeySelector):
            yield NeededConfigMap(where, found.name, (found.key,))


def _references(model: BaseModel, path: str, types: tuple[type[BaseModel], ...]) -> Iterator[tuple[BaseModel, str]]:
    """The models of `types` in `model` (itself included), depth first in field order, each with its path in the
    YAML's camelCase (`spec.members[0].credentialsSecretRef`); one found is not looked into."""
    if isinstance(model, types):
        yield model, path
        return
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        alias = field.alias or name
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if isinstance(item, BaseModel):
                suffix = f"[{index}]" if isinstance(value, list) else ""
                yield from _references(item, f"{path}.{alias}{suffix}", types)
