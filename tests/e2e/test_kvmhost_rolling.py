"""KVM rolling maintenance through the operator (issue 15's must-show), on a cluster of support.kvm_cluster: KVM lab
hosts registered in one lab CloudStack KVM cluster through their KvmHosts, VMs on every host, one host Disabled in
CloudStack.

- A rolling restart of 6 hosts whose management addresses (spec.address, the one CloudStack pings) sit on VLAN
  bridges (mgmt0, VLAN 123 of cloudbr0, eth0 its uplink), the same `restartAfter` patched onto every KvmHost:
  from the records — the hosts' power logs and the lab CloudStack's host-state audit — never two hosts in
  maintenance or down at once, every host down only inside its own maintenance, rebooted exactly once and reachable
  again on its spec's address (back on mgmt0 from its own network configuration), no VM stopped, every host back Enabled except the Disabled one (Disabled again), every lock slot free, every
  maintenance Completed, and `stackops plan` then plans nothing.
- A cloudstack-agent version change on every KvmHost: each host's package change runs while CloudStack has it in
  Maintenance (apt's own hooks on the host time dpkg), one host at a time, no host rebooted, no VM stopped.
"""
from __future__ import annotations

import datetime
from typing import Any, Callable

from support.kvm_cluster import KvmCluster, Span, kvm_cluster, management_address
from support.wait import wait_for

OLD_AGENT, NEW_AGENT = "4.19.1.0", "4.19.2.0"  # the lab hosts' agent, and the lab repository's later one
DPKG_LOG = "/var/log/stackops-e2e-dpkg.log"
DPKG_HOOK = ("/etc/apt/apt.conf.d/99stackops-e2e", 'DPkg::Pre-Invoke { "echo pre $(date +%s.%N) >> ' + DPKG_LOG +
             '"; };\nDPkg::Post-Invoke { "echo post $(date +%s.%N) >> ' + DPKG_LOG + '"; };\n')


def closed(spans: list[Span]) -> list[Span]:
    assert all(s.end is not None for s in spans), f"spans still open at the end: {spans}"
    return spans


def common_checks(cluster: KvmCluster, mark: Any, maintenance: list[Span]) -> None:
    """What every roll leaves: one maintenance per host, one at a time, no VM stopped, states as before, the lock
    free."""
    diagnostics = cluster.diagnostics(mark)
    assert sorted(s.host for s in maintenance) == sorted(cluster.names), \
        f"maintenances per host: {[s.host for s in maintenance]}\n{diagnostics}"
    assert cluster.most_at_once(maintenance) == 1, f"two hosts in maintenance at once\n{diagnostics}"
    assert cluster.vm_stops() == {}, f"VMs stopped: {cluster.vm_stops()}"
    # CloudStack never lost an Enabled host (Alert: investigation, then HA)
    assert not [e for e in cluster.host_states(mark) if e.get("state") in ("Alert", "Down")], diagnostics
    placement = cluster.vm_placement()
    assert len(placement) == sum(len(v) for v in cluster.vms.values()) and all(placement.values()), placement
    assert cluster.migrations() >= len(placement), "every VM left the host it was on at least once"
    assert cluster.cloudstack_states() == cluster.expected_states(), diagnostics
    assert cluster.slots(), "the maintenance lock's Leases were used"
    assert cluster.held_slots() == [], f"slots still held: {cluster.held_slots()}\n{diagnostics}"


def plans_nothing(cluster: KvmCluster) -> None:
    """A second pass plans nothing: `stackops plan` of the KvmHosts as they are now."""
    code, output = cluster.plan()
    lines = output.splitlines()
    assert code == 0 and f"{len(cluster.names)} resources: 0 to change, {len(cluster.names)} unchanged" in output, \
        f"stackops plan after the roll (exit {code}):\n{output}"
    assert all(line.endswith(": no changes") for line in lines if line.startswith("KvmHost ")), output


