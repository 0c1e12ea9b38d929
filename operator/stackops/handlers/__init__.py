"""kopf wiring: settings and the handlers of the four kinds."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import kopf

from .peering import CRD_RETRY_SECONDS, prepare
from .resources import Deps, register
from .settings import PEERING_NAME, configure


def build(deps: Deps, *, standalone: bool = False, custom_api: Any = None,
          namespaces: Sequence[str] = ()) -> tuple[kopf.OperatorRegistry, kopf.OperatorSettings]:
    """A registry with every handler and production settings, ready for `kopf.run`.

    `namespaces`: the namespaces watched (`stackops run --namespace`), empty for all of them."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry, id="login")
    def login(**kwargs: Any) -> Any:
        """In-cluster ServiceAccount, else KUBECONFIG / ~/.kube/config (through the kubernetes client)."""
        return kopf.login_via_client(**kwargs)

    register(registry, deps)
    if custom_api is not None:
        @kopf.on.startup(registry=registry, id="prepare", retries=None, backoff=CRD_RETRY_SECONDS)
        async def wait_for_crds_and_peering(logger: Any, **_: Any) -> None:
            await prepare(custom_api, None if standalone else PEERING_NAME, logger, namespaces)
    settings = kopf.OperatorSettings()
    configure(settings, standalone=standalone, namespaced=bool(namespaces))
    return registry, settings


__all__ = ["Deps", "build"]
