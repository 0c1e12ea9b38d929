"""XenPool: a XenServer / XCP-ng pool as CloudStack needs it (first seed document).

Pool HA with an explicit timeout, the three-host rule, membership changes inside the HA dance, no VM HA inside
XenServer, hosts left disabled after a crash, the persistent vswitch controller, unique host UUIDs, and the
pool's registration as a CloudStack cluster.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .common import (
    CASecretRef,
    CloudStackConnection,
    CloudStackName,
    DeletionPolicy,
    DnsLabel,
    Host,
    HttpUrl,
    IPv4,
    MaintenanceWindow,
    Model,
    Notifications,
    Port,
    ResourceCommon,
    CredentialsSecretRef,
    SSHKeySecretRef,
    SSH_PUBLIC_KEY,
    Status,
    StatusModel,
)


class XenPoolMember(Model):
    """A XenServer host that belongs in the pool."""

    name: DnsLabel
    """Host name; also the `name_label` the host gets when it is made unique."""
    address: Host
    """Management address of the host (XenAPI is served here; dom0 SSH too)."""
    ssh_host_key: Annotated[str, Field(pattern=SSH_PUBLIC_KEY, max_length=16384)] | None = None
    """dom0's pinned SSH host key (`ssh-ed25519 AAAA…`); needed when `uniqueness.policy` is `MakeUnique`, and for
    `masterFailover.policy: EmergencyTransition` (a supporter without one cannot be asked)."""


class TLSSettings(Model):
    """How the XenAPI server certificate is verified."""

    ca_secret_ref: CASecretRef | None = None
    """Secret key with the PEM CA bundle that signed the hosts' XenAPI certificates."""
    insecure_skip_verify: bool = False
    """Skip certificate verification. Only for labs: must be set explicitly when no CA is given."""
    plain_http: bool = False
    """Speak plain HTTP to the XenAPI (no TLS at all; the password crosses the network in clear). Only for labs."""


