"""kopf wiring: settings and the handlers of the four kinds."""
from __future__ import annotations

import kopf

from .resources import Deps, register
from .settings import configure


def build(deps: Deps, *, standalone: bool = False) -> tuple[kopf.OperatorRegistry, kopf.OperatorSettings]:
    """A registry with every handler and production settings, ready for `kopf.run`."""
    registry = kopf.OperatorRegistry()
    register(registry, deps)
    settings = kopf.OperatorSettings()
    configure(settings, standalone=standalone)
    return registry, settings


__all__ = ["Deps", "build"]
