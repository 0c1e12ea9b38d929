"""Credentials against the lab CloudStack: the passwords `addHost` carries (a KVM host's, a XenServer pool's) go in
a POST form body and never in a URL, where proxy and access logs keep them; and a plain-HTTP CloudStack URL is
refused, with nothing sent, unless the Secret opts in.

Three witnesses, each of what a URL would expose: the simulator's HTTP server debug log (its request lines), its
access log (`access_log()`) and its audit log (`api.sensitive_request`: the method and the parameters that came in
the URL)."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from pydantic import SecretStr
from support.xenpool import CLOUDSTACK, Driver, lab, spec_for
from support.credentials import secret as secret_data

from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.cloudstack import CloudStackPool
from stackops.reconcile import systemvmtemplate
from stackops.reconcile.base import Context, ReconcileError
from stackops.reconcile.kvmhost import registration
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings

def cloudstack_secret_data(sim: CloudStackSimulator) -> dict[str, str]:
    """The lab's CloudStack Secret: plain HTTP, with the Secret's consent."""
    return {"url": sim.endpoint, "apiKey": sim.api_key, "secretKey": sim.secret_key, "allowPlainHTTP": "true"}


FLEET = Fleet(zones=1, routers=2, redundant_pairs=0)
TIMINGS = Timings(host_connect=0.3, job=0.02)
SERVER_LOG = "stackops_lab.cloudstack.server"
KVM_PASSWORD = "kvm-root-pw-Ziph4e"
CS_SECRET, PASSWORD_SECRET = "lab-cloudstack", "kvm-root"


@pytest.fixture()
def sim():  # noqa: ANN201
    with CloudStackSimulator(fleet=FLEET, timings=TIMINGS) as simulator:
        yield simulator


def api_requests(sim: CloudStackSimulator) -> list[str]:
    return [line for line in sim.access_log() if " /client/api" in line]


def assert_never_in_a_url(sim: CloudStackSimulator, caplog: pytest.LogCaptureFixture, password: str) -> None:
    assert not [r.getMessage() for r in caplog.records if r.name == SERVER_LOG and password in r.getMessage()]
    assert not [line for line in sim.access_log() if password in line]
    sensitive = [e for e in sim.audit() if e["event"] == "api.sensitive_request" and e["command"] == "addHost"]
    assert sensitive, "addHost reached the simulator"
    assert all(e["method"] == "POST" and "password" not in e["url_parameters"] for e in sensitive), sensitive


def kvm_context(sim: CloudStackSimulator, spec: KvmHostSpec, status: dict[str, Any], *,
                secret: dict[str, str] | None = None, password_to: tuple[str, ...] | None = None) -> Context:
    """`password_to`: where the host password's Secret allows it (default: the host and the CloudStack url)."""
    async def checkpoint(fields: dict[str, Any]) -> None:
        status.update(fields)

    values = cloudstack_secret_data(sim) if secret is None else secret
    allowed = (spec.address, values["url"]) if password_to is None else password_to
    secrets = {CS_SECRET: {k: SecretStr(v) for k, v in values.items()},
               PASSWORD_SECRET: secret_data({"password": KVM_PASSWORD}, *allowed)}
    return Context(namespace="lab", name="kvm1", generation=1, spec=spec, status=dict(status), secrets=secrets,
                   event=lambda *_: None, logger=logging.getLogger("test"), checkpoint=checkpoint)


async def register(pool: CloudStackPool, ctx: Context) -> None:
    """A configured KvmHost's registration step: looked up in CloudStack, then added."""
    found = await registration.observe(pool, ctx, ctx.spec)
    await registration.add(pool, ctx, ctx.spec, found)


def kvm_spec() -> KvmHostSpec:
    return KvmHostSpec.model_validate({
        "address": "127.0.0.99",  # nothing listens: CloudStack's discovery fails after the request arrived
        "ssh": {"privateKeySecretRef": {"name": "ssh"}, "hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE"},
        "cloudstack": {"connection": {"secretRef": {"name": CS_SECRET}}, "zone": "lab-zone-1",
                       "pod": "lab-zone-1-pod-1", "cluster": "lab-zone-1-kvm",
                       "passwordSecretRef": {"name": PASSWORD_SECRET, "key": "password"}}})


