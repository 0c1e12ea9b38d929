"""A credential goes only where its Secret's `stackops.io/allowed-destinations` says (issue 12, item 3), against the
lab XenAPI and CloudStack: a XenPool member the Secret does not list gets no login, nor does any other member; a
CloudStack the XenServer or KVM host password's Secret does not list gets no addHost; a CloudStack Secret whose own
list does not hold its url sends nothing. Each refusal is Stalled `CredentialNotAllowed`, naming the Secret and the
destination, never a value or the CloudStack URL."""
from __future__ import annotations

import asyncio
import logging

import pytest
from support.credentials import secret
from pydantic import SecretStr
from support.xenpool import CLOUDSTACK, SECRET, Driver, condition, lab, spec_for

from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.cloudstack import CloudStackPool
from stackops.reconcile.base import Context, CredentialNotAllowed
from stackops.reconcile.kvmhost import registration
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings

NAMES = ["xen1", "xen2", "xen3"]
FLEET = Fleet(zones=1, routers=2, redundant_pairs=0)
TIMINGS = Timings(host_connect=0.3, job=0.02)
CLUSTER = {"connection": {"secretRef": {"name": CLOUDSTACK}}, "zone": "lab-zone-1", "pod": "lab-zone-1-pod-1",
           "cluster": "lab-xen-pool"}


def logins(xen) -> list[dict]:  # noqa: ANN001
    return [e for e in xen.audit() if e["event"] == "session.login"]


def add_hosts(sim: CloudStackSimulator) -> list[dict]:
    return [e for e in sim.audit() if e["event"] == "api.sensitive_request" and e["command"] == "addHost"]


def test_a_member_the_secret_does_not_list_stalls_the_pool_before_any_login() -> None:
    with lab(NAMES, [NAMES]) as xen:
        driver = Driver(xen, spec_for(xen, NAMES))
        driver.secrets[SECRET] = secret({"username": xen.username, "password": xen.password},
                                        xen.address("xen1"), xen.address("xen2"))  # not xen3
        with pytest.raises(CredentialNotAllowed) as refused:
            driver.run()
        error = refused.value
        assert (error.reason, error.retry, error.refused) == ("CredentialNotAllowed", False, [xen.address("xen3")])
        assert f"lab/{SECRET}" in str(error) and "XenAPI login" in str(error) and xen.password not in str(error)
        assert logins(xen) == [], "no member got the password, listed or not"


def test_a_secret_without_the_annotation_sends_the_password_nowhere() -> None:
    with lab(NAMES, [NAMES]) as xen:
        driver = Driver(xen, spec_for(xen, NAMES))
        driver.secrets[SECRET] = {"username": SecretStr(xen.username), "password": SecretStr(xen.password)}
        with pytest.raises(CredentialNotAllowed):
            driver.run()
        assert logins(xen) == []


def test_the_pool_password_goes_to_no_cloudstack_its_secret_does_not_list() -> None:
    """The members are allowed, the CloudStack url is not: the pool converges, its registration stalls and addHost
    (which would hand CloudStack the password) is never sent."""
    with lab(NAMES, [NAMES]) as xen, CloudStackSimulator(fleet=FLEET, timings=TIMINGS) as sim:
        driver = Driver(xen, spec_for(xen, NAMES, ha={"enabled": False}, cloudstack=CLUSTER), cloudstack=sim)
        driver.secrets[SECRET] = secret({"username": xen.username, "password": xen.password},
                                        *(xen.address(n) for n in NAMES))
        with pytest.raises(CredentialNotAllowed) as refused:
            driver.converge(passes=6, pause=0.5)
        registered = condition(refused.value, "Registered")
        assert (registered.status, registered.reason) == ("False", "CredentialNotAllowed")
        assert f"the CloudStack url of Secret lab/{CLOUDSTACK}" in registered.message
        assert xen.pool_of("xen1")["members"], "the pool itself was reconciled: its members got the password"
        assert sim.endpoint not in registered.message
        assert add_hosts(sim) == []


def kvm_spec() -> KvmHostSpec:
    return KvmHostSpec.model_validate({
        "address": "127.0.0.99",
        "ssh": {"privateKeySecretRef": {"name": "ssh"}, "hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE"},
        "cloudstack": {"connection": {"secretRef": {"name": CLOUDSTACK}}, "zone": "lab-zone-1",
                       "pod": "lab-zone-1-pod-1", "cluster": "lab-zone-1-kvm",
                       "passwordSecretRef": {"name": "kvm-root", "key": "password"}}})


def register(sim: CloudStackSimulator, cloudstack: dict, password: dict) -> None:
    ctx = Context(namespace="lab", name="kvm1", generation=1, spec=kvm_spec(), status={},
                  secrets={CLOUDSTACK: cloudstack, "kvm-root": password}, event=lambda *_: None,
                  logger=logging.getLogger("test"))

    async def go() -> None:
        pool = CloudStackPool(poll_interval=0.05)
        try:
            found = await registration.observe(pool, ctx, kvm_spec())  # a configured host's registration step
            await registration.add(pool, ctx, kvm_spec(), found)
        finally:
            await pool.close()

    asyncio.run(go())


def cloudstack_values(sim: CloudStackSimulator) -> dict[str, str]:
    return {"url": sim.endpoint, "apiKey": sim.api_key, "secretKey": sim.secret_key, "allowPlainHTTP": "true"}


def test_a_kvm_host_password_goes_to_no_cloudstack_its_secret_does_not_list() -> None:
    with CloudStackSimulator(fleet=FLEET, timings=TIMINGS) as sim:
        with pytest.raises(CredentialNotAllowed) as refused:
            register(sim, secret(cloudstack_values(sim)), secret({"password": "kvm-pw"}, "127.0.0.99"))
        assert refused.value.refused == [f"the CloudStack url of Secret lab/{CLOUDSTACK}"]
        assert add_hosts(sim) == []


def test_a_cloudstack_secret_listing_other_places_than_its_url_sends_nothing() -> None:
    with CloudStackSimulator(fleet=FLEET, timings=TIMINGS) as sim:
        with pytest.raises(CredentialNotAllowed) as refused:
            register(sim, secret(cloudstack_values(sim), "https://cloud.example.com/client/"),
                     secret({"password": "kvm-pw"}, "127.0.0.99", sim.endpoint))
        assert sim.endpoint not in str(refused.value)
        assert [line for line in sim.access_log() if " /client/api" in line] == [], "not even a read"
