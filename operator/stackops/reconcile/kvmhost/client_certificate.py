"""The OVSDB manager's SSL settings, and `clientCertificate: Secret`: the client key and certificate (and the
manager's CA certificate, when the Secret has `ca.crt`) written from a `kubernetes.io/tls` Secret to the host.

The Secret's files are written to paths of their own in /etc/openvswitch (`stackops-client-*.pem`), so the two
modes never overwrite each other's files and `ovs-vsctl set-ssl` says which one is in use. Each is written
atomically with mode 0600 from the first byte (umask 077), owned like Open vSwitch's database (the user
ovsdb-server runs as: root on Debian, `openvswitch` on RHEL), its content on the command's stdin (never in argv,
never in an action's description or repr). Drift is found by the SHA-256 digest and the mode of each file, which
the probe reports (the content of the key never leaves the host); a difference rewrites the file. Open vSwitch
rereads a file whose modification time changed when it next connects; the SSL settings are set again when the
paths or the CA bootstrap differ from the spec's.

Before anything is written the Secret's values are checked (MaterialInvalid, never quoting them): one PEM private
key without a passphrase (Open vSwitch cannot ask for one), PEM certificates only, and a key that belongs to the
first certificate. Pure functions; the planner calls plan_ssl.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ...api.kvmhost import OVSDBManager
from .actions import OVS_PKI_GENERATE, HostAction, OvsCommand, RunCommand, WritePrivateFile
from .observed import ClientFile, OvsState
from .paths import CA_CERT, GENERATED_CERT, GENERATED_KEY, OWNER_REFERENCE, PKI_DIR, SECRET_CA, SECRET_CERT, SECRET_KEY


_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)\r?\n-----END \1-----", re.S)
_KEY_LABELS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")


class MaterialInvalid(ValueError):
    """The Secret's values are no usable client key and certificate (the message never quotes them)."""


@dataclass(frozen=True)
class Material:
    """The Secret's values as they are written to the host."""

    certificate: str
    key: str = field(repr=False)
    ca: str | None = None

    def files(self) -> dict[str, str]:
        written = {SECRET_KEY: self.key, SECRET_CERT: self.certificate}
        if self.ca is not None:
            written[SECRET_CA] = self.ca
        return written


def _labels(text: str) -> list[str]:
    return [m.group(1) for m in _BLOCK.finditer(text)]


def _only_certificates(text: str, what: str) -> list[x509.Certificate]:
    labels = _labels(text)
    if not labels or set(labels) != {"CERTIFICATE"}:
        found = "a private key" if any("PRIVATE KEY" in label for label in labels) else (
            f"{', '.join(sorted(set(labels)))} blocks" if labels else "no PEM block")
        raise MaterialInvalid(f"{what} must hold PEM certificates only (-----BEGIN CERTIFICATE-----), it has {found}")
    try:
        return x509.load_pem_x509_certificates(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise MaterialInvalid(f"{what}: a certificate block does not parse") from None


def material(values: dict[str, str], secret: str) -> Material:
    """The Secret's `tls.crt`, `tls.key` and optional `ca.crt`, checked; MaterialInvalid names the Secret and
    the key at fault, never a value."""
    where = f"Secret {secret}"
    certificate, key, ca = values.get("tls.crt", ""), values.get("tls.key", ""), values.get("ca.crt")
    chain = _only_certificates(certificate, f"{where}, tls.crt")
    labels = _labels(key)
    if labels == ["ENCRYPTED PRIVATE KEY"] or "Proc-Type: 4,ENCRYPTED" in key:
        raise MaterialInvalid(f"{where}, tls.key is encrypted: Open vSwitch cannot ask for its passphrase")
    if len(labels) != 1 or labels[0] not in _KEY_LABELS:
        raise MaterialInvalid(f"{where}, tls.key must hold one PEM private key (-----BEGIN PRIVATE KEY-----)")
    try:
        private = serialization.load_pem_private_key(key.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise MaterialInvalid(f"{where}, tls.key: the private key does not parse") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(serialization.Encoding.DER, public) != \
            chain[0].public_key().public_bytes(serialization.Encoding.DER, public):
        raise MaterialInvalid(f"{where}: tls.key is not the key of the (first) certificate in tls.crt")
    if ca is not None and ca.strip():
        _only_certificates(ca, f"{where}, ca.crt")
    else:
        ca = None
    return Material(certificate=certificate, key=key, ca=ca)


def fingerprint(certificate_pem: str) -> str:
    """SHA-1 of the first certificate, as `openssl x509 -fingerprint -sha1` and NSX show it (`AB:CD:…`)."""
    first = x509.load_pem_x509_certificates(certificate_pem.encode("ascii"))[0]
    return ":".join(f"{b:02X}" for b in first.fingerprint(hashes.SHA1()))  # noqa: S303 - a display fingerprint


def digest(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def plan_files(found: Material, files: dict[str, ClientFile], secret: str) -> list[HostAction]:
    """Write what differs (content or mode) from the Secret; remove a CA file the Secret no longer has."""
    names = {SECRET_KEY: "client key", SECRET_CERT: "client certificate", SECRET_CA: "manager CA certificate"}
    actions: list[HostAction] = []
    for path, content in found.files().items():
        have = files.get(path)
        if have is None or have.digest != digest(content) or have.mode != "600":
            why = "" if have is None else " (its content differs)" if have.digest != digest(content) else \
                f" (its mode was {have.mode})"
            actions.append(WritePrivateFile(f"write the OVSDB {names[path]} from Secret {secret} to {path}{why}",
                                            operation="add", path=path, content=content,
                                            owner_reference=OWNER_REFERENCE))
    if found.ca is None and SECRET_CA in files:
        actions.append(RunCommand(f"remove {SECRET_CA}: Secret {secret} has no ca.crt any more",
                                   operation="remove", command=("rm", "-f", SECRET_CA)))
    return actions


def plan_ssl(manager: OVSDBManager, ovs: OvsState, found: Material | None, files: dict[str, ClientFile],
             generated: bool) -> list[HostAction]:
    """The client files and `set-ssl` for an `ssl:` manager. `found`: the Secret's material (clientCertificate:
    Secret); `generated`: whether ovs-pki's certificate is on the host (clientCertificate: Generate)."""
    actions: list[HostAction] = []
    if manager.client_certificate == "Secret":
        assert found is not None and manager.certificate_secret_ref is not None
        actions += plan_files(found, files, manager.certificate_secret_ref.name)
        key, certificate = SECRET_KEY, SECRET_CERT
        ca, bootstrap = (SECRET_CA, False) if found.ca is not None else (CA_CERT, manager.bootstrap_ca)
    else:
        if not generated:
            actions.append(RunCommand("generate the OVSDB client key and self-signed certificate (ovs-pki)",
                                      command=("sh", "-c", OVS_PKI_GENERATE, "stackops-ovs-pki", PKI_DIR)))
        key, certificate, ca, bootstrap = GENERATED_KEY, GENERATED_CERT, CA_CERT, manager.bootstrap_ca
    if (ovs.ssl_private_key, ovs.ssl_certificate, ovs.ssl_ca_certificate, ovs.ssl_bootstrap) != \
            (key, certificate, ca, bootstrap):
        command = ("--", "--bootstrap", "set-ssl") if bootstrap else ("--", "set-ssl")
        actions.append(OvsCommand("configure SSL for the OVSDB manager connection" + (
            f" (the client certificate from Secret {manager.certificate_secret_ref.name})"
            if manager.client_certificate == "Secret" and manager.certificate_secret_ref else ""),
            args=(*command, key, certificate, ca)))
    return actions
