"""The lab's data: pool databases (what xapi keeps in its state DB, one per pool, owned by the master) and
the machines (physical hosts: dom0 inventory, pool role, power, local sessions).

Records carry the datamodel's field names (ocaml/idl/datamodel*.ml, as data in datamodel.json). The dataclass
fields are the subset the operator reads and the lab changes; a record's other datamodel fields live in `extra`
when set, and `classes.py` turns records into wire records with every field of the class (ints as decimal
strings, refs as `OpaqueRef:…`, the fields xapi computes from other tables — host.resident_VMs, SR.PBDs,
VM.VBDs … — filled in, the rest at the datamodel's defaults).

One `threading.RLock` (`LabState.lock`) guards everything here; API calls and the scheduler take it.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from stackops_lab.xenapi.errors import HANDLE_INVALID, UUID_INVALID, XapiError

if TYPE_CHECKING:
    from stackops_lab.xenapi.simulator import XenHostSpec

NULL_REF = "OpaqueRef:NULL"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def new_ref() -> str:
    return f"OpaqueRef:{uuidlib.uuid4()}"


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


@dataclass(eq=False)
class Record:
    ref: str
    uuid: str
    CLASS: ClassVar[str] = ""
    # values of the datamodel fields the lab does not model by name (set at creation or by a setter); the
    # fields nobody set take the datamodel's default when the record goes on the wire (classes.to_record)
    extra: dict[str, Any] = field(default_factory=dict, kw_only=True)


@dataclass(eq=False)
class PoolRec(Record):
    CLASS: ClassVar[str] = "pool"
    name_label: str = ""
    name_description: str = ""
    master: str = NULL_REF
    default_SR: str = NULL_REF
    suspend_image_SR: str = NULL_REF
    crash_dump_SR: str = NULL_REF
    ha_enabled: bool = False
    ha_configuration: dict[str, str] = field(default_factory=dict)
    ha_statefiles: list[str] = field(default_factory=list)
    ha_host_failures_to_tolerate: int = 0
    ha_plan_exists_for: int = 0
    ha_allow_overcommit: bool = False
    ha_overcommitted: bool = False
    ha_cluster_stack: str = "xhad"
    vswitch_controller: str = ""
    other_config: dict[str, str] = field(default_factory=dict)
    current_operations: dict[str, str] = field(default_factory=dict)
    allowed_operations: list[str] = field(default_factory=list)


@dataclass(eq=False)
class HostRec(Record):
    CLASS: ClassVar[str] = "host"
    name_label: str = ""
    name_description: str = "Default install"
    hostname: str = ""
    address: str = ""
    enabled: bool = True
    metrics: str = NULL_REF
    control_domain: str = NULL_REF
    software_version: dict[str, str] = field(default_factory=dict)
    API_version_major: int = 2
    API_version_minor: int = 21
    API_version_vendor: str = "XenSource"
    cpu_info: dict[str, str] = field(default_factory=dict)
    edition: str = "xenserver-premium"
    other_config: dict[str, str] = field(default_factory=dict)
    ha_statefiles: list[str] = field(default_factory=list)
    ha_network_peers: list[str] = field(default_factory=list)


@dataclass(eq=False)
class HostMetricsRec(Record):
    CLASS: ClassVar[str] = "host_metrics"
    live: bool = True
    memory_total: int = 274877906944
    memory_free: int = 206158430208
    last_updated: dt.datetime = field(default_factory=now)
    other_config: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class SRRec(Record):
    CLASS: ClassVar[str] = "SR"
    name_label: str = ""
    name_description: str = ""
    type: str = "lvm"
    content_type: str = "user"
    shared: bool = False
    other_config: dict[str, str] = field(default_factory=dict)
    sm_config: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class PBDRec(Record):
    CLASS: ClassVar[str] = "PBD"
    host: str = NULL_REF
    SR: str = NULL_REF
    currently_attached: bool = True
    device_config: dict[str, str] = field(default_factory=dict)
    other_config: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class VDIRec(Record):
    CLASS: ClassVar[str] = "VDI"
    name_label: str = ""
    name_description: str = ""
    SR: str = NULL_REF
    type: str = "user"
    virtual_size: int = 0
    sharable: bool = False
    read_only: bool = False
    other_config: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class VMRec(Record):
    CLASS: ClassVar[str] = "VM"
    name_label: str = ""
    name_description: str = ""
    is_control_domain: bool = False
    is_a_template: bool = False
    power_state: str = "Halted"
    resident_on: str = NULL_REF
    ha_restart_priority: str = ""
    ha_always_run: bool = False
    domid: int = -1
    memory_static_max: int = 2147483648
    VCPUs_max: int = 2
    other_config: dict[str, str] = field(default_factory=dict)
    metrics: str = NULL_REF
    guest_metrics: str = NULL_REF


@dataclass(eq=False)
class HostCPURec(Record):
    CLASS: ClassVar[str] = "host_cpu"
    host: str = NULL_REF
    number: int = 0


@dataclass(eq=False)
class NetworkRec(Record):
    CLASS: ClassVar[str] = "network"
    name_label: str = ""
    bridge: str = ""


@dataclass(eq=False)
class PIFRec(Record):
    CLASS: ClassVar[str] = "PIF"
    device: str = ""
    network: str = NULL_REF
    host: str = NULL_REF
    metrics: str = NULL_REF
    management: bool = False


@dataclass(eq=False)
class PIFMetricsRec(Record):
    CLASS: ClassVar[str] = "PIF_metrics"


@dataclass(eq=False)
class VBDRec(Record):
    CLASS: ClassVar[str] = "VBD"
    VM: str = NULL_REF
    VDI: str = NULL_REF
    userdevice: str = "0"
    type: str = "Disk"


@dataclass(eq=False)
class VIFRec(Record):
    CLASS: ClassVar[str] = "VIF"
    VM: str = NULL_REF
    network: str = NULL_REF
    device: str = "0"


@dataclass(eq=False)
class VMMetricsRec(Record):
    CLASS: ClassVar[str] = "VM_metrics"


@dataclass(eq=False)
class VMGuestMetricsRec(Record):
    CLASS: ClassVar[str] = "VM_guest_metrics"


@dataclass(eq=False)
class ConsoleRec(Record):
    CLASS: ClassVar[str] = "console"
    VM: str = NULL_REF


@dataclass(eq=False)
class MessageRec(Record):
    CLASS: ClassVar[str] = "message"


@dataclass(eq=False)
class VBDMetricsRec(Record):
    CLASS: ClassVar[str] = "VBD_metrics"  # deprecated: xapi makes none (VBD.metrics is OpaqueRef:NULL)


@dataclass(eq=False)
class VIFMetricsRec(Record):
    CLASS: ClassVar[str] = "VIF_metrics"  # deprecated: xapi makes none (VIF.metrics is OpaqueRef:NULL)


@dataclass(eq=False)
class SDNControllerRec(Record):
    CLASS: ClassVar[str] = "SDN_controller"
    protocol: str = "ssl"
    address: str = ""
    port: int = 6632


@dataclass(eq=False)
class TaskRec(Record):
    CLASS: ClassVar[str] = "task"
    name_label: str = ""
    name_description: str = ""
    created: dt.datetime = field(default_factory=now)
    finished: dt.datetime = EPOCH
    status: str = "pending"
    resident_on: str = NULL_REF
    progress: float = 0.0
    type: str = "<none/>"
    result: str = ""
    error_info: list[str] = field(default_factory=list)
    other_config: dict[str, str] = field(default_factory=dict)
    subtask_of: str = NULL_REF
    backtrace: str = "()"
    allowed_operations: list[str] = field(default_factory=list)
    current_operations: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class SessionRec(Record):
    CLASS: ClassVar[str] = "session"
    this_host: str = NULL_REF
    this_user: str = NULL_REF
    last_active: dt.datetime = field(default_factory=now)
    validation_time: dt.datetime = field(default_factory=now)
    pool: bool = False
    is_local_superuser: bool = True
    subject: str = NULL_REF
    auth_user_sid: str = ""
    auth_user_name: str = "root"
    originator: str = ""
    parent: str = NULL_REF
    other_config: dict[str, str] = field(default_factory=dict)
    rbac_permissions: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    local: bool = False  # not a datamodel field: a slave_local session lives on its host only
    idle_since: float = 0.0  # monotonic time of the last use


@dataclass(eq=False)
class PoolUpdateRec(Record):
    CLASS: ClassVar[str] = "pool_update"  # an update introduced from an uploaded VDI (calls_update.py)
    name_label: str = ""
    name_description: str = ""
    version: str = ""
    installation_size: int = 0
    key: str = ""
    after_apply_guidance: list[str] = field(default_factory=list)
    vdi: str = NULL_REF
    hosts: list[str] = field(default_factory=list)
    enforce_homogeneity: bool = False


@dataclass(eq=False)
class PoolPatchRec(Record):
    CLASS: ClassVar[str] = "pool_patch"  # the legacy record xapi keeps beside each pool_update
    name_label: str = ""
    name_description: str = ""
    version: str = ""
    size: int = 0
    after_apply_guidance: list[str] = field(default_factory=list)
    pool_update: str = NULL_REF


@dataclass(eq=False)
class HostPatchRec(Record):
    CLASS: ClassVar[str] = "host_patch"  # a pool_patch applied on a host
    name_label: str = ""
    name_description: str = ""
    version: str = ""
    host: str = NULL_REF
    applied: bool = True
    timestamp_applied: dt.datetime = field(default_factory=now)
    size: int = 0
    pool_patch: str = NULL_REF


RECORD_TYPES: dict[str, type[Record]] = {cls.CLASS: cls for cls in (
    PoolRec, HostRec, HostMetricsRec, SRRec, PBDRec, VDIRec, VMRec, SDNControllerRec, TaskRec, SessionRec,
    HostCPURec, NetworkRec, PIFRec, PIFMetricsRec, VBDRec, VIFRec, VMMetricsRec, VMGuestMetricsRec, ConsoleRec,
    MessageRec, VBDMetricsRec, VIFMetricsRec, PoolUpdateRec, PoolPatchRec, HostPatchRec)}
R = TypeVar("R", bound=Record)


class PoolDB:
    """One pool's database. The master serves it; the lab keeps one copy (supporters' backups are this same
    object, so an emergency transition sees the current data, not a five-minute-old backup)."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Record]] = {name: {} for name in RECORD_TYPES}
        self.liveset: set[str] = set()  # HA: host refs in the liveset (empty: HA lost every host)
        self.silent_since: dict[str, float] = {}  # host ref → monotonic time it stopped heart-beating

    def add(self, record: R) -> R:
        self.tables[record.CLASS][record.ref] = record
        return record

    def remove(self, record: Record) -> None:
        self.tables[record.CLASS].pop(record.ref, None)

    def all(self, cls: type[R]) -> list[R]:
        return list(self.tables[cls.CLASS].values())  # type: ignore[arg-type]

    def get(self, cls: type[R], ref: Any) -> R:
        record = self.tables[cls.CLASS].get(ref) if isinstance(ref, str) else None
        if record is None:
            raise XapiError(HANDLE_INVALID, cls.CLASS, ref)
        return record  # type: ignore[return-value]

    def find(self, cls: type[R], ref: str) -> R | None:
        return self.tables[cls.CLASS].get(ref)  # type: ignore[return-value]

    def by_uuid(self, cls: type[R], uuid: str) -> R:
        for record in self.tables[cls.CLASS].values():
            if record.uuid == uuid:
                return record  # type: ignore[return-value]
        raise XapiError(UUID_INVALID, cls.CLASS, uuid)

    @property
    def pool(self) -> PoolRec:
        return next(iter(self.tables["pool"].values()))  # type: ignore[return-value]

    def hosts(self) -> list[HostRec]:
        return self.all(HostRec)

    def metrics_of(self, host: HostRec) -> HostMetricsRec:
        return self.get(HostMetricsRec, host.metrics)

    def live(self, host: HostRec) -> bool:
        metrics = self.find(HostMetricsRec, host.metrics)
        return bool(metrics and metrics.live)

    def vms_on(self, host_ref: str) -> list[VMRec]:
        return [vm for vm in self.all(VMRec) if vm.resident_on == host_ref]

    def pbds_of_host(self, host_ref: str) -> list[PBDRec]:
        return [pbd for pbd in self.all(PBDRec) if pbd.host == host_ref]

    def pbds_of_sr(self, sr_ref: str) -> list[PBDRec]:
        return [pbd for pbd in self.all(PBDRec) if pbd.SR == sr_ref]


