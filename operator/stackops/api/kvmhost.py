"""KvmHost: a KVM hypervisor for CloudStack with Open vSwitch networking (second seed document).

Packages, Open vSwitch bridges, LACP bonds, VLAN fake bridges, VXLAN/GRE tunnels, the OVSDB manager (NSX),
libvirtd and qemu settings, the cloudstack-agent properties, AppArmor/SELinux, and the host's registration in
CloudStack, with an on-host automatic revert for network changes that could cut the operator off.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .common import (
    CIDR_V4,
    CloudStackConnection,
    CloudStackName,
    ConfigMapKeySelector,
    DeletionPolicy,
    Host,
    HttpUrl,
    InterfaceName,
    MaintenanceWindow,
    Notifications,
    IPv4,
    Model,
    Port,
    ResourceCommon,
    SecretKeySelector,
    TLSSecretRef,
    SSHSettings,
    Status,
    StatusModel,
)

Cidr = Annotated[str, Field(pattern=CIDR_V4, max_length=18)]
Mtu = Annotated[int, Field(ge=576, le=9216)]
# A package name as apt and dnf/yum take it on their command line. Not ending in `-` or a single `+`: apt-get
# reads `foo-` as "remove foo" and `foo+` as "install foo" when no package has the whole name (`g++` and
# `gcc-c++` stay possible: `foo++` can at worst install `foo+`).
PackageName = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9.+_-]{0,126}[a-z0-9._]|[a-z0-9.+_-]{0,125}\+\+)?$")]
# The same for the version in `cloudstack-agent=<version>` (apt) or `cloudstack-agent-<version>` (dnf/yum).
PackageVersion = Annotated[str, Field(pattern=r"^[0-9]([0-9A-Za-z.+~_-]{0,62}[0-9A-Za-z.~_])?$")]
PropertyKey = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$")]
# Values end up in agent.properties, written escaped as Java's Properties.store escapes them
# (reconcile/kvmhost/properties.py). Refused besides: C0 and C1 control characters, DEL, and the Unicode line and
# paragraph separators U+2028 and U+2029 -- text that line-based readers and tools split or mangle. The two
# separators stand in the pattern as themselves: the API server's RE2 spells them \x{2028}, Python's re \u2028,
# and neither reads the other's escape.
PropertyValue = Annotated[str, Field(pattern="^[^\\x00-\\x1f\\x7f-\\x9f\u2028\u2029]*$", max_length=1024)]
HostTag = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")]
Timestamp = Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$",
                                 max_length=40)]
# A maintenance group as the user names it (a CloudStack cluster name fits): it becomes part of Lease names.
MaintenanceGroup = Annotated[str, Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._ -]{0,61}[A-Za-z0-9])?$")]


class Packages(Model):
    """Packages the host needs: KVM/qemu, libvirt, bridge-utils, Open vSwitch and cloudstack-agent, named as the
    host's package manager (apt or yum/dnf, detected) names them.

    A `repositoryURL` is verified with the OpenPGP key in `signingKeySecretRef` or `signingKeyConfigMapRef` (apt:
    `signed-by=`; dnf/yum: `gpgcheck=1`, `repo_gpgcheck=1`, `gpgkey=`) and fetched over https. An unsigned repository
    needs `allowUnsigned: true`, a plain `http://` one `allowPlainHTTP: true`; without them the spec is refused
    (`InvalidSpec`)."""

    install: bool = True
    """Install missing packages with the host's package manager."""
    repository_url: HttpUrl | None = None
    """Package repository to add for cloudstack-agent (e.g. one a CloudStackRelease publishes): a flat apt
    repository (`deb <url> /`) or a yum/dnf `baseurl`."""
    signing_key_secret_ref: SecretKeySelector | None = None
    """Secret key holding the ASCII-armored OpenPGP public key (`-----BEGIN PGP PUBLIC KEY BLOCK-----`, as `gpg
    --armor --export` prints it) the repository is signed with. Written to `/etc/apt/keyrings/stackops-cloudstack.asc`
    (apt: the `Release` file must be signed, `InRelease` or `Release.gpg`) or
    `/etc/pki/rpm-gpg/RPM-GPG-KEY-stackops-cloudstack` (dnf/yum: `repodata/repomd.xml.asc` and the packages must
    be signed)."""
    signing_key_config_map_ref: ConfigMapKeySelector | None = None
    """ConfigMap key holding the repository's ASCII-armored OpenPGP public key, instead of `signingKeySecretRef` (a
    public key need not be kept secret; whoever may change the ConfigMap chooses which packages the host trusts):
    checked and written the same way. Set one of the two, not both."""
    allow_unsigned: bool = False
    """Accept a repository without a signing key (apt `[trusted=yes]`, dnf/yum `gpgcheck=0`): whoever can change
    what the URL serves can run code as root on the host."""
    allow_plain_http: bool = False
    """Accept an `http://` repository URL. With a signing key, packages cannot be altered, but an eavesdropper
    sees what is installed and a man in the middle can withhold updates or replay older signed metadata."""
    cloudstack_agent_version: PackageVersion | None = None
    """Exact cloudstack-agent version to install; unset: the repository's newest."""
    extra: Annotated[list[PackageName], Field(max_length=64)] = []
    """More packages to install, by the names the host's package manager uses (e.g. `nfs-common` with apt,
    `nfs-utils` with dnf/yum). A missing one is installed, an installed one is never upgraded, and one dropped
    from the list stays installed."""

    @model_validator(mode="after")
    def _verified_repository(self) -> "Packages":
        url = self.repository_url
        keys = [name for name, ref in (("signingKeySecretRef", self.signing_key_secret_ref),
                                       ("signingKeyConfigMapRef", self.signing_key_config_map_ref)) if ref is not None]
        if url is None:
            if keys:
                raise ValueError(f"{keys[0]} is set without a repositoryURL to verify")
            return self
        if len(keys) > 1:
            raise ValueError("set either signingKeySecretRef or signingKeyConfigMapRef, not both")
        if keys and self.allow_unsigned:
            raise ValueError(f"set either {keys[0]} or allowUnsigned, not both")
        if not keys and not self.allow_unsigned:
            raise ValueError("repositoryURL needs signingKeySecretRef or signingKeyConfigMapRef (the repository's "
                             "OpenPGP public key), or allowUnsigned: true to install from it unverified")
        if url.startswith("http://") and not self.allow_plain_http:
            raise ValueError("repositoryURL is plain http://: use https://, or set allowPlainHTTP: true")
        return self


