"""System VMs (secondary storage VM, console proxy) at run time.

Mirrors CloudStack: destroySystemVm stops and expunges the VM; the SecondaryStorageManager /
ConsoleProxyManager capacity scan then creates a replacement — a new VM with a new id and name — from
VMTemplateDao.findSystemVMReadyTemplate(zone, hypervisor): the newest (highest id) READY template of type
SYSTEM for that hypervisor in the zone. A reboot would not change a system VM's template; only a recreate
does. With no ready template the replacement waits (CloudStack keeps retrying its scan).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stackops_lab.cloudstack import responses
from stackops_lab.cloudstack.errors import INTERNAL_ERROR, PARAM_ERROR
from stackops_lab.cloudstack.jobs import JobContext
from stackops_lab.cloudstack.state import AgentHost, Host, SystemVm, Template, Zone

if TYPE_CHECKING:
    from stackops_lab.cloudstack.simulator import CloudStackSimulator

DESTROY_CMD = "org.apache.cloudstack.api.command.admin.systemvm.DestroySystemVmCmd"


class SystemVmOps:
    def __init__(self, sim: CloudStackSimulator) -> None:
        self.sim = sim

    def ready_system_template(self, zone: Zone, hypervisor: str) -> Template | None:
        found = [t for t in self.sim.state.values("template")
                 if t.template_type == "SYSTEM" and t.hypervisor.lower() == hypervisor.lower() and t.ready_in(zone)]
        return max(found, key=lambda t: t.db_id, default=None)

    def placement(self, zone: Zone, hypervisor: str) -> Host | None:
        for host in self.sim.state.values("host"):
            if host.cluster.zone is zone and host.hypervisor == hypervisor and host.state == "Up" \
                    and host.resource_state == "Enabled":
                return host
        return None

    def set_state(self, vm: SystemVm, new: str) -> None:
        old, vm.state = vm.state, new
        self.sim.audit_log.record("systemvm.state", vm=vm.uuid, name=vm.name, type=vm.vm_type,
                                  zone=vm.zone.uuid if vm.zone else None, **{"from": old, "to": new})

    def destroy(self, ctx: JobContext, vm: SystemVm) -> None:
        sim = self.sim
        if not sim.state.live(vm) or vm.state in ("Destroyed", "Expunging"):
            ctx.fail(PARAM_ERROR, f"unable to find a system vm with id {vm.db_id}")
            return
        self.set_state(vm, "Stopping")

        def destroyed() -> None:
            self.set_state(vm, "Destroyed")
            result = {"systemvm": responses.system_vm(vm)}
            sim.state.remove(vm)
            if vm.agent is not None:
                sim.state.remove(vm.agent)
            sim.audit_log.record("systemvm.destroyed", vm=vm.uuid, name=vm.name, type=vm.vm_type,
                                 zone=vm.zone.uuid if vm.zone else None,
                                 template=vm.template.uuid if vm.template else None)
            ctx.succeed(result)
            sim.scheduler.call_later(sim.timings.systemvm_recreate / 2, lambda: self.recreate(vm, True))

        ctx.later(sim.timings.job, destroyed)

    def recreate(self, old: SystemVm, first_try: bool) -> None:
        """Create the replacement of `old` (Starting), Running after the rest of systemvm_recreate."""
        sim = self.sim
        state = sim.state
        assert old.zone is not None
        template = self.ready_system_template(old.zone, old.hypervisor)
        host = self.placement(old.zone, old.hypervisor)
        if template is None or host is None:
            if first_try:
                sim.audit_log.record("systemvm.waiting", replaces=old.uuid, type=old.vm_type, zone=old.zone.uuid,
                                     reason="no ready SYSTEM template" if template is None else "no Up host")
            sim.scheduler.call_later(max(sim.timings.systemvm_recreate / 2, 0.1), lambda: self.recreate(old, False))
            return
        vm_id = state.next_id("vm")
        letter = "s" if old.vm_type == "secondarystoragevm" else "v"
        vm = state.add(SystemVm(uuid=state.new_uuid(), db_id=vm_id, name=f"{letter}-{vm_id}-VM", vm_type=old.vm_type,
                                zone=old.zone, host=host, hypervisor=old.hypervisor, template=template,
                                state="Starting", private_ip=old.private_ip, public_ip=old.public_ip,
                                link_local_ip=f"169.254.{vm_id // 250 % 250}.{vm_id % 250 + 2}"))
        vm.agent = state.add(AgentHost(uuid=state.new_uuid(), db_id=state.next_id("host"), vm=vm))
        sim.audit_log.record("systemvm.created", vm=vm.uuid, name=vm.name, type=vm.vm_type, zone=old.zone.uuid,
                             replaces=old.uuid, template=template.uuid, templatename=template.name,
                             version=template.version)

        def running() -> None:
            if state.live(vm) and vm.state == "Starting":
                self.set_state(vm, "Running")
                sim.audit_log.record("systemvm.running", vm=vm.uuid, name=vm.name, type=vm.vm_type,
                                     zone=old.zone.uuid if old.zone else None, template=template.uuid)

        sim.scheduler.call_later(sim.timings.systemvm_recreate / 2, running)

    # ------------------------------------------------------------------ stop, start, reboot
    def _check(self, ctx: JobContext, vm: SystemVm) -> bool:
        if not self.sim.state.live(vm) or vm.state in ("Destroyed", "Expunging"):
            ctx.fail(PARAM_ERROR, f"unable to find a system vm with id {vm.db_id}")
            return False
        return True

    def _answer(self, ctx: JobContext, vm: SystemVm) -> None:
        ctx.succeed({"systemvm": responses.system_vm(vm)})

    def stop(self, ctx: JobContext, vm: SystemVm) -> None:
        """stopSystemVm: Running → Stopping → Stopped; a stopped VM answers as it is."""
        if not self._check(ctx, vm):
            return
        if vm.state == "Stopped":
            self._answer(ctx, vm)
            return
        self.set_state(vm, "Stopping")

        def stopped() -> None:
            self.set_state(vm, "Stopped")
            self._answer(ctx, vm)

        ctx.later(self.sim.timings.systemvm_recreate / 2, stopped)

    def start(self, ctx: JobContext, vm: SystemVm) -> None:
        """startSystemVm: Stopped → Starting → Running on the template it has (only a recreate changes it)."""
        if not self._check(ctx, vm):
            return
        if vm.state == "Running":
            self._answer(ctx, vm)
            return
        assert vm.zone is not None
        if vm.host is None:
            vm.host = self.placement(vm.zone, vm.hypervisor)
        self.set_state(vm, "Starting")

        def running() -> None:
            self.set_state(vm, "Running")
            self._answer(ctx, vm)

        ctx.later(self.sim.timings.systemvm_recreate / 2, running)

    def reboot(self, ctx: JobContext, vm: SystemVm) -> None:
        """rebootSystemVm: only a Running VM reboots (same template); otherwise the job fails (530; the text is
        the lab's, modelled on VirtualMachineManagerImpl refusing to reboot a VM that is not running)."""
        if not self._check(ctx, vm):
            return
        if vm.state != "Running":
            ctx.fail(INTERNAL_ERROR, f"Unable to reboot {vm.name}: it is {vm.state}, not Running")
            return
        self.set_state(vm, "Stopping")
        ctx.later(self.sim.timings.systemvm_recreate / 3, lambda: self.set_state(vm, "Starting"))

        def running() -> None:
            self.set_state(vm, "Running")
            self._answer(ctx, vm)

        ctx.later(self.sim.timings.systemvm_recreate * 2 / 3, running)
