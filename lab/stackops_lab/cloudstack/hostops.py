"""Hypervisor hosts at run time: agent connection, maintenance, removal.

Mirrors ResourceManagerImpl:
- prepareHostForMaintenance and cancelHostMaintenance: stackops_lab.cloudstack.maintenance (the resource state
  machine, CloudStack's refusals, VMs migrated by HA Migration work with memory accounted, ErrorInMaintenance);
- a host that stops answering (Alert/Down and HA, or Disconnected): stackops_lab.cloudstack.availability;
- deleteHost refuses a host that is not in Maintenance (or Degraded) unless forced: "Host <uuid> cannot be
  deleted as it is not in maintenance mode. Either put the host into maintenance or perform a forced
  deletion."; a forced delete leaves the host's VMs Stopped.
The texts for a maintenance request in the wrong state are modelled on ResourceManagerImpl's
"Cannot perform <event> when resource state is <state>, hostId = <id>".

A cluster's managed state (ResourceManagerImpl.updateCluster):
- Unmanaged: every host must be Up, Down, Disconnected or Alert ("PrepareUnmanaged Failed due to host <ip>
  should not be in <status> status"); the Up ones are disconnected (umanageHost → AgentManager
  disconnectWithoutInvestigation(ShutdownRequested): Up → Disconnected). CloudStack then polls every 5 s until
  no host is Up; the simulator's hosts are Disconnected at once.
- Managed: nothing happens in updateCluster itself; ClusteredAgentManagerImpl's direct agent scan
  (HostDaoImpl.findAndUpdateDirectAgentToLoad: hosts no management server owns, in Managed clusters) loads them
  after Timings.cluster_reconnect: Connecting (AgentConnected), then Up (Ready) or Alert (AgentDisconnected).
  A XenServer host is checked for real through the XenAPI SDK (stackops_lab.cloudstack.xen.find_pool, outside
  the state lock); the fleet's made-up hosts and KVM hosts come back Up (their agents reconnect).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from stackops_lab.cloudstack import xen
from stackops_lab.cloudstack.availability import Availability
from stackops_lab.cloudstack.jobs import JobContext
from stackops_lab.cloudstack.maintenance import Maintenance
from stackops_lab.cloudstack.state import Cluster, Host

if TYPE_CHECKING:
    from stackops_lab.cloudstack.simulator import CloudStackSimulator

UNMANAGEABLE = ("Down", "Disconnected", "Up", "Alert")


class HostOps:
    def __init__(self, sim: CloudStackSimulator) -> None:
        self.sim = sim
        self.maintenance = Maintenance(self)
        self.availability = Availability(self)

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
        return self.maintenance.vms_on(host)

    def unreachable(self, host: Host) -> bool:
        return self.availability.unreachable(host)

    def prepare_maintenance(self, ctx: JobContext, host: Host) -> None:
        self.maintenance.prepare(ctx, host)

    def cancel_maintenance(self, ctx: JobContext, host: Host) -> None:
        self.maintenance.cancel(ctx, host)

    # ------------------------------------------------------------------ cluster managed state
    def hosts_of(self, cluster: Cluster) -> list[Host]:
        return [h for h in self.sim.state.values("host") if h.cluster is cluster]

    def unmanage(self, cluster: Cluster) -> str | None:
        """Disconnect the cluster's Up hosts (call with the state lock held); the refusal text, or None."""
        hosts = self.hosts_of(cluster)
        for host in hosts:
            if host.state not in UNMANAGEABLE:
                return f"PrepareUnmanaged Failed due to host {host.address} should not be in {host.state} status"
        for host in hosts:
            if host.state == "Up":
                self.set_state(host, state="Disconnected")
        return None

    def reconnect_later(self, cluster: Cluster) -> None:
        """The direct agent scan that reconnects a Managed cluster's hosts (call with the state lock held)."""
        self.sim.scheduler.call_later(self.sim.timings.cluster_reconnect, lambda: self._scan(cluster))

    def _scan(self, cluster: Cluster) -> None:
        if not self.sim.state.live(cluster) or cluster.managed_state != "Managed":
            return
        hosts = [h for h in self.hosts_of(cluster) if h.state != "Up"]
        for host in hosts:
            self.set_state(host, state="Connecting")
        checked = [h for h in hosts if h.guid and cluster.hypervisor == "XenServer"]
        for host in hosts:
            if host not in checked:
                self.set_state(host, state="Alert" if self.unreachable(host) else "Up")
        if not checked:
            return
        first = checked[0]
        port = urlsplit(first.url).port or xen.DEFAULT_PORT
        addresses = list(dict.fromkeys(h.address for h in self.hosts_of(cluster)))
        login = (first.details.get("username", ""), first.details.get("password", ""))
        threading.Thread(target=self._reconnect, args=(cluster, checked, addresses, port, login),
                         name="cloudstack-sim-reconnect", daemon=True).start()

    def _reconnect(self, cluster: Cluster, hosts: list[Host], addresses: list[str], port: int,
                   login: tuple[str, str]) -> None:
        """Runs in its own thread: the XenAPI calls without the state lock, then the states under it."""
        sim = self.sim
        pool, reasons = xen.find_pool(addresses, port, login[0], login[1], sim.timings.xenapi_timeout)
        with sim.state.lock:
            for reason in reasons:
                xen.log(sim, "DEBUG", "XenServerConnectionPool", reason)
            if pool is not None and pool.uuid != cluster.guid:
                xen.log(sim, "WARN", xen.DISCOVERER, f"pool uuid for cluster {cluster.db_id} changed from "
                                                     f"{cluster.guid} to {pool.uuid}")
                pool = None
            live = {record.uuid: record.live for record in pool.hosts} if pool is not None else {}
            for host in hosts:
                if not sim.state.live(host) or host.state != "Connecting":
                    continue
                if live.get(host.guid):
                    self.set_state(host, state="Up")
                else:
                    reason = ("no host of the pool answers" if pool is None else "host_metrics.live is false"
                              if host.guid in live else "the host is not in the pool")
                    sim.audit_log.record("host.reconnect.failed", host=host.uuid, name=host.name, reason=reason)
                    self.set_state(host, state="Alert")
