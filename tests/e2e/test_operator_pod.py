"""The operator as users run it: `kubectl apply -k` of deploy/ with only the image replaced (the lab's build of the
Dockerfile), on the lab's node. The Pod runs with the Deployment's probes, security context, limits and
ServiceAccount token as shipped, and converges the lab it reaches over the network as real infrastructure: two KVM
lab hosts and a four-host XenServer pool (the lab XenAPI on the lab hosts' bridge). Observed: the Pod Ready, tini as
PID 1 and the operator as uid 10001 on a read-only root, the Pod the kopf peering's only member, metrics through the
Service, memory under the limit, a `kubectl rollout restart` in the middle of a rolling restart of the pool (SIGTERM
to the old Pod: the roll goes on from its checkpoints, every host rebooted exactly once, no VM stopped, HA back), a
liveness failure restarting the container, and no write refused by the read-only root. The tests run in file order
on one lab (module scope)."""
from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackops_lab import image, podoperator
from stackops_lab.controlplane import find_kubectl
from stackops_lab.hosts import LabHost, LabHosts
from stackops_lab.manifests import kvmhost_manifests, xenpool_manifests
from stackops_lab.operator import NAMESPACE as OPERATOR_NAMESPACE, kubectl
from stackops_lab.podoperator import PodOperator
from stackops_lab.xenapi import XenHostSpec, XenLab, XenTimings
from support.labnode import LabNode, running_lab_node
from support.wait import wait_for

NAMESPACE = "pod-lab"
XEN = ["xen1", "xen2", "xen3", "xen4"]
# A reboot keeps a host down 20 s, so the roll of four hosts lasts minutes: the rollout restart lands in it.
XEN_TIMINGS = XenTimings(ha_enable=0.3, ha_disable=0.2, host_boot=0.5, vm_migrate=0.05, shutdown_delay=0.2,
                         reboot_down=20.0)
LIMIT = 512 * 2**20  # deploy/common/deployment.yaml's memory limit
TIMEOUT = 600.0


def progress(message: str) -> None:
    print(f"[pod-lab] {message}", file=sys.__stderr__, flush=True)


@dataclass
class PodLab:
    lab: LabNode
    hosts: list[LabHost]
    xen: XenLab
    operator: PodOperator
    stopped_log: str = ""  # the log of the container a liveness failure restarted, read before it went

    @property
    def kubeconfig(self) -> Path:
        return Path(self.lab.cluster.kubeconfig)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return json.loads(kubectl(self.kubeconfig, "get", kind, name, "-n", NAMESPACE, "-o", "json").stdout)

    def container_pid(self) -> int:
        """The PID (on the machine) of the Ready Pod's container's first process."""
        pod = self.operator.ready_pod()
        assert pod is not None
        [status] = pod["status"]["containerStatuses"]
        container = status["containerID"].removeprefix("containerd://")
        for line in self.lab.node.ctr("tasks", "ls").splitlines()[1:]:
            task, pid, *_ = line.split()
            if task == container:
                return int(pid)
        raise AssertionError(f"no task of container {container}")


def json_stream(text: str) -> list[dict[str, Any]]:
    """The JSON documents of `kubectl get --watch -o json`, one after the other."""
    decoder, documents, index = json.JSONDecoder(), [], 0
    while (index := len(text) - len(text[index:].lstrip())) < len(text):
        document, index = decoder.raw_decode(text, index)
        documents.append(document)
    return documents


def xen_state(xen: XenLab) -> dict[str, Any]:
    """The lab XenAPI as manifests.xenpool_manifests takes it (`stackops lab xenapi`'s state)."""
    return {"hosts": {n: {"address": xen.address(n), "url": xen.url(n)} for n in xen.hosts}, "port": xen.port,
            "username": xen.username, "password": xen.password}


def ready(item: dict[str, Any]) -> bool:
    status = item.get("status") or {}
    return status.get("observedGeneration") == item["metadata"]["generation"] and any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])


