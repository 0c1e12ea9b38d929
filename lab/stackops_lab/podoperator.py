"""The operator as users run it: deploy/'s Deployment on the lab's node, from the image the Dockerfile builds.

`kubectl apply -k` of an overlay of deploy/ (or deploy/namespaced/) whose only change is the image (kustomize's
`images:`), so the Pod runs with the Deployment's probes, security context, limits and ServiceAccount token exactly
as shipped. The image is the lab's build of the Dockerfile (image.py), loaded into the node's containerd (node.py):
no registry is involved, and the Deployment's `imagePullPolicy: IfNotPresent` finds it there.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from stackops_lab import checkout
from stackops_lab.checkout import DEPLOY
from stackops_lab.operator import CRD_NAMES, NAMESPACE, kubectl

DEPLOYMENT = "stackops-operator"
METRICS_SERVICE = "stackops-operator-metrics"
SELECTOR = "app.kubernetes.io/name=stackops,app.kubernetes.io/component=operator"
IMAGE_NAME = "stackops"  # the name deploy/ gives the image; an overlay's `images:` entry replaces it


def split_reference(reference: str) -> tuple[str, str]:
    """("localhost/stackops", "0.1.0-lab.1a2b") of "localhost/stackops:0.1.0-lab.1a2b" (a port is not a tag)."""
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:
        return reference, "latest"
    return name, tag


def overlay(directory: Path, image: str, installation: Path = DEPLOY) -> Path:
    """Write `directory`/kustomization.yaml: `installation` (deploy/ or deploy/namespaced/ of the checkout) with the
    image replaced by `image`, nothing else. kustomize refuses an absolute path to a base, so the base is named
    relative to `directory`; `bases:`, as deploy/ itself, for the lab's kubectl (1.20: kustomize v2.0)."""
    directory.mkdir(parents=True, exist_ok=True)
    base = os.path.relpath(checkout.path(installation), directory)
    name, tag = split_reference(image)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "bases": [base],
        "images": [{"name": IMAGE_NAME, "newName": name, "newTag": tag}],
    }
    path = directory / "kustomization.yaml"
    path.write_text("# the lab's installation: deploy/ as shipped, the image replaced by the lab's build\n"
                    + yaml.safe_dump(kustomization, sort_keys=False))
    return directory


@dataclass
class PodOperator:
    """The operator's Deployment in the lab cluster, observed through the API as a user would with kubectl."""

    kubeconfig: Path

    def get(self, *args: str) -> dict[str, Any]:
        return json.loads(kubectl(self.kubeconfig, "get", "-n", NAMESPACE, *args, "-o", "json").stdout)

    def pods(self) -> list[dict[str, Any]]:
        """The operator's Pods (a rollout briefly has two: one terminating)."""
        return self.get("pods", "-l", SELECTOR)["items"]

    def ready_pod(self) -> dict[str, Any] | None:
        """The one Ready Pod not being deleted, if there is one."""
        ready = [p for p in self.pods() if not p["metadata"].get("deletionTimestamp") and _pod_ready(p)]
        return ready[0] if len(ready) == 1 else None

    def restarts(self) -> int:
        """Container restarts of the current Pods (a liveness failure restarts the container in place)."""
        return sum(s.get("restartCount", 0) for p in self.pods()
                   for s in (p.get("status") or {}).get("containerStatuses") or [])

    def metrics_address(self) -> str:
        """The metrics Service's ClusterIP:port, which the node's kube-proxy forwards to the Pod."""
        service = self.get("service", METRICS_SERVICE)
        port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "metrics")
        return f"{service['spec']['clusterIP']}:{port}"


def install(kubeconfig: Path, directory: Path, progress: Callable[[str], None] = lambda _: None,
            timeout: float = 300) -> PodOperator:
    """`kubectl apply -k directory` (an `overlay`), the CRDs established, then the Deployment's rollout finished
    (its Pod Ready: the readiness probe answers only once the operator's startup handlers succeeded)."""
    progress(f"installing stackops (kubectl apply -k {directory}/)")
    kubectl(kubeconfig, "apply", "-k", str(directory))
    kubectl(kubeconfig, "wait", "--for=condition=established", "--timeout=60s",
            *(f"crd/{name}" for name in CRD_NAMES))
    progress(f"waiting for deployment/{DEPLOYMENT} in {NAMESPACE} to roll out")
    kubectl(kubeconfig, "rollout", "status", "-n", NAMESPACE, f"deployment/{DEPLOYMENT}", f"--timeout={timeout:.0f}s",
            timeout=timeout + 30)
    return PodOperator(kubeconfig)


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


class PodOperatorComponent:
    """`stackops lab up --node --operator` and `make demo`: the operator image built (image.py, cached), loaded into
    the lab node's containerd and deploy/ installed with it (`overlay`, `install`). Stopped with the node (its
    containers go with it); `stop` deletes the Deployment first, so the Pod gets its SIGTERM as in any cluster."""

    name = "operator"

    def start(self, lab_dir: Path, cluster: Any, progress: Callable[[str], None]) -> PodOperator:
        from stackops_lab import image  # buildah: only where the operator runs as a Pod
        from stackops_lab.node import NodeComponent

        built = image.build(progress)
        NodeComponent.node(lab_dir).load_image(built.archive)
        progress(f"loaded {built.archive_name} into the lab node")
        self.state_path(lab_dir).write_text(json.dumps({"kubeconfig": str(cluster.kubeconfig),
                                                        "image": built.archive_name}))
        return install(Path(cluster.kubeconfig), overlay(lab_dir / "installation", built.archive_name), progress)

    @staticmethod
    def state_path(lab_dir: Path) -> Path:
        return lab_dir / "operator-pod.json"

    def stop(self, lab_dir: Path, progress: Callable[[str], None]) -> None:
        state = self.state_path(lab_dir)
        if not state.is_file():
            return
        kubeconfig = Path(json.loads(state.read_text())["kubeconfig"])
        state.unlink()
        if not kubeconfig.is_file():
            return
        progress(f"deleting deployment/{DEPLOYMENT} (its Pod stops on SIGTERM)")
        kubectl(kubeconfig, "delete", "deployment", DEPLOYMENT, "-n", NAMESPACE, "--ignore-not-found",
                "--wait=true", "--timeout=90s", check=False, timeout=120)