class Bond(Model):
    """An LACP bond on a bridge (`ovs-vsctl add-bond cloudbr0 bond0 eno49 eno50 bond_mode=balance-tcp lacp=active
    other_config:lacp-time=fast`)."""

    name: InterfaceName
    """Name of the bond's Open vSwitch port, e.g. `bond0`. Renaming it creates a new bond and removes the old one
    (when the operator made it): the bridge loses that uplink for a moment."""
    interfaces: Annotated[list[InterfaceName], Field(min_length=2, max_length=8)]
    """The NICs bonded together, e.g. `eno49` and `eno50`; none may be a port of another bridge
    (`InterfaceInUse`). Changing the list deletes and re-creates the bond, which interrupts its traffic."""
    bond_mode: Literal["balance-tcp", "balance-slb", "active-backup"] = "balance-tcp"
    """How traffic is spread over the NICs (Open vSwitch `bond_mode`): `balance-tcp` by connection (needs LACP on
    the switch), `balance-slb` by source MAC and VLAN without switch support, `active-backup` one NIC at a time.
    Changed in place on the next pass."""
    lacp: Literal["active", "passive", "off"] = "active"
    """LACP negotiation with the switch (Open vSwitch `lacp`): `active` sends LACP packets, `passive` only answers
    them, `off` uses none (then pick `balance-slb` or `active-backup`). Must match the switch ports; changed in
    place on the next pass."""
    lacp_time: Literal["fast", "slow"] = "fast"
    """How often LACP packets are sent (`other_config:lacp-time`): `fast` every second, so a dead link is noticed
    in about 3 s; `slow` every 30 s (about 90 s). Should match the switch; changed in place on the next pass."""


