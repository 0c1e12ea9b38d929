"""The objects around hosts and VMs that xapi keeps and the operator does not read, made with the values a fresh
XenServer gives them: per host its CPUs (host_cpu), NICs (PIF, PIF_metrics) on the pool-wide networks
("Pool-wide network associated with eth0", bridge xenbr0 …); per VM its metrics, console, and for a guest a disk
(VDI and VBD on the pool's default SR), an empty CD drive, a VIF on the management network and, running, its guest
metrics. Fields not given here take the datamodel's defaults (classes.to_record).
"""

from __future__ import annotations

from typing import Any

from stackops_lab.xenapi.state import (NULL_REF, ConsoleRec, HostCPURec, HostMetricsRec, HostRec, NetworkRec,
                                       PIFMetricsRec, PIFRec, PoolDB, SRRec, VBDRec, VDIRec, VIFRec, VMGuestMetricsRec,
                                       VMMetricsRec, VMRec, new_ref, new_uuid, now)

NICS = ("eth0", "eth1")
CPU_COUNT = 16
MiB = 1024 * 1024


def _mac(seed: str) -> str:
    digits = seed.replace("-", "")[:10]
    return "aa:" + ":".join(digits[i:i + 2] for i in range(0, 10, 2))


def network(db: PoolDB, device: str) -> NetworkRec:
    """The pool-wide network of a NIC name (made by the first host that has it)."""
    bridge = "xenbr" + device.removeprefix("eth")
    found = next((n for n in db.all(NetworkRec) if n.bridge == bridge), None)
    if found is None:
        found = db.add(NetworkRec(ref=new_ref(), uuid=new_uuid(), name_label=f"Pool-wide network associated with "
                                  f"{device}", bridge=bridge, extra={"MTU": 1500, "managed": True}))
    return found


def host_extra(host: HostRec) -> dict[str, Any]:
    """The host fields a XenServer 8 host has beyond the datamodel's defaults."""
    values: dict[str, Any] = {
        "sched_policy": "credit", "supported_bootloaders": ["pygrub", "eliloader"],
        "capabilities": ["xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_32p", "hvm-3.0-x86_64"],
        "cpu_configuration": {}, "memory_overhead": 1120 * MiB,
        "license_params": {"sku_type": host.edition, "restrict_ha": "false", "restrict_pooling": "false"},
        "bios_strings": {"bios-vendor": "Lab", "system-manufacturer": "Lab", "system-product-name": "stackops lab"},
        "chipset_info": {"iommu": "true"}, "virtual_hardware_platform_versions": [0, 1, 2],
        "iscsi_iqn": f"iqn.2024-01.io.stackops.lab:{host.uuid[:8]}", "editions": [host.edition],
        "ssl_legacy": False, "tls_verification_enabled": True,
    }
    return {name: value for name, value in values.items() if name not in host.extra}


def add_host_devices(db: PoolDB, host: HostRec) -> None:
    host.extra.update(host_extra(host))
    for number in range(int(host.cpu_info.get("cpu_count", CPU_COUNT))):
        db.add(HostCPURec(ref=new_ref(), uuid=new_uuid(), host=host.ref, number=number, extra={
            "vendor": host.cpu_info.get("vendor", "GenuineIntel"), "speed": 2600, "family": 6, "model": 85,
            "modelname": "Intel(R) Xeon(R) Gold 6132 CPU @ 2.60GHz", "stepping": "4", "flags": "fpu vme de pse",
            "features": "", "utilisation": 0.01}))
    for device in NICS:
        management = device == NICS[0]
        metrics = db.add(PIFMetricsRec(ref=new_ref(), uuid=new_uuid(), extra={
            "carrier": True, "speed": 10000, "duplex": True, "vendor_name": "Intel Corporation",
            "device_name": "Ethernet Controller X710", "pci_bus_path": f"0000:01:00.{device[-1]}",
            "last_updated": now()}))
        db.add(PIFRec(ref=new_ref(), uuid=new_uuid(), device=device, network=network(db, device).ref, host=host.ref,
                      metrics=metrics.ref, management=management, extra={
                          "MAC": _mac(metrics.uuid), "MTU": 1500, "VLAN": -1, "physical": True,
                          "ip_configuration_mode": "Static" if management else "None",
                          "IP": host.address if management else "", "netmask": "255.255.255.0" if management else "",
                          "properties": {"gro": "on"}}))


