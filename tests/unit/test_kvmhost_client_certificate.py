"""`openvswitch.manager.clientCertificate: Secret` on the plan level: the Secret's key and certificate are written
to the host (mode 0600, the key only on stdin), `set-ssl` names them, a file whose digest or mode differs is
rewritten, a converged host plans nothing, and a Secret that holds no usable key and certificate stops the plan
before anything is written (its values never quoted). Certificates are made here with `cryptography`."""
from __future__ import annotations

import copy
import datetime
import hashlib
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.kvmhost_probe import OWNER, probe_output
from support.kvmhost_probe import SPEC as PROBED_SPEC
from stackops.api.kvmhost import KvmHostSpec
from stackops.reconcile.kvmhost import guard
from stackops.reconcile.kvmhost.actions import OvsCommand, RunCommand, WritePrivateFile
from stackops.reconcile.kvmhost.client_certificate import (CA_CERT, GENERATED_CERT, GENERATED_KEY, SECRET_CA,
                                                           SECRET_CERT, SECRET_KEY, fingerprint)
from stackops.reconcile.kvmhost.plan import PlanError, management_path, plan
from stackops.reconcile.kvmhost.probe import parse

SECRET = "ovs-client"
MANAGER = {"protocol": "ssl", "address": "10.20.0.5", "port": 6632, "clientCertificate": "Secret",
           "certificateSecretRef": {"name": SECRET}}
SPEC: dict[str, Any] = {**PROBED_SPEC, "openvswitch": {**PROBED_SPEC["openvswitch"], "manager": MANAGER}}


def spec(**manager: Any) -> KvmHostSpec:
    data = copy.deepcopy(SPEC)
    data["openvswitch"]["manager"].update(manager)
    return KvmHostSpec.model_validate(data)


def pem_key(key: Any, password: bytes | None = None) -> str:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


