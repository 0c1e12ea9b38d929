"""The simulated management server's database: zones, pods, clusters, hosts, templates, configurations,
routers, system VMs, domains, accounts, networks and VPCs.

Every entity has a uuid (what the API shows) and a db_id (CloudStack's internal id, which shows up in some
error texts and in VM names: r-<id>-VM, s-<id>-VM, v-<id>-VM share one sequence, as vm_instance ids do).
Removed entities stay resolvable by uuid, as ParamProcessWorker looks uuids up "including removed"; listing
commands then simply do not find them.

All access goes through `State.lock` (one re-entrant lock for the whole database).
"""

from __future__ import annotations

import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T", bound="Entity")


@dataclass(eq=False)
class Entity:
    uuid: str
    db_id: int
    kind = "entity"

    @property
    def id(self) -> str:
        """The id the API shows (the uuid)."""
        return self.uuid


@dataclass(eq=False)
class Domain(Entity):
    name: str = ""
    parent: Domain | None = None
    network_domain: str | None = None
    created: float = field(default_factory=time.time)
    kind = "domain"

    @property
    def path(self) -> str:
        return self.name if self.parent is None else f"{self.parent.path}/{self.name}"

    @property
    def db_path(self) -> str:
        """domain.path as stored: "/" for ROOT, "/child/" below it."""
        return "/" if self.parent is None else f"{self.parent.db_path}{self.name}/"

    @property
    def level(self) -> int:
        return 0 if self.parent is None else self.parent.level + 1

    def within(self, other: Domain) -> bool:
        """True if this domain is `other` or one of its subdomains."""
        domain: Domain | None = self
        while domain is not None:
            if domain is other:
                return True
            domain = domain.parent
        return False


@dataclass(eq=False)
class Account(Entity):
    name: str = ""
    domain: Domain | None = None
    account_type: int = 0  # 0 user, 1 root admin (Account.Type ordinal)
    user_uuid: str = ""
    username: str = ""
    api_key: str | None = None
    secret_key: str | None = None
    state: str = "enabled"  # enabled, disabled, locked (Account.State)
    network_domain: str | None = None
    kind = "account"


@dataclass(eq=False)
class Project(Entity):
    name: str = ""
    display_text: str = ""
    domain: Domain | None = None
    owner: Account | None = None
    project_account: Account | None = None  # the project's own account (PrjAcct-<name>-<id>, type 5)
    state: str = "Active"  # Active, Disabled, Suspended (Project.State)
    created: float = field(default_factory=time.time)
    kind = "project"


@dataclass(eq=False)
class Zone(Entity):
    name: str = ""
    dns1: str = "8.8.8.8"
    dns2: str | None = None
    internal_dns1: str = "10.0.0.2"
    internal_dns2: str | None = None
    guest_cidr: str | None = "10.1.0.0/16"
    network_type: str = "Advanced"
    allocation_state: str = "Enabled"
    network_domain: str | None = None
    domain: Domain | None = None  # a zone dedicated to a domain (createZone domainid); None: public
    security_groups: bool = False
    local_storage: bool = False
    dhcp_provider: str = "VirtualRouter"
    kind = "zone"


@dataclass(eq=False)
class Pod(Entity):
    name: str = ""
    zone: Zone | None = None
    gateway: str = "172.16.0.1"
    netmask: str = "255.255.0.0"
    start_ip: str = "172.16.0.10"
    end_ip: str | None = "172.16.0.250"
    allocation_state: str = "Enabled"
    kind = "pod"


@dataclass(eq=False)
class Cluster(Entity):
    name: str = ""
    pod: Pod | None = None
    hypervisor: str = "KVM"
    cluster_type: str = "CloudManaged"
    allocation_state: str = "Enabled"
    managed_state: str = "Managed"  # Managed, PrepareUnmanaged, Unmanaged, PrepareUnmanagedError
    url: str | None = None
    guid: str | None = None  # cluster.guid: a XenServer cluster's pool uuid (unique; None while it has no host)
    kind = "cluster"

    @property
    def zone(self) -> Zone:
        assert self.pod is not None and self.pod.zone is not None
        return self.pod.zone


@dataclass(eq=False)
class Host(Entity):
    name: str = ""
    cluster: Cluster | None = None
    address: str = ""
    state: str = "Up"  # Status: Up, Down, Disconnected, Alert, Connecting, …
    resource_state: str = "Enabled"  # Enabled, Disabled, PrepareForMaintenance, Maintenance, …
    version: str = ""
    tags: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    url: str = ""
    guid: str = ""  # host.guid: a XenServer host's uuid (findHostByGuid); empty for the fleet's made-up hosts
    hypervisor_version: str = ""  # host.hypervisor_version (XenServer: product_version)
    details: dict[str, str] = field(default_factory=dict)  # host_details: url, username, password, …
    memory_total: int = 68719476736  # host.ram in bytes (listHosts memorytotal)
    kind = "host"

    @property
    def hypervisor(self) -> str:
        assert self.cluster is not None
        return self.cluster.hypervisor


