"""XenAPI over HTTPS: the lab XenServer hosts serve certificates of a lab CA (`XenLab(tls=True)`), and the driver
and the XenPool reconciler verify them. Verified against the CA, the driver follows HOST_IS_SLAVE to the master;
a certificate of another CA, a self-signed one or one for another address is refused with a typed error that says
why and where (never the password); `insecure` accepts them all; a plain HTTP client gets no answer from a TLS
port. The reconciler converges a pool over TLS, and stalls with Reachable=False when the CA is wrong. Needs no
Kubernetes. (A dom0 stand-in's regenerated certificate: e2e/test_xen_dom0.py.)"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import XenAPI
from cryptography import x509
from pydantic import SecretStr
from support.xenapi import FAST, endpoint, events, master_of
from support.xenpool import Driver, condition, ready, spec_for
from support.xenpool import FAST as POOL_FAST

from stackops.drivers.xenapi import Endpoint, PoolSession, XenNoMaster, XenTLSError
from stackops.reconcile.base import ReconcileError
from stackops_lab.xenapi import XenHostSpec, XenLab
from stackops_lab.xenapi.component import XenComponent
from stackops_lab.xenapi.tls import LabCA

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "tls-secret-pw"
CA_SECRET = "xen-ca"


@pytest.fixture
def lab() -> Iterator[XenLab]:
    with XenLab(hosts=[XenHostSpec(n) for n in ("xen1", "xen2", "xen3")], pools=[["xen1", "xen2", "xen3"]],
                password=PASSWORD, timings=FAST, tls=True) as simulator:
        yield simulator


# ------------------------------------------------------------------------------------------------ driver


def test_verified_against_the_ca_the_driver_follows_host_is_slave_to_the_master(lab: XenLab) -> None:
    assert lab.url("xen1").startswith("https://") and lab.ca_pem and "BEGIN CERTIFICATE" in lab.ca_pem
    served = x509.load_pem_x509_certificate(lab.tls.certificate("xen2").cert_pem.encode())  # type: ignore[union-attr]
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == [lab.address("xen2")]
    assert names.get_values_for_type(x509.DNSName) == ["xen2"]
    assert master_of(lab, ["xen3", "xen2", "xen1"], endpoint(lab)) == (lab.address("xen1"), 3)


@pytest.mark.parametrize("how, why", [
    ({"ca": "other"}, "unable to get local issuer certificate"),
    ({"self_signed": True}, "self[- ]signed certificate"),
    ({"wrong_address": True}, "IP address mismatch"),
])
def test_a_master_certificate_that_does_not_verify_is_refused_and_says_why(lab: XenLab, how: dict, why: str) -> None:
    options = {**how, "ca": LabCA("another CA")} if "ca" in how else how
    lab.replace_certificate("xen1", **options)
    with pytest.raises(XenTLSError) as refused:
        master_of(lab, ["xen3", "xen2", "xen1"], endpoint(lab))  # the supporters verify; their master does not
    error = refused.value
    assert error.reason == "TLSVerificationFailed" and error.params == [lab.address("xen1")]
    assert re.search(why, str(error)) and str(error).count(lab.address("xen1")) >= 1, str(error)
    assert PASSWORD not in str(error) and PASSWORD not in repr(error.params)
    assert not events(lab, "session.login"), "the password never left the client"
    assert master_of(lab, ["xen3", "xen1"], endpoint(lab, ca_pem=None, insecure=True))[0] == lab.address("xen1")
    lab.replace_certificate("xen1")  # the lab CA's again
    assert master_of(lab, ["xen3", "xen1"], endpoint(lab))[0] == lab.address("xen1")


def test_a_clone_serves_its_source_certificate_which_names_another_address() -> None:
    ca = LabCA()  # a CA of one's own, shared by labs
    with XenLab(hosts=[XenHostSpec("xen1"), XenHostSpec("xen9", vms=0)], password=PASSWORD, timings=FAST,
                tls=ca) as lab:
        assert lab.ca_pem == ca.pem
        lab.clone("xen9", from_host="xen1")
        with pytest.raises(XenTLSError, match="IP address mismatch"):
            master_of(lab, ["xen9"], endpoint(lab))
        assert master_of(lab, ["xen1"], endpoint(lab))[0] == lab.address("xen1")


def test_a_plain_http_client_gets_no_answer_from_a_tls_port(lab: XenLab) -> None:
    with pytest.raises(XenNoMaster) as lost:
        master_of(lab, ["xen1", "xen2"], endpoint(lab, plain_http=True, ca_pem=None))
    reasons = lost.value.unreachable
    assert set(reasons) == {lab.address("xen1"), lab.address("xen2")}
    # refused at once, not after a timeout: each host drops the connection because its TLS handshake read the
    # client's plain HTTP request (OpenSSL's HTTP_REQUEST), and the client sees a disconnection, not its timeout
    assert all(re.search(r"RemoteDisconnected|ConnectionReset|BrokenPipe", why) for why in reasons.values()), reasons
    assert not any(re.search(r"timed out|timeout", why, re.I) for why in reasons.values()), reasons
    failed = events(lab, "tls.handshake_failed")
    assert {e["host"] for e in failed} == {"xen1", "xen2"}
    assert all("HTTP_REQUEST" in e["error"] for e in failed), failed
    assert PASSWORD not in str(lost.value) and not events(lab, "session.login")


def test_a_tls_client_against_a_plain_http_host_is_a_tls_error() -> None:
    with XenLab(hosts=[XenHostSpec("xen1")], timings=FAST) as plain:
        assert plain.url("xen1").startswith("http://") and plain.ca_pem is None
        with pytest.raises(XenTLSError, match="TLS: "):
            master_of(plain, ["xen1"], Endpoint(port=plain.port, insecure=True, timeout=5))


def test_the_sdk_alone_verifies_against_the_system_store_and_ignore_ssl_skips_it(lab: XenLab) -> None:
    """What `XenAPI.Session` does without our transport: https with the default context (system CAs, hostname
    checked), `ignore_ssl=True` with an unverified one. The driver passes a transport of its own, built from the
    Endpoint, so neither applies to it."""
    import ssl

    with pytest.raises(ssl.SSLCertVerificationError):
        XenAPI.Session(lab.url("xen1")).xenapi.login_with_password(lab.username, PASSWORD, "2.21", "tests")
    session = XenAPI.Session(lab.url("xen1"), ignore_ssl=True)
    session.xenapi.login_with_password(lab.username, PASSWORD, "2.21", "tests")
    assert len(session.xenapi.host.get_all()) == 3
    session.xenapi.session.logout()


# ------------------------------------------------------------------------------------------------ reconciler


def tls_lab(names: list[str], pools: list[list[str]]) -> XenLab:
    alone = {p[0] for p in pools if len(p) == 1}
    return XenLab(hosts=[XenHostSpec(n, vms=0 if n in alone else None) for n in names],
                  pools=[p for p in pools if len(p) > 1], timings=POOL_FAST, vms_per_host=1, tls=True)


def test_a_pool_verified_with_the_ca_secret_converges_ready() -> None:
    names = ["xen1", "xen2", "xen3"]
    with tls_lab(names, [["xen1", "xen2"], ["xen3"]]) as xen:
        driver = Driver(xen, spec_for(xen, names, tls={"caSecretRef": {"name": CA_SECRET}}))
        driver.secrets[CA_SECRET] = {"ca.crt": SecretStr(xen.ca_pem or "")}  # CASecretRef's default key
        outcome = driver.converge()
        assert ready(outcome), outcome.conditions
        assert condition(outcome, "Reachable").status == "True"
        pool = xen.pool_of("xen1")
        assert sorted(pool["members"]) == names and pool["ha_enabled"]
        assert pool["ha_configuration"].get("timeout") == "180"


def test_a_wrong_ca_stalls_the_pool_unreachable_without_retrying() -> None:
    names = ["xen1", "xen2", "xen3"]
    with tls_lab(names, [["xen1", "xen2"], ["xen3"]]) as xen:
        driver = Driver(xen, spec_for(xen, names, tls={"caSecretRef": {"name": CA_SECRET}}))
        driver.secrets[CA_SECRET] = {"ca.crt": SecretStr(LabCA("not the pool's CA").pem)}
        with pytest.raises(ReconcileError) as refused:
            driver.run()
        error = refused.value
        assert error.reason == "TLSVerificationFailed" and error.retry is False, "a person must fix the CA"
        assert "unable to get local issuer certificate" in str(error) and xen.address("xen1") in str(error)
        reachable = next(c for c in error.conditions if c.type == "Reachable")
        assert (reachable.status, reachable.reason) == ("False", "TLSVerificationFailed")
        assert xen.password not in str(error)
        assert not events(xen, "session.login") and not events(xen, "pool.join")


def test_a_ca_secret_without_a_pem_is_invalid_ca() -> None:
    names = ["xen1", "xen2", "xen3"]
    with tls_lab(names, [names]) as xen:
        driver = Driver(xen, spec_for(xen, names, tls={"caSecretRef": {"name": CA_SECRET, "key": "bundle.pem"}}))
        driver.secrets[CA_SECRET] = {"bundle.pem": SecretStr("not a certificate")}
        with pytest.raises(ReconcileError) as refused:
            driver.run()
        assert refused.value.reason == "InvalidCA" and "bundle.pem" in str(refused.value)


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_tls_serves_https_and_writes_the_ca_into_its_state(tmp_path: Path) -> None:
    assert "--tls" in XenComponent(tls=True).arguments(tmp_path) and "--tls" not in XenComponent().arguments(tmp_path)
    state_file = tmp_path / "xenapi.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO / "lab")])}
    process = subprocess.Popen([sys.executable, "-m", "stackops_lab.xenapi.cli", "--hosts", "2", "--pool-size", "2",
                                "--port", "0", "--password", PASSWORD, "--tls", "--state-file", str(state_file)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        assert line[0] == "ready" and all(url.startswith("https://") for url in line[1:])
        state = json.loads(state_file.read_text())
        assert state["tls"] is True and "BEGIN CERTIFICATE" in state["ca_pem"]
        addresses = [state["hosts"][n]["address"] for n in ("xen2", "xen1")]
        pool = PoolSession(addresses, "root", SecretStr(PASSWORD),
                           Endpoint(port=state["port"], ca_pem=state["ca_pem"], timeout=5))
        assert asyncio.run(pool.connect()) == state["hosts"]["xen1"]["address"]
        asyncio.run(pool.close())
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
