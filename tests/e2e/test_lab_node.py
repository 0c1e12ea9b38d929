"""The lab's node (`stackops lab up --node`, stackops_lab.node): Deployments, ReplicaSets, Pods, probes, ServiceAccount
tokens, Services and garbage collection work as in any cluster, Pods reach the machine, and `down` leaves nothing
behind. The tests run in file order on one node (the last one takes it down)."""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stackops_lab import hosts, node, ociimage
from stackops_lab.hosts import LabHost
from support.kube import KubectlError
from support.labnode import LabNode, down, running_lab_node
from support.wait import wait_for

IMAGE = "stackops.lab/busybox:test"
TIMEOUT = 300.0


def iptables_rules() -> str:
    lines = []
    for table in ("filter", "nat", "mangle", "raw"):
        result = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True, check=True)
        lines += [line for line in result.stdout.splitlines() if not line.startswith("#")]
    return "\n".join(lines)


def machine_snapshot() -> dict[str, object]:
    return {
        "iptables": iptables_rules(),
        "links": sorted(path.name for path in Path("/sys/class/net").iterdir()),
        "netns": sorted(hosts.list_netns()),
        "ip_forward": node.IP_FORWARD.read_text(),
        "routes": subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout,
    }


@pytest.fixture(scope="module")
def before() -> dict[str, object]:
    return machine_snapshot()


@pytest.fixture(scope="module")
def lab(before: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabNode]:
    with running_lab_node(tmp_path_factory.mktemp("node-lab")) as running:
        archive = ociimage.write_archive(ociimage.busybox_image(IMAGE), running.lab_dir / "busybox.tar")
        assert running.node.load_image(archive) == [IMAGE]
        yield running