class VlanBridge(Model):
    """A fake bridge carrying one VLAN of its parent (`ovs-vsctl add-br mgmt0 cloudbr0 123`)."""

    name: InterfaceName
    """Name of the fake bridge and of its host interface, e.g. `mgmt0`. Renaming it creates a new fake bridge and
    removes the old one (when the operator made it), with its addresses."""
    vlan: Annotated[int, Field(ge=1, le=4094)]
    """802.1Q VLAN ID the fake bridge carries, tagged on its parent bridge's uplinks. Changing it deletes and
    re-creates the fake bridge on the new VLAN, which interrupts its traffic."""
    addresses: Annotated[list[Cidr], Field(max_length=8)] = []
    """IPv4 addresses (CIDR) on the fake bridge's interface."""
    mtu: Mtu | None = None
    """MTU in bytes of the fake bridge's interface (Open vSwitch `mtu_request`); unset leaves it as it is.
    Changed in place on the next pass."""


class Tunnel(Model):
    """A VXLAN or GRE port (`add-port br vxlan0 -- set Interface vxlan0 type=vxlan options:remote_ip=…`)."""

    name: InterfaceName
    """Name of the tunnel's port and interface, e.g. `vxlan0`. Renaming it creates a new port and removes the old
    one (when the operator made it)."""
    type: Literal["vxlan", "gre"] = "vxlan"
    """Encapsulation: `vxlan` (UDP port 4789) or `gre` (IP protocol 47); both ends must use the same. Changing it
    switches the interface's type in place on the next pass."""
    remote_ip: IPv4
    """IPv4 address of the tunnel's other end (`options:remote_ip`), e.g. the peer hypervisor's tunnel address.
    Changed in place on the next pass."""
    key: Annotated[int, Field(ge=0, le=4294967295)] | None = None
    """`options:key` (VNI for VXLAN, key for GRE)."""


class InternalPort(Model):
    """An internal port with an address (`add-port br vi0 -- set Interface vi0 type=internal`)."""

    name: InterfaceName
    """Name of the internal port and of the host interface it makes, e.g. `vi0`. Renaming it creates a new port
    and removes the old one (when the operator made it), with its addresses."""
    addresses: Annotated[list[Cidr], Field(max_length=8)] = []
    """IPv4 addresses with their prefix length, e.g. `10.1.2.3/24`, on the port's interface (`ip addr add`, and in
    the host's network configuration for the next boot). Addresses the operator added and the spec drops are
    removed; addresses added by hand are kept."""
    mtu: Mtu | None = None
    """MTU in bytes of the port's interface (Open vSwitch `mtu_request`); unset leaves it as it is. Changed in
    place on the next pass."""


class Bridge(Model):
    """An Open vSwitch bridge."""

    name: InterfaceName
    """Name of the bridge and its host interface, e.g. `cloudbr0` (the name CloudStack's KVM traffic labels use).
    Created when missing; renaming it creates a new bridge and removes the old one when the operator made it."""
    datapath_type: Literal["system", "netdev"] = "system"
    """`datapath_type`: `system` (kernel) or `netdev` (userspace, as OVS-DPDK hosts use)."""
    mtu: Mtu | None = None
    """MTU of the bridge's interface and its bonds' NICs (e.g. 9000 for jumbo frames, 1400 under tunnels)."""
    addresses: Annotated[list[Cidr], Field(max_length=8)] = []
    """IPv4 addresses (CIDR) on the bridge's own interface."""
    ports: Annotated[list[InterfaceName], Field(max_length=32)] = []
    """Plain NICs added as ports."""
    bonds: Annotated[list[Bond], Field(max_length=8)] = []
    """Bonds of NICs added to this bridge as uplinks. A bond the operator made and the list drops is removed from
    the bridge on the next pass."""
    vlan_bridges: Annotated[list[VlanBridge], Field(max_length=256)] = []
    """VLAN fake bridges on top of this bridge."""
    tunnels: Annotated[list[Tunnel], Field(max_length=256)] = []
    """VXLAN/GRE ports."""
    internal_ports: Annotated[list[InternalPort], Field(max_length=64)] = []
    """Internal ports on this bridge: extra host interfaces with their own addresses on the bridge's network
    (e.g. for storage or a tunnel endpoint). One the operator made and the list drops is removed."""


