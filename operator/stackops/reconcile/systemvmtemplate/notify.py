"""Tenant notices: the webhook the seeds' operators replaced by hand-written mails, called before and after each
router reboot with JSON (router, routerId, network, account, domain, zone, phase and what the caller adds). The
sending, the refusal of local addresses and the errors are the shared notifier's (reconcile/notify.py)."""
from __future__ import annotations

from typing import Any

from ..notify import Notifier
from .observed import Router


def router_payload(router: Router, zone: str, phase: str, **extra: Any) -> dict[str, Any]:
    return {"router": router.name, "routerId": router.id, "network": router.network, "account": router.account,
            "domain": router.domain, "zone": zone, "phase": phase, **extra}


class RouterNotifier(Notifier):
    async def send(self, router: Router, zone: str, phase: str, **extra: Any) -> None:
        """The `phase` ("before", "after") notice of a router's reboot."""
        await self.post(router_payload(router, zone, phase, **extra), f"the {phase} notice of router {router.name}")