@dataclass(eq=False)
class OsType(Entity):
    description: str = ""
    category: str = ""
    kind = "ostype"


@dataclass(eq=False)
class TemplateZone:
    """template_store_ref of one zone's image store: download state as the SSVM reports it."""

    zone: Zone
    download_state: str = "NOT_DOWNLOADED"  # NOT_DOWNLOADED, DOWNLOAD_IN_PROGRESS, DOWNLOADED, DOWNLOAD_ERROR
    percent: int = 0
    error: str | None = None
    store_state: str = "Allocated"  # ObjectInDataStoreStateMachine.State
    created: float = field(default_factory=time.time)

    @property
    def ready(self) -> bool:
        return self.download_state == "DOWNLOADED"


@dataclass(eq=False)
class Template(Entity):
    name: str = ""
    display_text: str = ""
    hypervisor: str = "KVM"
    format: str = "QCOW2"
    template_type: str = "USER"
    url: str | None = None
    checksum: str | None = None
    ostype: OsType | None = None
    account: Account | None = None
    cross_zones: bool = False
    public: bool = False
    featured: bool = False
    extractable: bool = False
    password_enabled: bool = False
    requires_hvm: bool = True
    bits: int = 64
    size: int = 0
    version: str = "UNKNOWN"
    zones: dict[str, TemplateZone] = field(default_factory=dict)  # zone uuid → store ref
    created: float = field(default_factory=time.time)
    launch_permissions: list[Account] = field(default_factory=list)  # launch_permission rows (other accounts)
    kind = "template"

    def ready_in(self, zone: Zone) -> bool:
        ref = self.zones.get(zone.uuid)
        return ref is not None and ref.ready


@dataclass(eq=False)
class Vpc(Entity):
    name: str = ""
    zone: Zone | None = None
    account: Account | None = None
    redundant: bool = False
    cidr: str = "10.0.0.0/16"
    kind = "vpc"


@dataclass(eq=False)
class Network(Entity):
    name: str = ""
    zone: Zone | None = None
    account: Account | None = None
    redundant: bool = False
    cidr: str = "10.1.1.0/24"
    vpc: Vpc | None = None
    kind = "network"


@dataclass(eq=False)
class Router(Entity):
    name: str = ""
    zone: Zone | None = None
    host: Host | None = None
    last_host: Host | None = None  # vm_instance.last_host_id: the source while it is Migrating
    template: Template | None = None
    version: str | None = None  # the template version recorded in the router (None → UNKNOWN)
    state: str = "Running"
    redundant: bool = False
    redundant_state: str = "UNKNOWN"  # PRIMARY, BACKUP, FAULT, UNKNOWN
    peer: Router | None = None
    pair_key: str | None = None
    network: Network | None = None
    vpc: Vpc | None = None
    account: Account | None = None
    guest_ip: str = ""
    public_ip: str = ""
    link_local_ip: str = ""
    created: float = field(default_factory=time.time)
    hypervisor: str = "KVM"
    kind = "router"


@dataclass(eq=False)
class SystemVm(Entity):
    name: str = ""
    vm_type: str = "secondarystoragevm"  # or consoleproxy
    zone: Zone | None = None
    host: Host | None = None
    last_host: Host | None = None  # vm_instance.last_host_id: the source while it is Migrating
    hypervisor: str = "KVM"
    template: Template | None = None
    state: str = "Running"
    private_ip: str = ""
    public_ip: str = ""
    link_local_ip: str = ""
    created: float = field(default_factory=time.time)
    agent: AgentHost | None = None  # the host row its agent registers (SecondaryStorageVM / ConsoleProxy)
    kind = "systemvm"


@dataclass(eq=False)
class UserVm(Entity):
    """A user instance (vm_instance of type User): where it runs, its service offering's memory and HA flag."""

    name: str = ""
    display_name: str = ""
    zone: Zone | None = None
    host: Host | None = None
    last_host: Host | None = None  # vm_instance.last_host_id: the source while it is Migrating
    state: str = "Running"  # Running, Starting, Stopping, Stopped, Migrating, Error, Unknown
    memory: int = 1024  # MiB (the service offering's)
    cpu_number: int = 1
    cpu_speed: int = 1000
    ha_enable: bool = False  # the service offering's offerha
    account: Account | None = None
    hypervisor: str = "XenServer"
    created: float = field(default_factory=time.time)
    kind = "uservm"

    @property
    def instance_name(self) -> str:
        return f"i-{self.account.db_id if self.account else 2}-{self.db_id}-VM"


