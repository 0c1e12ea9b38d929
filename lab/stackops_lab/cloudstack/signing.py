"""Request signing as ApiServer.verifyRequest() checks it.

- every parameter except `signature` (compared case-insensitively), sorted by name (Java String order),
  joined as `name=URLEncoder.encode(value, "UTF-8")` with `+` replaced by `%20`, joined with `&`;
- the whole string lowercased, HMAC-SHA1 with the secret key, Base64;
- with `signatureVersion=3` an `expires` parameter is required, must parse (DateUtil.parseTZDateString:
  `yyyy-MM-dd'T'HH:mm:ssZ`, falling back to `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'` in GMT) and must not lie in the past.

Java's URLEncoder leaves only `A-Z a-z 0-9 . - * _` unencoded (a space becomes `+`, then `%20`); unlike
Python's quote() it encodes `~` — a client that leaves `~` bare is refused by CloudStack, and here too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

_JAVA_SAFE = "*"  # plus quote()'s own always-safe set, minus "~" (handled below)
_TZ_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})([+-])(\d{2}):?(\d{2})$")
_MILLIS_Z = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z$")


def java_url_encode(value: str) -> str:
    """URLEncoder.encode(value, "UTF-8").replaceAll("\\\\+", "%20")."""
    return quote(value, safe=_JAVA_SAFE).replace("~", "%7E")


def unsigned_request(params: Mapping[str, str]) -> str:
    """The string CloudStack signs (before lowercasing)."""
    names = sorted(name for name in params if name.lower() != "signature")
    return "&".join(f"{name}={java_url_encode(params[name])}" for name in names)


def signature(params: Mapping[str, str], secret: str) -> str:
    digest = hmac.new(secret.encode(), unsigned_request(params).lower().encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def parse_expires(value: str) -> datetime | None:
    """DateUtil.parseTZDateString: an ISO-8601 time with a numeric offset, or UTC with milliseconds and 'Z'."""
    match = _TZ_DATE.match(value)
    if match:
        year, month, day, hour, minute, second, sign, off_h, off_m = match.groups()
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        try:
            naive = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
        except ValueError:
            return None
        return naive.replace(tzinfo=timezone(offset if sign == "+" else -offset))
    match = _MILLIS_Z.match(value)
    if match:
        year, month, day, hour, minute, second, millis = (int(part) for part in match.groups())
        try:
            return datetime(year, month, day, hour, minute, second, millis * 1000, tzinfo=timezone.utc)
        except ValueError:
            return None
    return None


def find(params: Mapping[str, str], name: str) -> str | None:
    """The first parameter whose name equals `name` ignoring case (as verifyRequest matches apiKey etc.)."""
    for key, value in params.items():
        if key.lower() == name.lower():
            return value
    return None


def verify(params: Mapping[str, str], secret: str, now: datetime | None = None) -> bool:
    """True when the request is signed with `secret` and, for signatureVersion 3, not expired."""
    given = find(params, "signature")
    if given is None:
        return False
    if find(params, "signatureVersion") == "3":
        expires_text = find(params, "expires")
        if expires_text is None:
            return False
        expires = parse_expires(expires_text)
        if expires is None or expires < (now or datetime.now(timezone.utc)):
            return False
    return hmac.compare_digest(given.encode(), signature(params, secret).encode())
