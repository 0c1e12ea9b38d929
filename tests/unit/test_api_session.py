"""kopf's connections to the API server are bounded: one per watch stream and `API_REQUESTS` more, whatever the
number of objects reconciled at once (kopf's own session has no bound: bench/scale.py saw about 150 TLS
connections, 45 MiB, at 650 objects)."""
from __future__ import annotations

import asyncio

import kopf

from stackops.api.kinds import KINDS
from stackops.handlers import API_REQUESTS, api_session


def limits(namespaces: list[str]) -> tuple[int, dict[str, str], str]:
    async def made() -> tuple[int, dict[str, str], str]:
        info = kopf.ConnectionInfo(server="https://127.0.0.1:6443", scheme="Bearer", token="t0k3n", insecure=True,
                                   default_namespace="ops")
        context = api_session(info, namespaces)
        try:
            assert isinstance(context, kopf.AiohttpSession)
            assert (context.server, context.default_namespace) == ("https://127.0.0.1:6443", "ops")
            session = context.aiohttp_session
            return session.connector.limit, dict(session.headers), str(type(session.connector).__name__)
        finally:
            await context.aiohttp_session.close()

    return asyncio.run(made())


def test_one_connection_per_watch_stream_and_a_bounded_number_for_requests() -> None:
    limit, headers, connector = limits([])
    assert limit == len(KINDS) + 1 + API_REQUESTS  # each kind's watch, the peering's, the requests
    assert headers["Authorization"] == "Bearer t0k3n"
    assert connector == "TCPConnector"


def test_each_watched_namespace_has_its_streams() -> None:
    limit, _, _ = limits(["team-a", "team-b", "team-c"])
    assert limit == 3 * (len(KINDS) + 1) + API_REQUESTS
