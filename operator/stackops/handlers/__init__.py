"""kopf wiring: settings and the handlers of the four kinds."""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any

import kopf

from ..api.kinds import KINDS
from .peering import CRD_RETRY_SECONDS, peering_check, prepare
from .resources import Deps, register, resync_object
from .resync import Resync
from .settings import PEERING_NAME, configure

API_REQUESTS = 16  # kopf's requests to the API server at once (patches, Events, lists), besides its watch streams


def api_session(info: kopf.ConnectionInfo, namespaces: Sequence[str] = ()) -> kopf.AiohttpSession:
    """kopf's API session for `info`, made as kopf makes it but with a bounded connection pool: one connection per
    watch stream (each kind and the peering, in each watched namespace or cluster-wide) and `API_REQUESTS` more.
    kopf's own pool has no bound: with hundreds of objects reconciled at once it kept one TLS connection (and its
    256 KiB read buffer) per request in flight, about 150 connections and 45 MiB in bench/scale.py. Requests beyond
    the bound wait for a connection (within settings.networking.request_timeout)."""
    import aiohttp

    streams = (len(KINDS) + 1) * max(1, len(namespaces))
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=streams + API_REQUESTS, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(), proxy=info.proxy_url, trust_env=info.trust_env)
    return kopf.AiohttpSession(server=info.server, default_namespace=info.default_namespace, priority=info.priority,
                               expiration=info.expiration, aiohttp_session=session)


def build(deps: Deps, *, standalone: bool = False, custom_api: Any = None, namespaces: Sequence[str] = (),
          identity: str | None = None) -> tuple[kopf.OperatorRegistry, kopf.OperatorSettings]:
    """A registry with every handler and production settings, ready for `kopf.run` (with the same `identity`).

    `namespaces`: the namespaces watched (`stackops run --namespace`), empty for all of them. With `custom_api`,
    objects are resynced (handlers/resync.py), pausing while kopf's peering pauses the operator."""
    registry = kopf.OperatorRegistry()
    settings = kopf.OperatorSettings()

    @kopf.on.login(registry=registry, id="login")
    async def login(**kwargs: Any) -> Any:
        """In-cluster ServiceAccount, else KUBECONFIG / ~/.kube/config (through the kubernetes client), in a session
        with a bounded connection pool (`api_session`)."""
        info = await asyncio.to_thread(kopf.login_via_client, **kwargs)  # reads files: not in the event loop
        return None if info is None else api_session(info, namespaces)

    if custom_api is not None:
        if not identity:  # one made here would not be kopf's: its own keep-alive would look like a rival peer
            raise ValueError("build() with custom_api needs the identity kopf.run is given")
        deps.resync = deps.resync or Resync()
        resync = deps.resync
        peering_name = None if standalone else PEERING_NAME
        may_act = peering_check(custom_api, peering_name, namespaces, identity,
                                lambda: settings.peering.priority)

        @kopf.on.startup(registry=registry, id="prepare", retries=None, backoff=CRD_RETRY_SECONDS)
        async def wait_for_crds_and_peering(logger: Any, **_: Any) -> None:
            await prepare(custom_api, peering_name, logger, namespaces)

        @kopf.on.startup(registry=registry, id="resync")
        async def start_resync(settings: kopf.OperatorSettings, **_: Any) -> None:
            resync.start(functools.partial(resync_object, deps=deps, settings=settings), may_act)

        @kopf.on.cleanup(registry=registry, id="resync")
        async def stop_resync(**_: Any) -> None:
            await resync.stop()
    register(registry, deps)
    configure(settings, standalone=standalone, namespaced=bool(namespaces))
    return registry, settings


__all__ = ["Deps", "build"]