def test_the_driver_sends_a_password_in_a_post_body(sim: CloudStackSimulator,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=SERVER_LOG)

    async def go() -> None:
        pool = CloudStackPool(poll_interval=0.05)
        try:
            client = pool.get(sim.endpoint, sim.api_key, SecretStr(sim.secret_key))
            zone = (await client.list("listZones"))[0]
            pod = (await client.list("listPods", zoneid=zone["id"]))[0]
            await client.call("addHost", zoneid=zone["id"], podid=pod["id"], hypervisor="KVM",
                              url="http://127.0.0.99", clustername="lab-zone-1-kvm", username="root",
                              password=SecretStr(KVM_PASSWORD))
        except Exception:  # noqa: BLE001 - discovery fails (nothing at that address); the request is what counts
            pass
        finally:
            await pool.close()

    asyncio.run(go())
    assert_never_in_a_url(sim, caplog, KVM_PASSWORD)
    assert any("GET /client/api?command=listZones" in line for line in sim.access_log()), "reads stay GETs"


def test_kvmhost_registration_sends_the_host_password_in_a_post_body(sim: CloudStackSimulator,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=SERVER_LOG)
    status: dict[str, Any] = {}

    async def go() -> None:
        pool = CloudStackPool(poll_interval=0.05)
        try:
            await register(pool, kvm_context(sim, kvm_spec(), status))
        finally:
            await pool.close()

    with pytest.raises(ReconcileError) as failed:  # CloudStack cannot reach 127.0.0.99
        asyncio.run(go())
    assert failed.value.retry and failed.value.conditions[0].reason == "RegistrationFailed"
    assert_never_in_a_url(sim, caplog, KVM_PASSWORD)
    assert status["cloudstackVersion"] == "4.19.1.0"


def test_xenpool_registration_sends_the_pool_password_in_a_post_body(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=SERVER_LOG)
    names = ["xen1", "xen2", "xen3"]
    with lab(names, [names]) as xen, CloudStackSimulator(fleet=FLEET, timings=TIMINGS) as sim:
        spec = spec_for(xen, names, ha={"enabled": False},
                        cloudstack={"connection": {"secretRef": {"name": CLOUDSTACK}}, "zone": "lab-zone-1",
                                    "pod": "lab-zone-1-pod-1", "cluster": "lab-xen-pool"})
        driver = Driver(xen, spec, cloudstack=sim)
        outcome = driver.converge(passes=20, pause=0.5)
        registered = next(c for c in outcome.conditions if c.type == "Registered")
        assert (registered.status, registered.reason) == ("True", "ClusterUp"), outcome.conditions
        assert_never_in_a_url(sim, caplog, xen.password)
        assert driver.status["cloudstackVersion"] == "4.19.1.0"


def template_context(sim: CloudStackSimulator, secret: dict[str, str]) -> Context:
    from stackops_lab.rollout import spec_for as template_spec

    return Context(namespace="lab", name="rollout", generation=1, spec=template_spec(sim), status={},
                   secrets={CS_SECRET: {k: SecretStr(v) for k, v in secret.items()}}, event=lambda *_: None,
                   logger=logging.getLogger("test"))


@pytest.mark.parametrize("kind", ["KvmHost", "SystemVMTemplate"])
def test_a_plain_http_endpoint_without_consent_gets_nothing(sim: CloudStackSimulator, kind: str) -> None:
    secret = {k: v for k, v in cloudstack_secret_data(sim).items() if k != "allowPlainHTTP"}

    async def go() -> None:
        pool = CloudStackPool(poll_interval=0.05)
        try:
            if kind == "KvmHost":
                await register(pool, kvm_context(sim, kvm_spec(), {}, secret=secret))
            else:
                await systemvmtemplate.SystemVMTemplateReconciler(pool).reconcile(template_context(sim, secret))
        finally:
            await pool.close()

    with pytest.raises(ReconcileError) as refused:
        asyncio.run(go())
    assert (refused.value.reason, refused.value.retry) == ("InsecureEndpoint", False)
    assert sim.endpoint not in str(refused.value)
    assert api_requests(sim) == [], "not even a read was sent"
    assert not [e for e in sim.audit() if e["event"] == "api.refused"]
