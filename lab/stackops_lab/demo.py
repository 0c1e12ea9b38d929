"""`make demo`: the lab control plane, deploy/ installed, the operator running under its ServiceAccount, the
examples applied, and `kubectl get` of all four kinds.

The operator keeps running after the demo (edit the examples and watch); `stackops lab down` stops everything.
"""
from __future__ import annotations

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
from .operator import kubectl

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


def up() -> int:
    cluster = controlplane.up(None, progress, components=[*COMPONENTS, HostsComponent(HOSTS), CloudStackComponent(),
                                                          xen_component.XenComponent(),
                                                          release_component.ReleaseSourceComponent(), *OPTIONAL])
    kubeconfig = Path(cluster.kubeconfig)
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
    progress("every example is reconciled; stop everything with `stackops lab down` (or `make demo-down`)")
    kubectl_binary = controlplane.find_kubectl()
    progress(f"export KUBECONFIG={kubeconfig} PATH={kubectl_binary.parent}:$PATH  # the lab's kubectl")
    print(f"$ kubectl get {KINDS} -A", flush=True)
    os.execv(kubectl_binary, ["kubectl", f"--kubeconfig={kubeconfig}", "get", KINDS, "-A"])
    return 0  # not reached


def down() -> int:
    controlplane.down(None, progress, components=[*COMPONENTS, HostsComponent(), CloudStackComponent(),
                                                  xen_component.XenComponent(),
                                                  release_component.ReleaseSourceComponent(), *OPTIONAL])
    return 0


def main(argv: list[str]) -> int:
    return down() if argv[:1] == ["down"] else up()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