class OVSDBManager(Model):
    """The OVSDB manager Open vSwitch connects to (NSX): `ovs-vsctl set-manager ssl:<address>:<port>`."""

    protocol: Literal["ssl", "tcp"] = "ssl"
    """`ssl`: TLS with the client certificate of `clientCertificate` (what NSX expects); `tcp`: plain TCP, neither
    encrypted nor authenticated. Changing it sets a new manager target (`ovs-vsctl set-manager`), which makes Open
    vSwitch reconnect."""
    address: Host
    """Manager (controller cluster) address."""
    port: Port = 6632
    """TCP port the manager listens on; the default is the OVSDB port NSX controllers use. Changing it sets a new
    manager target, which makes Open vSwitch reconnect."""
    client_certificate: Literal["Generate", "Secret"] = "Generate"
    """`Generate`: a key and self-signed certificate are made on the host (`ovs-pki req` + `self-sign`) and their
    fingerprint shown in status, to paste into the controller. `Secret`: the key and certificate of
    `certificateSecretRef` are written to `/etc/openvswitch/stackops-client-{privkey,cert}.pem` (mode 0600; the key
    only ever on the command's stdin) and used by `set-ssl`; rewritten when their content or mode differs; the
    certificate's fingerprint is shown in status."""
    certificate_secret_ref: TLSSecretRef | None = None
    """Secret (type `kubernetes.io/tls`: `tls.crt`, `tls.key` without a passphrase and belonging to the first
    certificate of `tls.crt`, optional `ca.crt`) for `clientCertificate: Secret`. With `ca.crt` the manager is
    verified against it (`/etc/openvswitch/stackops-cacert.pem`, no bootstrap). Its annotation
    `stackops.io/allowed-destinations` must list the host's address."""
    bootstrap_ca: bool = True
    """Learn the manager's CA certificate on first connect (`set-ssl --bootstrap`) when no `ca.crt` is given."""


class OpenVSwitch(Model):
    """Open vSwitch configuration. Objects the operator creates are marked in `external_ids` and removed when the
    spec drops them; anything else is never touched."""

    bridges: Annotated[list[Bridge], Field(max_length=32)] = []
    """Open vSwitch bridges the host must have, with their ports, bonds, VLAN fake bridges, tunnels, internal ports
    and addresses. A bridge the operator made and the list drops is removed with its ports; bridges made by hand
    are never removed. All of it is also written as the host's network configuration, so that a reboot brings the
    addresses and MTUs back: `/etc/network/interfaces.d/stackops` (ifupdown with Open vSwitch's stanzas, sourced
    from `/etc/network/interfaces`) on apt hosts, `/etc/sysconfig/network-scripts/ifcfg-<name>` on dnf/yum hosts;
    a hand edit of those files is drift."""
    manager: OVSDBManager | None = None
    """The OVSDB manager (e.g. an NSX controller cluster) Open vSwitch connects to; unset leaves the host's manager
    setting as it is."""
    rollback_timeout_seconds: Annotated[int, Field(ge=10, le=600)] = 60
    """A change that could cut the management path is reverted on the host unless the operator reconnects and
    confirms within this many seconds."""


class Libvirt(Model):
    """`/etc/libvirt/libvirtd.conf` keys CloudStack needs, edited key by key (the rest of the file is kept)."""

    listen_tls: bool = False
    """`listen_tls`: libvirtd also accepts TLS connections on port 16514 (with certificates the operator does not
    manage). Changing it rewrites the key and restarts libvirtd; running VMs keep running."""
    listen_tcp: bool = True
    """`listen_tcp` (and libvirtd started with `--listen` or its TCP socket)."""
    tcp_port: Port = 16509
    """`tcp_port`: the TCP port libvirtd listens on with `listenTCP`; CloudStack migrates VMs between hosts through
    it. Changing it rewrites the key and restarts libvirtd, and every probe checks libvirtd listens there."""
    auth_tcp: Literal["none", "sasl"] = "none"
    """`auth_tcp`: how TCP clients log in: `none` (CloudStack's setup; whoever reaches the port controls libvirt,
    so keep it on a management network) or `sasl`. Changing it rewrites the key and restarts libvirtd."""
    mdns_adv: bool = False
    """`mdns_adv`: whether libvirtd announces itself on the network over mDNS; CloudStack's setup turns it off.
    Changing it rewrites the key and restarts libvirtd."""


