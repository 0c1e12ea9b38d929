"""KvmHosts through the operator as `make demo` runs it (real API server, deploy/ RBAC, lab hosts): hand-made drift
is repaired within one resync interval; an unreachable host is reported and recovered from without intervention."""
from __future__ import annotations

import json
import time
from typing import Any, Callable

import pytest
import yaml

from stackops_lab.manifests import kvmhost_manifests

pytestmark = pytest.mark.e2e

INTERVAL = 30  # the smallest resyncIntervalSeconds the API accepts


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def condition(kube: Any, namespace: str, name: str, type_: str) -> dict[str, Any]:
    obj = json.loads(kube.kubectl("get", "kvmhost", name, "-n", namespace, "-o", "json").stdout)
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


@pytest.fixture
def managed_hosts(kube: Any, operator: Any, make_lab_hosts: Callable[[int], list]) -> tuple[str, list]:
    hosts = make_lab_hosts(2)
    namespace = f"e2e-kvm-{int(time.time())}"
    kube.kubectl("create", "namespace", namespace)
    documents = kvmhost_manifests(hosts, namespace)
    for document in documents:
        if document["kind"] == "KvmHost":
            document["spec"]["resyncIntervalSeconds"] = INTERVAL
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))
    for host in hosts:
        wait_for(lambda: condition(kube, namespace, f"lab-{host.name}", "Ready").get("status") == "True",
                 timeout=120, what=f"lab-{host.name} Ready")
    return namespace, hosts


def test_drift_is_repaired_within_one_interval(kube: Any, managed_hosts: tuple[str, list]) -> None:
    namespace, hosts = managed_hosts
    host = hosts[0]
    host.run("ovs-vsctl del-br storage0")
    host.run("sed -i 's/^listen_tcp = 1/listen_tcp = 0/' /etc/libvirt/libvirtd.conf")
    started = time.monotonic()
    wait_for(lambda: "storage0" in host.run("ovs-vsctl list-br").stdout and
             host.run("grep -c '^listen_tcp = 1' /etc/libvirt/libvirtd.conf").stdout.strip() == "1",
             timeout=2 * INTERVAL + 30, what="drift repaired")
    assert time.monotonic() - started <= 2 * INTERVAL + 30
    events = kube.kubectl("get", "events", "-n", namespace, "--field-selector",
                          f"involvedObject.name=lab-{host.name}").stdout
    assert "create VLAN bridge storage0" in events


def test_unreachable_host_is_reported_and_recovered(kube: Any, managed_hosts: tuple[str, list]) -> None:
    namespace, hosts = managed_hosts
    host = hosts[1]
    name = f"lab-{host.name}"
    host.run("pkill -x sshd")  # the listener and every session: the host is gone for SSH
    reachable = wait_for(lambda: (c := condition(kube, namespace, name, "Reachable")).get("status") == "False" and c,
                         timeout=2 * INTERVAL + 30, what="Reachable=False")
    assert reachable["reason"] == "Unreachable"
    assert condition(kube, namespace, name, "Ready")["status"] == "False"
    host.run("/usr/sbin/sshd -E /var/log/auth.log")
    wait_for(lambda: condition(kube, namespace, name, "Ready").get("status") == "True",
             timeout=3 * INTERVAL + 60, what="recovery without intervention")
    assert condition(kube, namespace, name, "Reachable")["status"] == "True"


def test_management_path_cut_is_reverted_and_reported(kube: Any, managed_hosts: tuple[str, list]) -> None:
    """eth0 joins cloudbr0 and the management address moves to VLAN 123, which the lab's switch does not carry:
    the host reverts it by itself, stays reachable, and status says why; the same generation is not retried."""
    namespace, hosts = managed_hosts
    host = hosts[0]
    name = f"lab-{host.name}"
    obj = json.loads(kube.kubectl("get", "kvmhost", name, "-n", namespace, "-o", "json").stdout)
    openvswitch = obj["spec"]["openvswitch"]
    openvswitch["rollbackTimeoutSeconds"] = 10
    bridge = openvswitch["bridges"][0]
    bridge["ports"] = ["eth0"]
    bridge["vlanBridges"][0]["addresses"] = [f"{host.address}/24"]
    kube.kubectl("patch", "kvmhost", name, "-n", namespace, "--type=merge",
                 "-p", json.dumps({"spec": {"openvswitch": openvswitch}}))
    stalled = wait_for(lambda: (c := condition(kube, namespace, name, "Stalled")).get("reason") == "RolledBack"
                       and c, timeout=120, what="Stalled/RolledBack")
    assert stalled["status"] == "True" and "mgmt0" in stalled["message"], stalled
    status = json.loads(kube.kubectl("get", "kvmhost", name, "-n", namespace, "-o", "json").stdout)["status"]
    assert status["rollback"]["generation"] == status["observedGeneration"] and status["rollback"]["reason"]
    assert "eth0" not in host.run("ovs-vsctl list-ports cloudbr0").stdout
    assert host.address in host.run("ip -4 addr show eth0").stdout
    events = kube.kubectl("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}").stdout
    assert "RolledBack" in events and "GuardedApply" in events