@dataclass(eq=False)
class Machine:
    """A physical XenServer host: what survives in dom0 whatever the pool database says."""

    name: str
    index: int
    address: str
    spec: XenHostSpec
    inventory: dict[str, str]
    hostname: str
    db: PoolDB | None = None
    host_ref: str = NULL_REF  # its record in `db`
    role: str = "master"  # pool.conf: "master" or "slave"
    master_address: str = ""  # pool.conf of a supporter
    power: str = "up"  # "up" or "down"
    xapi: str = "running"  # "running", "starting" (HOST_STILL_BOOTING), "stopped" (power down, `service xapi stop`)
    boot_id: int = 0  # bumped by every reboot, kill and xapi restart: cancels what was scheduled before
    ha_armed: bool = False  # Localdb ha_armed
    ha_joining_until: float = 0.0  # monotonic deadline of an HA boot-join; 0 when not joining
    disabled_until_reboot: bool = False  # Localdb host_disabled_until_reboot
    auto_enable: bool = True  # Localdb host_auto_enable: host.disable(auto_enable=false) keeps it disabled at boot
    crashed_with_ha: bool = False  # comes back with enabled=false (the seeds' "Alert" hosts)
    state_db: bool = True  # /var/lib/xcp/state.db present
    down_since: float | None = None  # monotonic time it stopped heart-beating
    booted_at: float = 0.0  # wall time (lab clock) it last powered on: /proc/stat btime, host boot_time
    xapi_started_at: float = 0.0  # wall time (lab clock) xapi last started: host agent_start_time
    local_sessions: dict[str, SessionRec] = field(default_factory=dict)

    @property
    def serving(self) -> bool:
        return self.power == "up" and self.xapi == "running"

    @property
    def reachable(self) -> bool:
        """Its XenAPI port accepts connections (it may still answer HOST_STILL_BOOTING)."""
        return self.power == "up" and self.xapi != "stopped"

    @property
    def is_master(self) -> bool:
        return self.role == "master"


class LabState:
    """Everything, under one lock: the machines by name and the pool databases in use."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.machines: dict[str, Machine] = {}

    def machine(self, name: str) -> Machine:
        try:
            return self.machines[name]
        except KeyError:
            raise KeyError(f"no lab host {name!r}; known: {', '.join(self.machines)}") from None

    def by_address(self, address: str) -> Machine | None:
        return next((m for m in self.machines.values() if m.address == address), None)

    def members(self, db: PoolDB) -> list[Machine]:
        """Machines whose xapi uses `db` (master and supporters)."""
        return [m for m in self.machines.values() if m.db is db]

    def machine_of(self, db: PoolDB, host_ref: str) -> Machine | None:
        return next((m for m in self.machines.values() if m.db is db and m.host_ref == host_ref), None)

    def databases(self) -> list[PoolDB]:
        seen: list[PoolDB] = []
        for machine in self.machines.values():
            if machine.db is not None and all(machine.db is not db for db in seen):
                seen.append(machine.db)
        return seen
