"""Where a credential may be sent: the allow-list a Secret carries in its annotation
`stackops.io/allowed-destinations`.

A spec names addresses (XenPool members, a KvmHost, a build host) and the operator sends the credentials of the
Secrets it references there. Whoever may write a spec but not read the Secret could otherwise point an address at a
machine of theirs and receive the XenServer password or have CloudStack log in there with a host password. So the
Secret — written by whoever holds the credential — says where it may go, and nothing is sent anywhere else.

The annotation's value lists entries separated by commas or white space:
- an IP address or a CIDR (`10.1.2.3`, `10.1.0.0/16`, `fd00:1::/64`): addresses in it;
- a host name (`xen1.example.com`), or a domain wildcard (`*.pool-a.example.com`: any name under it): names as
  written in the spec, compared without case and never resolved (so a DNS change cannot widen the list);
- a URL prefix (`https://cloudstack.example.com/client/`): URLs with the same scheme, host and port whose path
  starts with it at a `/` boundary.

A host destination (an address from the spec) matches address, CIDR and name entries; a URL destination (a
CloudStack endpoint that receives a host's password) matches URL prefixes and the address, CIDR and name entries of
its host. Entries are not secret: error messages quote them."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urlsplit

ANNOTATION = "stackops.io/allowed-destinations"

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_WILDCARD = re.compile(rf"^\*\.({_LABEL}(?:\.{_LABEL})*)\.?$")
_DEFAULT_PORTS = {"http": 80, "https": 443}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DestinationsInvalid(ValueError):
    """The annotation holds an entry that is none of the accepted forms; the message quotes it."""


@dataclass(frozen=True)
class _URLPrefix:
    scheme: str
    host: str
    port: int
    path: str  # "" or a path without a trailing slash

    def matches(self, scheme: str, host: str, port: int, path: str) -> bool:
        if (scheme, host, port) != (self.scheme, self.host, self.port):
            return False
        return not self.path or path == self.path or path.startswith(self.path + "/")


def _host_key(host: str) -> str:
    return host.strip().strip("[]").lower().rstrip(".")


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(_host_key(host))
    except ValueError:
        return None


def _split_url(url: str) -> tuple[str, str, int, str] | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, _host_key(parts.hostname), port or _DEFAULT_PORTS[scheme], parts.path.rstrip("/")


@dataclass(frozen=True)
class Destinations:
    """A parsed allow-list. Empty: the Secret's credentials go nowhere chosen by a spec."""

    networks: tuple[Network, ...] = ()
    names: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()  # from `*.<domain>` entries
    urls: tuple[_URLPrefix, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Destinations":
        networks: list[Network] = []
        names: list[str] = []
        domains: list[str] = []
        urls: list[_URLPrefix] = []
        for entry in (e for e in re.split(r"[\s,]+", text.strip()) if e):
            if "://" in entry:
                split = _split_url(entry)
                if split is None or "?" in entry or "#" in entry or "@" in entry:
                    raise DestinationsInvalid(f"{entry!r} is not an http(s) URL prefix (scheme, host, optional port "
                                              "and path; no user, query or fragment)")
                urls.append(_URLPrefix(*split))
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=True))
                continue
            except ValueError as error:
                if "/" in entry:
                    raise DestinationsInvalid(f"{entry!r} is not a CIDR ({error})") from None
            wildcard = _WILDCARD.match(entry.lower())
            if wildcard:
                domains.append(wildcard.group(1).rstrip("."))
            elif _NAME.match(entry.lower()):
                names.append(_host_key(entry))
            else:
                raise DestinationsInvalid(f"{entry!r} is not an address, a CIDR, a host name, *.<domain> or a URL "
                                          "prefix")
        return cls(tuple(networks), tuple(names), tuple(domains), tuple(urls))

    def __bool__(self) -> bool:
        return bool(self.networks or self.names or self.domains or self.urls)

    def allows_host(self, host: str) -> bool:
        """An address as the spec writes it (a name or an IP literal)."""
        address = _address(host)
        if address is not None:
            return any(address in network for network in self.networks)
        name = _host_key(host)
        return name in self.names or any(name.endswith("." + domain) for domain in self.domains)

    def allows_url(self, url: str) -> bool:
        split = _split_url(url)
        if split is None:
            return False
        return any(prefix.matches(*split) for prefix in self.urls) or self.allows_host(split[1])

    def allows(self, destination: str) -> bool:
        """A URL (`scheme://…`) or a host address."""
        return self.allows_url(destination) if "://" in destination else self.allows_host(destination)

    def refused(self, destinations: Iterable[str]) -> list[str]:
        """The destinations this list does not allow, in order, without repeats."""
        seen: dict[str, None] = {}
        for destination in destinations:
            if not self.allows(destination):
                seen.setdefault(destination, None)
        return list(seen)


NOWHERE = Destinations()


def safe_destination(destination: str) -> str:
    """A destination as messages show it: a URL without user, query or fragment (a URL from a Secret may carry
    them), an address as written."""
    if "://" not in destination:
        return destination
    try:
        parts = urlsplit(destination)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unparsable URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}{parts.path}"
