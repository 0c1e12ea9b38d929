"""A host whose hypervisor stops answering, as CloudStack's AgentManagerImpl and HighAvailabilityManager see it.

The lab knob is `CloudStackSimulator.host_unreachable(host_id, seconds)` (the simulator has no live link to the
XenAPI lab: CloudStack's XenServer resource pings through XenAPI, which a test models with this knob while it
reboots the host there). After Timings.ping_timeout (ping.interval × ping.timeout in CloudStack) the ping times out:
- a host Disabled, in Maintenance or ErrorInMaintenance is Disconnected, without investigation and without HA
  (AgentManagerImpl.handleDisconnectWithoutInvestigation; why operators disable or maintain before a reboot);
- any other host goes Alert (investigation); after Timings.host_investigate the investigators find it Down and
  HA (scheduleRestartForVmsOnHost) stops its VMs — counted as stops — and restarts the HA-enabled ones (routers,
  system VMs, user VMs with offerha) on an Up and Enabled host of the cluster with the memory for them (counted as
  restarts, Starting for Timings.vm_restart); the others stay Stopped. A host back before the investigation ends
  is found Up (no HA).
When the host answers again it reconnects (Connecting, then Up after Timings.host_connect) — unless its cluster is
Unmanaged, where no agent connects and it stays Disconnected until the cluster is Managed again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stackops_lab.cloudstack.maintenance import memory_of
from stackops_lab.cloudstack.state import Host, UserVm

if TYPE_CHECKING:
    from stackops_lab.cloudstack.hostops import HostOps

NO_INVESTIGATION = ("Disabled", "Maintenance", "ErrorInMaintenance")


class Availability:
    def __init__(self, hostops: HostOps) -> None:
        self.hostops = hostops
        self.sim = hostops.sim
        self.until: dict[str, float] = {}  # host uuid → when it answers again (the lab's monotonic clock)

    def unreachable(self, host: Host) -> bool:
        return self.sim.scheduler.now() < self.until.get(host.uuid, float("-inf"))

    def lose(self, host: Host, seconds: float) -> None:
        """The host stops answering for `seconds` (call with the state lock held)."""
        self.until[host.uuid] = self.sim.scheduler.now() + seconds
        self.sim.audit_log.record("host.unreachable", host=host.uuid, name=host.name, seconds=seconds)
        self.sim.scheduler.call_later(min(self.sim.timings.ping_timeout, seconds), lambda: self._ping_timeout(host))
        self.sim.scheduler.call_later(seconds, lambda: self._back(host))

    def _ping_timeout(self, host: Host) -> None:
        if not self.sim.state.live(host) or not self.unreachable(host) or host.state != "Up":
            return
        if host.resource_state in NO_INVESTIGATION:
            self.hostops.set_state(host, state="Disconnected")
            return
        self.hostops.set_state(host, state="Alert")
        self.sim.scheduler.call_later(self.sim.timings.host_investigate, lambda: self._investigated(host))

    def _investigated(self, host: Host) -> None:
        if not self.sim.state.live(host) or host.state != "Alert":
            return
        if not self.unreachable(host):
            self.hostops.set_state(host, state="Up")
            return
        self.hostops.set_state(host, state="Down")
        maintenance = self.hostops.maintenance
        for vm in maintenance.vms_on(host):
            self._restart_elsewhere(host, vm)

    def _restart_elsewhere(self, host: Host, vm: Any) -> None:
        maintenance = self.hostops.maintenance
        maintenance.set_vm_state(vm, "Stopped")
        maintenance.count(vm, "stops")
        vm.last_host, vm.host = host, None
        self.sim.audit_log.record("vm.stopped", vm=vm.uuid, name=vm.name, host=host.uuid, reason="HostDown")
        if isinstance(vm, UserVm) and not vm.ha_enable:
            return
        targets = maintenance.targets(host, memory_of(vm))
        if not targets:
            self.sim.audit_log.record("vm.restart.failed", vm=vm.uuid, name=vm.name,
                                      reason="Unable to find a suitable destination")
            return
        vm.host = targets[0]
        maintenance.set_vm_state(vm, "Starting")

        def started() -> None:
            if vm.state == "Starting":
                maintenance.set_vm_state(vm, "Running")
                maintenance.count(vm, "restarts")
                self.sim.audit_log.record("vm.restarted", vm=vm.uuid, name=vm.name, host=vm.host.uuid,
                                          reason="HA")

        self.sim.scheduler.call_later(self.sim.timings.vm_restart, started)

    def _back(self, host: Host) -> None:
        if not self.sim.state.live(host) or self.unreachable(host):
            return
        self.until.pop(host.uuid, None)
        self.sim.audit_log.record("host.reachable", host=host.uuid, name=host.name)
        if host.state == "Up" or host.cluster.managed_state != "Managed":
            return
        self.hostops.set_state(host, state="Connecting")

        def up() -> None:
            if self.sim.state.live(host) and host.state == "Connecting" and not self.unreachable(host):
                self.hostops.set_state(host, state="Up")

        self.sim.scheduler.call_later(self.sim.timings.host_connect, up)
