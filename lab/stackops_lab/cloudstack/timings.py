"""How long the simulated infrastructure takes for things that take time in CloudStack."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Timings:
    """Durations in seconds (floats). Small values make tests fast; 0 makes a transition immediate (but still
    driven by the scheduler, in order)."""

    template_download: float = 2.0  # registerTemplate → isready (status "N% Downloaded" … "Download Complete")
    router_reboot: float = 1.0  # Running → Stopping → Stopped → Starting → Running
    systemvm_recreate: float = 2.0  # destroyed → replacement Starting (at half) → Running (at the end)
    host_connect: float = 1.0  # added host Connecting → Up
    host_maintenance: float = 1.0  # checkAndMaintain after a prepare that found no peer → ErrorInMaintenance
    job: float = 0.05  # minimum time any async job takes
    cluster_reconnect: float = 1.0  # updateCluster managedstate=Managed → the direct agent scan reconnects hosts
    xenapi_timeout: float = 10.0  # every XenAPI connection and call of the XenServer discoverer
    vm_migrate: float = 1.0  # a VM live-migrating to another host (Migrating → Running on the target)
    ping_timeout: float = 2.0  # a host stops answering → the agent's ping times out (ping.interval × ping.timeout)
    host_investigate: float = 1.0  # an Alert host's investigation → Down, then HA restarts its VMs elsewhere
    vm_restart: float = 1.0  # HA restarting a VM on another host (Starting → Running)
    xen_ping: float = 0.0  # > 0: ping registered XenServer hosts' XenAPI this often (the link to a XenAPI lab); 0: off
    kvm_ping: float = 0.0  # > 0: ping KVM hosts added through addHost (real lab hosts) on SSH this often; 0: off
