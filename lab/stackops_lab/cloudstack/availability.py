"""A host whose hypervisor stops answering, as CloudStack's AgentManagerImpl and HighAvailabilityManager see it.

Two ways for a host to stop answering:
- the lab knob `CloudStackSimulator.host_unreachable(host_id, seconds)`;
- the link to a XenAPI lab, off unless Timings.xen_ping > 0: every Timings.xen_ping seconds of the simulator's time,
  as CloudStack's XenServer resource pings its host, each XenServer host that discovery gave a guid (a real lab
  host) is probed with a TCP connection to its XenAPI address and port (outside the state lock, in its own thread);
  a host whose XenAPI refuses (powered off, rebooting, xapi stopped) is unreachable until a later probe connects;
- the same link to KVM lab hosts, off unless Timings.kvm_ping > 0: each KVM host added through addHost (checked for
  real, kvm.py; its host_details hold the url, as CloudStack's; the fleet's made-up hosts have none) is probed on
  its SSH port, a stand-in for the agent's own connection to the management server, which a real host's reboot or
  power-off drops (the lab's agent stand-in runs no process): a lab host is unreachable while a reboot keeps it
  down (LabHost.reboot). A stopped agent stand-in is not seen (the host still answers). Like the agent's, the
  link is a standing connection too: an SSH session (the management server's key, or the addHost password) held
  open to each KVM host that answers; a reboot ends every process on the host, the session with them, and a
  session found ended is the host disconnecting at once (as AgentManagerImpl handles a closed agent connection),
  however short the reboot — a connection probe alone misses a host back within the machine's ARP retries, its
  connects only delayed. A host where no session can be opened (no key, a refused login) is probed as before.
After Timings.ping_timeout (ping.interval × ping.timeout in CloudStack) the ping times out:
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

import socket
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from stackops_lab.cloudstack.kvm import SSH_PORT
from stackops_lab.cloudstack.maintenance import memory_of
from stackops_lab.cloudstack.xen import DEFAULT_PORT
from stackops_lab.cloudstack.state import Host, UserVm

if TYPE_CHECKING:
    from stackops_lab.cloudstack.hostops import HostOps

NO_INVESTIGATION = ("Disabled", "Maintenance", "ErrorInMaintenance")
KVM_PING_TIMEOUT = 5.0  # seconds: a KVM lab host that does not accept a connection by then does not answer


class Availability:
    def __init__(self, hostops: HostOps) -> None:
        self.hostops = hostops
        self.sim = hostops.sim
        self.until: dict[str, float] = {}  # host uuid → when it answers again (the lab's monotonic clock)
        self.links: dict[str, Any] = {}  # KVM host uuid → the standing SSH session (paramiko.SSHClient)
        self.passwords: dict[str, str] = {}  # KVM host uuid → the addHost password (none: the management key)
        self.unlinkable: set[str] = set()  # KVM hosts where a session cannot be opened: probed only
        self._links_lock = threading.Lock()
        self._linking: set[str] = set()
        self._losses: dict[str, int] = {}  # KVM host uuid → how many times it was lost
        self._suspect: set[str] = set()  # KVM hosts lost while their session was open: it is in doubt

        if self.sim.timings.xen_ping > 0:
            self.sim.scheduler.call_later(self.sim.timings.xen_ping, self._ping_xen)
        if self.sim.timings.kvm_ping > 0:
            self.sim.scheduler.call_later(self.sim.timings.kvm_ping, self._ping_kvm)

    def _ping_xen(self) -> None:
        """The periodic ping of the XenServer hosts (scheduled, under the state lock): probes in a thread."""
        self.sim.scheduler.call_later(self.sim.timings.xen_ping, self._ping_xen)
        hosts = [h for h in self.sim.state.values("host") if h.guid and h.hypervisor == "XenServer"]
        if hosts:
            targets = [(h, h.address, urlsplit(h.url).port or DEFAULT_PORT) for h in hosts]
            threading.Thread(target=self._probe, args=(targets, self.sim.timings.xenapi_timeout),
                             name="cloudstack-sim-xen-ping", daemon=True).start()

    def _ping_kvm(self) -> None:
        """The periodic ping of the KVM hosts added for real (scheduled, under the state lock): probes in a thread."""
        self.sim.scheduler.call_later(self.sim.timings.kvm_ping, self._ping_kvm)
        hosts = [h for h in self.sim.state.values("host") if h.hypervisor == "KVM" and h.details.get("url")]
        if hosts:
            targets = [(h, h.address, SSH_PORT, h.details.get("username") or "") for h in hosts]
            threading.Thread(target=self._probe, args=(targets, KVM_PING_TIMEOUT), name="cloudstack-sim-kvm-ping",
                             daemon=True).start()

    def _probe(self, targets: list[tuple[Any, ...]], timeout: float) -> None:
        answers, dropped = {}, set()
        for host, address, port, *login in targets:
            if login and self._dropped(host.uuid):
                answers[host.uuid] = False
                dropped.add(host.uuid)
                continue
            try:
                with socket.create_connection((address, port), timeout=timeout):
                    answers[host.uuid] = True
            except OSError:
                answers[host.uuid] = False
            if login and answers[host.uuid]:
                answers[host.uuid] = self._link(host.uuid, address, login[0], timeout)
        with self.sim.state.lock:
            for host, *_ in targets:
                if not self.sim.state.live(host):
                    continue
                lost = self.until.get(host.uuid) == float("inf")
                if not answers[host.uuid] and not lost:
                    self.lose(host, float("inf"))
                if host.uuid in dropped:  # the connection closed: disconnected now, not at the ping timeout
                    self._ping_timeout(host)
                elif answers[host.uuid] and lost:
                    if self._stale_link(host.uuid):  # its session went with the loss: disconnected first
                        self._ping_timeout(host)
                    self.until[host.uuid] = self.sim.scheduler.now()
                    self._back(host)

    # -- the standing session to each KVM lab host (the agent's connection)

    def _dropped(self, uuid: str) -> bool:
        """Whether the host's session was open and has ended (the host rebooted, powered off); forgets it."""
        with self._links_lock:
            link = self.links.get(uuid)
            if link is None:
                return False
            transport = link.get_transport()
            if transport is not None and transport.is_active():
                try:
                    transport.send_ignore()  # a host that came back without closing it answers with a reset
                    return False
                except Exception:  # noqa: BLE001 - any failure to write means the session is gone
                    pass
            del self.links[uuid]
            self._suspect.discard(uuid)
        link.close()
        return True

    def _link(self, uuid: str, address: str, username: str, timeout: float) -> bool:
        """With a session open (or one opened now) the host answers; a host that accepts connections but where
        no session can be opened is taken at its word (probed only, as without sessions)."""
        with self._links_lock:
            if uuid in self.links or uuid in self.unlinkable or uuid in self._linking or not username:
                return True
            self._linking.add(uuid)
            losses = self._losses.get(uuid, 0)
        import paramiko  # imported here: slow to import, and only KVM lab hosts need it
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        password = self.passwords.get(uuid)
        try:
            client.connect(address, port=SSH_PORT, username=username, password=password or None,
                           key_filename=None if password else self.sim.ssh_key_path, look_for_keys=False,
                           allow_agent=False, timeout=timeout, banner_timeout=timeout, auth_timeout=timeout)
        except (paramiko.AuthenticationException, ValueError):
            client.close()
            with self._links_lock:
                self._linking.discard(uuid)
                self.unlinkable.add(uuid)
            return True
        except (OSError, paramiko.SSHException, EOFError):
            client.close()
            with self._links_lock:
                self._linking.discard(uuid)
            return False
        with self._links_lock:
            self._linking.discard(uuid)
            if self._losses.get(uuid, 0) != losses:  # lost while the session was being opened: not trusted
                stale = True
            else:
                stale = False
                self.links[uuid] = client
        if stale:
            client.close()
            return False
        return True

    def _suspect_link(self, uuid: str) -> None:
        """The host stopped answering: its session is in doubt until the host answers again."""
        with self._links_lock:
            self._losses[uuid] = self._losses.get(uuid, 0) + 1
            if uuid in self.links:
                self._suspect.add(uuid)

    def _stale_link(self, uuid: str) -> bool:
        """The host answers again after a loss: a session opened before it is not trusted, and is taken as ended
        (a host whose network stopped before its processes — its addresses on Open vSwitch bridges — never
        closed it, and its reset would come only once retransmissions reach the host back, maybe after
        CloudStack has given it back). Whether there was one; forgets it."""
        with self._links_lock:
            if uuid not in self._suspect:
                return False
            self._suspect.discard(uuid)
            link = self.links.pop(uuid, None)
        if link is not None:
            link.close()
        return True

    def close(self) -> None:
        """End every standing session (the simulator stops)."""
        with self._links_lock:
            links, self.links = list(self.links.values()), {}
        for link in links:
            link.close()

    def unreachable(self, host: Host) -> bool:
        return self.sim.scheduler.now() < self.until.get(host.uuid, float("-inf"))

    def lose(self, host: Host, seconds: float) -> None:
        """The host stops answering for `seconds` (call with the state lock held)."""
        self.until[host.uuid] = self.sim.scheduler.now() + seconds
        self._suspect_link(host.uuid)
        self.sim.audit_log.record("host.unreachable", host=host.uuid, name=host.name,
                                  seconds=None if seconds == float("inf") else seconds)
        self.sim.scheduler.call_later(min(self.sim.timings.ping_timeout, seconds), lambda: self._ping_timeout(host))
        if seconds != float("inf"):
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
            self.restart_elsewhere(host, vm)

    def restart_elsewhere(self, host: Host, vm: Any) -> None:
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