class Qemu(Model):
    """`/etc/libvirt/qemu.conf` keys."""

    vnc_listen: Annotated[str, Field(pattern=r"^([0-9.]*|[0-9a-fA-F:]*)$", max_length=45)] = "0.0.0.0"
    """`vnc_listen` (the seeds set it to `""`; CloudStack's console proxy needs the host's VNC ports reachable)."""


class CloudStackAgent(Model):
    """cloudstack-agent settings (`/etc/cloudstack/agent/agent.properties`, `log4j-cloud.xml`)."""

    properties: Annotated[dict[PropertyKey, PropertyValue], Field(max_length=256)] = {
        "network.bridge.type": "openvswitch"
    }
    """`agent.properties` keys to set; other keys in the file are kept."""
    log_level: Literal["FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"] = "INFO"
    """Level of the agent's `com.cloud` logger in `/etc/cloudstack/agent/log4j-cloud.xml`. Changing it rewrites
    the file and restarts cloudstack-agent; a file without that logger is left alone."""


class SecurityPolicy(Model):
    """AppArmor (Debian/Ubuntu) and SELinux (RHEL) as libvirt needs them."""

    app_armor: Literal["Unmanaged", "Enforce", "DisableLibvirt"] = "Unmanaged"
    """`DisableLibvirt`: the libvirtd and virt-aa-helper profiles are disabled and unloaded (as in the seeds)."""
    se_linux: Literal["Unmanaged", "Enforcing", "Permissive"] = "Unmanaged"
    """SELinux mode, set now (`setenforce`) and at boot (`/etc/selinux/config`)."""


class CloudStackHost(Model):
    """Registration of the host in CloudStack (`addHost`)."""

    connection: CloudStackConnection
    """CloudStack API endpoint and keys."""
    zone: CloudStackName
    """Name of the CloudStack zone the host is added to (`ZoneNotFound`, `Stalled`, when there is none). Read only
    when adding: changing it later does not move a registered host."""
    pod: CloudStackName
    """Name of the pod in that zone the host is added to (`PodNotFound` when there is none). Read only when
    adding: changing it later does not move a registered host."""
    cluster: CloudStackName
    """Name of the existing KVM cluster in that pod the host joins (`ClusterNotFound`, `ClusterNotKVM`
    otherwise). Read only when adding: changing it later does not move a registered host."""
    host_tags: Annotated[list[HostTag], Field(max_length=32)] = []
    """Tags given to the host by `addHost`: offerings with a host tag place VMs only on hosts that have it. Read
    only when adding: changing the list later does not change a registered host's tags."""
    username: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "root"
    """User CloudStack logs in as on the host to set up the agent."""
    password_secret_ref: SecretKeySelector | None = None
    """Secret key with that user's password; unset: CloudStack logs in with its own SSH key (4.18 and later; the
    management server's public key must be in the user's `authorized_keys`). The Secret's annotation
    `stackops.io/allowed-destinations` must list the CloudStack url and the host's address."""