def remove_host_devices(db: PoolDB, host_ref: str) -> None:
    for pif in [p for p in db.all(PIFRec) if p.host == host_ref]:
        if (metrics := db.find(PIFMetricsRec, pif.metrics)) is not None:
            db.remove(metrics)
        db.remove(pif)
    for cpu in [c for c in db.all(HostCPURec) if c.host == host_ref]:
        db.remove(cpu)


def vm_extra(vm: VMRec) -> dict[str, Any]:
    """The VM fields a created VM has beyond the datamodel's defaults (memory, VCPUs, actions, boot)."""
    memory = vm.memory_static_max
    values: dict[str, Any] = {
        "memory_static_min": memory // 2 if not vm.is_control_domain else memory, "memory_dynamic_min": memory,
        "memory_dynamic_max": memory, "memory_target": memory if vm.power_state == "Running" else 0,
        "memory_overhead": 11 * MiB, "VCPUs_at_startup": vm.VCPUs_max, "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart", "actions_after_crash": "restart", "user_version": 1,
        "is_a_template": vm.is_a_template, "domain_type": "pv" if vm.is_control_domain else "hvm",
        "HVM_boot_policy": "" if vm.is_control_domain else "BIOS order",
        "HVM_boot_params": {} if vm.is_control_domain else {"order": "cd"},
        "platform": {} if vm.is_control_domain else {"acpi": "1", "apic": "true", "pae": "true", "viridian": "true"},
        "hardware_platform_version": 0, "domarch": "x64" if vm.power_state == "Running" else "",
        "recommendations": "", "last_booted_record": "",
    }
    return {name: value for name, value in values.items() if name not in vm.extra}


def add_vm_devices(db: PoolDB, vm: VMRec, address: str) -> None:
    """A VM's metrics, console and (a guest's) disk, CD drive, VIF and guest metrics."""
    vm.extra.update(vm_extra(vm))
    running = vm.power_state == "Running"
    vm.metrics = db.add(VMMetricsRec(ref=new_ref(), uuid=new_uuid(), extra={
        "memory_actual": vm.memory_static_max if running else 0, "VCPUs_number": vm.VCPUs_max if running else 0,
        "VCPUs_utilisation": {str(n): 0.0 for n in range(vm.VCPUs_max)} if running else {},
        "state": ["running"] if running else [], "start_time": now(), "install_time": now(), "last_updated": now(),
        "hvm": not vm.is_control_domain, "current_domain_type": vm.extra["domain_type"] if running else "unspecified"
    })).ref
    db.add(ConsoleRec(ref=new_ref(), uuid=new_uuid(), VM=vm.ref, extra={
        "protocol": "rfb", "location": f"https://{address}/console?uuid={vm.uuid}"}))
    if vm.is_control_domain:
        return
    sr = db.find(SRRec, db.pool.default_SR) if db.tables["pool"] else None
    if sr is not None:
        disk = db.add(VDIRec(ref=new_ref(), uuid=new_uuid(), name_label=f"{vm.name_label} 0", SR=sr.ref,
                             virtual_size=20 * 1024 * MiB))
        db.add(VBDRec(ref=new_ref(), uuid=new_uuid(), VM=vm.ref, VDI=disk.ref, userdevice="0", extra={
            "device": "xvda", "bootable": True, "mode": "RW", "type": "Disk", "unpluggable": True}))
    db.add(VBDRec(ref=new_ref(), uuid=new_uuid(), VM=vm.ref, VDI=NULL_REF, userdevice="3", type="CD", extra={
        "device": "xvdd", "mode": "RO", "type": "CD", "empty": True}))
    net = network(db, NICS[0])
    db.add(VIFRec(ref=new_ref(), uuid=new_uuid(), VM=vm.ref, network=net.ref, device="0", extra={
        "MAC": _mac(vm.uuid), "MTU": 1500, "MAC_autogenerated": True}))
    if running:
        add_guest_metrics(db, vm)


def add_guest_metrics(db: PoolDB, vm: VMRec) -> None:
    """What a guest's agent reports once it runs (xapi keeps it when the VM halts: the OS it last ran)."""
    vm.guest_metrics = db.add(VMGuestMetricsRec(ref=new_ref(), uuid=new_uuid(), extra={
        "os_version": {"name": "Ubuntu 22.04 LTS", "distro": "ubuntu", "major": "22", "minor": "04"},
        "networks": {"0/ip": f"192.0.2.{100 + len(db.all(VMGuestMetricsRec)) % 150}"}, "PV_drivers_detected": True, "PV_drivers_up_to_date": True,
        "PV_drivers_version": {"major": "9", "minor": "3", "micro": "1", "build": "10"}, "live": True,
        "can_use_hotplug_vbd": "yes", "can_use_hotplug_vif": "yes", "last_updated": now(),
        "other": {"feature-shutdown": "1", "feature-poweroff": "1", "feature-reboot": "1", "feature-suspend": "1",
                  "feature-vcpu-hotplug": "1", "has-vendor-device": "0",
                  "platform-feature-multiprocessor-suspend": "1"}})).ref


