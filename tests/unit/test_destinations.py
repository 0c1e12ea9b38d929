"""Where a credential may go (`stackops.io/allowed-destinations`): the forms an entry takes, how a spec's address or
a URL matches them, and that a Context hands out a credential only for destinations its Secret lists."""
from __future__ import annotations

import logging

import pytest
from support.credentials import secret
from pydantic import SecretStr

from stackops.destinations import Destinations, DestinationsInvalid, safe_destination
from stackops.drivers.secrets import SecretData, SecretError, parse_destinations
from stackops.reconcile.base import Context, CredentialNotAllowed

LIST = Destinations.parse("10.1.0.0/16, 192.0.2.7 xen1.example.com\n*.pool-a.example.com, fd00:1::/64, "
                          "https://cloud.example.com/client/ http://lab.example:8080")


@pytest.mark.parametrize("host", ["10.1.2.3", "192.0.2.7", "xen1.example.com", "XEN1.Example.com.",
                                  "h7.pool-a.example.com", "a.b.pool-a.example.com", "fd00:1::5", "[fd00:1::5]"])
def test_listed_hosts_are_allowed(host: str) -> None:
    assert LIST.allows(host)


@pytest.mark.parametrize("host", ["10.2.0.1", "192.0.2.8", "xen2.example.com", "pool-a.example.com",
                                  "evilpool-a.example.com", "xen1.example.com.evil.org", "fd00:2::1",
                                  "cloud.example.com", "127.0.0.1", ""])
def test_other_hosts_are_not(host: str) -> None:
    assert not LIST.allows(host)


def test_names_are_never_resolved_to_match_a_cidr() -> None:
    """`localhost` resolves into 127.0.0.0/8, but a name matches name entries only: a DNS change cannot widen it."""
    assert not Destinations.parse("127.0.0.0/8").allows("localhost")


@pytest.mark.parametrize("url", ["https://cloud.example.com/client/api", "https://cloud.example.com:443/client/",
                                 "https://CLOUD.example.com/client", "http://lab.example:8080/anything",
                                 "https://10.1.9.9:8443/client/api",  # its host is in 10.1.0.0/16
                                 "http://xen1.example.com"])
def test_urls_match_prefixes_and_listed_hosts(url: str) -> None:
    assert LIST.allows(url)


@pytest.mark.parametrize("url", ["http://cloud.example.com/client/api",  # another scheme
                                 "https://cloud.example.com:8443/client/api",  # another port
                                 "https://cloud.example.com/clientx/api",  # not at a / boundary
                                 "https://cloud.example.com/", "http://lab.example/", "ftp://xen1.example.com/",
                                 "https://evil.org/client/api"])
def test_other_urls_are_not(url: str) -> None:
    assert not LIST.allows(url)


@pytest.mark.parametrize("entry", ["10.0.0.1/8", "10.0.0.0/33", "not a host!", "https://user@cloud.example.com/",
                                   "https://cloud.example.com/?x=1", "ftp://files.example.com/", "*", "*.",
                                   "a..b"])
def test_an_entry_that_is_no_known_form_is_refused_and_quoted(entry: str) -> None:
    with pytest.raises(DestinationsInvalid) as refused:
        Destinations.parse(f"10.9.0.0/16, {entry}")
    assert entry.split()[0] in str(refused.value)


def test_an_empty_list_allows_nothing() -> None:
    assert not Destinations.parse("  ,  ") and not Destinations.parse("").allows("10.0.0.1")


def test_a_secret_annotation_is_parsed_and_a_bad_one_names_the_secret() -> None:
    assert parse_destinations("ns", "s", {"stackops.io/allowed-destinations": "10.0.0.1"}).allows("10.0.0.1")
    assert not parse_destinations("ns", "s", None)
    with pytest.raises(SecretError) as bad:
        parse_destinations("ns", "xen-root", {"stackops.io/allowed-destinations": "10.0.0.1, ~x"})
    assert bad.value.reason == "CredentialDestinationsInvalid" and "ns/xen-root" in str(bad.value)


def test_messages_show_urls_without_what_a_url_may_hide() -> None:
    assert safe_destination("https://u:pw@cloud.example.com:8443/client/api?apikey=K#f") == \
        "https://cloud.example.com:8443/client/api"
    assert safe_destination("10.0.0.1") == "10.0.0.1"


def context(secrets: dict) -> Context:
    return Context(namespace="ns", name="pool", generation=1, spec=None, status={}, secrets=secrets,  # type: ignore[arg-type]
                   event=lambda *e: None, logger=logging.getLogger("test"))


def test_a_context_hands_out_a_credential_only_where_its_secret_allows() -> None:
    ctx = context({"root": secret({"password": "pw"}, "10.0.0.0/24"),
                   "bare": SecretData({"password": SecretStr("pw")}),  # no annotation
                   "plain": {"password": SecretStr("pw")}})
    assert ctx.credential("root", "password", to=["10.0.0.1", "10.0.0.2"], what="login").get_secret_value() == "pw"
    with pytest.raises(CredentialNotAllowed) as refused:
        ctx.credential("root", "password", to=["10.0.0.1", "10.0.9.9", "10.0.9.9"], what="the XenAPI login")
    error = refused.value
    assert (error.reason, error.retry, error.refused) == ("CredentialNotAllowed", False, ["10.0.9.9"])
    assert "ns/root" in str(error) and "the XenAPI login" in str(error) and "pw" not in str(error)
    for name in ("bare", "plain"):  # without the annotation a credential goes nowhere a spec chooses
        with pytest.raises(CredentialNotAllowed):
            ctx.credential(name, "password", to=["10.0.0.1"], what="login")
    assert ctx.secret("bare", "password").get_secret_value() == "pw"  # what goes nowhere needs no list


def test_a_refused_url_is_shown_by_the_words_given_never_by_the_url() -> None:
    ctx = context({"root": secret({"password": "pw"}, "10.0.0.1")})
    with pytest.raises(CredentialNotAllowed) as refused:
        ctx.credential("root", "password", what="addHost in CloudStack",
                       to={"https://cs.example.com/client/api?k=SECRET": "the CloudStack url of Secret ns/cs",
                           "10.0.0.1": "10.0.0.1"})
    assert "the CloudStack url of Secret ns/cs" in str(refused.value) and "SECRET" not in str(refused.value)


def test_the_secret_reader_takes_the_list_from_the_secrets_annotation() -> None:
    import asyncio
    import base64

    from kubernetes.client import V1ObjectMeta, V1Secret

    from stackops.api.references import NeededSecret
    from stackops.drivers.secrets import SecretReader

    class Core:
        def read_namespaced_secret(self, name: str, namespace: str) -> V1Secret:
            annotations = {"stackops.io/allowed-destinations": "10.0.0.0/24"} if name == "listed" else None
            return V1Secret(metadata=V1ObjectMeta(name=name, namespace=namespace, annotations=annotations),
                            data={"password": base64.b64encode(b"pw").decode()})

    values = asyncio.run(SecretReader(Core()).read("ns", [NeededSecret("spec.a", "listed", ("password",)),
                                                          NeededSecret("spec.b", "bare", ("password",))]))
    assert values["listed"].destinations.allows("10.0.0.9") and not values["listed"].destinations.allows("10.0.1.9")
    assert not values["bare"].destinations