class HostMaintenance(Model):
    """Maintenance of the host under CloudStack maintenance, one host of its group at a time (kured's way, with
    CloudStack's maintenance as the drain): the group's lock taken (a Kubernetes Lease), CloudStack
    `prepareHostForMaintenance` (its VMs migrated away), package changes, the reboot, the host back with a clean
    probe, `cancelHostMaintenance`, the host's earlier state (Enabled or Disabled) restored, the lock released. Each
    step is written to `status.maintenance` before it is taken. Nothing is asked by default: a host is maintained
    for `rebootWhenRequired`, `restartAfter`, or a `cloudstackAgentVersion` change on a registered host."""

    reboot_when_required: bool = False
    """Reboot the host when it says it needs it (`status.rebootRequired`: `/var/run/reboot-required`, or
    `needs-restarting -r` on EL). Off by default: the host is only reported (`REBOOT` column)."""
    restart_after: Timestamp | None = None
    """A rolling restart (like `kubectl rollout restart`): a host that booted before this time (RFC 3339) is
    rebooted once, under maintenance. Set the same time on every KvmHost of a group: the lock takes them one by
    one. A time in the future restarts nothing until it has passed."""
    package_changes: Literal["UnderMaintenance", "InPlace"] = "UnderMaintenance"
    """How a new `packages.cloudstackAgentVersion` reaches a host registered in CloudStack with the agent
    installed: `UnderMaintenance` (the host emptied first, then the agent installed and restarted, then given back;
    a reboot follows only if the host then asks for one and `rebootWhenRequired` is set), or `InPlace` (installed
    on the running host, as on a host that is not registered)."""
    group: MaintenanceGroup | None = None
    """Hosts of one group take the lock in turn (at most `maxUnavailable` at once). Unset: the CloudStack cluster
    of `cloudstack.cluster`, or `default` for a host not registered. Groups are per namespace: the lock is a
    Lease `stackops-maintenance-<group>-<n>` in the KvmHost's namespace."""
    max_unavailable: Annotated[int, Field(ge=1, le=64)] = 1
    """How many hosts of the group may be in maintenance at once (lock slots). Give every KvmHost of a group the
    same value."""
    lock_ttl_seconds: Annotated[int, Field(ge=60, le=86400)] = 900
    """How long the lock stays held without being renewed: the holder renews it at every step and while it
    waits; a holder that vanished (its KvmHost deleted, the operator gone for good) frees its slot after this."""
    host_timeout_seconds: Annotated[int, Field(ge=60, le=86400)] = 1800
    """How long one step may take (CloudStack emptying the host, the reboot and the host back with a clean probe,
    the host Up in CloudStack again) before maintenance stops with the host given back (`Stalled`)."""
    window: MaintenanceWindow | None = None
    """Maintenance starts only inside this window (a maintenance under way when it closes is finished). Unset: any
    time."""
    notifications: Notifications | None = None
    """A webhook called before the host is emptied and after it is given back (JSON: host, group, phase
    `before`/`after`, request). A notice that fails stops the maintenance before the host is touched."""


class KvmHostSpec(ResourceCommon):
    """Desired state of a KVM hypervisor host."""

    address: Host
    """Management address (SSH and libvirt are reached here)."""
    ssh: SSHSettings
    """SSH access, with a pinned host key."""
    packages: Packages = Packages()
    """The packages the host needs and the repository cloudstack-agent may come from. Missing packages are
    installed before anything else: a pass that installs changes nothing more, the next one configures the
    rest."""
    openvswitch: OpenVSwitch = OpenVSwitch()
    """Open vSwitch bridges, bonds, VLANs, tunnels and manager."""
    libvirt: Libvirt = Libvirt()
    """Keys of `/etc/libvirt/libvirtd.conf` that CloudStack needs, and libvirtd's `--listen` option; a change
    rewrites the file and restarts libvirtd."""
    qemu: Qemu = Qemu()
    """Keys of `/etc/libvirt/qemu.conf`; a change rewrites the file and restarts libvirtd (VMs started afterwards
    get the new settings)."""
    cloudstack_agent: CloudStackAgent = CloudStackAgent()
    """`agent.properties` keys and the log level of cloudstack-agent, written once the package is installed; a
    change rewrites the file and restarts cloudstack-agent."""
    security_policy: SecurityPolicy = SecurityPolicy()
    """AppArmor/SELinux."""
    cloudstack: CloudStackHost | None = None
    """Register the host in CloudStack once configured."""
    maintenance: HostMaintenance = HostMaintenance()
    """Reboots and package changes under CloudStack maintenance, coordinated across the hosts of a group."""
    deletion_policy: DeletionPolicy = "Orphan"
    """What deleting the KvmHost does: `Orphan` leaves the host as it is; `Delete` also removes the host from
    CloudStack (after maintenance) and the Open vSwitch objects the operator created."""
    resync_interval_seconds: Annotated[int, Field(ge=30, le=86400)] = 300
    """How often the host is observed again to find and correct drift."""

    @model_validator(mode="after")
    def _unique_names(self) -> "KvmHostSpec":
        seen: set[str] = set()
        for bridge in self.openvswitch.bridges:
            names = [bridge.name, *bridge.ports, *(b.name for b in bridge.bonds), *(v.name for v in bridge.vlan_bridges),
                     *(t.name for t in bridge.tunnels), *(p.name for p in bridge.internal_ports),
                     *(nic for b in bridge.bonds for nic in b.interfaces)]
            for name in names:
                if name in seen:
                    raise ValueError(f"openvswitch: interface name {name!r} is used twice")
                seen.add(name)
        manager = self.openvswitch.manager
        if manager is not None and manager.client_certificate == "Secret" and manager.certificate_secret_ref is None:
            raise ValueError("openvswitch.manager.certificateSecretRef is required when clientCertificate is Secret")
        return self