def test_rolling_restart_of_six_hosts(kube: Any, operator: Any, make_lab_hosts: Callable[..., Any]) -> None:
    with kvm_cluster(kube, operator, make_lab_hosts, count=6, vlan_management=True, prefix="e2e-kvmroll6") as cluster:
        mark = cluster.mark()
        request = cluster.restart_all()
        cluster.wait_completed(request)

        diagnostics = cluster.diagnostics(mark)
        maintenance, down = closed(cluster.maintenance_spans(mark)), closed(cluster.down_spans(mark))
        assert cluster.rebooted(mark) == dict.fromkeys(cluster.names, 1), f"{cluster.rebooted(mark)}\n{diagnostics}"
        assert sorted(s.host for s in down) == sorted(cluster.names), down
        assert cluster.most_at_once(down) == 1, f"two hosts down at once: {down}"
        for span in down:  # each host went down inside its own maintenance, never outside it
            [inside] = [m for m in maintenance if m.host == span.host]
            assert inside.start < span.start and span.end < inside.end, (span, inside)
            # CloudStack's ping saw it go and come back meanwhile
            states = [e.get("state") for e in cluster.host_states(mark)
                      if e["name"] == span.host and inside.start <= e["t"] <= inside.end]
            assert "Disconnected" in states and states[-1] == "Up", f"{span.host}: {states}\n{diagnostics}"
        common_checks(cluster, mark, maintenance)

        assert cluster.reachable_on_spec_address() == dict.fromkeys(cluster.names, True)
        for host in cluster.hosts:  # back on its VLAN bridge from the host's own network configuration
            assert cluster.objects()[host.name]["spec"]["address"] == management_address(host)
            shown = host.run("ip -4 -o addr show dev mgmt0", check=True).stdout
            assert f"{management_address(host)}/24" in shown, (host.name, shown)
        wanted = datetime.datetime.fromisoformat(request.split(" ", 1)[1].replace("Z", "+00:00"))
        for name, obj in cluster.objects().items():
            status = cluster.status(obj)
            record = status["maintenance"]
            assert record["phase"] == "Completed" and record["request"] == request, (name, record)
            # the boot id recorded before the reboot was the one the host had then
            ups = [m for t, m in cluster.host(name).power_log() if ": up " in m and t < mark.t]
            assert ups and ups[-1].endswith(f"boot_id={record['bootId']}"), (name, record.get("bootId"), ups)
            # the operator's probe reached the host on its spec's address after its reboot
            booted = datetime.datetime.fromisoformat(status["bootTime"].replace("Z", "+00:00"))
            assert booted >= wanted, (name, status["bootTime"], request)

        def ready() -> bool:  # a status from a pass during the roll may lag; the Disabled host counts as Up too
            return all(any(c["type"] == "Ready" and c["status"] == "True" for c in o["status"].get("conditions", []))
                       for o in cluster.objects().values())

        wait_for(ready, timeout=300, what="every KvmHost Ready", interval=1.0)
        plans_nothing(cluster)
        assert cluster.rebooted(mark) == dict.fromkeys(cluster.names, 1), "a host rebooted again after the roll"


def test_agent_version_change_goes_through_maintenance_host_by_host(kube: Any, operator: Any,
                                                                    make_lab_hosts: Callable[..., Any]) -> None:
    with kvm_cluster(kube, operator, make_lab_hosts, count=6, spec={"packages": {"cloudstackAgentVersion": OLD_AGENT}},
                     prefix="e2e-kvmagent") as cluster:
        for host in cluster.hosts:  # apt's own hooks record when dpkg runs on the host (the machine's clock)
            path, text = DPKG_HOOK
            host.run(f"cat > {path}", input=text, check=True)
            host.run(f"rm -f {DPKG_LOG}", check=True)
        mark = cluster.mark()
        cluster.patch_all({"packages": {"cloudstackAgentVersion": NEW_AGENT}})
        request = f"cloudstack-agent {OLD_AGENT} → {NEW_AGENT}"
        cluster.wait_completed(request)

        diagnostics = cluster.diagnostics(mark)
        maintenance = closed(cluster.maintenance_spans(mark, clock="time"))
        emptied = closed(cluster.maintenance_spans(mark, clock="time", states=("Maintenance",)))
        for host in cluster.hosts:
            version = host.run("dpkg-query -W -f='${Version}' cloudstack-agent", check=True).stdout.strip()
            assert version == NEW_AGENT, (host.name, version)
            runs = [line.split() for line in host.run(f"cat {DPKG_LOG}", check=True).stdout.splitlines()]
            assert runs and runs[0][0] == "pre" and runs[-1][0] == "post", (host.name, runs)
            [span] = [s for s in emptied if s.host == host.name]
            first, last = float(runs[0][1]), float(runs[-1][1])
            assert span.start < first and last < span.end, \
                f"{host.name}: dpkg ran {first:.3f}..{last:.3f}, in Maintenance {span}\n{diagnostics}"
        assert cluster.rebooted(mark) == dict.fromkeys(cluster.names, 0), "an agent change reboots no host"
        common_checks(cluster, mark, maintenance)
        plans_nothing(cluster)
