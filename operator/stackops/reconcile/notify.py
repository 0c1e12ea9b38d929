"""Webhook notices, shared by the kinds that warn before disruptive work (the SystemVMTemplate rollout's router
reboots, systemvmtemplate/notify.py; a XenPool's rolling host maintenance): `Notifier.post` sends one JSON notice,
the kind builds its payload.

The webhook URL comes from a Secret that whoever may write the object's namespace can set, and the operator posts
to it from inside the cluster: pointed at the operator's own loopback, at a link-local address or at a cloud
metadata service (169.254.169.254 and the like, which hand out the node's credentials), the notice would reach what
the URL's author could not. Such addresses are refused unless the spec says `notifications.allowLocalAddresses:
true`. The check is made on the addresses the host name resolves to when the notice is sent (and the connection
goes to exactly those: no second lookup for a rebinding name to change), and redirects are not followed.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from pydantic import SecretStr
from yarl import URL

from .. import status as st

# Cloud metadata services outside the link-local range (169.254.169.254 is inside it): AWS over IPv6, Alibaba.
METADATA = frozenset({ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")})
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # 0.0.0.0 reaches this host on Linux
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # an IPv4 address behind the well-known NAT64 prefix


class NotificationError(Exception):
    """The webhook did not accept a notice (the URL is never part of the message: it may carry a token)."""

    reason = st.Reason.NOTIFICATION_FAILED


class WebhookAddressNotAllowed(NotificationError):
    """The webhook's host is, or resolves to, a loopback, link-local, unspecified or cloud metadata address."""

    reason = st.Reason.WEBHOOK_ADDRESS_NOT_ALLOWED


def local_kind(address: str) -> str | None:
    """What makes `address` one the webhook may not reach without the opt-in ("loopback", …), or None. An IPv6
    address carrying an IPv4 one (mapped, NAT64) is judged by the IPv4 address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # fe80::1%eth0: the zone names an interface
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in METADATA:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local, where cloud metadata services answer"
    if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in THIS_NETWORK):
        return "this host"
    return None


def refuse_local(address: str) -> None:
    kind = local_kind(address)
    if kind is not None:
        raise WebhookAddressNotAllowed(f"the webhook's host is {address} ({kind}): not called unless "
                                       "notifications.allowLocalAddresses is true")


class CheckedResolver(AbstractResolver):
    """Resolves as aiohttp does, then refuses the whole answer if one address is local (refuse_local): the
    connection is made to the addresses checked here."""

    def __init__(self, inner: AbstractResolver | None = None):
        self._owned = inner is None
        self._inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        for answer in answers:
            refuse_local(answer["host"])
        return answers

    async def close(self) -> None:
        if self._owned:
            await self._inner.close()


def _literal_address(host: str) -> str | None:
    """The host as an IP address when it is one (aiohttp connects to those without asking the resolver)."""
    try:
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        return None


class Notifier:
    def __init__(self, url: SecretStr | None, *, timeout: float = 10.0, allow_local: bool = False,
                 resolver: AbstractResolver | None = None):
        self._url = url
        self._timeout = timeout
        self._allow_local = allow_local
        self._resolver = resolver  # the name lookup (tests); by default aiohttp's
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self._url is not None

    async def post(self, payload: dict[str, Any], what: str) -> None:
        """POST `payload` as JSON to the webhook (nothing without a URL). `what` names the notice in errors ("the
        before notice of host xen2"); the URL never appears in them. A 2xx answer counts it in `sent`; any other
        answer, a redirect, a refused address, no connection or the timeout raise NotificationError (or its
        WebhookAddressNotAllowed)."""
        if self._url is None:
            return
        try:
            url = URL(self._url.get_secret_value())
            literal = _literal_address(url.host or "")
            if literal is not None and not self._allow_local:
                refuse_local(literal)
            checked = None if self._allow_local else CheckedResolver(self._resolver)
            connector = aiohttp.TCPConnector(resolver=checked or self._resolver, use_dns_cache=False)
            try:
                async with aiohttp.ClientSession(connector=connector,
                                                 timeout=aiohttp.ClientTimeout(total=self._timeout)) as session:
                    async with session.post(url, json=payload, allow_redirects=False) as response:
                        if response.status >= 300:
                            raise NotificationError(f"webhook answered HTTP {response.status} to {what}" + (
                                " (redirects are not followed)" if response.status < 400 else ""))
            finally:
                if checked is not None:
                    await checked.close()
        except WebhookAddressNotAllowed as error:
            raise WebhookAddressNotAllowed(f"{error}; {what} was not sent") from None
        except (aiohttp.ClientError, ValueError) as error:
            raise NotificationError(f"webhook unreachable for {what}: {type(error).__name__}") from None
        except asyncio.TimeoutError:
            raise NotificationError(f"webhook timed out on {what}") from None
        self.sent += 1