class Versions(StatusModel):
    """Software versions found on the host."""

    os: str | None = None
    """Operating system (`PRETTY_NAME`)."""
    kernel: str | None = None
    """Release of the running kernel (`uname -r`); a newer kernel installed but not booted yet does not show."""
    openvswitch: str | None = None
    """Version `ovs-vsctl --version` prints; empty when Open vSwitch is not installed. Shown in the `OVS` column
    of `kubectl get kvmhosts`."""
    libvirt: str | None = None
    """Version `libvirtd --version` prints; shown in the `LIBVIRT` column of `kubectl get kvmhosts`."""
    qemu: str | None = None
    """Version `qemu-system-x86_64 --version` (or `/usr/libexec/qemu-kvm --version`) prints."""
    cloudstack_agent: str | None = None
    """Installed cloudstack-agent package version as dpkg or rpm reports it (rpm: version-release), to compare
    with `spec.packages.cloudstackAgentVersion`."""


class ManagerStatus(StatusModel):
    """The OVSDB manager connection."""

    target: str = ""
    """The manager target(s) Open vSwitch has now, e.g. `ssl:10.0.0.5:6632`; differs from the spec's while a change
    is pending (or left alone under `Observe`)."""
    connected: bool = False
    """Whether Open vSwitch has a live connection to the manager (`is_connected`); false while the manager is
    unreachable or does not accept the client certificate yet."""
    certificate_fingerprint: str = ""
    """SHA-1 fingerprint of the client certificate (paste into the controller)."""


class RollbackStatus(StatusModel):
    """The last network change the host reverted by itself."""

    generation: int
    """Generation whose change was reverted (not retried for the same generation)."""
    reason: str
    """Why the change was judged unsafe and what happened."""
    time: str
    """When the host reverted the change (RFC 3339), as recorded on the host."""


