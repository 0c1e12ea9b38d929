"""SystemVMTemplate: register a system VM template and roll it out to system VMs and routers (seeds: the Ghost
CVE upgrade of 500+ routers).

Register per hypervisor and zone, wait until ready, activate (`router.template.<hypervisor>`,
`minreq.sysvmtemplate.version`), replace the secondary storage VM and console proxy of each zone one at a time,
reboot routers that require an upgrade, a limited number at a time, never both members of a redundant pair,
inside a maintenance window, telling tenants before and after.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .common import (
    CloudStackConnection,
    CloudStackName,
    DeletionPolicy,
    HttpUrl,
    MaintenanceWindow,
    Model,
    Notifications,
    ResourceCommon,
    Status,
    StatusModel,
    Version,
)

Hypervisor = Literal["KVM", "XenServer", "VMware", "Hyperv", "LXC", "Ovm3"]
Checksum = Annotated[
    str,
    Field(pattern=r"^(\{(MD5|SHA-1|SHA-224|SHA-256|SHA-384|SHA-512)\})?[0-9a-fA-F]{32,128}$", max_length=160),
]


class TemplateSource(Model):
    """A template image for one hypervisor."""

    hypervisor: Hypervisor
    """Hypervisor the image is for; also picks `router.template.<hypervisor lowercased>`."""
    url: HttpUrl
    """Where CloudStack downloads the image from."""
    checksum: Checksum
    """Image checksum, e.g. `{SHA-512}ab12…` or a plain MD5; a mismatch fails the download."""
    format: Literal["QCOW2", "RAW", "VHD", "OVA"]
    """Image format (KVM: QCOW2, XenServer: VHD, VMware: OVA)."""
    zones: Annotated[list[CloudStackName], Field(max_length=256)] = []
    """Zones to register in; empty means every zone."""
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$")] | None = None
    """Template name; default `systemvm-<hypervisor lowercased>-<version>`."""
    os_type: Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9 ()./_+-]{0,254}$")] = "Debian GNU/Linux 12 (64-bit)"
    """CloudStack OS type description."""


class Activation(Model):
    """Making the registered template the one system VMs and routers boot from."""

    set_router_template: bool = True
    """Set `router.template.<hypervisor>` to the template's name in each zone."""
    set_minimum_required_version: bool = True
    """Set `minreq.sysvmtemplate.version` to `version`, which marks older routers as requiring an upgrade."""


class SystemVMRollout(Model):
    """Secondary storage VMs and console proxies move to a new template only when destroyed and recreated."""

    replace: bool = True
    """Destroy each zone's secondary storage VM and console proxy, one at a time, waiting for the replacement to
    be Running before the next."""


