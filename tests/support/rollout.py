"""A SystemVMTemplate rollout's inputs for unit tests of its waves: one KVM template in one zone, the spec, routers
and what CloudStack has (CloudState) with the template ready and the system VMs replaced."""
from __future__ import annotations

from stackops.api.systemvmtemplate import SystemVMTemplateSpec
from stackops.reconcile.systemvmtemplate.observed import CloudState, Router, SystemVM, Template, older

SUM = "{SHA-512}" + "ab" * 64


def spec(max_unavailable: int = 1) -> SystemVMTemplateSpec:
    return SystemVMTemplateSpec.model_validate({
        "cloudstack": {"secretRef": {"name": "cs"}}, "version": "4.19.1",
        "templates": [{"hypervisor": "KVM", "url": "http://images.lab/kvm.qcow2.bz2", "checksum": SUM,
                       "format": "QCOW2"}],
        "rollout": {"routers": {"maxUnavailable": max_unavailable}},
    })


def router(n: int, *, version: str = "4.18.0", state: str = "Running") -> Router:
    return Router(id=f"r{n}", name=f"r-{n}-VM", state=state, zone_id="z1", hypervisor="KVM", version=version,
                  requires_upgrade=older(version, "4.19.1"), redundant=False, redundant_state="", pair=f"net{n}",
                  network=f"net-{n}", account="tenant-1", domain="ROOT")


def observed(*routers: Router) -> CloudState:
    """CloudStack with the new template ready, its settings made and the system VMs on it: only `routers` left."""
    template = Template("t-z1", "systemvm-kvm-4.19.1", "z1", "KVM", True, "Download Complete", SUM,
                        "http://images.lab/kvm.qcow2.bz2")
    return CloudState(zones={"zone-1": "z1"}, templates=[template],
                      config={"z1": {"router.template.kvm": "systemvm-kvm-4.19.1",
                                     "minreq.sysvmtemplate.version": "4.19.1"}},
                      system_vms=[SystemVM("s1", "s-1-VM", "secondarystoragevm", "Running", "z1", "KVM", "t-z1"),
                                  SystemVM("v1", "v-2-VM", "consoleproxy", "Running", "z1", "KVM", "t-z1")],
                      routers=list(routers))