DEPLOYMENT = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: default}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: {IMAGE}
        imagePullPolicy: Never
        command: ["/bin/sh", "-c", "hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{{containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /index.html, port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


def get(lab: LabNode, *args: str) -> dict:  # type: ignore[type-arg]
    return json.loads(lab.kube.kubectl("get", *args, "-o", "json").stdout)


def web_pods(lab: LabNode) -> list[str]:
    return [pod["metadata"]["name"] for pod in get(lab, "pods", "-n", "default", "-l", "app=web")["items"]]


def exec_in(lab: LabNode, pod: str, command: str) -> str:
    return lab.kube.kubectl("exec", "-n", "default", pod, "--", "/bin/sh", "-c", command).stdout


def test_deployment_becomes_ready_behind_its_readiness_probe(lab: LabNode) -> None:
    lab.kube.kubectl("apply", "-f", "-", input=DEPLOYMENT)
    wait_for(lambda: get(lab, "deployment", "-n", "default", "web").get("status", {}).get("readyReplicas") == 2,
             timeout=TIMEOUT, what="2 ready replicas of Deployment web")
    pods = get(lab, "pods", "-n", "default", "-l", "app=web")["items"]
    assert all(pod["spec"]["nodeName"] == node.NODE_NAME for pod in pods)
    assert all(pod["status"]["podIP"].startswith("10.244.0.") for pod in pods)


def test_service_cluster_ip_answers_from_the_machine(lab: LabNode) -> None:
    cluster_ip = get(lab, "service", "-n", "default", "web")["spec"]["clusterIP"]
    names = set(web_pods(lab))

    def answer() -> str:
        with urllib.request.urlopen(f"http://{cluster_ip}/index.html", timeout=5) as response:
            return response.read().decode().strip()

    assert wait_for(answer, timeout=TIMEOUT, what=f"an answer from {cluster_ip}", ignoring=(OSError,)) in names


def test_pods_resolve_services_by_name(lab: LabNode) -> None:
    cluster_ip = get(lab, "service", "-n", "default", "web")["spec"]["clusterIP"]
    pod = web_pods(lab)[0]
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in exec_in(lab, pod, "cat /etc/resolv.conf")
    assert cluster_ip in exec_in(lab, pod, "nslookup web.default.svc.cluster.local")
    assert exec_in(lab, pod, "wget -q -O - http://web/index.html").strip() in web_pods(lab)
    assert exec_in(lab, pod, "wget -q -O - http://web.default/index.html").strip() in web_pods(lab)
    missing = lab.kube.kubectl("exec", "-n", "default", pod, "--", "nslookup", "nothing.default.svc.cluster.local",
                               check=False)
    assert missing.returncode != 0


def test_pod_calls_the_api_server_with_its_mounted_service_account_token(lab: LabNode) -> None:
    pod = web_pods(lab)[0]
    secrets = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert exec_in(lab, pod, f"cat {secrets}/namespace") == "default"
    lab.kube.kubectl("create", "rolebinding", "default-view", "-n", "default", "--clusterrole=view",
                     "--serviceaccount=default:default")
    # Through the `kubernetes` Service's ClusterIP (kube-proxy to the API server's advertise address), as the
    # Pod's ServiceAccount: it reads its own Pod, which only the RoleBinding above allows (anonymous is off).
    url = f"https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/default/pods/{pod}"
    call = f'wget -q -O - --no-check-certificate --header "Authorization: Bearer $(cat {secrets}/token)" {url}'
    answer = wait_for(lambda: exec_in(lab, pod, call), timeout=TIMEOUT, what="the Pod reading itself",
                      ignoring=(KubectlError,))
    assert json.loads(answer)["metadata"]["name"] == pod
    assert exec_in(lab, pod, "echo $KUBERNETES_SERVICE_HOST").strip() == "10.96.0.1"


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b"hello from the machine"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_pod_reaches_the_machine(lab: LabNode) -> None:
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = node.apiserver_advertise_address(lab.cluster)
        pod = web_pods(lab)[0]
        answer = exec_in(lab, pod, f"wget -q -O - http://{address}:{server.server_address[1]}/")
        assert answer == "hello from the machine"
    finally:
        server.shutdown()
        server.server_close()


def test_pod_reaches_a_lab_host(lab: LabNode, make_lab_hosts: Callable[..., list[LabHost]]) -> None:
    """As an operator Pod reaches real infrastructure: the host's sshd answers on its address on the lab's bridge."""
    (host,) = make_lab_hosts(1)
    pod = web_pods(lab)[0]
    assert exec_in(lab, pod, f"echo | nc -w 5 {host.address} 22 | head -n 1").startswith("SSH-2.0-")


def test_deleting_the_deployment_collects_its_replicaset_and_pods(lab: LabNode) -> None:
    assert get(lab, "replicasets", "-n", "default", "-l", "app=web")["items"]
    lab.kube.kubectl("delete", "deployment", "-n", "default", "web", "--wait=false")
    wait_for(lambda: not get(lab, "replicasets", "-n", "default", "-l", "app=web")["items"], timeout=TIMEOUT,
             what="the ReplicaSet garbage-collected")
    wait_for(lambda: not web_pods(lab), timeout=TIMEOUT, what="the Pods gone")


def test_a_deleted_namespace_goes_with_what_it_held(lab: LabNode) -> None:
    lab.kube.kubectl("create", "namespace", "doomed")
    lab.kube.kubectl("create", "configmap", "kept", "-n", "doomed", "--from-literal=a=b")
    lab.kube.kubectl("delete", "namespace", "doomed", "--wait=false")
    wait_for(lambda: lab.kube.kubectl("get", "namespace", "doomed", check=False).returncode != 0, timeout=TIMEOUT,
             what="namespace doomed gone")


def shims_of(lab: LabNode) -> list[int]:
    socket = str(lab.node.containerd_socket)
    return [pid for pid in hosts.all_pids() if (command := node.controlplane.process_command(pid))
            and Path(command[0]).name.startswith("containerd-shim") and socket in command]


def sockets_of(pids: list[int]) -> list[str]:
    """The paths of the unix sockets the processes `pids` hold (the shims' in /run/containerd/s), from their own
    network namespace's /proc/<pid>/net/unix."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    paths = []
    lines = [line for pid in pids for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]]
    for line in lines:
        fields = line.split()
        if len(fields) >= 8 and fields[6] in inodes and fields[7].startswith("/"):
            paths.append(fields[7])
    return paths


def test_down_leaves_nothing_behind(lab: LabNode, before: dict[str, object]) -> None:
    """Taken down with a Pod running: its processes, mounts, network and the shim's socket go too."""
    lab.kube.kubectl("run", "sleeper", "-n", "default", f"--image={IMAGE}", "--image-pull-policy=Never", "--",
                     "/bin/sleep", "3600")
    wait_for(lambda: get(lab, "pod", "-n", "default", "sleeper")["status"].get("phase") == "Running",
             timeout=TIMEOUT, what="Pod sleeper running")
    workdir = lab.node.workdir
    shim_sockets = sockets_of(shims_of(lab))
    assert shim_sockets
    down(lab.lab_dir)
    assert [path for path in shim_sockets if Path(path).exists()] == []
    assert not lab.lab_dir.exists()
    assert machine_snapshot() == before
    leftovers = [pid for pid in hosts.all_pids() if any(str(lab.lab_dir) in part for part in
                                                          node.controlplane.process_command(pid))]
    assert leftovers == []
    assert str(workdir) not in Path("/proc/self/mountinfo").read_text()
    assert node.cgroup_dirs(node.CGROUP_ROOT) == []
