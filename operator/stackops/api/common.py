"""Types shared by every kind: the model base, Secret and ConfigMap references, policies, conditions, status base.

The pydantic models are the single source of truth: the CRD schemas in ``crds/`` are generated from
them (``stackops crds``), the operator parses every object through them, and the README's field
reference is generated from their docstrings.
"""
from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

GROUP = "stackops.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
PAUSED_ANNOTATION = f"{GROUP}/paused"

# Patterns are anchored and free of look-arounds so that the API server (RE2) and pydantic agree.
# Names, addresses, interfaces, refs and URLs admit no shell metacharacter, quote, white space or newline.
# The few free-text values (SR name labels, agent property values, OS type descriptions) only ever reach an API
# or a file, never a command line, and admit no control characters.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = rf"^{_OCTET}(\.{_OCTET}){{3}}$"
# A DNS name's last label starts with a letter, so that "10.0.0.300" is neither an IPv4 address nor a name.
_HOSTNAME = r"([a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?\.)*[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?"
_IPV6 = r"[0-9a-fA-F]{0,4}(:[0-9a-fA-F]{0,4}){2,7}"
# An IPv4 address, an IPv6 address or a DNS name.
HOST = rf"^({_OCTET}(\.{_OCTET}){{3}}|{_IPV6}|{_HOSTNAME})$"
CIDR_V4 = rf"^{_OCTET}(\.{_OCTET}){{3}}/([0-9]|[12][0-9]|3[0-2])$"
# Linux interface names: at most 15 characters (IFNAMSIZ - 1), no '/', no white space.
INTERFACE = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$"
# CloudStack object names (zones, pods, clusters): letters, digits and a few separators, no spaces.
CLOUDSTACK_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$"
VERSION_3_OR_4 = r"^[0-9]+\.[0-9]+\.[0-9]+(\.[0-9]+)?$"
HTTP_URL = r"^https?://[a-zA-Z0-9.-]+(:[0-9]{1,5})?(/[a-zA-Z0-9._~%!*()+,=:@/-]*)?$"
SSH_PUBLIC_KEY = (
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521) [A-Za-z0-9+/]+={0,3}$"
)
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"


# Words written in capitals inside a camelCase name, as the Kubernetes API conventions do (podIP, clusterIP).
ACRONYMS = {"ca": "CA", "ip": "IP", "sr": "SR", "srs": "SRs", "url": "URL", "uuid": "UUID", "vm": "VM", "vms": "VMs", "ha": "HA",
            "http": "HTTP", "xenapi": "XenAPI"}


def to_camel(name: str) -> str:
    """snake_case → camelCase, with ACRONYMS in capitals after the first word (``heartbeat_sr`` → ``heartbeatSR``)."""
    first, *rest = name.split("_")
    return first + "".join(ACRONYMS.get(word, word.capitalize()) for word in rest)