class HostMaintenanceStatus(StatusModel):
    """The host's maintenance in flight (or the last one), written before each step so that a restarted operator
    goes on from it and never takes a disruptive step twice."""

    request: str = ""
    """What the maintenance is for: the reboot the host asked for, `restartAfter`, a package change."""
    phase: Literal["InProgress", "Failed", "Completed"] = "InProgress"
    """`InProgress`; `Failed` (a step failed: the host was given back when it could be, see the `Stalled`
    condition; a new generation of the spec tries again); `Completed`."""
    step: Literal["Locking", "Draining", "Updating", "Rebooting", "Returning", "Restoring", "Releasing", "Done"] = \
        "Locking"
    """The step being taken: `Locking` (the group's lock), `Draining` (CloudStack maintenance: VMs migrated away),
    `Updating` (package changes), `Rebooting`, `Returning` (SSH and a clean probe after the boot, then
    `cancelHostMaintenance` and the host Up), `Restoring` (the recorded state back: Disabled when it was),
    `Releasing` (the lock), `Done`."""
    generation: int | None = None
    """The spec generation the maintenance (or its failure) belongs to: a failed maintenance is not tried again
    until the spec's generation changes."""
    group: str = ""
    """The maintenance group (`spec.maintenance.group`, else the CloudStack cluster) whose lock slot the host
    holds while in maintenance."""
    lock: str = ""
    """The Lease of the slot held (`stackops-maintenance-<group>-<n>`)."""
    state_before: Literal["", "Enabled", "Disabled"] = ""
    """The host's CloudStack resource state before maintenance; a Disabled host is enabled for
    `prepareHostForMaintenance` (CloudStack refuses it on a Disabled host) and disabled again at the end."""
    reboot: bool = False
    """Whether this maintenance reboots the host (`restartAfter`, a reboot the host asked for); false for a package
    change alone, which restarts only the agent."""
    packages: list[str] = []
    """The package changes made under maintenance, e.g. `cloudstack-agent 4.19.1.0 → 4.20.0.0`."""
    boot_id: str = ""
    """The host's boot id (`/proc/sys/kernel/random/boot_id`) before the reboot: a different one means it
    rebooted, so a restarted operator never reboots it twice."""
    reason: str = ""
    """The reason of the failure, as the `Stalled` condition shows it (e.g. `MaintenanceFailed`,
    `MaintenanceTimeout`); empty unless the phase is `Failed`."""
    message: str = ""
    """The failure, with the step named (and the VMs CloudStack could not move)."""
    started_at: str = ""
    """When the lock was taken (RFC 3339)."""
    finished_at: str = ""
    """When the maintenance completed or failed (RFC 3339); empty while it runs."""


class KvmHostStatus(Status):
    """Observed state of a KVM host."""

    versions: Versions | None = None
    """Versions of the OS, kernel, Open vSwitch, libvirt, qemu and cloudstack-agent, as the last probe read
    them."""
    package_manager: str | None = None
    """`apt` or `yum`/`dnf`."""
    manager: ManagerStatus | None = None
    """The OVSDB manager target and connection as the last probe found them; only with
    `spec.openvswitch.manager`."""
    rollback: RollbackStatus | None = None
    """Last automatic revert."""
    cloudstack_host_id: str | None = None
    """UUID CloudStack gave the host, found by its management address in `listHosts`; set once the host is
    registered."""
    cloudstack_host_state: str | None = None
    """The host's state in CloudStack (Up, Connecting, Alert, Disconnected, Down…) and its resource state when not
    Enabled (e.g. `Up/Maintenance`)."""
    cloudstack_version: str | None = None
    """The CloudStack management server's version (`listCapabilities` → `cloudstackversion`), as last read."""
    reboot_required: bool | None = None
    """Whether the host says it needs a reboot, as the last probe found: the sentinel `/var/run/reboot-required`
    that Debian/Ubuntu packages leave (update-notifier-common, unattended-upgrades) on any host, or on EL (dnf/yum)
    `needs-restarting -r` (exit status 1: needed). Empty when not known (an EL host without needs-restarting).
    Shown in the `REBOOT` column of `kubectl get kvmhosts -o wide`; stackops does not reboot the host for it."""
    reboot_required_by: list[str] = []
    """The packages that asked for the reboot: the lines of `/var/run/reboot-required.pkgs` (Debian/Ubuntu), or
    the core packages `needs-restarting -r` names (EL); empty when none are named."""
    boot_time: str | None = None
    """When the host booted (RFC 3339), as the last probe found it: the start of its PID 1 (`/proc/stat` btime plus
    `/proc/1/stat`'s start time). `restartAfter` reboots a host that booted before it."""
    maintenance: HostMaintenanceStatus | None = None
    """The maintenance in flight, or the last one: its request, the step being taken (written before it is taken),
    the lock slot held and the host's CloudStack state before; kept after it completes or fails."""
    maintenance_progress: str | None = None
    """The maintenance at a glance (`Draining`, `Rebooting`, `Completed`, `waiting for the lock`); shown in the
    `MAINTENANCE` column of `kubectl get kvmhosts`."""