class RouterRollout(Model):
    """Rebooting virtual routers onto the new template."""

    enabled: bool = True
    """Reboot routers onto the new template. `false`: the rollout completes after the system VMs and no router is
    rebooted; turning it off mid-rollout starts no further reboots."""
    max_unavailable: Annotated[int | str, Field(json_schema_extra={
        "x-kubernetes-int-or-string": True, "minimum": 1, "pattern": r"^([1-9][0-9]*|([1-9][0-9]?|100)%)$"})] = 1
    """How many routers may be rebooting at once: a count (`5`) or a percentage of the routers to upgrade (`10%`)."""
    only_requiring_upgrade: bool = True
    """Only routers CloudStack marks `requiresupgrade`."""
    respect_redundant_pairs: bool = True
    """Never reboot both routers of a redundant pair at once; the BACKUP goes first."""
    maintenance_window: MaintenanceWindow | None = None
    """Only reboot inside this window; unset: any time."""
    max_retries: Annotated[int, Field(ge=0, le=100)] = 3
    """Retries (with backoff) of a router that failed to come back, before it is listed as failed."""

    @field_validator("max_unavailable")
    @classmethod
    def _count_or_percent(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 1:
                raise ValueError("maxUnavailable must be at least 1")
            return value
        digits = value[:-1]
        if not value.endswith("%") or not digits.isdigit() or not 1 <= int(digits) <= 100:
            raise ValueError("maxUnavailable must be a count or a percentage like '10%'")
        return value


class Rollout(Model):
    """How the template reaches running system VMs and routers."""

    system_vms: SystemVMRollout = SystemVMRollout()
    """Secondary storage VMs and console proxies."""
    routers: RouterRollout = RouterRollout()
    """How virtual routers are rebooted onto the new template: which ones, how many at once, when, and how often a
    failed one is retried."""


class SystemVMTemplateSpec(ResourceCommon):
    """Desired state of a system VM template rollout."""

    cloudstack: CloudStackConnection
    """CloudStack API endpoint and keys."""
    version: Version
    """Template version, e.g. `4.19.1` (becomes `minreq.sysvmtemplate.version`)."""
    templates: Annotated[list[TemplateSource], Field(min_length=1, max_length=8)]
    """One image per hypervisor."""
    activation: Activation = Activation()
    """What makes the template current."""
    rollout: Rollout = Rollout()
    """How the template reaches what runs: system VMs are replaced, then routers rebooted, once the template is
    ready and activated in every zone."""
    notifications: Notifications | None = None
    """A webhook told before and after each router reboot; unset: no notices. A notice that cannot be sent holds
    back further reboots (`NotificationFailed`, retried every 30 s)."""
    deletion_policy: DeletionPolicy = "Orphan"
    """What deleting the resource does: `Orphan` keeps the templates in CloudStack; `Delete` deletes the templates
    it registered unless a system VM or router still uses them."""
    resync_interval_seconds: Annotated[int, Field(ge=30, le=86400)] = 120
    """How often CloudStack is polled for progress and drift."""

    @model_validator(mode="after")
    def _one_per_hypervisor(self) -> "SystemVMTemplateSpec":
        hypervisors = [t.hypervisor for t in self.templates]
        if len(set(hypervisors)) != len(hypervisors):
            raise ValueError("templates: one entry per hypervisor")
        return self


class TemplateStatus(StatusModel):
    """A registered template in one zone."""

    hypervisor: str
    """Hypervisor of the template (`KVM`, `XenServer`, …), as in `spec.templates`."""
    zone: str
    """Name of the CloudStack zone the template is registered in."""
    id: str = ""
    """UUID CloudStack gave the template (`listTemplates`)."""
    ready: bool = False
    """Whether CloudStack has downloaded the template to the zone's secondary storage and can use it (`isready`);
    activation waits for every template to be ready."""
    download_status: str = ""
    """Download progress text from CloudStack."""


class RouterInFlight(StatusModel):
    """A router reboot the operator started and has not seen finish. Written before the reboot is submitted and
    again with its job right after, so that an operator restart neither loses it nor reboots the router twice."""

    id: str
    """UUID of the router in CloudStack (`listRouters`)."""
    name: str
    """Name of the router as CloudStack shows it, e.g. `r-42-VM`."""
    job_id: str = ""
    """CloudStack async job of the reboot; empty while it is being submitted (an operator that stopped then finds
    the job with `listAsyncJobs`, or reboots the router if CloudStack has none)."""
    started: str = ""
    """When the reboot was started (RFC 3339)."""


class RouterRetry(StatusModel):
    """A router whose reboot failed and is retried with backoff."""

    id: str
    """UUID of the router in CloudStack (`listRouters`)."""
    name: str
    """Name of the router as CloudStack shows it, e.g. `r-42-VM`."""
    attempts: int = 0
    """Failed attempts so far."""
    not_before: str = ""
    """Earliest time of the next attempt (RFC 3339)."""
    last_error: str = ""
    """Why the last attempt failed."""
    job_id: str = ""
    """CloudStack async job of the last failed attempt (never taken for a later attempt's job)."""


class RouterProgress(StatusModel):
    """Router rollout counters."""

    total: int = 0
    """Routers in the rollout's scope (zones and hypervisors of the templates) that run or ran an older version."""
    upgraded: int = 0
    """Routers of `total` running the new version."""
    in_progress: int = 0
    """How many routers in scope are rebooting now: this rollout's reboots and those CloudStack shows rebooting for
    another reason, which count against `maxUnavailable` too."""
    failed: int = 0
    """How many routers are in `failedRouters`; shown in the `FAILED` column of `kubectl get svt -o wide`."""
    failed_routers: list[str] = []
    """Names of the routers whose reboot failed `maxRetries` + 1 times; the rollout ends `Failed` (`Stalled`,
    `RoutersFailed`) and a spec change (a new generation) gives them another chance."""
    skipped_routers: list[str] = []
    """Routers that need the new version but are not Running (stopped routers boot from the new template when
    started)."""
    in_flight: list[RouterInFlight] = []
    """Reboots started and not yet seen finishing (picked up again after an operator restart)."""
    retrying: list[RouterRetry] = []
    """Routers whose reboot failed, with their attempts (`failedRouters` once `maxRetries` is exceeded)."""
    generation: int = 0
    """Generation the attempts were counted for; a new generation retries failed routers again."""


class SystemVMProgress(StatusModel):
    """System VM replacement counters."""

    total: int = 0
    """System VMs in the rollout's scope."""
    replaced: int = 0
    """System VMs running the new template."""
    expected: list[str] = []
    """`<zone>/<type>` of every system VM seen, so a destroyed one is waited for until its replacement runs."""


class SystemVMTemplateStatus(Status):
    """Observed state of the rollout."""

    phase: Literal["Pending", "Registering", "Activating", "ReplacingSystemVMs", "UpgradingRouters", "Waiting",
                   "Complete", "Failed"] | None = None
    """Stage the rollout has reached: `Registering` (templates downloading), `Activating` (zone settings),
    `ReplacingSystemVMs`, `UpgradingRouters`, `Waiting` (for the maintenance window), then `Complete` or `Failed`;
    `Pending` under `Observe` while anything differs. Shown in the `PHASE` column."""
    templates: list[TemplateStatus] = []
    """Registered templates per hypervisor and zone."""
    system_vms: SystemVMProgress | None = None
    """How many secondary storage VMs and console proxies in scope run on the new template."""
    routers: RouterProgress | None = None
    """Counters, reboots in flight, retries and failures of the router stage, shown once it starts."""
    next_window: str | None = None
    """When the next maintenance window opens (RFC 3339), while waiting for it."""
    cloudstack_version: str | None = None
    """The CloudStack management server's version (`listCapabilities` → `cloudstackversion`), as last read."""