class HeartbeatSRSelector(Model):
    """Which shared storage repository holds the HA heartbeat and state file (one of the fields)."""

    uuid: Annotated[str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")] | None = None
    """UUID of the shared SR to hold the heartbeat (`xe sr-list` prints it); none with it stalls the pool
    (`HeartbeatSRNotFound`), an SR that is not shared too (`HeartbeatSRNotShared`). Choosing another SR disables
    and re-enables HA on the next pass."""
    name_label: Annotated[str, Field(pattern=r"^[^\x00-\x1f]{1,255}$")] | None = None
    """Name label of the shared SR to hold the heartbeat; it must name exactly one SR (`HeartbeatSRNotFound`,
    `HeartbeatSRAmbiguous` otherwise). Choosing another SR disables and re-enables HA on the next pass."""
    type: Literal["nfs", "lvmoiscsi", "lvmohba", "gfs2", "cifs"] | None = None
    """SR type; the pool's single shared SR of that type is used (the seeds' `xe sr-list type=nfs`)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> "HeartbeatSRSelector":
        chosen = [f for f in ("uuid", "name_label", "type") if getattr(self, f) is not None]
        if len(chosen) != 1:
            raise ValueError("heartbeatSR needs exactly one of uuid, nameLabel, type")
        return self


class HASettings(Model):
    """Pool HA (`xe pool-ha-enable`), which CloudStack relies on for pool-master failover."""

    enabled: bool = True
    """Enable pool HA."""
    heartbeat_sr: HeartbeatSRSelector = HeartbeatSRSelector(type="nfs")
    """The shared SR for heartbeats (default: the pool's NFS SR)."""
    timeout_seconds: Annotated[int, Field(ge=30, le=3600)] = 180
    """HA timeout (`ha-config:timeout`), always sent explicitly. Without it XenServer falls back to 30 s, and a
    30 s storage or network hiccup fences every host of the pool. 180 s is what ring buffers typically hold.
    Values below 30 are refused."""
    host_failures_to_tolerate: Annotated[int, Field(ge=0, le=16)] | None = None
    """`ha-host-failures-to-tolerate`; unset leaves XenServer's computed value."""
    allow_overcommit: bool = True
    """`ha-allow-overcommit`. CloudStack protects no VMs through XenServer HA, so overcommit does not matter."""
    allow_fewer_than_three_hosts: bool = False
    """Allow HA in a pool of fewer than three hosts. With two hosts, losing one makes the other think it is
    isolated and fence itself, forever. Only for labs."""


class VSwitchController(Model):
    """The pool's Open vSwitch controller (NSX), set through the pool API (`xe pool-set-vswitch-controller`) so it
    survives reboots and toolstack restarts, unlike `ovs-vsctl set-manager` on a host."""

    address: IPv4
    """IPv4 address of the controller (e.g. the NSX controller cluster) every host's Open vSwitch connects to.
    Changing it sets the new address on the next pass (`pool.set_vswitch_controller`)."""


class VMHARestartPriority(Model):
    """VMs' `ha_restart_priority`. CloudStack does VM HA itself; XenServer restarting VMs too corrupts them."""

    policy: Literal["Clear", "Ignore"] = "Clear"
    """`Clear`: every VM's restart priority is set to empty (under `Observe`: VMs with one are listed).
    `Ignore`: not looked at."""


class HostRecovery(Model):
    """Hosts that XenServer leaves disabled after a crash (CloudStack then shows them in Alert)."""

    enable_disabled_hosts: bool = True
    """Enable (`xe host-enable`) member hosts found disabled, with an Event each time."""


class MasterFailover(Model):
    """What to do when the pool master is lost while HA is off. With HA on, XenServer elects a master itself and
    the operator only reports."""

    policy: Literal["Disabled", "EmergencyTransition"] = "Disabled"
    """`EmergencyTransition`: when the operator finds no master, it asks each live supporter from its dom0 (over
    the dom0 SSH of `uniqueness.ssh` and `members[].sshHostKey`, required for it) whether it reaches the master;
    once a majority of the live supporters have not reached it for `delaySeconds`, one of them (the spec's
    `master` if it is one) gets `pool.emergency_transition_to_master`, then `pool.recover_slaves`. The operator's
    own view is never enough: without dom0 SSH, or while the master answers its supporters, there is no
    failover."""
    delay_seconds: Annotated[int, Field(ge=30, le=86400)] = 300
    """How long a majority of the live supporters must have been unable to reach the master before failing
    over."""


class DomZeroSSH(Model):
    """SSH settings for the hosts' dom0 (host keys are per member: `members[].sshHostKey`)."""

    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "root"
    """User the operator logs in to dom0 as. Commands run without sudo, and making a clone unique rewrites
    `/etc/xensource-inventory` and restarts xapi: in practice `root`."""
    port: Port = 22
    """TCP port of dom0's SSH server, the same on every member. Changing it makes the next pass connect anew on
    that port."""
    private_key_secret_ref: SSHKeySecretRef
    """Secret key holding the private key (OpenSSH or PEM format) whose public key is in the user's
    `authorized_keys` on every member. The Secret's annotation `stackops.io/allowed-destinations` must list each
    member's address."""
    connect_timeout_seconds: Annotated[int, Field(ge=1, le=300)] = 10
    """Seconds to wait for a dom0's TCP connection and SSH handshake. A dom0 that does not answer in time gives
    no view of the master (no failover on its word) or fails `MakeUnique` for this pass (`MakeUniqueFailed`,
    retried)."""


class Uniqueness(Model):
    """Cloned hosts share `INSTALLATION_UUID`: CloudStack skips the second, and joining fails."""

    policy: Literal["Detect", "MakeUnique"] = "Detect"
    """`Detect`: duplicate host UUIDs or name labels among the members stop the pool (`Stalled`).
    `MakeUnique`: the clone is fixed over SSH (new UUIDs, state DB removed, xapi restarted, name label set)."""
    ssh: DomZeroSSH | None = None
    """dom0 SSH settings; required for `MakeUnique`, and for `masterFailover.policy: EmergencyTransition` (the
    supporters are asked from dom0 whether they reach the master)."""


class CloudStackCluster(Model):
    """Registration of the pool as a CloudStack cluster (`addCluster` with the pool master's URL)."""

    connection: CloudStackConnection
    """CloudStack API endpoint and keys."""
    zone: CloudStackName
    """Name of the CloudStack zone the cluster is in (`ZoneNotFound`, `Stalled`, when there is none). The cluster
    is looked up there on every pass: after a change the operator adds a cluster in the new zone when it has none
    there, and leaves the old one as it is."""
    pod: CloudStackName
    """Name of the pod in that zone the cluster is in (`PodNotFound` when there is none). After a change the
    operator adds a cluster in the new pod when it has none there, and leaves the old one as it is."""
    cluster: CloudStackName
    """Cluster name to create or adopt."""


UpdateName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")]
Timestamp = Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$",
                                 max_length=40)]


