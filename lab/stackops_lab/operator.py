"""Running the operator in the lab exactly as deployed: the deploy/ RBAC, a ServiceAccount token, `stackops run`.

A lab without a node (`stackops lab up` without `--node`) never starts the Deployment's Pod; there the operator runs
as a local process authenticated with a token of the Deployment's ServiceAccount (minted through the TokenRequest
API), so every API call it makes is checked against deploy/'s ClusterRole (or, with deploy/namespaced/, its Roles).
Most tests run it so (fast to start, killed and restarted at will); with a node, podoperator.py runs the Deployment
itself, from the image the Dockerfile builds.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from stackops_lab import checkout, controlplane
from stackops_lab.checkout import DEPLOY, NAMESPACED

NAMESPACE = "stackops-system"
SERVICE_ACCOUNT = "stackops-operator"
CRD_NAMES = ("xenpools.stackops.io", "kvmhosts.stackops.io", "systemvmtemplates.stackops.io",
             "cloudstackreleases.stackops.io", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")


def kubectl(kubeconfig: Path | str, *args: str, input: str | None = None,
            check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(controlplane.find_kubectl()), f"--kubeconfig={kubeconfig}", *args], input=input,
                            text=True, capture_output=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def install(kubeconfig: Path | str, progress: Callable[[str], None] = lambda _: None,
            directory: Path = DEPLOY) -> None:
    """`kubectl apply -k deploy/` (namespace, CRDs, RBAC, Deployment) and wait for the CRDs; `directory`
    NAMESPACED installs deploy/namespaced/ instead (its watched namespaces must exist)."""
    progress(f"installing stackops (kubectl apply -k {directory}/)")
    kubectl(kubeconfig, "apply", "-k", str(checkout.path(directory)))
    kubectl(kubeconfig, "wait", "--for=condition=established", "--timeout=60s",
            *(f"crd/{name}" for name in CRD_NAMES))


def deployed_namespaces(kubeconfig: Path | str, directory: Path = NAMESPACED) -> list[str]:
    """The namespaces the Deployment of installation `directory` watches (its `--namespace` arguments; none: all),
    for running the operator locally as that installation runs it."""
    built = kubectl(kubeconfig, "kustomize", str(checkout.path(directory))).stdout
    [deployment] = [d for d in yaml.safe_load_all(built) if d and d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return [a.split("=", 1)[1] for a in container.get("args", []) if a.startswith("--namespace=")]


def service_account_token(kubeconfig: Path | str, namespace: str = NAMESPACE, name: str = SERVICE_ACCOUNT,
                          seconds: int = 86400) -> str:
    """A token for the ServiceAccount, minted with the TokenRequest API (as the kubelet would for a pod)."""
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"audiences": [], "expirationSeconds": seconds}}
    result = kubectl(kubeconfig, "create", "--raw",
                     f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", "-f", "-",
                     input=json.dumps(request))
    return json.loads(result.stdout)["status"]["token"]


def token_kubeconfig(admin_kubeconfig: Path | str, token: str, path: Path, user: str = SERVICE_ACCOUNT) -> Path:
    """A copy of the admin kubeconfig's cluster with `token` as the only credential."""
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": user,
        "clusters": [cluster],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": cluster["name"], "user": user}}],
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalOperator:
    """`stackops run` as a local process under a given kubeconfig."""

    kubeconfig: Path
    log_path: Path
    health_port: int = 0
    metrics_port: int = 0  # Prometheus metrics on 127.0.0.1 (a free port unless given)
    args: tuple[str, ...] = ()  # extra `stackops run` options, e.g. faster CloudStack polling in tests
    process: subprocess.Popen[bytes] | None = None
    verbose: bool = True  # `--verbose` (tests want debug logs; the Deployment runs without it)

    def start(self, timeout: float = 60, wait: bool = True) -> None:
        """Start `stackops run`; unless `wait` is False, return once its health endpoint answers (which it does
        only after the startup handlers succeeded)."""
        self.health_port = self.health_port or free_port()
        while not self.metrics_port or self.metrics_port == self.health_port:
            self.metrics_port = free_port()
        # a stable peering identity, as the Deployment's POD_ID gives a restarted container: the record a killed
        # predecessor left is our own, and the new process does not pause for its lifetime
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1",
               "POD_ID": f"stackops-local-{self.health_port}"}
        command = [sys.executable, "-m", "stackops.cli", "run", *(["--verbose"] if self.verbose else []),
                   f"--liveness=http://127.0.0.1:{self.health_port}/healthz",
                   f"--metrics-address=127.0.0.1:{self.metrics_port}", *self.args]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the operator exited ({self.process.returncode}):\n{self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.5)
        raise RuntimeError(f"the operator did not become healthy in {timeout:.0f}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL, as a node failure or OOM kill would end it: no cleanup, no finalizers, nothing flushed."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def stop(self, timeout: float = 20) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        _stop_group(self.process.pid, timeout)
        self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def decode_secret_values(manifests: list[dict]) -> list[str]:
    """Every value of the Secrets in `manifests` (tests check none of them leaks)."""
    values = []
    for document in manifests:
        if document.get("kind") != "Secret":
            continue
        values += [base64.b64decode(v).decode(errors="replace") for v in (document.get("data") or {}).values()]
        values += [str(v) for v in (document.get("stringData") or {}).values()]
    return [v for v in values if len(v) >= 8]


class OperatorComponent:
    """The lab component that runs the operator under the deploy/ RBAC (started by `make demo`, stopped by
    `stackops lab down`). Its pid is recorded in the lab directory so any process can stop it."""

    name = "operator"

    @staticmethod
    def state_path(lab_dir: Path) -> Path:
        return lab_dir / "operator.json"

    def start(self, lab_dir: Path, cluster: Any, progress: Callable[[str], None]) -> LocalOperator:
        state = self.state_path(lab_dir)
        if state.exists():
            recorded = json.loads(state.read_text())
            if _is_our_operator(recorded["pid"]):
                progress(f"the operator is already running (pid {recorded['pid']}, log {recorded['log']})")
                return LocalOperator(kubeconfig=Path(recorded["kubeconfig"]), log_path=Path(recorded["log"]),
                                     health_port=recorded["healthPort"],
                                     metrics_port=recorded.get("metricsPort", 0))
        install(cluster.kubeconfig, progress)
        token = service_account_token(cluster.kubeconfig)
        config = token_kubeconfig(cluster.kubeconfig, token, lab_dir / "operator-kubeconfig")
        running = LocalOperator(kubeconfig=config, log_path=lab_dir / "operator.log")
        progress("starting the operator as ServiceAccount stackops-system/stackops-operator (deploy/ RBAC)")
        running.start()
        assert running.process is not None
        state.write_text(json.dumps({"pid": running.process.pid, "log": str(running.log_path),
                                     "kubeconfig": str(config), "healthPort": running.health_port,
                                     "metricsPort": running.metrics_port}))
        progress(f"the operator is running (log {running.log_path}, metrics {running.metrics_url})")
        return running

    def stop(self, lab_dir: Path, progress: Callable[[str], None]) -> None:
        state = self.state_path(lab_dir)
        if not state.exists():
            return
        pid = json.loads(state.read_text())["pid"]
        if _is_our_operator(pid):
            progress(f"stopping the operator (pid {pid})")
            _stop_group(pid)
        state.unlink()


def _is_our_operator(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"stackops.cli" in command and b"run" in command


def _stop_group(pid: int, timeout: float = 20) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _is_our_operator(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _is_our_operator(pid):
        os.killpg(pid, signal.SIGKILL)
