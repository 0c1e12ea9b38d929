"""The four kinds: names, models and the columns `kubectl get` prints."""
from __future__ import annotations

from dataclasses import dataclass

from .cloudstackrelease import CloudStackReleaseSpec, CloudStackReleaseStatus
from .common import GROUP, VERSION, Model, Status
from .kvmhost import KvmHostSpec, KvmHostStatus
from .systemvmtemplate import SystemVMTemplateSpec, SystemVMTemplateStatus
from .xenpool import XenPoolSpec, XenPoolStatus

READY = '.status.conditions[?(@.type=="Ready")].status'
REASON = '.status.conditions[?(@.type=="Ready")].reason'


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def to_crd(self) -> dict:
        column = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            column["description"] = self.description
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[Model]
    status: type[Status]
    columns: tuple[PrinterColumn, ...]
    description: str

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def group(self) -> str:
        return GROUP

    @property
    def version(self) -> str:
        return VERSION

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def _tail(*columns: PrinterColumn) -> tuple[PrinterColumn, ...]:
    return (
        *columns,
        PrinterColumn("READY", READY, description="Ready condition"),
        PrinterColumn("REASON", REASON, description="Reason of the Ready condition", priority=1),
        PrinterColumn("AGE", ".metadata.creationTimestamp", type="date"),
    )


XENPOOL = Kind(
    kind="XenPool",
    plural="xenpools",
    short_names=("xp",),
    spec=XenPoolSpec,
    status=XenPoolStatus,
    columns=_tail(
        PrinterColumn("MASTER", ".status.master", description="Current pool master"),
        PrinterColumn("HOSTS", ".status.hostCount", type="integer", description="Hosts in the pool"),
        PrinterColumn("HA", ".status.ha.enabled", type="boolean", description="Pool HA enabled"),
        PrinterColumn("MAINTENANCE", ".status.maintenanceProgress", description="Rolling maintenance: host turns "
                      "done of all, the host and its step"),
        PrinterColumn("HA-TIMEOUT", ".status.ha.timeoutSeconds", type="integer", priority=1),
        PrinterColumn("POLICY", ".spec.managementPolicy", priority=1),
    ),
    description="A XenServer pool for CloudStack: HA with an explicit timeout, membership, vswitch controller, "
                "unique hosts, CloudStack cluster registration.",
)

KVMHOST = Kind(
    kind="KvmHost",
    plural="kvmhosts",
    short_names=("kh",),
    spec=KvmHostSpec,
    status=KvmHostStatus,
    columns=_tail(
        PrinterColumn("ADDRESS", ".spec.address"),
        PrinterColumn("OVS", ".status.versions.openvswitch", description="Open vSwitch version"),
        PrinterColumn("LIBVIRT", ".status.versions.libvirt", description="libvirt version"),
        PrinterColumn("MAINTENANCE", ".status.maintenanceProgress", description="Maintenance: its step, or what it "
                      "waits for"),
        PrinterColumn("REBOOT", ".status.rebootRequired", type="boolean", priority=1,
                      description="The host says it needs a reboot"),
        PrinterColumn("POLICY", ".spec.managementPolicy", priority=1),
    ),
    description="A KVM hypervisor for CloudStack: packages, Open vSwitch, NSX manager, libvirt, cloudstack-agent, "
                "CloudStack registration.",
)

SYSTEMVMTEMPLATE = Kind(
    kind="SystemVMTemplate",
    plural="systemvmtemplates",
    short_names=("svt",),
    spec=SystemVMTemplateSpec,
    status=SystemVMTemplateStatus,
    columns=_tail(
        PrinterColumn("VERSION", ".spec.version"),
        PrinterColumn("PHASE", ".status.phase"),
        PrinterColumn("ROUTERS", ".status.routers.total", type="integer", description="Routers to upgrade"),
        PrinterColumn("UPGRADED", ".status.routers.upgraded", type="integer", description="Routers upgraded"),
        PrinterColumn("FAILED", ".status.routers.failed", type="integer", priority=1),
    ),
    description="A system VM template registered in CloudStack and rolled out to system VMs and routers.",
)

CLOUDSTACKRELEASE = Kind(
    kind="CloudStackRelease",
    plural="cloudstackreleases",
    short_names=("csrel",),
    spec=CloudStackReleaseSpec,
    status=CloudStackReleaseStatus,
    columns=_tail(
        PrinterColumn("VERSION", ".spec.version"),
        PrinterColumn("PHASE", ".status.phase"),
        PrinterColumn("COMMIT", ".status.commit"),
    ),
    description="A custom CloudStack build from Git with pull requests applied, packaged as RPMs.",
)

KINDS: tuple[Kind, ...] = (XENPOOL, KVMHOST, SYSTEMVMTEMPLATE, CLOUDSTACKRELEASE)
BY_KIND = {k.kind: k for k in KINDS}
