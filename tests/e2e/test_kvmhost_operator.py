"""KvmHosts through the operator as `make demo` runs it (real API server, deploy/ RBAC, lab hosts): hand-made drift
is repaired within one resync interval; an unreachable host is reported and recovered from without intervention."""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from typing import Any, Callable

import pytest
import yaml

from stackops_lab.manifests import kvmhost_manifests
from support.wait import wait_for

INTERVAL = 30  # the smallest resyncIntervalSeconds the API accepts


class StatusWatch:
    """`kubectl get --watch -o json` of one object: every version of it the API server stores, in order (each
    reconcile pass writes its status once)."""

    def __init__(self, kube: Any, namespace: str, kind: str, name: str) -> None:
        self.objects: list[dict[str, Any]] = []
        self.process = subprocess.Popen([kube.kubectl_binary, f"--kubeconfig={kube.kubeconfig}", "get", kind, name,
                                         "-n", namespace, "-o", "json", "--watch"],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        while chunk := os.read(self.process.stdout.fileno(), 1 << 16):
            buffer += chunk.decode()
            while buffer.strip():
                try:
                    obj, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    break  # the rest of the object has not arrived yet
                buffer = buffer.lstrip()[end:]
                self.objects.append(obj)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.thread.join(timeout=30)


def passes(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The statuses written by reconcile passes after the first object, one per pass: a pass stamps
    lastReconcileTime (to the second) and, when it applied something, writes lastApplied."""
    written = []
    previous = objects[0].get("status") or {}
    for obj in objects[1:]:
        status = obj.get("status") or {}
        if any(status.get(key) != previous.get(key) for key in ("lastReconcileTime", "lastApplied")):
            written.append(status)
        previous = status
    return written


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
                 timeout=120, what=f"lab-{host.name} Ready", interval=1)
    return namespace, hosts


def test_drift_is_repaired_within_one_interval(kube: Any, managed_hosts: tuple[str, list]) -> None:
    """Within one interval, counted in passes rather than in seconds (the operator's time is the machine's, however
    busy): the drift is repaired by the first pass that starts after it was made — at most one pass, one already
    running when the drift was made, ends in between."""
    namespace, hosts = managed_hosts
    host = hosts[0]
    watch = StatusWatch(kube, namespace, "kvmhost", f"lab-{host.name}")
    try:
        wait_for(lambda: watch.objects, timeout=60, what="the watch", interval=1)  # established: it printed the object
        host.run("ovs-vsctl del-br storage0")
        host.run("sed -i 's/^listen_tcp = 1/listen_tcp = 0/' /etc/libvirt/libvirtd.conf")

        def repaired_by() -> int | None:
            """How many passes it took until the last of the repairs was applied."""
            done: set[str] = set()
            for count, status in enumerate(passes(list(watch.objects)), 1):
                applied = [a["description"] for a in status.get("lastApplied") or []] \
                    if status.get("lastApplied") != (watch.objects[0].get("status") or {}).get("lastApplied") else []
                done |= {"storage0" for d in applied if d.startswith("create VLAN bridge storage0 ")}
                done |= {"libvirtd" for d in applied if "libvirtd.conf" in d}
                if done == {"storage0", "libvirtd"}:
                    return count
            return None

        # the timeouts only guard against a hang: far above one interval on a loaded machine
        count = wait_for(repaired_by, timeout=10 * INTERVAL, what="the repair in status", interval=1)
    finally:
        watch.stop()
    assert count <= 2, f"repaired by pass {count} after the drift: {passes(watch.objects)}"
    assert "storage0" in host.run("ovs-vsctl list-br").stdout
    assert host.run("grep -c '^listen_tcp = 1' /etc/libvirt/libvirtd.conf").stdout.strip() == "1"
    events = kube.kubectl("get", "events", "-n", namespace, "--field-selector",
                          f"involvedObject.name=lab-{host.name}").stdout
    assert "create VLAN bridge storage0" in events


def test_unreachable_host_is_reported_and_recovered(kube: Any, managed_hosts: tuple[str, list]) -> None:
    namespace, hosts = managed_hosts
    host = hosts[1]
    name = f"lab-{host.name}"
    host.run("pkill -x sshd")  # the listener and every session: the host is gone for SSH
    # (the timeouts only guard against a hang: the next resync, or the retry after the operator's backoff, capped
    # at 300 s, comes well before them however busy the machine is)
    reachable = wait_for(lambda: (c := condition(kube, namespace, name, "Reachable")).get("status") == "False" and c,
                         timeout=10 * INTERVAL, what="Reachable=False", interval=1)
    assert reachable["reason"] == "Unreachable"
    assert condition(kube, namespace, name, "Ready")["status"] == "False"  # written with it; sshd is still down
    host.run("/usr/sbin/sshd -E /var/log/auth.log")
    wait_for(lambda: condition(kube, namespace, name, "Ready").get("status") == "True",
             timeout=20 * INTERVAL, what="recovery without intervention", interval=1)
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
                       and c, timeout=300, what="Stalled/RolledBack", interval=1)
    assert stalled["status"] == "True" and "mgmt0" in stalled["message"], stalled
    status = json.loads(kube.kubectl("get", "kvmhost", name, "-n", namespace, "-o", "json").stdout)["status"]
    assert status["rollback"]["generation"] == status["observedGeneration"] and status["rollback"]["reason"]
    assert "eth0" not in host.run("ovs-vsctl list-ports cloudbr0").stdout
    assert host.address in host.run("ip -4 addr show eth0").stdout
    events = kube.kubectl("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}").stdout
    assert "RolledBack" in events and "GuardedApply" in events
