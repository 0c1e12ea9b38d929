"""TLS for the lab XenServer hosts: a lab CA, one server certificate per host, and what xapi does with
/etc/xensource/xapi-ssl.pem.

`XenLab(..., tls=True)` (or `tls=LabCA()` to share a CA between labs) makes a lab CA and gives every host a
certificate signed by it, naming the host as xapi's own certificates do (gencert): subject CN and a DNS SAN with
the host name, an IP SAN with its management address. Every endpoint then speaks HTTPS only (server.py wraps the
accepted connections; the handshake runs in the connection's thread), like xapi's stunnel on 443: TLS 1.2 with
the ECDHE-RSA AES-GCM ciphers, RSA 2048 keys, ten years of validity. A plain HTTP request on that port fails the
handshake and the connection is closed without an answer (stunnel's "http request" error).

`XenLab.replace_certificate` installs another certificate for a host (signed by another CA, self-signed, or for
another address) to show what a verifying client does with it; new connections get it at once, as after
`host.install_server_certificate`. A dom0 stand-in (dom0.py) keeps its certificate and key in its lab host's
/etc/xensource/xapi-ssl.pem (key then certificate, mode 0400): xapi reads it whenever it starts and, when the
file is missing, makes a fresh self-signed certificate first (gencert), so removing it and restarting xapi
(MakeUnique does) leaves a certificate that a client verifying against the lab CA refuses.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import (CertificatePublicKeyTypes, PrivateKeyTypes,
                                                             PublicKeyTypes)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from stackops_lab.xenapi.simulator import XenLab
    from stackops_lab.xenapi.state import Machine

CERTIFICATE_PATH = "/etc/xensource/xapi-ssl.pem"
CIPHERS = "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256"  # xapi's stunnel (XenServer 8.2)
KEY_BITS = 2048
VALID_DAYS = 3650
HANDSHAKE_TIMEOUT = 10.0
KEY_BLOCK = re.compile(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.S)
CERT_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def validity() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now - datetime.timedelta(days=1), now + datetime.timedelta(days=VALID_DAYS)


def cert_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: PrivateKeyTypes) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_der(key: PublicKeyTypes | CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class HostCertificate:
    """A host's server certificate and its key (PEM); `issuer` names who signed it, for the audit log."""

    cert_pem: str
    key_pem: str
    issuer: str

    @property
    def pem(self) -> str:
        """The xapi-ssl.pem form: the key, then the certificate."""
        return f"{self.key_pem}\n{self.cert_pem}"

    @classmethod
    def from_pem(cls, text: str) -> HostCertificate:
        """Parse an xapi-ssl.pem (a private key and a certificate, in any order); ValueError says what is wrong."""
        key_block, cert_block = KEY_BLOCK.search(text), CERT_BLOCK.search(text)
        if key_block is None or cert_block is None:
            raise ValueError(f"{CERTIFICATE_PATH}: a private key and a certificate are needed")
        try:
            certificate = x509.load_pem_x509_certificate(cert_block.group().encode())
            key = serialization.load_pem_private_key(key_block.group().encode(), password=None)
        except (TypeError, UnsupportedAlgorithm) as error:  # an encrypted key, an algorithm unknown here
            raise ValueError(f"{CERTIFICATE_PATH}: {error}") from None
        if public_der(key.public_key()) != public_der(certificate.public_key()):
            raise ValueError(f"{CERTIFICATE_PATH}: the private key does not match the certificate")
        issuer = certificate.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
        return cls(cert_pem(certificate), key_pem(key), str(issuer[0].value) if issuer else "unknown")

    def server_context(self) -> ssl.SSLContext:
        """A server-side context serving this certificate as xapi's stunnel does (TLS 1.2, ECDHE-RSA AES-GCM)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(CIPHERS)
        with tempfile.TemporaryDirectory(prefix="stackops-lab-tls-") as directory:
            path = Path(directory) / "xapi-ssl.pem"
            path.write_text(self.pem)
            context.load_cert_chain(path)
        return context


def build(subject: str, address: str, key: rsa.RSAPrivateKey, issuer: x509.Name, issuer_key: rsa.RSAPrivateKey,
          by_ca: bool) -> x509.Certificate:
    """A server certificate for `subject` (CN and DNS SAN) at `address` (IP SAN), signed by `issuer_key`; `by_ca`:
    with the extensions a CA puts in (xapi's self-signed certificates have the SAN only)."""
    start, end = validity()
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(subject),
                                                           x509.IPAddress(ipaddress.ip_address(address))]),
                              critical=False))
    if by_ca:
        builder = (builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False))
    return builder.sign(issuer_key, hashes.SHA256())


