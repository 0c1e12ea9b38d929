"""Tenant notices: the webhook the seeds' operators replaced by hand-written mails, called before and after each
router reboot with JSON (router, network, account, domain, zone, phase)."""
from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from pydantic import SecretStr

from .observed import Router


class NotificationError(Exception):
    """The webhook did not accept a notice (the URL is never part of the message: it may carry a token)."""


class Notifier:
    def __init__(self, url: SecretStr | None, *, timeout: float = 10.0):
        self._url = url
        self._timeout = timeout
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self._url is not None

    async def send(self, router: Router, zone: str, phase: str, **extra: Any) -> None:
        if self._url is None:
            return
        payload = {"router": router.name, "routerId": router.id, "network": router.network, "account": router.account,
                   "domain": router.domain, "zone": zone, "phase": phase, **extra}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout)) as session:
                async with session.post(self._url.get_secret_value(), json=payload) as response:
                    if response.status >= 300:
                        raise NotificationError(f"webhook answered HTTP {response.status} to the {phase} notice "
                                                f"of router {router.name}")
        except aiohttp.ClientError as error:
            raise NotificationError(f"webhook unreachable for the {phase} notice of router {router.name}: "
                                    f"{type(error).__name__}") from None
        except asyncio.TimeoutError:
            raise NotificationError(f"webhook timed out on the {phase} notice of router {router.name}") from None
        self.sent += 1