@pytest.fixture(scope="module")
def pod_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodLab]:
    lab_dir = tmp_path_factory.mktemp("pod-lab")
    built = image.build(progress)  # cached: the same tree builds once
    with running_lab_node(lab_dir) as lab:
        manager = LabHosts(lab_dir)
        try:
            hosts = manager.create(2, progress)
            first = manager.machine_addresses(len(XEN))[0]
            with XenLab(hosts=[XenHostSpec(n) for n in XEN], pools=[XEN], timings=XEN_TIMINGS, bind=first,
                        port=0) as xen:
                assert lab.node.load_image(built.archive) == [built.archive_name]
                installation = podoperator.overlay(lab_dir / "installation", built.archive_name)
                operator = podoperator.install(lab.cluster.kubeconfig, installation, progress)
                kubectl(lab.cluster.kubeconfig, "create", "namespace", NAMESPACE)
                documents = kvmhost_manifests(hosts, NAMESPACE) + xenpool_manifests(xen_state(xen), NAMESPACE)
                kubectl(lab.cluster.kubeconfig, "apply", "-f", "-", input=yaml.safe_dump_all(documents))
                yield PodLab(lab, hosts, xen, operator)
        finally:
            manager.destroy(progress)


def test_the_pod_runs_as_shipped(pod_lab: PodLab) -> None:
    pod = wait_for(pod_lab.operator.ready_pod, timeout=TIMEOUT, interval=1.0, what="the operator's Pod Ready")
    [container] = pod["spec"]["containers"]
    assert container["image"] == image.build(progress).archive_name
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"]["memory"] == "512Mi"
    pid = pod_lab.container_pid()
    proc = Path(f"/proc/{pid}")
    assert (proc / "comm").read_text().strip() == "tini"
    [operator] = (proc / "task" / str(pid) / "children").read_text().split()
    status = Path(f"/proc/{operator}/status").read_text()
    assert re.search(r"^Uid:\s+10001\s+10001\s+10001\s+10001$", status, re.M), status
    assert re.search(r"^CapEff:\s+0+$", status, re.M), status
    root = next(line.split() for line in (proc / "mountinfo").read_text().splitlines() if line.split()[4] == "/")
    assert "ro" in root[5].split(","), root
    token = proc / "root" / "run/secrets/kubernetes.io/serviceaccount/token"  # /var/run is /run in Debian
    assert token.read_text().count(".") == 2  # a JWT, which the API server took: the Pod is Ready


def test_the_pod_is_the_peering_leader(pod_lab: PodLab) -> None:
    pod = wait_for(pod_lab.operator.ready_pod, timeout=TIMEOUT, interval=1.0, what="the operator's Pod Ready")
    peering = json.loads(kubectl(pod_lab.kubeconfig, "get", "clusterkopfpeering", "stackops", "-o", "json").stdout)
    assert [key for key in (peering.get("status") or {}) if pod["metadata"]["name"] in key], peering


def test_the_pod_converges_the_lab(pod_lab: PodLab) -> None:
    for host in pod_lab.hosts:
        wait_for(lambda: ready(pod_lab.get("kvmhost", f"lab-{host.name}")), timeout=TIMEOUT,
                 what=f"KvmHost {host.name} Ready")
    wait_for(lambda: ready(pod_lab.get("xenpool", "lab-pool")), timeout=TIMEOUT, interval=1.0,
             what="XenPool lab-pool Ready")


def test_metrics_through_the_service(pod_lab: PodLab) -> None:
    with urllib.request.urlopen(f"http://{pod_lab.operator.metrics_address()}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    assert re.search(r'^stackops_resource_ready\{kind="XenPool",name="lab-pool",namespace="pod-lab"\} 1\.0$', text,
                     re.M), text[:2000]


