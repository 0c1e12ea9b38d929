"""What the CloudStack driver sends, and where: a request that carries a credential goes as a POST (a form body, so
the password never reaches a URL, nor proxy and access logs); a CloudStack URL that is not https is refused unless
the Secret opts in; a command or parameter the management server's version lacks is refused before it is sent.

`cs.AIOCloudStack` is replaced by a recorder: these tests see what the driver asked `cs` to send, and how."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from pydantic import SecretStr

from stackops.api.kvmhost import CloudStackHost
from stackops.api.xenpool import CloudStackCluster
from stackops.drivers import cloudstack as driver
from stackops.reconcile import cloudstack
from stackops.reconcile.base import Context, ReconcileError

SECRET = "cloudstack-api"


class Recorder:
    """Stands in for cs.AIOCloudStack: records each command with the HTTP method of the client it went through."""

    sent: list[tuple[str, str, dict[str, Any]]] = []
    version = "4.19.1.0"

    def __init__(self, *, method: str = "get", **_: Any):
        self.method = method

    async def __aenter__(self) -> Recorder:
        return self

    async def close(self) -> None:
        pass

    def __getattr__(self, command: str) -> Any:
        async def send(fetch_list: bool = False, **params: Any) -> Any:
            Recorder.sent.append((command, self.method, params))
            if command == "listCapabilities":
                return {"capability": {"cloudstackversion": Recorder.version}}
            return [] if fetch_list else {}
        return send


@pytest.fixture(autouse=True)
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[Recorder]:
    Recorder.sent = []
    Recorder.version = "4.19.1.0"
    monkeypatch.setattr(driver, "AIOCloudStack", Recorder)
    return Recorder


def client(**options: Any) -> driver.CloudStackClient:
    return driver.CloudStackPool().get("https://cloud.example.com/client/api", "key", SecretStr("secret"), **options)


def sent(command: str) -> list[tuple[str, dict[str, Any]]]:
    return [(method, params) for name, method, params in Recorder.sent if name == command]


# ------------------------------------------------------------------ item 4: passwords never in a URL

def test_a_request_with_a_password_goes_as_a_post_and_the_others_as_gets() -> None:
    async def go() -> None:
        api = client()
        await api.list("listHosts", type="Routing")
        await api.call("addHost", zoneid="z", podid="p", clusterid="c", hypervisor="KVM", url="http://10.0.0.7",
                       username="root", password=SecretStr("kvm-root-pw"))
        await api.call("addHost", zoneid="z", podid="p", clusterid="c", hypervisor="XenServer",
                       url="http://10.0.0.8", username="root", password="xen-root-pw")  # a plain str, by its name

    asyncio.run(go())
    assert [method for method, _ in sent("listHosts")] == ["get"]
    kvm, xen = sent("addHost")
    assert kvm == ("post", {"zoneid": "z", "podid": "p", "clusterid": "c", "hypervisor": "KVM",
                            "url": "http://10.0.0.7", "username": "root", "password": "kvm-root-pw"})
    assert xen[0] == "post" and xen[1]["password"] == "xen-root-pw"


def test_carries_secret_names_every_credential() -> None:
    assert driver.carries_secret({"password": "x"}) and driver.carries_secret({"PASSWORD": "x"})
    assert driver.carries_secret({"anything": SecretStr("x")})
    assert not driver.carries_secret({"id": "x", "url": "http://10.0.0.7", "username": "root"})


def context(values: dict[str, str]) -> Context:
    return Context(namespace="team-a", name="example", generation=1, spec=None, status={},  # type: ignore[arg-type]
                   secrets={SECRET: {key: SecretStr(value) for key, value in values.items()}},
                   event=lambda *_: None, logger=logging.getLogger("test"))


KEYS = {"apiKey": "key", "secretKey": "secret"}
HOST = CloudStackHost.model_validate({"connection": {"secretRef": {"name": SECRET}}, "zone": "z", "pod": "p",
                                      "cluster": "c"})
POOL = CloudStackCluster.model_validate({"connection": {"secretRef": {"name": SECRET}}, "zone": "z", "pod": "p",
                                         "cluster": "c"})
OPENERS = {  # as each kind opens its client: KvmHost and XenPool registration report a Registered condition
    "KvmHost": lambda pool, ctx: cloudstack.client_for(pool, ctx, HOST.connection.secret_ref.name,
                                                       condition="Registered"),
    "XenPool": lambda pool, ctx: cloudstack.client_for(pool, ctx, POOL.connection.secret_ref.name,
                                                       condition="Registered"),
    "SystemVMTemplate": lambda pool, ctx: cloudstack.client_for(pool, ctx, SECRET),
}


@pytest.mark.parametrize("kind", sorted(OPENERS))
@pytest.mark.parametrize("url,consent", [("http://10.0.0.5:8080/client/api", None),
                                         ("http://10.0.0.5:8080/client/api", "false"),
                                         ("HTTP://10.0.0.5:8080/client/api", "yes"),
                                         ("ftp://10.0.0.5/client/api", "true"),
                                         ("10.0.0.5:8080/client/api", "true"),
                                         ("cloud.10.0.0.5.example:8080/client/api", "true")])
def test_a_url_that_is_not_https_is_refused_without_the_secrets_consent(kind: str, url: str,
                                                                       consent: str | None) -> None:
    values = {"url": url, **KEYS}
    if consent is not None:
        values["allowPlainHTTP"] = consent
    with pytest.raises(ReconcileError) as refused:
        OPENERS[kind](driver.CloudStackPool(), context(values))
    error = refused.value
    assert (error.reason, error.retry) == ("InsecureEndpoint", False)  # Stalled: a person must act
    assert f"Secret team-a/{SECRET}" in str(error) and "allowPlainHTTP" in str(error)
    assert "10.0.0.5" not in str(error), "the URL is the Secret's: never in status"
    if kind != "SystemVMTemplate":
        assert [(c.type, c.status, c.reason) for c in error.conditions] == [("Registered", "False", "InsecureEndpoint")]


@pytest.mark.parametrize("kind", sorted(OPENERS))
@pytest.mark.parametrize("url,consent", [("https://cloud.example.com/client/api", None),
                                         ("http://10.0.0.5:8080/client/api", "true"),
                                         ("http://10.0.0.5:8080/client/api", " True ")])
def test_https_or_plain_http_with_consent_is_used(kind: str, url: str, consent: str | None) -> None:
    values = {"url": url, **KEYS}
    if consent is not None:
        values["allowPlainHTTP"] = consent
    assert OPENERS[kind](driver.CloudStackPool(), context(values)).endpoint == url


# ------------------------------------------------------------------ item 9: CloudStack versions

TEMPLATE = {"name": "systemvm-kvm-4.19.1", "format": "QCOW2", "hypervisor": "KVM", "url": "https://x/t.qcow2",
            "zoneid": "z", "ostypeid": "o", "templatetype": "SYSTEM"}


@pytest.mark.parametrize("version,ok", [("4.18.1.0", False), ("4.18.9.9", False), ("4.9.0", False),
                                        ("", False), ("unknown", False), ("4.19.0.0", True), ("4.19.0", True),
                                        ("4.19.1.0", True), ("4.20.0.0-SNAPSHOT", True), ("5.0", True)])
def test_register_template_with_templatetype_needs_4_19(recorder: type[Recorder], version: str, ok: bool) -> None:
    recorder.version = version

    async def go() -> None:
        await client().call("registerTemplate", **TEMPLATE)

    if ok:
        asyncio.run(go())
        assert [params["templatetype"] for _, params in sent("registerTemplate")] == ["SYSTEM"]
        return
    with pytest.raises(driver.CloudStackError) as refused:
        asyncio.run(go())
    assert refused.value.reason == "UnsupportedCloudStackVersion"
    assert "4.19.0" in str(refused.value) and (version or "unknown version") in str(refused.value)
    assert sent("registerTemplate") == [], "not sent: an older CloudStack ignores templatetype"


def test_the_version_is_read_once_and_again_after_its_ttl(recorder: type[Recorder]) -> None:
    async def go(api: driver.CloudStackClient) -> list[str]:
        versions = [await api.version()]
        await api.call("registerTemplate", **TEMPLATE)
        await api.call("registerTemplate", **TEMPLATE)
        recorder.version = "4.20.0.0"  # upgraded meanwhile
        versions.append(await api.version())
        return versions

    assert asyncio.run(go(client())) == ["4.19.1.0", "4.19.1.0"]
    assert len(sent("listCapabilities")) == 1
    Recorder.sent = []
    recorder.version = "4.19.1.0"
    assert asyncio.run(go(client(version_ttl=0.0))) == ["4.19.1.0", "4.20.0.0"]
    assert len(sent("listCapabilities")) == 4


def test_commands_without_a_requirement_do_not_read_the_version() -> None:
    async def go() -> None:
        api = client()
        await api.list("listZones")
        await api.call("registerTemplate", **{k: v for k, v in TEMPLATE.items() if k != "templatetype"})

    asyncio.run(go())
    assert sent("listCapabilities") == [] and len(sent("registerTemplate")) == 1


def test_version_order() -> None:
    assert driver.older("4.18.1.0", "4.19.0") and driver.older("4.9.9", "4.19.0") and driver.older("", "4.19.0")
    assert not driver.older("4.19.0.0", "4.19.0") and not driver.older("4.19.0", "4.19.0.0")
    assert not driver.older("4.20.0.0-SNAPSHOT", "4.19.0") and not driver.older("10.0", "4.19.0")