def vm_memory(vm: VMRec) -> int:
    """What a running VM takes from its host: its target (memory_dynamic_max) plus its overhead."""
    return int(vm.extra.get("memory_dynamic_max", vm.memory_static_max)) + int(vm.extra.get("memory_overhead", 0))


def host_free_memory(db: PoolDB, host: HostRec) -> int:
    """host_metrics.memory_free: the host's memory less xen's overhead (host.memory_overhead) and what its running
    domains (dom0 included) take."""
    metrics = db.find(HostMetricsRec, host.metrics)
    total = metrics.memory_total if metrics is not None else 0
    used = sum(vm_memory(vm) for vm in db.vms_on(host.ref) if vm.power_state in ("Running", "Paused"))
    return total - int(host.extra.get("memory_overhead", 0)) - used


def runtime_fields(db: PoolDB, record: Any) -> dict[str, Any]:
    """The fields of a VM and its metrics that follow its power state (a halted VM has no domain: no memory
    target, no architecture, no VCPUs, no memory in use), and a host's free memory (what runs on it)."""
    if isinstance(record, HostMetricsRec):
        host = next((h for h in db.hosts() if h.metrics == record.ref), None)
        return {"memory_free": host_free_memory(db, host)} if host is not None else {}
    if isinstance(record, VMRec) and not record.is_control_domain:
        running = record.power_state in ("Running", "Paused")
        return {"memory_target": record.extra.get("memory_dynamic_max", record.memory_static_max) if running else 0,
                "domarch": "x64" if running else ""}
    if isinstance(record, VDIRec):
        return {"location": record.extra.get("location", record.uuid), "managed": record.extra.get("managed", True),
                "physical_utilisation": _used(db, record)}
    if isinstance(record, SRRec):
        vdis = [vdi for vdi in db.all(VDIRec) if vdi.SR == record.ref]
        return {"physical_size": record.extra.get("physical_size", (4096 if record.shared else 512) * 1024 ** 3),
                "virtual_allocation": sum(vdi.virtual_size for vdi in vdis),
                "physical_utilisation": sum(_used(db, vdi) for vdi in vdis)}
    if isinstance(record, VMMetricsRec):
        vm = next((v for v in db.all(VMRec) if v.metrics == record.ref), None)
        if vm is not None and vm.power_state == "Halted":
            return {"memory_actual": 0, "VCPUs_number": 0, "VCPUs_utilisation": {}, "state": [],
                    "current_domain_type": "unspecified"}
        if vm is not None:
            return {"memory_actual": vm.memory_static_max, "VCPUs_number": vm.VCPUs_max,
                    "VCPUs_utilisation": {str(n): 0.0 for n in range(vm.VCPUs_max)},
                    "state": [vm.power_state.lower()], "current_domain_type": vm.extra.get("domain_type", "hvm")}
    return {}


def _used(db: PoolDB, vdi: VDIRec) -> int:
    """Space a VDI takes on its SR: thin on file-based SRs (a quarter of its size in the lab), all of it on LVM."""
    if "physical_utilisation" in vdi.extra:
        return int(vdi.extra["physical_utilisation"])
    sr = db.find(SRRec, vdi.SR)
    return vdi.virtual_size if sr is not None and sr.type == "lvm" else vdi.virtual_size // 4


def remove_vm_devices(db: PoolDB, vm: VMRec) -> None:
    """What goes with a VM record: its metrics, consoles, VBDs (with their disks), VIFs."""
    for cls, ref in ((VMMetricsRec, vm.metrics), (VMGuestMetricsRec, vm.guest_metrics)):
        if (record := db.find(cls, ref)) is not None:
            db.remove(record)
    for console in [c for c in db.all(ConsoleRec) if c.VM == vm.ref]:
        db.remove(console)
    for vbd in [v for v in db.all(VBDRec) if v.VM == vm.ref]:
        if (disk := db.find(VDIRec, vbd.VDI)) is not None:
            db.remove(disk)
        db.remove(vbd)
    for vif in [v for v in db.all(VIFRec) if v.VM == vm.ref]:
        db.remove(vif)