def test_a_rollout_restart_in_the_middle_of_a_roll(pod_lab: PodLab) -> None:
    xen, kubeconfig = pod_lab.xen, pod_lab.kubeconfig
    before = {e["event"] for e in xen.audit_log.snapshot()}
    assert "host.reboot" not in before
    old = wait_for(pod_lab.operator.ready_pod, timeout=TIMEOUT, interval=1.0,
                   what="the operator's Pod Ready")["metadata"]["name"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    kubectl(kubeconfig, "patch", "xenpool", "lab-pool", "-n", NAMESPACE, "--type", "merge",
            "-p", json.dumps({"spec": {"maintenance": {"restartAfter": now}}}))
    wait_for(lambda: any(e["event"] == "host.reboot" for e in xen.audit_log.snapshot()),
             timeout=TIMEOUT, interval=1.0, what="the roll's first reboot")
    watch_log = pod_lab.lab.lab_dir / "old-pod.watch"
    with open(watch_log, "w") as output:  # the old Pod's every state until it is gone (its last one says how it ended)
        watch = subprocess.Popen([str(find_kubectl()), f"--kubeconfig={kubeconfig}", "get", "pod", old, "-n",
                                  OPERATOR_NAMESPACE, "--watch", "-o", "json"], stdout=output, stderr=subprocess.DEVNULL)
    try:
        kubectl(kubeconfig, "rollout", "restart", "-n", OPERATOR_NAMESPACE, f"deployment/{podoperator.DEPLOYMENT}")
        wait_for(lambda: not any(p["metadata"]["name"] == old for p in pod_lab.operator.pods()), timeout=TIMEOUT,
                 interval=1.0, what="the old Pod gone")
    finally:
        watch.terminate()
        watch.wait()
    ended = [s["state"]["terminated"] for pod in json_stream(watch_log.read_text())
             for s in (pod.get("status") or {}).get("containerStatuses") or [] if "terminated" in s["state"]]
    assert ended and ended[-1]["exitCode"] == 0, ended  # SIGTERM: it stopped by itself, not killed at the grace's end
    new = wait_for(lambda: (p := pod_lab.operator.ready_pod()) and p["metadata"]["name"] != old and p,
                   timeout=TIMEOUT, interval=1.0, what="a new Pod Ready")
    reboots_at_restart = [e["host"] for e in xen.audit_log.snapshot() if e["event"] == "host.reboot"]
    assert len(reboots_at_restart) < len(XEN), "the roll was over before the old Pod stopped"

    def completed() -> bool:
        item = pod_lab.get("xenpool", "lab-pool")
        roll = (item.get("status") or {}).get("maintenance") or {}
        assert roll.get("phase") != "Failed", roll
        return now in str(roll.get("request")) and roll.get("phase") == "Completed" and ready(item)

    wait_for(completed, timeout=TIMEOUT, interval=1.0, what="the roll Completed")
    events = xen.audit_log.snapshot()
    assert sorted(e["host"] for e in events if e["event"] == "host.reboot") == XEN  # each once, none repeated
    assert not [e for e in events if e["event"] in ("vm.halted", "vm.restarted")]  # every VM migrated, none stopped
    assert {o["metadata"]["name"] for o in pod_lab.operator.pods()} == {new["metadata"]["name"]}


def test_memory_under_the_limit(pod_lab: PodLab) -> None:
    pid = pod_lab.container_pid()
    path = next(line.split(":", 2)[2] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                if line.split(":", 2)[1] == "memory")
    peak = int(Path(f"/sys/fs/cgroup/memory{path}/memory.max_usage_in_bytes").read_text())
    limit = int(Path(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes").read_text())
    assert limit == LIMIT
    assert peak < LIMIT / 2, f"peak {peak / 2**20:.0f} MiB of {LIMIT / 2**20:.0f} MiB"


def test_a_liveness_failure_restarts_the_container(pod_lab: PodLab) -> None:
    restarts = pod_lab.operator.restarts()
    pid = pod_lab.container_pid()
    [operator] = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    pod = pod_lab.operator.ready_pod()
    assert pod is not None
    os.kill(int(operator), signal.SIGSTOP)  # alive, answering nothing: only the liveness probe can tell
    pod_lab.stopped_log = kubectl(pod_lab.kubeconfig, "logs", "-n", OPERATOR_NAMESPACE,
                                  pod["metadata"]["name"]).stdout
    wait_for(lambda: pod_lab.operator.restarts() > restarts and pod_lab.operator.ready_pod(),
             timeout=TIMEOUT, interval=1.0, what="the container restarted by its liveness probe, and Ready")
    pod = pod_lab.operator.ready_pod()
    assert pod is not None
    [status] = pod["status"]["containerStatuses"]
    assert status["restartCount"] == restarts + 1
    ended = status.get("lastState", {}).get("terminated")  # the kubelet may have removed the dead container already
    assert ended is None or ended["exitCode"] in (137, 143), status


def test_no_write_refused_by_the_read_only_root(pod_lab: PodLab) -> None:
    """Every log of the Pod's container (the one a liveness failure restarted, and the current one): no write was
    refused (Python, kopf, paramiko and the operator write only under /tmp, the Deployment's emptyDir)."""
    pod = pod_lab.operator.ready_pod()
    assert pod is not None
    name = pod["metadata"]["name"]
    logs = [pod_lab.stopped_log, kubectl(pod_lab.kubeconfig, "logs", "-n", OPERATOR_NAMESPACE, name).stdout]
    assert all(logs)
    assert not [line for log in logs for line in log.splitlines() if "Read-only file system" in line
                or "EROFS" in line]