@dataclass(eq=False)
class AgentHost(Entity):
    """The host row of a system VM's agent, listed by listHosts with type SecondaryStorageVM/ConsoleProxy."""

    vm: SystemVm | None = None
    kind = "agenthost"


@dataclass(eq=False)
class HypervisorCapability(Entity):
    """A hypervisor_capabilities row: limits and features per hypervisor type and version ("default": any other)."""

    hypervisor: str = "KVM"
    version: str = "default"
    max_guests: int = 50
    max_data_volumes: int = 6
    max_hosts_per_cluster: int | None = None
    security_groups: bool = True
    storage_motion: bool = False
    vm_snapshots: bool = False
    kind = "hypervisorcapability"


@dataclass
class ConfigDef:
    """A row of the configuration table (ConfigKey): scope "Zone" keys also have per-zone values."""

    name: str
    default: str
    category: str = "Advanced"
    description: str = ""
    scope: str = "Global"
    dynamic: bool = True
    component: str = "management-server"
    value_type: str = "String"


class State:
    """The database: entities by kind and by uuid, configuration, id sequences, one lock."""

    KINDS = ("domain", "account", "project", "zone", "pod", "cluster", "host", "ostype", "template", "vpc", "network",
             "router", "systemvm", "agenthost", "job", "hypervisorcapability", "uservm")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tables: dict[str, dict[str, Any]] = {kind: {} for kind in self.KINDS}
        self.by_uuid: dict[str, Entity] = {}
        self.removed: dict[str, Entity] = {}
        self.sequences: dict[str, int] = {}
        self.configs: dict[str, ConfigDef] = {}
        self.global_values: dict[str, str] = {}
        self.zone_values: dict[tuple[str, str], str] = {}
        self.admin: Account | None = None
        self.system_account: Account | None = None
        self.root_domain: Domain | None = None
        self.uuid_source = uuidlib.uuid4

    # ------------------------------------------------------------------ ids
    def next_id(self, sequence: str) -> int:
        value = self.sequences.get(sequence, 0) + 1
        self.sequences[sequence] = value
        return value

    def new_uuid(self) -> str:
        return str(self.uuid_source())

    # ------------------------------------------------------------------ entities
    def add(self, entity: T) -> T:
        self.tables[entity.kind][entity.uuid] = entity
        self.by_uuid[entity.uuid] = entity
        return entity

    def remove(self, entity: Entity) -> None:
        self.tables[entity.kind].pop(entity.uuid, None)
        self.by_uuid.pop(entity.uuid, None)
        self.removed[entity.uuid] = entity

    # Read-only views by uuid, for tests and tools (hold `lock` while iterating a running simulator's tables).
    @property
    def zones(self) -> dict[str, Zone]:
        return self.tables["zone"]

    @property
    def hosts(self) -> dict[str, Host]:
        return self.tables["host"]

    @property
    def templates(self) -> dict[str, Template]:
        return self.tables["template"]

    @property
    def routers(self) -> dict[str, Router]:
        return self.tables["router"]

    @property
    def system_vms(self) -> dict[str, SystemVm]:
        return self.tables["systemvm"]

    @property
    def networks(self) -> dict[str, Network]:
        return self.tables["network"]

    @property
    def vpcs(self) -> dict[str, Vpc]:
        return self.tables["vpc"]

    @property
    def accounts(self) -> dict[str, Account]:
        return self.tables["account"]

    def table(self, kind: str) -> dict[str, Any]:
        return self.tables[kind]

    def values(self, kind: str) -> list[Any]:
        return list(self.tables[kind].values())

    def resolve(self, uuid: str, kinds: tuple[str, ...]) -> Entity | None:
        """The entity of one of `kinds` with this uuid, live or removed (findByUuidIncludingRemoved)."""
        entity = self.by_uuid.get(uuid) or self.removed.get(uuid)
        if entity is not None and entity.kind in kinds:
            return entity
        return None

    def live(self, entity: Entity) -> bool:
        return self.by_uuid.get(entity.uuid) is entity

    # ------------------------------------------------------------------ configuration
    def define(self, config: ConfigDef) -> None:
        self.configs[config.name] = config
        self.global_values.setdefault(config.name, config.default)

    def config_value(self, name: str, zone: Zone | None = None) -> str | None:
        """ConfigKey.valueIn(zone): the zone's value if set, else the global value."""
        if zone is not None and (name, zone.uuid) in self.zone_values:
            return self.zone_values[(name, zone.uuid)]
        return self.global_values.get(name)