class Model(BaseModel):
    """Base of every API model: camelCase in YAML, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


class StatusModel(Model):
    """Status models tolerate fields written by newer operator versions."""

    model_config = ConfigDict(extra="ignore", frozen=False)


DnsLabel = Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
SecretName = Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]
Host = Annotated[str, Field(pattern=HOST, max_length=253)]
IPv4 = Annotated[str, Field(pattern=IPV4, max_length=15)]
InterfaceName = Annotated[str, Field(pattern=INTERFACE, max_length=15)]
CloudStackName = Annotated[str, Field(pattern=CLOUDSTACK_NAME, max_length=255)]
Version = Annotated[str, Field(pattern=VERSION_3_OR_4, max_length=32)]
HttpUrl = Annotated[str, Field(pattern=HTTP_URL, max_length=2048)]
Port = Annotated[int, Field(ge=1, le=65535)]

ManagementPolicy = Literal["Manage", "Observe"]
DeletionPolicy = Literal["Delete", "Orphan"]


class SecretReference(Model):
    """A Secret in the same namespace as the resource; the keys it must hold are named where it is used."""

    required_keys: ClassVar[tuple[str, ...]] = ()
    optional_keys: ClassVar[tuple[str, ...]] = ()  # read when present (`stackops plan`: from the environment too)
    name: SecretName
    """Name of a Secret in the resource's namespace, read at the start of every pass: a missing Secret or key
    leaves the resource `Reconciling` (`SecretNotFound`, `SecretKeyMissing`), retried every 30 s. A new value in
    the Secret is used from the next pass on."""


class CredentialsSecretRef(SecretReference):
    """A Secret with the keys `username` and `password`."""

    required_keys: ClassVar[tuple[str, ...]] = ("username", "password")


class TLSSecretRef(SecretReference):
    """A `kubernetes.io/tls` Secret: `tls.crt`, `tls.key` and optionally `ca.crt`."""

    required_keys: ClassVar[tuple[str, ...]] = ("tls.crt", "tls.key")


class CloudStackSecretRef(SecretReference):
    """A Secret with the keys `url`, `apiKey` and `secretKey` (and `allowPlainHTTP` for an http:// url)."""

    required_keys: ClassVar[tuple[str, ...]] = ("url", "apiKey", "secretKey")
    optional_keys: ClassVar[tuple[str, ...]] = ("allowPlainHTTP",)


class SecretKeySelector(Model):
    """One key of a Secret in the same namespace as the resource."""

    name: SecretName
    """Name of a Secret in the resource's namespace, read at the start of every pass: a missing one leaves the
    resource `Reconciling` (`SecretNotFound`), retried every 30 s. A new value in the Secret is used from the next
    pass on."""
    key: Annotated[str, Field(pattern=SECRET_KEY, max_length=253)]
    """Key of the Secret's `data` that holds the value; a Secret without it leaves the resource `Reconciling`
    (`SecretKeyMissing`)."""


class ConfigMapKeySelector(Model):
    """One key of a ConfigMap in the same namespace as the resource: for a value that is not secret."""

    name: Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]
    """Name of a ConfigMap in the resource's namespace, read at the start of every pass: a missing one leaves the
    resource `Reconciling` (`ConfigMapNotFound`), retried every 30 s. A new value in the ConfigMap is used from the
    next pass on."""
    key: Annotated[str, Field(pattern=SECRET_KEY, max_length=253)]
    """Key of the ConfigMap's `data` (or `binaryData`, read as UTF-8) that holds the value; a ConfigMap without it
    leaves the resource `Reconciling` (`ConfigMapKeyMissing`)."""


class SSHKeySecretRef(SecretKeySelector):
    """A Secret key holding an SSH private key; the Secret's annotation `stackops.io/allowed-destinations` must list
    the host's address."""

    key: Annotated[str, Field(pattern=SECRET_KEY, max_length=253)] = "ssh-privatekey"
    """Key inside the Secret's data (default `ssh-privatekey`, as in a `kubernetes.io/ssh-auth` Secret)."""


class CASecretRef(SecretKeySelector):
    """A Secret key holding PEM CA certificates."""

    key: Annotated[str, Field(pattern=SECRET_KEY, max_length=253)] = "ca.crt"
    """Key inside the Secret's data (default `ca.crt`)."""


class SSHSettings(Model):
    """How the operator reaches a host over SSH. The host key is pinned: a host that presents another key is
    not talked to."""

    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "root"
    """Login user. A user other than root needs `sudo: true` and password-less sudo on the host."""
    port: Port = 22
    """TCP port of the host's SSH server. Changing it makes the next pass connect anew on that port (the old
    connection is closed once nothing uses it)."""
    private_key_secret_ref: SSHKeySecretRef
    """Secret key holding the private key (OpenSSH or PEM format), e.g. a `kubernetes.io/ssh-auth` Secret with key
    `ssh-privatekey`."""
    host_key: Annotated[str, Field(pattern=SSH_PUBLIC_KEY, max_length=16384)]
    """The host's public host key as in `known_hosts` without the host name, e.g. `ssh-ed25519 AAAA…`
    (`ssh-keyscan -t ed25519 <host>` prints it). Required: the operator never trusts a key on first use."""
    sudo: bool = False
    """Run commands through `sudo -n` (for a non-root user)."""
    connect_timeout_seconds: Annotated[int, Field(ge=1, le=300)] = 10
    """Timeout for connecting and for the SSH handshake."""


