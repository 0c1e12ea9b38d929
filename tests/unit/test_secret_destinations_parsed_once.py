"""A Secret's allow-list is parsed once per distinct text, not on every read (Secrets are read on every pass; one
listing hundreds of hosts cost 2 ms and hundreds of short-lived objects each time); a list that does not parse
is refused on every read."""
from __future__ import annotations

import pytest

from stackops.destinations import ANNOTATION, Destinations
from stackops.drivers import secrets
from stackops.drivers.secrets import SecretError, parse_destinations


def test_the_same_allow_list_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets._parsed.cache_clear()
    parsed: list[str] = []
    original = Destinations.parse.__func__

    def counting(cls, text: str) -> Destinations:
        parsed.append(text)
        return original(cls, text)

    monkeypatch.setattr(Destinations, "parse", classmethod(counting))
    hosts = ", ".join(f"10.251.0.{n}" for n in range(10, 210))
    first = parse_destinations("ops", "ssh", {ANNOTATION: hosts})
    again = parse_destinations("ops", "ssh", {ANNOTATION: hosts})
    assert first is again and first.allows("10.251.0.42") and not first.allows("10.251.0.9")
    assert parsed == [hosts]
    other = parse_destinations("ops", "other", {ANNOTATION: "10.0.0.1"})
    assert other.allows("10.0.0.1") and parsed == [hosts, "10.0.0.1"]

    for _ in range(2):
        with pytest.raises(SecretError):
            parse_destinations("ops", "bad", {ANNOTATION: "not a destination!"})
    assert parsed[2:] == ["not a destination!", "not a destination!"]
    secrets._parsed.cache_clear()
