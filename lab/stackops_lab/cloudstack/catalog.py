"""Static facts of the simulated management server: its version, hypervisor names, the configuration keys it
knows and the guest OS types it ships."""

from __future__ import annotations

from stackops_lab.cloudstack.state import ConfigDef

CLOUDSTACK_VERSION = "4.19.1.0"

# Hypervisor.HypervisorType names, looked up case-insensitively (HypervisorType.getType).
HYPERVISORS = {name.lower(): name for name in
               ("KVM", "XenServer", "VMware", "Hyperv", "LXC", "Ovm3", "Simulator", "BareMetal")}
# Storage.ImageFormat
IMAGE_FORMATS = ("QCOW2", "RAW", "VHD", "VHDX", "OVA", "ISO", "BAREMETAL", "VMDK", "TAR", "ZIP", "DIR")
# Storage.TemplateType accepted by registerTemplate (SYSTEM/ROUTING/BUILTIN for admins only, since 4.19)
TEMPLATE_TYPES = ("USER", "VNF", "SYSTEM", "ROUTING", "BUILTIN")
# VirtualMachineTemplate.TemplateFilter
TEMPLATE_FILTERS = ("featured", "self", "selfexecutable", "shared", "sharedexecutable", "executable",
                    "community", "system", "all")
# Default router template names (VirtualNetworkApplianceManager.RouterTemplate*), zone-scoped keys.
ROUTER_TEMPLATE_DEFAULTS = {
    "kvm": "SystemVM Template (KVM)",
    "xenserver": "SystemVM Template (XenServer)",
    "vmware": "SystemVM Template (vSphere)",
    "hyperv": "SystemVM Template (HyperV)",
    "lxc": "SystemVM Template (LXC)",
    "ovm3": "SystemVM Template (Ovm3)",
}


def hypervisor_name(value: str) -> str | None:
    return HYPERVISORS.get(value.lower())


def config_defs() -> list[ConfigDef]:
    configs = [
        ConfigDef(f"router.template.{key}", default, "Advanced",
                  f"Name of the default router template on {key}.", "Zone", True,
                  "VirtualNetworkApplianceManager")
        for key, default in ROUTER_TEMPLATE_DEFAULTS.items()
    ]
    configs += [
        ConfigDef("minreq.sysvmtemplate.version", "4.10.0", "Advanced",
                  "What version should the Virtual Routers report", "Zone", True, "NetworkOrchestrationService"),
        ConfigDef("router.version.check", "true", "Advanced",
                  "If true, router minimum required version is checked before sending command", "Global",
                  False, "VirtualNetworkApplianceManager", "Boolean"),
        ConfigDef("default.page.size", "500", "Advanced",
                  "Default page size for API list* commands", "Global", False, "management-server", "Long"),
        ConfigDef("system.vm.use.local.storage", "false", "Advanced",
                  "Indicates whether to use local storage pools or shared storage pools for system VMs.",
                  "Zone", True, "management-server", "Boolean"),
        ConfigDef("api.throttling.enabled", "false", "Advanced", "Enable/disable Api rate limit", "Global",
                  False, "management-server", "Boolean"),
        ConfigDef("expunge.delay", "86400", "Advanced",
                  "Determines how long (in seconds) to wait before actually expunging destroyed vm.",
                  "Global", False, "UserVmManager", "Integer"),
        # HighAvailabilityManager's ConfigKeys (Cluster scope in CloudStack; global in the simulator)
        ConfigDef("max.retries", "5", "Advanced",
                  "The number of times to try a restart for the different Work-Types: Migrating - VMs off of a host, "
                  "Destroy - a VM, Stop - a VM for storage pool migration purposes, CheckStop - checks if a VM has "
                  "been stopped, ForceStop - force a VM to stop even if the states don't allow it, Destroy - a VM "
                  "and HA - restart a VM.", "Global", True, "HighAvailabilityManager", "Integer"),
        ConfigDef("migrate.retry.interval", "120", "Advanced", "The time (in seconds) between migration retries.",
                  "Global", True, "HighAvailabilityManager", "Integer"),
    ]
    return configs


# (description, category) — a small slice of CloudStack's guest_os table.
OS_TYPES: tuple[tuple[str, str], ...] = (
    ("Debian GNU/Linux 12 (64-bit)", "Debian"),
    ("Debian GNU/Linux 11 (64-bit)", "Debian"),
    ("Debian GNU/Linux 10 (64-bit)", "Debian"),
    ("Debian GNU/Linux 9 (64-bit)", "Debian"),
    ("Debian GNU/Linux 7(64-bit)", "Debian"),
    ("Ubuntu 22.04 LTS", "Ubuntu"),
    ("Ubuntu 20.04 LTS", "Ubuntu"),
    ("CentOS 7", "CentOS"),
    ("Rocky Linux 9", "Rocky"),
    ("Other Linux (64-bit)", "Other"),
    ("Other Linux (32-bit)", "Other"),
    ("Other (64-bit)", "Other"),
    ("Windows Server 2022 (64-bit)", "Windows"),
)

# hypervisor_capabilities 'default' rows (create-schema's seeds: max guests 50, security groups on; later columns at
# their schema defaults: 6 data volumes, no host limit, no VM snapshots; 4.14 turned storage motion on for KVM).
HYPERVISOR_CAPABILITIES: dict[str, dict[str, object]] = {
    "KVM": {"max_guests": 50, "security_groups": True, "storage_motion": True},
    "XenServer": {"max_guests": 50, "security_groups": True},
}
