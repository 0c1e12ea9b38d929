"""Hypervisor hosts at run time: agent connection, maintenance, removal.

Mirrors ResourceManagerImpl:
- prepareHostForMaintenance: a host without VMs goes straight to Maintenance; otherwise PrepareForMaintenance
  while its VMs migrate, then Maintenance (ErrorInMaintenance when there is nowhere to migrate to);
- cancelHostMaintenance only from a maintenance state, back to Enabled;
- deleteHost refuses a host that is not in Maintenance (or Degraded) unless forced: "Host <uuid> cannot be
  deleted as it is not in maintenance mode. Either put the host into maintenance or perform a forced
  deletion."; a forced delete leaves the host's VMs Stopped.
The texts for a maintenance request in the wrong state are modelled on ResourceManagerImpl's
"Cannot perform <event> when resource state is <state>, hostId = <id>".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stackops_lab.cloudstack import responses
from stackops_lab.cloudstack.errors import INTERNAL_ERROR
from stackops_lab.cloudstack.jobs import JobContext
from stackops_lab.cloudstack.state import Host

if TYPE_CHECKING:
    from stackops_lab.cloudstack.simulator import CloudStackSimulator

MAINTENANCE_STATES = ("PrepareForMaintenance", "Maintenance", "ErrorInMaintenance")


class HostOps:
    def __init__(self, sim: CloudStackSimulator) -> None:
        self.sim = sim

    def set_state(self, host: Host, state: str | None = None, resource_state: str | None = None) -> None:
        old = (host.state, host.resource_state)
        if state is not None:
            host.state = state
        if resource_state is not None:
            host.resource_state = resource_state
        if old != (host.state, host.resource_state):
            self.sim.audit_log.record("host.state", host=host.uuid, name=host.name,
                                      state=host.state, resourcestate=host.resource_state,
                                      **{"from": {"state": old[0], "resourcestate": old[1]}})

    def connect_later(self, host: Host) -> None:
        """A new host's agent connects after Timings.host_connect: Connecting → Up."""

        def up() -> None:
            if self.sim.state.live(host) and host.state == "Connecting":
                self.set_state(host, state="Up")

        self.sim.scheduler.call_later(self.sim.timings.host_connect, up)

    def vms_on(self, host: Host) -> list:
        state = self.sim.state
        return [vm for vm in [*state.values("router"), *state.values("systemvm")]
                if vm.host is host and vm.state != "Stopped"]

    def prepare_maintenance(self, ctx: JobContext, host: Host) -> None:
        if host.resource_state in MAINTENANCE_STATES:
            ctx.fail(INTERNAL_ERROR, f"Cannot perform maintain when resource state is {host.resource_state}, "
                                     f"hostId = {host.db_id}")
            return
        if not self.vms_on(host):
            self.set_state(host, resource_state="Maintenance")
            ctx.succeed({"host": responses.host(host)})
            return
        self.set_state(host, resource_state="PrepareForMaintenance")
        ctx.succeed({"host": responses.host(host)})
        self.sim.scheduler.call_later(self.sim.timings.host_maintenance, lambda: self.migrate_away(host))

    def migrate_away(self, host: Host) -> None:
        if not self.sim.state.live(host) or host.resource_state != "PrepareForMaintenance":
            return
        targets = [h for h in self.sim.state.values("host")
                   if h is not host and h.cluster is host.cluster and h.state == "Up"
                   and h.resource_state == "Enabled"]
        vms = self.vms_on(host)
        if vms and not targets:
            self.set_state(host, resource_state="ErrorInMaintenance")
            return
        for index, vm in enumerate(vms):
            vm.host = targets[index % len(targets)]
            self.sim.audit_log.record("vm.migrated", vm=vm.uuid, name=vm.name, source=host.uuid,
                                      target=vm.host.uuid)
        self.set_state(host, resource_state="Maintenance")

    def cancel_maintenance(self, ctx: JobContext, host: Host) -> None:
        if host.resource_state not in MAINTENANCE_STATES:
            ctx.fail(INTERNAL_ERROR, f"Cannot perform cancelMaintenance when resource state is "
                                     f"{host.resource_state}, hostId = {host.db_id}")
            return
        self.set_state(host, resource_state="Enabled")
        ctx.succeed({"host": responses.host(host)})