def certificate(name: str, key: Any, issuer: tuple[str, Any] | None = None) -> str:
    issuer_name, issuer_key = issuer or (name, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(issuer_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


CA_KEY, CLIENT_KEY, OTHER_KEY = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
CA = certificate("manager-ca", CA_KEY)
CLIENT = certificate("kvm1", CLIENT_KEY, ("manager-ca", CA_KEY))
KEY = pem_key(CLIENT_KEY)
TLS = {"tls.crt": CLIENT, "tls.key": KEY, "ca.crt": CA}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def host(*, ssl: tuple[str, str, str, bool] | None = None, files: dict[str, tuple[str, str]] | None = None,
         generated: bool = False) -> str:
    """The probe's output with these SSL settings and client files (path → (mode, content))."""
    out = probe_output()
    if ssl is not None:
        key, cert, ca, bootstrap = ssl
        text = f"Private key: {key}\nCertificate: {cert}\nCA Certificate: {ca}\nBootstrap: {str(bootstrap).lower()}"
        out = out.replace("@@ovs-ssl -\n\n", f"@@ovs-ssl -\n{text}\n")
    lines = [f"{mode} {sha256(content)} {path}" for path, (mode, content) in (files or {}).items()]
    shown = f"SHA1 Fingerprint={fingerprint(files[SECRET_CERT][1])}" if files and SECRET_CERT in files else ""
    generated_fp = "SHA1 Fingerprint=AA:BB" if generated else ""
    return out.replace("@@certificate -\n\n", f"@@certificate -\n{generated_fp}\n@@client-files -\n"
                       + "".join(f"{line}\n" for line in lines) + f"@@client-certificate -\n{shown}\n")


CONVERGED_SSL = (SECRET_KEY, SECRET_CERT, SECRET_CA, False)
CONVERGED_FILES = {SECRET_KEY: ("600", KEY), SECRET_CERT: ("600", CLIENT), SECRET_CA: ("600", CA)}


def manager_actions(s: KvmHostSpec, output: str, tls: dict[str, str] | None = TLS) -> list[Any]:
    return [a for a in plan(s, parse(output, 16509), OWNER, None, tls)
            if isinstance(a, WritePrivateFile) or (isinstance(a, OvsCommand) and ({"set-ssl", "set-manager"} &
                                                                                  set(a.args)))
            or (isinstance(a, RunCommand) and a.command[0] in ("rm", "sh"))]


def test_the_secret_is_written_to_the_host_and_set_ssl_names_it() -> None:
    actions = manager_actions(spec(), host())
    writes = [a for a in actions if isinstance(a, WritePrivateFile)]
    assert [(w.path, w.content) for w in writes] == [(SECRET_KEY, KEY), (SECRET_CERT, CLIENT), (SECRET_CA, CA)]
    set_ssl = next(a for a in actions if isinstance(a, OvsCommand) and "set-ssl" in a.args)
    assert set_ssl.args == ("--", "set-ssl", SECRET_KEY, SECRET_CERT, SECRET_CA)  # the CA given: no bootstrap
    assert actions.index(set_ssl) > actions.index(writes[-1])  # the files exist before OVS is pointed at them
    for write in writes:  # mode 0600 from the first byte; the content on stdin only
        script = write.argv()[2]
        assert "umask 077" in script and "chmod 0600" in script
        assert write.stdin() is not None and write.content not in " ".join(write.argv())
    body = KEY.splitlines()[1]
    for action in actions:
        for text in (" ".join(action.argv()), action.describe(), repr(action), str(action.record())):
            assert body not in text, f"the key shows in {text[:80]}"


def test_without_a_ca_the_manager_ca_is_bootstrapped_as_before() -> None:
    tls = {"tls.crt": CLIENT, "tls.key": KEY}
    actions = manager_actions(spec(), host(), tls)
    assert [a.path for a in actions if isinstance(a, WritePrivateFile)] == [SECRET_KEY, SECRET_CERT]
    assert ("--", "--bootstrap", "set-ssl", SECRET_KEY, SECRET_CERT, CA_CERT) in [
        a.args for a in actions if isinstance(a, OvsCommand)]


def test_a_converged_host_plans_nothing_for_the_manager() -> None:
    output = host(ssl=CONVERGED_SSL, files=CONVERGED_FILES)
    output = output.replace('[["ssl:10.20.0.5:6632",false]]', '[["ssl:10.20.0.5:6632",true]]')
    assert manager_actions(spec(), output) == []
    assert parse(output, 16509).client_certificate_fingerprint == fingerprint(CLIENT)


@pytest.mark.parametrize("changed", [
    {SECRET_KEY: ("600", pem_key(OTHER_KEY))},  # another key on the host
    {SECRET_KEY: ("644", KEY)},  # readable by everyone
    {SECRET_CERT: ("600", certificate("other", OTHER_KEY))},
])
def test_a_file_whose_digest_or_mode_differs_is_rewritten_and_only_that_one(changed: dict) -> None:
    actions = manager_actions(spec(), host(ssl=CONVERGED_SSL, files={**CONVERGED_FILES, **changed}))
    assert [a.path for a in actions if isinstance(a, WritePrivateFile)] == list(changed)
    assert not [a for a in actions if isinstance(a, OvsCommand)]


def test_ssl_pointing_elsewhere_is_set_again_and_a_ca_the_secret_dropped_is_removed() -> None:
    generated = (GENERATED_KEY, GENERATED_CERT, CA_CERT, True)
    actions = manager_actions(spec(), host(ssl=generated, files=CONVERGED_FILES), {"tls.crt": CLIENT, "tls.key": KEY})
    assert [a.command for a in actions if isinstance(a, RunCommand)] == [("rm", "-f", SECRET_CA)]
    assert [a.args for a in actions if isinstance(a, OvsCommand)] == [
        ("--", "--bootstrap", "set-ssl", SECRET_KEY, SECRET_CERT, CA_CERT)]


def test_generate_keeps_a_converged_host_and_takes_ssl_back_from_the_secret() -> None:
    generated = (GENERATED_KEY, GENERATED_CERT, CA_CERT, True)
    assert manager_actions(spec(clientCertificate="Generate"), host(ssl=generated, generated=True), None) == []
    back = manager_actions(spec(clientCertificate="Generate"), host(ssl=CONVERGED_SSL, generated=True), None)
    assert [a.args for a in back if isinstance(a, OvsCommand)] == [
        ("--", "--bootstrap", "set-ssl", GENERATED_KEY, GENERATED_CERT, CA_CERT)]


@pytest.mark.parametrize("tls, fault", [
    ({"tls.crt": CLIENT, "tls.key": pem_key(OTHER_KEY)}, "not the key of the (first) certificate"),
    ({"tls.crt": CLIENT, "tls.key": pem_key(CLIENT_KEY, b"secret")}, "encrypted"),
    ({"tls.crt": KEY, "tls.key": KEY}, "tls.crt must hold PEM certificates only"),
    ({"tls.crt": CLIENT, "tls.key": CLIENT}, "tls.key must hold one PEM private key"),
    ({"tls.crt": CLIENT, "tls.key": KEY + KEY}, "tls.key must hold one PEM private key"),
    ({"tls.crt": CLIENT, "tls.key": KEY, "ca.crt": "not a certificate"}, "ca.crt must hold PEM certificates"),
    ({"tls.crt": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "tls.key": KEY},
     "does not parse"),
])
def test_a_secret_without_a_usable_key_and_certificate_stops_the_plan(tls: dict[str, str], fault: str) -> None:
    with pytest.raises(PlanError) as raised:
        plan(spec(), parse(host(), 16509), OWNER, None, tls)
    assert raised.value.reason == "ClientCertificateInvalid" and fault in str(raised.value)
    assert f"Secret {SECRET}" in str(raised.value)
    for value in tls.values():
        for line in value.splitlines():
            assert line.startswith("-----") or line not in str(raised.value)


def test_the_secret_files_are_never_part_of_a_guarded_management_path_change() -> None:
    """A guarded apply carries each command's stdin inside its script on the host: the key must not be there."""
    data = copy.deepcopy(SPEC)
    data["openvswitch"]["bridges"][0]["ports"] = ["eth0"]  # the NIC carrying the management address joins
    s = KvmHostSpec.model_validate(data)
    observed = parse(host(), 16509)
    actions = plan(s, observed, OWNER, None, TLS)
    guarded, _ = guard.split_guarded(actions, guard.risky_actions(actions, management_path(s, observed)))
    assert guarded, "the plan changes the management path"
    assert not [a for a in guarded if isinstance(a, WritePrivateFile)]
