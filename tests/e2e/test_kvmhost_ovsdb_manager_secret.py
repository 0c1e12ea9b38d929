"""`openvswitch.manager.clientCertificate: Secret` against lab hosts: the Secret's client key and certificate are
written to the host (mode 0600, exactly the Secret's bytes), `set-ssl` names them, and Open vSwitch uses them: the
peer runs an OVSDB manager (an ovsdb-server on `pssl:6632` that accepts only clients whose certificate its CA
signed), and the host connects to it. Drift (a key made readable, a certificate replaced) is put back; a
certificate from another CA is written and then refused by the manager when the host connects again. The key
never appears in status, Events or the operator's log."""
from __future__ import annotations

import asyncio
import datetime
import json
import logging
from typing import Any, Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr
from support.credentials import secret

from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.ssh import SSHPool
from stackops.reconcile.base import Context, Outcome
from stackops.reconcile.kvmhost import KvmHostReconciler
from support.wait import wait_for

SSH_SECRET, TLS_SECRET = "kvm-ssh", "ovs-client"
PORT = 6632
SECRET_KEY = "/etc/openvswitch/stackops-client-privkey.pem"  # as api/kvmhost.py documents them
SECRET_CERT = "/etc/openvswitch/stackops-client-cert.pem"
SECRET_CA = "/etc/openvswitch/stackops-cacert.pem"


def pem_key(key: Any) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def issue(name: str, key: Any, ca: tuple[x509.Certificate, Any] | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer = ca[0].subject if ca else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1)))
    if ca is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(ca[1] if ca else key, hashes.SHA256())


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


class Pki:
    """A CA, and certificates it signs."""

    def __init__(self, name: str):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.certificate = issue(name, self.key)

    def issue(self, name: str) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        return pem(issue(name, key, (self.certificate, self.key))), pem_key(key)


class Manager:
    """An OVSDB manager on the peer: ovsdb-server on pssl:PORT, trusting only `pki`'s certificates (its files in a
    directory of the peer's own). TLS 1.2 only: the server checks the client's certificate before the client
    finishes its handshake, so a host that counts itself connected was accepted (with TLS 1.3 a refused client
    may count itself connected for a moment)."""

    DIR = "/root/stackops-test-manager"

    def __init__(self, peer: Any, pki: Pki):
        self.peer = peer
        certificate, key = pki.issue(f"manager {peer.address}")
        peer.run(f"rm -rf {self.DIR} && mkdir -m 700 {self.DIR}", check=True)
        for name, content in (("cert.pem", certificate), ("key.pem", key), ("ca.pem", pem(pki.certificate))):
            peer.run(f"cat > {self.DIR}/{name}", input=content, check=True)
        peer.run(f"ovsdb-tool create {self.DIR}/m.db /usr/share/openvswitch/vswitch.ovsschema", check=True)

    def start(self) -> None:
        d = self.DIR
        self.peer.run(f"ovsdb-server {d}/m.db --remote=pssl:{PORT}:{self.peer.address} --private-key={d}/key.pem "
                      f"--certificate={d}/cert.pem --ca-cert={d}/ca.pem --ssl-protocols=TLSv1.2 "
                      f"--pidfile={d}/m.pid --unixctl={d}/m.ctl "
                      f"--log-file={d}/m.log -vfile:info --no-chdir --detach", check=True)

    def stop(self) -> None:
        """Stop the server and wait until it has exited: it holds the database's lock until then, and a start
        right after a bare kill raced it ("failed to lock lockfile")."""
        d = self.DIR
        self.peer.run(f"[ -f {d}/m.pid ] || exit 0; pid=$(cat {d}/m.pid); kill $pid; "
                      f"for _ in $(seq 600); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; "
                      f"! kill -0 $pid 2>/dev/null && rm -f {d}/m.pid", check=True)

    def log(self) -> str:
        return self.peer.run(f"cat {self.DIR}/m.log 2>/dev/null").stdout


def connected(host: Any) -> bool:
    rows = json.loads(host.run("ovs-vsctl --timeout=5 --format=json --columns=is_connected list Manager").stdout)
    return any(row[0] is True for row in rows.get("data", []))


def spec(host: Any, peer: Any) -> KvmHostSpec:
    return KvmHostSpec.model_validate({
        "address": host.address,
        "ssh": {"privateKeySecretRef": {"name": SSH_SECRET}, "hostKey": host.host_key},
        "openvswitch": {"manager": {"protocol": "ssl", "address": peer.address, "port": PORT,
                                    "clientCertificate": "Secret", "certificateSecretRef": {"name": TLS_SECRET}}},
    })


