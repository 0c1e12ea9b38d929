"""`make demo`: the lab control plane with a node, the operator image built from the Dockerfile and deploy/ installed
with it (the operator as a Pod, as users run it: `kubectl -n stackops-system get pods` shows it), the examples
applied, a rolling restart of the lab XenServer pool (`spec.maintenance.restartAfter` set to now, then
`kubectl get xenpools` each time its MAINTENANCE column changes, until Completed), and `kubectl get` of all four
kinds.

The operator keeps running after the demo (edit the examples and watch); `stackops lab down` stops everything.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
import time
from pathlib import Path

import yaml

from . import checkout, controlplane
from .checkout import EXAMPLES
from .cli import COMPONENTS, OPTIONAL
from .cloudstack.component import CloudStackComponent, running
from .hosts import HostsComponent, LabHosts
from .manifests import cloudstackrelease_manifests, kvmhost_manifests, systemvmtemplate_manifests, xenpool_manifests
from .release import component as release_component
from .xenapi import component as xen_component
from .node import NodeComponent
from .operator import NAMESPACE as OPERATOR_NAMESPACE, kubectl
from .podoperator import PodOperatorComponent

KINDS = "xenpools,kvmhosts,systemvmtemplates,cloudstackreleases"
NAMESPACE = "stackops-demo"
HOSTS = 2


def progress(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def _ready(item: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (item.get("status") or {}).get("conditions") or [])


def _pending(item: dict) -> bool:
    status = item.get("status") or {}
    if status.get("observedGeneration") != item["metadata"]["generation"]:
        return True
    if item["kind"] in ("KvmHost", "XenPool"):
        return not _ready(item)
    if item["kind"] == "SystemVMTemplate":
        return not (status.get("routers") or {}).get("total")
    if item["kind"] == "CloudStackRelease":
        return status.get("phase") not in ("Succeeded", "Failed")
    return False


def wait_reconciled(kubeconfig: Path, timeout: float = 240) -> None:
    """Until every stackops object's status.observedGeneration matches its generation, the lab's KvmHosts are
    Ready and the lab's system VM template rollout has reached the routers."""
    deadline = time.monotonic() + timeout
    while True:
        items = json.loads(kubectl(kubeconfig, "get", KINDS, "-A", "-o", "json").stdout)["items"]
        pending = [i["metadata"]["name"] for i in items if _pending(i)]
        if items and not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not reconciled after {timeout:.0f}s: {', '.join(pending)}")
        time.sleep(1)