class LabCA:
    """A certificate authority for lab hosts: `pem` is its certificate (what a client is given to verify)."""

    def __init__(self, name: str = "stackops lab XenServer CA") -> None:
        self.name = name
        self.key = new_key()
        start, end = validity()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256()))
        self.pem = cert_pem(self.certificate)

    def issue(self, hostname: str, address: str) -> HostCertificate:
        key = new_key()
        certificate = build(hostname, address, key, self.certificate.subject, self.key, by_ca=True)
        return HostCertificate(cert_pem(certificate), key_pem(key), self.name)


def gencert(hostname: str, address: str) -> HostCertificate:
    """What xapi's gencert makes when xapi-ssl.pem is missing: self-signed, CN and DNS SAN the host name, IP SAN
    the management address."""
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    return HostCertificate(cert_pem(build(hostname, address, key, name, key, by_ca=False)), key_pem(key), "self-signed")


class LabTLS:
    """The lab's TLS state: its CA, each host's certificate in use and the server context serving it. Made with
    the lab: every host gets a certificate of `ca` for its name and address."""

    def __init__(self, lab: XenLab, ca: LabCA) -> None:
        self.lab = lab
        self.ca = ca
        self.certificates: dict[str, HostCertificate] = {}
        self.contexts: dict[str, ssl.SSLContext] = {}
        self.lock = threading.Lock()  # listeners read contexts from their own threads
        for machine in lab.state.machines.values():
            self.install(machine.name, ca.issue(machine.hostname, machine.address), reason="lab CA")

    def install(self, name: str, certificate: HostCertificate, reason: str) -> None:
        context = certificate.server_context()
        with self.lock:
            self.certificates[name], self.contexts[name] = certificate, context
        self.lab.audit_log.record("host.certificate_installed", host=name, issuer=certificate.issuer, reason=reason)

    def context(self, name: str) -> ssl.SSLContext:
        with self.lock:
            return self.contexts[name]

    def certificate(self, name: str) -> HostCertificate:
        with self.lock:
            return self.certificates[name]

    def replace(self, name: str, *, self_signed: bool = False, wrong_address: bool = False,
                ca: LabCA | None = None) -> str:
        """Serve another certificate from now on (new connections; as host.install_server_certificate does):
        the lab CA's for the host's address (the default, back to normal), a self-signed one as gencert makes,
        one of `ca`, or one of the lab CA for another address (192.0.2.x). A dom0's xapi-ssl.pem is rewritten.
        Returns the certificate's PEM."""
        with self.lab.state.lock:
            machine = self.lab.state.machine(name)
            if self_signed:
                certificate = gencert(machine.hostname, machine.address)
            else:
                address = f"192.0.2.{machine.index % 254 + 1}" if wrong_address else machine.address  # TEST-NET-1
                certificate = (ca or self.ca).issue(machine.hostname, address)
            self.install(name, certificate, reason="replaced")
            self.dom0_written(machine)
            return certificate.cert_pem

    def cloned(self, machine: Machine, source: Machine) -> None:
        """`machine` became a disk copy of `source`: it serves the source's certificate."""
        self.install(machine.name, self.certificate(source.name), reason=f"cloned from {source.name}")
        self.dom0_written(machine)

    # -------------------------------------------------------------------------------- a dom0's xapi-ssl.pem
    def dom0_written(self, machine: Machine) -> None:
        """Write the host's certificate into its dom0's xapi-ssl.pem (a dom0 stand-in's, while the lab runs)."""
        dom0s = self.lab.dom0s
        if dom0s is None or not dom0s.active:
            return
        path = dom0s[machine.name].path(CERTIFICATE_PATH)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.stackops-lab")  # atomically, mode 0400, as gencert does
        temporary.unlink(missing_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(descriptor, "w") as file:
            file.write(self.certificate(machine.name).pem)
        temporary.replace(path)

    def dom0_read(self, machine: Machine) -> None:
        """xapi starting on a dom0 stand-in: a missing xapi-ssl.pem is made anew (self-signed, gencert), a changed
        one is served; one that cannot be used keeps the certificate served so far (xapi.certificate_error)."""
        dom0s = self.lab.dom0s
        if dom0s is None or not dom0s.active:
            return
        try:
            text = dom0s[machine.name].path(CERTIFICATE_PATH).read_text()
        except FileNotFoundError:
            self.install(machine.name, gencert(machine.hostname, machine.address), reason="generated")
            self.dom0_written(machine)
            return
        except OSError as error:
            self.lab.audit_log.record("xapi.certificate_error", host=machine.name, error=str(error))
            return
        if text.strip() == self.certificate(machine.name).pem.strip():
            return
        try:
            certificate = HostCertificate.from_pem(text)
            self.install(machine.name, certificate, reason=CERTIFICATE_PATH)
        except (ValueError, ssl.SSLError) as error:
            self.lab.audit_log.record("xapi.certificate_error", host=machine.name, error=str(error))