def context(host: Any, s: KvmHostSpec, tls: dict[str, str], events: list) -> Context:
    return Context(namespace="lab", name=host.name, generation=1, spec=s, status={},
                   secrets={SSH_SECRET: secret({"ssh-privatekey": host.client_key_pem}, host.address),
                            TLS_SECRET: secret(tls, host.address)},
                   event=lambda *e: events.append(e), logger=logging.getLogger("e2e"))


def converge(reconciler: KvmHostReconciler, ctx: Context) -> Outcome:
    outcome = asyncio.run(reconciler.reconcile(ctx))
    for _ in range(4):
        if any(c.type == "Ready" and c.status == "True" for c in outcome.conditions):
            break
        outcome = asyncio.run(reconciler.reconcile(ctx))
    assert any(c.type == "Ready" and c.status == "True" for c in outcome.conditions), outcome.conditions
    return outcome


def on_host(host: Any, path: str) -> tuple[str, str]:
    """(mode, content) of a file on the host."""
    return host.run(f"stat -c %a {path}").stdout.strip(), host.run(f"cat {path}").stdout


def openssl_fingerprint(host: Any) -> str:
    return host.run(f"openssl x509 -in {SECRET_CERT} -noout -fingerprint -sha1").stdout.strip().partition("=")[2]


def test_a_client_certificate_from_a_secret_is_written_used_and_kept(
        make_lab_hosts: Callable[..., list], caplog: pytest.LogCaptureFixture) -> None:
    host, peer = make_lab_hosts(2)
    caplog.set_level(logging.DEBUG)
    trusted, rogue = Pki("manager-ca"), Pki("another-ca")
    certificate, key = trusted.issue(f"kvm {host.address}")
    tls = {"tls.crt": certificate, "tls.key": key, "ca.crt": pem(trusted.certificate)}
    manager = Manager(peer, trusted)
    manager.start()
    pool = SSHPool()
    events: list = []
    try:
        reconciler = KvmHostReconciler(pool)
        outcome = converge(reconciler, context(host, spec(host, peer), tls, events))

        for path, content in ((SECRET_KEY, key), (SECRET_CERT, certificate), (SECRET_CA, tls["ca.crt"])):
            assert on_host(host, path) == ("600", content), path
        ssl = host.run("ovs-vsctl get-ssl").stdout
        assert f"Private key: {SECRET_KEY}" in ssl and f"Certificate: {SECRET_CERT}" in ssl
        assert f"CA Certificate: {SECRET_CA}" in ssl and "Bootstrap: false" in ssl
        assert outcome.fields["manager"]["certificateFingerprint"] == openssl_fingerprint(host)
        wait_for(lambda: connected(host), what="the host connected to the manager with the Secret's certificate",
                 timeout=120, interval=0.3)

        # drift: the key readable by everyone, the certificate replaced → both put back, nothing else
        host.run(f"chmod 644 {SECRET_KEY}; cp {SECRET_CA} {SECRET_CERT}", check=True)
        events.clear()
        converge(reconciler, context(host, spec(host, peer), tls, events))
        assert on_host(host, SECRET_KEY) == ("600", key) and on_host(host, SECRET_CERT) == ("600", certificate)
        applied = sorted(e[2] for e in events if e[1] == "Applied")
        assert len(applied) == 2 and f"{SECRET_CERT} (its content differs)" in applied[0] and \
            f"{SECRET_KEY} (its mode was 644)" in applied[1], applied

        # another CA's certificate: written, and the manager refuses it when the host connects again
        other_certificate, other_key = rogue.issue(f"kvm {host.address}")
        other = {**tls, "tls.crt": other_certificate, "tls.key": other_key}
        converge(reconciler, context(host, spec(host, peer), other, events))
        assert on_host(host, SECRET_KEY) == ("600", other_key)
        manager.stop()
        manager.start()
        wait_for(lambda: "certificate verify failed" in manager.log(), what="the manager to refuse the other CA's "
                 "certificate", timeout=120, interval=0.3)

        everything = json.dumps([outcome.fields, [str(c) for c in outcome.conditions], events], default=str) + \
            caplog.text
        for secret_key in (key, other_key):
            for line in secret_key.splitlines()[1:-1]:
                assert line not in everything, "the private key shows in status, Events or the log"
    finally:
        manager.stop()
        pool.close_all()