def roll_xenpool(kubeconfig: Path, name: str = "lab-pool", timeout: float = 240) -> None:
    """The lab pool's rolling restart, as a user asks for it: `spec.maintenance.restartAfter` set to now (every host
    booted before it is rebooted once, one at a time, emptied first), then `kubectl get xenpools` again each time
    the MAINTENANCE column (status.maintenanceProgress) changes, until the roll is Completed and the pool Ready."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = json.dumps({"spec": {"maintenance": {"restartAfter": now}}})
    progress(f"rolling restart of XenPool {name}: every host that booted before {now} is emptied and rebooted, "
             "one at a time")
    print(f"$ kubectl patch xenpool {name} -n {NAMESPACE} --type merge -p '{patch}'", flush=True)
    print(kubectl(kubeconfig, "patch", "xenpool", name, "-n", NAMESPACE, "--type", "merge", "-p", patch).stdout,
          end="", flush=True)
    print(f"$ kubectl get xenpools -n {NAMESPACE}  # again each time MAINTENANCE changes", flush=True)
    deadline = time.monotonic() + timeout
    shown = None
    while True:
        item = json.loads(kubectl(kubeconfig, "get", "xenpool", name, "-n", NAMESPACE, "-o", "json").stdout)
        status = item.get("status") or {}
        roll = status.get("maintenance") or {}
        value = status.get("maintenanceProgress")
        if value != shown:
            print(kubectl(kubeconfig, "get", "xenpools", "-n", NAMESPACE).stdout, end="", flush=True)
            shown = value
        if now in str(roll.get("request")):
            if roll.get("phase") == "Failed":
                raise RuntimeError(f"the roll of XenPool {name} failed: {roll.get('message')}")
            if roll.get("phase") == "Completed" and _ready(item) \
                    and status.get("observedGeneration") == item["metadata"]["generation"]:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the roll of XenPool {name} is not Completed after {timeout:.0f}s: {value}")
        time.sleep(0.5)


LAB_KINDS = ("KvmHost", "SystemVMTemplate", "XenPool", "CloudStackRelease")  # the demo brings lab versions


def example_documents() -> list[dict]:
    """deploy/examples/ without its KvmHost, SystemVMTemplate, XenPool and CloudStackRelease (and their SSH Secrets): their
    addresses are production ones, and the demo sends traffic only to the lab's own hosts, CloudStack and XenServer
    hosts."""
    documents = [d for path in sorted(checkout.path(EXAMPLES).glob("*.yaml"))
                 for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    replaced = [d for d in documents if d["kind"] in LAB_KINDS]
    secrets = {d["spec"]["ssh"]["privateKeySecretRef"]["name"] for d in replaced if d["kind"] == "KvmHost"}
    secrets |= {d["spec"]["builder"]["ssh"]["ssh"]["privateKeySecretRef"]["name"] for d in replaced
                if d["kind"] == "CloudStackRelease"}
    return [d for d in documents if d["kind"] not in LAB_KINDS
            and not (d["kind"] == "Secret" and d["metadata"]["name"] in secrets)]


def components() -> list:
    """What the demo runs, in start order: the node first, the operator's Pod last. The lab CloudStack and XenServer
    hosts serve on the lab network, where the Pod reaches them."""
    return [NodeComponent(), *COMPONENTS, HostsComponent(HOSTS), CloudStackComponent(lab_network=True),
            xen_component.XenComponent(lab_network=True), release_component.ReleaseSourceComponent(),
            PodOperatorComponent()]


def show_pods(kubeconfig: Path) -> None:
    print(f"$ kubectl -n {OPERATOR_NAMESPACE} get pods", flush=True)
    print(kubectl(kubeconfig, "-n", OPERATOR_NAMESPACE, "get", "pods").stdout, end="", flush=True)


def up() -> int:
    cluster = controlplane.up(None, progress, provider="local", components=components(), serve_node=True)
    kubeconfig = Path(cluster.kubeconfig)
    show_pods(kubeconfig)
    hosts = LabHosts(controlplane.default_lab_dir()).running() or []
    cloudstack = running(controlplane.default_lab_dir())
    progress("applying deploy/examples/ (its KvmHost and SystemVMTemplate replaced by the lab's hosts and CloudStack)")
    documents = example_documents() + kvmhost_manifests(hosts, NAMESPACE, cloudstack=cloudstack)
    if cloudstack is not None:
        documents += systemvmtemplate_manifests(cloudstack, NAMESPACE)
    xen = xen_component.running(controlplane.default_lab_dir())
    if xen is not None:
        documents += [d for d in xenpool_manifests(xen, NAMESPACE, cloudstack=cloudstack) if d not in documents]
    release = release_component.running(controlplane.default_lab_dir())
    if release is not None:
        documents += cloudstackrelease_manifests(release, hosts, NAMESPACE)
    kubectl(kubeconfig, "apply", "-f", "-", input=yaml.safe_dump_all(documents))
    progress(f"waiting for the operator to converge {len(hosts)} KVM lab hosts")
    wait_reconciled(kubeconfig)
    if xen is not None:
        roll_xenpool(kubeconfig)
    progress("every example is reconciled; stop everything with `stackops lab down` (or `make demo-down`)")
    kubectl_binary = controlplane.find_kubectl()
    progress(f"export KUBECONFIG={kubeconfig} PATH={kubectl_binary.parent}:$PATH  # the lab's kubectl")
    print(f"$ kubectl get {KINDS} -A", flush=True)
    os.execv(kubectl_binary, ["kubectl", f"--kubeconfig={kubeconfig}", "get", KINDS, "-A"])
    return 0  # not reached


def down() -> int:
    controlplane.down(None, progress, components=[*components(), *OPTIONAL])
    return 0


def main(argv: list[str]) -> int:
    return down() if argv[:1] == ["down"] else up()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