class CloudStackConnection(Model):
    """A CloudStack management server API endpoint. The Secret holds the keys `url`
    (e.g. `https://cloud.example.com/client/api`), `apiKey` and `secretKey` of an admin account."""

    secret_ref: CloudStackSecretRef
    """Secret with the keys `url` (e.g. `https://cloud.example.com/client/api`), `apiKey` and `secretKey`. A plain
    `http://` url is refused (`InsecureEndpoint`) unless the Secret also has the key `allowPlainHTTP: "true"`."""


class Condition(StatusModel):
    """A kstatus condition."""

    type: str
    """Condition type: `Ready`, `Reconciling`, `Stalled` or a domain condition of the kind."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition of this `type` holds (`Unknown`: the operator cannot tell). `Ready` `True` means the
    last pass found the infrastructure as the spec asks."""
    reason: str
    """CamelCase reason, stable for tools to match on."""
    message: str = ""
    """Human-readable detail."""
    last_transition_time: str
    """When the status last changed (RFC 3339)."""
    observed_generation: int = 0
    """The object's `metadata.generation` when a pass last set this condition; lower than the current one means
    the condition still describes an earlier spec."""


class ActionRecord(StatusModel):
    """One change the operator would make or has made to infrastructure."""

    description: str
    """What the change does, in words."""
    disruptive: bool = False
    """Whether the change can interrupt workloads or the management path."""


class Status(StatusModel):
    """Fields every kind's status has."""

    observed_generation: int = 0
    """The `metadata.generation` last reconciled."""
    conditions: list[Condition] = []
    """kstatus conditions: `Ready`, `Reconciling`, `Stalled` and the kind's domain conditions."""
    drift: list[ActionRecord] = []
    """Differences between the spec and the infrastructure found by the last observe (under `Observe` these are
    left alone)."""
    last_applied: list[ActionRecord] = []
    """The changes the last apply made."""
    last_reconcile_time: str | None = None
    """When the operator last finished a reconcile (RFC 3339)."""


TimeOfDay = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
Weekday = Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


class MaintenanceWindow(Model):
    """When disruptive work may start (router reboots, host reboots)."""

    days: Annotated[list[Weekday], Field(min_length=1, max_length=7)] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    """Weekdays on which the window opens, in `timeZone`; a window that runs past midnight belongs to the day it
    opens. The default opens it every day."""
    start: TimeOfDay
    """Opening time, `HH:MM`."""
    duration_minutes: Annotated[int, Field(ge=15, le=1440)]
    """How long the window stays open, in minutes from `start`. Disruptive work starts only inside it; what is
    under way when it closes is followed to its end."""
    time_zone: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$", max_length=64)] = "UTC"
    """IANA time zone of `start`, e.g. `Europe/Amsterdam`."""


class Notifications(Model):
    """Notices to tenants or operators: a webhook called with JSON before and after each disruptive step (a router
    reboot: router, network, account, domain, phase; a host's maintenance turn: pool, host, phase)."""

    webhook_url_secret_ref: SecretKeySelector
    """Secret key holding the webhook URL (it may carry a token)."""
    allow_local_addresses: bool = False
    """Let the webhook's host be, or resolve to, a loopback (`localhost`, 127.0.0.0/8, ::1), link-local
    (169.254.0.0/16 with the cloud metadata service 169.254.169.254, fe80::/10), unspecified or other cloud metadata
    address (fd00:ec2::254, 100.100.100.200): the operator's own Pod and node. Without it such a notice is not sent
    and the work stalls (`WebhookAddressNotAllowed`). Checked on the addresses the name resolves to when each
    notice is sent; redirects are never followed."""


class ResourceCommon(Model):
    """Spec fields every kind has."""

    management_policy: ManagementPolicy = "Manage"
    """`Manage`: converge the infrastructure to the spec. `Observe`: only read it and report the differences as
    drift in status (nothing is changed)."""
