"""Version strings as CloudStack reads and compares them for system VM templates and routers."""

from __future__ import annotations

import functools
import re

UNKNOWN = "UNKNOWN"
_VERSION = re.compile(r"\d+\.\d+(?:\.\d+)*")


def template_version(name: str, url: str | None) -> str:
    """The version a router booted from a template reports: the first `\\d+.\\d+(.\\d+)*` in the template's name,
    else in its URL, else UNKNOWN (the simulator's stand-in for the version file inside the image)."""
    for text in (name, url or ""):
        match = _VERSION.search(text)
        if match:
            return match.group(0)
    return UNKNOWN


@functools.lru_cache(maxsize=256)
def parts(version: str) -> tuple[int, ...] | None:
    match = _VERSION.fullmatch(version.split("-", 1)[0].strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else None


def compare(left: str, right: str) -> int:
    """CloudStackVersion.compareTo: numeric, part by part, shorter versions padded with zeros
    (4.18.0 == 4.18.0.0 < 4.18.0.1). Unparsable versions sort lowest."""
    a, b = parts(left), parts(right)
    if a is None or b is None:
        return (a is not None) - (b is not None)
    width = max(len(a), len(b))
    a += (0,) * (width - len(a))
    b += (0,) * (width - len(b))
    return (a > b) - (a < b)


def requires_upgrade(version: str | None, minimum: str) -> bool:
    """DomainRouterJoinDaoImpl: no recorded version → UNKNOWN and requires upgrade; else version < minreq."""
    if not version or version == UNKNOWN:
        return True
    return compare(version, minimum) < 0