class XenUpdate(Model):
    """A XenServer update: an update ISO (7.1 and later: uploaded through `/import_raw_vdi`, then
    `pool_update.introduce`) or a hotfix `.xsupdate` (6.x: `/pool_patch_upload`)."""

    name: UpdateName
    """The update's name label as it is inside the file (`XS82E031`); hosts are compared by it (`xe update-list`
    shows it). A file whose name label differs stops the maintenance (`UpdateNameMismatch`)."""
    url: HttpUrl
    """Where the operator downloads the file from."""
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]
    """SHA-256 of the file; a download that does not match is not uploaded (`UpdateChecksumMismatch`)."""


class PoolMaintenance(Model):
    """Rolling maintenance of the pool: updates and reboots host by host, master first, inside the HA dance (HA's
    state recorded and restored as it was), each host emptied first (CloudStack `prepareHostForMaintenance` when the
    pool is registered, then `host.disable` and `host.evacuate`), every step written to status before it is
    taken."""

    updates: Annotated[list[XenUpdate], Field(max_length=64)] = []
    """The pool's update level: updates applied, in this order, to every host that lacks them; a host is rebooted
    only where an update's `after_apply_guidance` (or `host.updates_requiring_reboot`) says so. Each update is
    prechecked on every host that lacks it before any host is touched."""
    restart_after: Timestamp | None = None
    """A rolling restart (like `kubectl rollout restart`): every host that booted before this time (RFC 3339) is
    rebooted once, in the same roll as the updates. A time in the future restarts nothing until it has passed."""
    reboot_when_required: bool = False
    """Also reboot hosts that report updates waiting for a reboot (`host.updates_requiring_reboot`, e.g. an update
    applied by hand), in a roll of their own when nothing else is asked for. Off by default: a host is rebooted
    only for the updates above or `restartAfter`."""
    window: MaintenanceWindow | None = None
    """Host turns start only inside this window (a turn under way when it closes is finished; then HA is restored
    and the roll goes on in the next window). Unset: any time."""
    notifications: Notifications | None = None
    """A webhook called before and after each host's turn (JSON: pool, host, phase `before`/`after`, updates,
    reboot). A notice that fails stops the roll before the host is touched (`NotificationFailed`)."""
    update_sr_uuid: Annotated[str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")] | None = None
    """SR that update files are uploaded to; unset: the pool's default SR."""
    host_timeout_seconds: Annotated[int, Field(ge=60, le=86400)] = 1800
    """How long one step of a host's turn may take (emptied, rebooted and back, Up in CloudStack) before the roll
    stops with the host named (`Stalled`)."""


class XenPoolSpec(ResourceCommon):
    """Desired state of a XenServer pool."""

    members: Annotated[list[XenPoolMember], Field(min_length=1, max_length=64)]
    """Hosts of the pool. Hosts not listed are ejected only when `allowedDestructiveActions` has `Eject`."""
    master: DnsLabel | None = None
    """Member that should be the pool master; a different master is moved here (`designate_new_master`,
    inside the HA dance). Unset: whichever member is master stays master."""
    credentials_secret_ref: CredentialsSecretRef
    """Secret with the keys `username` and `password` of the pool's root account. Its annotation
    `stackops.io/allowed-destinations` must list every member's address, and with `cloudstack` the CloudStack url
    (else `CredentialNotAllowed`, nothing sent)."""
    tls: TLSSettings = TLSSettings()
    """XenAPI TLS verification: a CA, or an explicit `insecureSkipVerify`."""
    xenapi_port: Port | None = None
    """Port of the hosts' XenAPI; default 443 (80 with `tls.plainHTTP`)."""
    ha: HASettings = HASettings()
    """Pool HA, on by default with an explicit timeout and a shared heartbeat SR. A new timeout or heartbeat SR
    disables and re-enables HA on the next pass; the other settings change in place."""
    vswitch_controller: VSwitchController | None = None
    """Pool-wide Open vSwitch controller; unset leaves it alone."""
    vm_ha_restart_priority: VMHARestartPriority = VMHARestartPriority()
    """VM HA restart priorities (CloudStack pools keep them empty)."""
    host_recovery: HostRecovery = HostRecovery()
    """Re-enabling hosts left disabled after a crash."""
    master_failover: MasterFailover = MasterFailover()
    """Master failover while HA is off."""
    uniqueness: Uniqueness = Uniqueness()
    """Duplicate host UUIDs and name labels (cloned hosts)."""
    cloudstack: CloudStackCluster | None = None
    """Register the pool as a CloudStack cluster."""
    maintenance: PoolMaintenance = PoolMaintenance()
    """Updates and rolling restarts, host by host (none by default)."""
    allowed_destructive_actions: Annotated[list[Literal["Eject"]], Field(max_length=8)] = []
    """Acts that can destroy state and are refused unless listed: `Eject` (remove a host that left the spec from the
    pool; the host resets and reboots)."""
    deletion_policy: DeletionPolicy = "Orphan"
    """What deleting the XenPool does: `Orphan` leaves the pool as it is; `Delete` also removes the CloudStack
    cluster registration the operator made. The pool itself is never dismantled."""
    resync_interval_seconds: Annotated[int, Field(ge=30, le=86400)] = 300
    """How often the pool is observed again to find and correct drift."""

    @model_validator(mode="after")
    def _cross_field(self) -> "XenPoolSpec":
        names = [m.name for m in self.members]
        addresses = [m.address for m in self.members]
        if len(set(names)) != len(names):
            raise ValueError("members: names must be unique")
        if len(set(addresses)) != len(addresses):
            raise ValueError("members: addresses must be unique")
        if self.master is not None and self.master not in names:
            raise ValueError(f"master: {self.master!r} is not one of the members")
        if self.tls.ca_secret_ref is None and not self.tls.insecure_skip_verify and not self.tls.plain_http:
            raise ValueError("tls: give caSecretRef, or set insecureSkipVerify: true explicitly")
        if self.uniqueness.policy == "MakeUnique":
            if self.uniqueness.ssh is None:
                raise ValueError("uniqueness.ssh is required when uniqueness.policy is MakeUnique")
            missing = [m.name for m in self.members if m.ssh_host_key is None]
            if missing:
                raise ValueError(f"members[].sshHostKey is required for MakeUnique; missing for {', '.join(missing)}")
        names = [u.name for u in self.maintenance.updates]
        if len(set(names)) != len(names):
            raise ValueError("maintenance.updates: names must be unique")
        return self


class XenHostStatus(StatusModel):
    """A host as the pool reports it."""

    name: str
    """Member name (or the host's name label when it is not in the spec)."""
    uuid: str = ""
    """The host's UUID in XenServer; two hosts with the same one are clones (see `spec.uniqueness`)."""
    address: str = ""
    """The host's management address as XenServer reports it; spec members are matched to hosts by it."""
    master: bool = False
    """True for the one host that is pool master now (the same as `role: master`)."""
    role: Literal["master", "supporter"] = "supporter"
    """`master` for the pool master, `supporter` for every other host of the pool (which follow the master)."""
    enabled: bool = True
    """Whether XenServer lets the host start VMs (`host.enabled`); a member found disabled after a crash is
    enabled again when `hostRecovery.enableDisabledHosts` is on."""
    live: bool = True
    """Whether the pool master sees the host running (`host_metrics.live`). A host that is not live is neither
    re-enabled nor added to CloudStack."""


class XenHAStatus(StatusModel):
    """HA as the pool reports it."""

    enabled: bool = False
    """Whether pool HA is on (`ha_enabled`); shown in the `HA` column of `kubectl get xenpools`."""
    timeout_seconds: int | None = None
    """HA timeout in seconds the pool runs with (`ha_configuration.timeout`); empty when HA was enabled without
    one, so that XenServer uses 30 s."""
    statefiles: list[str] = []
    """`ha_statefiles` (heartbeat SR VDIs)."""
    host_failures_to_tolerate: int | None = None
    """How many host failures HA is configured to survive (`ha_host_failures_to_tolerate`), as
    `spec.ha.hostFailuresToTolerate` set it or XenServer computed it."""
    plan_exists_for: int | None = None
    """How many further host failures XenServer has a plan to survive with its protected VMs restarted
    (`ha_plan_exists_for`)."""
    overcommitted: bool = False
    """Whether the pool lacks the resources to restart its protected VMs after the tolerated failures
    (`ha_overcommitted`); CloudStack pools protect no VMs through XenServer HA, so this rarely matters."""


class PendingPoolOperation(StatusModel):
    """A membership change in flight, recorded before HA is disabled so that a restarted operator finishes it and
    re-enables HA with the recorded configuration."""

    operation: Literal["Join", "Eject", "DesignateMaster", "ReconfigureHA"]
    """The first membership change of the dance: `Join` a member, `Eject` a host or `DesignateMaster` (move the
    master). A restarted operator finishes the dance before anything else."""
    host: str = ""
    """Member name (or name label) of the host that change is done to."""
    ha_configuration: dict[str, str] = {}
    """The pool's `ha_configuration` (e.g. `timeout`) read before HA was disabled; HA is enabled again with it,
    even by a restarted operator."""
    heartbeat_srs: list[str] = []
    """Heartbeat SR UUIDs to restore afterwards."""
    started_at: str = ""
    """When it began (RFC 3339)."""
    restore_ha: bool = True
    """Whether HA was on before the change and is enabled again afterwards."""
    cluster_unmanaged: bool = False
    """Whether the CloudStack cluster was set Unmanaged for the change (a master change) and is set Managed
    again afterwards."""


class HostTurn(StatusModel):
    """One host's turn in a roll, as recorded before each step."""

    name: str
    """Member name of the host whose turn this is (`spec.members[].name`)."""
    address: str = ""
    """The host's management address, by which the turn finds it in the pool even if the spec changes meanwhile."""
    step: Literal["Pending", "Draining", "Evacuating", "Updating", "Rebooting", "Returning", "Done"] = "Pending"
    """The step being taken (written before it is taken): `Draining` (CloudStack maintenance), `Evacuating`
    (`host.disable`, `host.evacuate`), `Updating`, `Rebooting`, `Returning` (back, enabled, Up in CloudStack,
    maintenance cancelled), `Done`."""
    updates: list[str] = []
    """Updates this host lacked when its turn was planned."""
    reboot: bool = False
    """Whether the turn reboots the host (an update asks for it, updates wait for it, or `restartAfter`); a host
    that is not rebooted is not emptied either: its updates are applied in place."""
    boot_time: str = ""
    """The host's `boot_time` (xapi's `other_config`) before its reboot: a different one means it rebooted, so a
    restarted operator never reboots it twice."""


class RollStatus(StatusModel):
    """The roll in flight (or last finished): written before HA is disabled and before each host step, so that a
    restarted operator resumes it, and HA and the CloudStack cluster end as they were."""

    request: str = ""
    """What the roll is for: the updates and the restart time asked for."""
    phase: Literal["Rolling", "Paused", "Failed", "Completed"] = "Rolling"
    """`Rolling`; `Paused` (the window closed: HA restored, going on in the next window); `Failed` (a step failed:
    the pool was left serving, see the `Stalled` condition; a new generation of the spec tries again);
    `Completed`."""
    generation: int | None = None
    """The spec generation the roll (or its failure) belongs to."""
    hosts: list[HostTurn] = []
    """The hosts' turns, in order: the master first."""
    ha_was_enabled: bool = False
    """Whether HA was on before the roll; it is enabled again at the end with the recorded configuration, and only
    then."""
    ha_configuration: dict[str, str] = {}
    """The pool's `ha_configuration` read before HA was disabled."""
    heartbeat_srs: list[str] = []
    """Heartbeat SR UUIDs HA is enabled on again."""
    cluster_unmanaged: bool = False
    """Whether the CloudStack cluster was set Unmanaged (only for the master's turn) and must be Managed again."""
    reason: str = ""
    """Why the roll failed or paused."""
    message: str = ""
    """The failure, with the host and the update named."""
    started_at: str = ""
    """When the roll began (RFC 3339)."""
    finished_at: str = ""
    """When the roll completed, failed or paused (RFC 3339); empty while it runs."""


class XenPoolStatus(Status):
    """Observed state of a XenServer pool."""

    pool_uuid: str | None = None
    """UUID of the XenServer pool, read from its master on every pass; CloudStack takes it as the cluster's."""
    master: str | None = None
    """Member name of the host that is pool master now (its name label when it is no member); shown in the
    `MASTER` column of `kubectl get xenpools`."""
    host_count: int | None = None
    """How many hosts the pool has now, in the spec or not; shown in the `HOSTS` column."""
    hosts: list[XenHostStatus] = []
    """Every host of the pool as its master reports it, including hosts not in the spec."""
    ha: XenHAStatus | None = None
    """Pool HA as the master reports it, to compare with `spec.ha`."""
    vswitch_controller: str | None = None
    """Address of the pool's vswitch controller as the pool reports it; empty when none is set."""
    vms_with_ha_restart_priority: list[str] = []
    """Name labels of VMs that XenServer HA would restart by itself (a non-empty `ha_restart_priority`). Empty
    after a pass under `vmHARestartPriority.policy: Clear`; listed under `Ignore` or `Observe`."""
    pending_operation: PendingPoolOperation | None = None
    """A membership change in flight (crash-safe HA dance)."""
    maintenance: RollStatus | None = None
    """The rolling maintenance in flight, or the last one."""
    maintenance_progress: str | None = None
    """The roll at a glance (`2/4 xen2 Rebooting`, `Completed`); shown in the `MAINTENANCE` column."""
    cloudstack_cluster_id: str | None = None
    """ID of the CloudStack cluster the pool is registered as."""
    cloudstack_version: str | None = None
    """The CloudStack management server's version (`listCapabilities` → `cloudstackversion`), as last read."""
    master_unreachable_since: str | None = None
    """When the operator first found no pool master answering (RFC 3339); cleared once a master answers."""
    supporters_lost_master_since: str | None = None
    """When a pass first found a majority of the live supporters unable to reach the master from their dom0
    (RFC 3339); cleared by a pass that does not, and once a master answers. Master failover (`masterFailover`)
    counts its delay from here."""
