"""The namespaced installation on a real API server: deploy/namespaced/ applied, and `stackops run` with the
Deployment's own `--namespace` arguments and a token of its ServiceAccount, so every call is checked against the
installation's Roles.

- an object in the watched namespace is reconciled (its Secret and ConfigMap read, status written, a KopfPeering
  kept there);
- the same object in another namespace is left alone, and the operator could not even see it: listing it, or
  reading a Secret or ConfigMap there, with the operator's token is refused (403);
- the operator logs no 403 for its own work: it needs no cluster-wide permission;
- told to watch a namespace where it holds no Role, it stays in its startup and says which namespace.

Its own control plane, not the session's: there deploy/ binds a ClusterRole to the same ServiceAccount, and the
operator of test_operator.py watches every namespace.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackops_lab import controlplane
from stackops_lab import operator as lab_operator
from support.specs import MINIMAL
from support.wait import wait_for

WATCHED = "stackops-demo"  # deploy/namespaced/ as shipped watches the examples' namespace
OTHER = "stackops-other"
CLOSED_PORT = 9  # discard: nothing listens there on this machine
REPOSITORY_KEY = (Path(__file__).parents[1] / "unit" / "data" / "repository-key.asc").read_text()
TEST_OPERATOR_ARGS = ("--cloudstack-poll-seconds=0.2", "--xen-poll-seconds=0.2")


def throwaway_private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()


def kvmhost_with_secret(namespace: str, key: str) -> list[dict[str, Any]]:
    """A KvmHost on a closed loopback port, its SSH key Secret and the ConfigMap holding its package repository's
    public key, in `namespace`."""
    spec = json.loads(json.dumps(MINIMAL["KvmHost"]))
    spec["address"] = "127.0.0.1"
    spec["ssh"]["port"] = CLOSED_PORT
    spec["packages"] = {"repositoryURL": "https://repo.example.com/cloudstack/",
                        "signingKeyConfigMapRef": {"name": "repo-key", "key": "signing-key.asc"}}
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/ssh-auth",
              "metadata": {"name": spec["ssh"]["privateKeySecretRef"]["name"], "namespace": namespace,
                           "annotations": {"stackops.io/allowed-destinations": "127.0.0.1"}},
              "stringData": {"ssh-privatekey": key}}
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "repo-key", "namespace": namespace},
                  "data": {"signing-key.asc": REPOSITORY_KEY}}
    host = {"apiVersion": "stackops.io/v1alpha1", "kind": "KvmHost",
            "metadata": {"name": "kvm01", "namespace": namespace}, "spec": spec}
    return [secret, config_map, host]


def progress(message: str) -> None:
    print(f"[lab] {message}", file=sys.__stderr__, flush=True)


class Cluster:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                token: str | None = None) -> Any:
        """kubectl as the admin, or as the bearer of `token` (and then as nobody else)."""
        auth = (f"--token={token}",) if token is not None else ()
        return lab_operator.kubectl(self.kubeconfig, *auth, *args, input=input, check=check)

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", resource, name, "-n", namespace, "-o", "json").stdout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    plane = controlplane.LocalControlPlane(tmp_path_factory.mktemp("controlplane-namespaced"))
    try:
        info = plane.start(progress)
        yield Cluster(info.kubeconfig)
    finally:
        plane.stop()


@pytest.fixture(scope="module")
def installed(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """deploy/namespaced/ applied (its namespaces first: it does not create them), a KvmHost with its Secret in
    the watched namespace and in another one, then the operator as the Deployment runs it."""
    for namespace in (WATCHED, OTHER):
        cluster.kubectl("create", "namespace", namespace)
    lab_operator.install(cluster.kubeconfig, directory=lab_operator.NAMESPACED)
    namespaces = lab_operator.deployed_namespaces(cluster.kubeconfig)
    assert namespaces == [WATCHED]
    key = throwaway_private_key()
    documents = kvmhost_with_secret(WATCHED, key) + kvmhost_with_secret(OTHER, key)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))
    other_before = cluster.get("kvmhosts", OTHER, "kvm01")

    workdir = tmp_path_factory.mktemp("operator-namespaced")
    token = lab_operator.service_account_token(cluster.kubeconfig)
    config = lab_operator.token_kubeconfig(cluster.kubeconfig, token, workdir / "kubeconfig")
    running = lab_operator.LocalOperator(kubeconfig=config, log_path=workdir / "operator.log",
                                         args=(*TEST_OPERATOR_ARGS, *(f"--namespace={n}" for n in namespaces)))
    running.start()
    try:
        yield {"operator": running, "token": token, "key": key, "other_before": other_before, "kubeconfig": config}
    finally:
        running.stop()


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


def reconciled(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    obj = cluster.get("kvmhosts", namespace, "kvm01")
    return obj if (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"] else None


def test_reconciles_the_watched_namespace_and_ignores_the_other(cluster: Cluster,
                                                                installed: dict[str, Any]) -> None:
    obj = wait_for(lambda: reconciled(cluster, WATCHED), what=f"kvmhost {WATCHED}/kvm01 reconciled", timeout=90,
                   interval=0.5)
    ready = condition(obj, "Ready")
    # its Secret and ConfigMap were read (a missing or forbidden one would say SecretNotFound / SecretForbidden,
    # ConfigMapNotFound / ConfigMapForbidden): it got to connect, and the port is closed
    assert (ready["status"], ready["reason"]) == ("False", "Unreachable"), obj["status"]
    assert "stackops.io/finalizer" in obj["metadata"]["finalizers"]
    identity = f"stackops-local-{installed['operator'].health_port}"  # its POD_ID: the keep-alive's key
    wait_for(lambda: identity in (cluster.get("kopfpeerings", WATCHED, "stackops").get("status") or {}),
             what=f"the operator's keep-alive in KopfPeering {WATCHED}/stackops", timeout=90, interval=0.5)
    assert json.loads(cluster.kubectl("get", "clusterkopfpeerings", "-o", "json").stdout)["items"] == []

    other = cluster.get("kvmhosts", OTHER, "kvm01")
    assert other["metadata"]["resourceVersion"] == installed["other_before"]["metadata"]["resourceVersion"]
    assert "status" not in other and not other["metadata"].get("finalizers")
    assert OTHER not in installed["operator"].log_path.read_text(errors="replace")


def test_the_operator_cannot_see_outside_its_namespaces(cluster: Cluster, installed: dict[str, Any]) -> None:
    token = installed["token"]
    # the same requests the operator makes, with its token: allowed where it is installed, refused elsewhere
    allowed = cluster.kubectl("get", "secret", "kvm-ssh", "-n", WATCHED, "-o", "name", token=token)
    assert allowed.stdout.strip() == "secret/kvm-ssh"
    allowed = cluster.kubectl("get", "configmap", "repo-key", "-n", WATCHED, "-o", "name", token=token)
    assert allowed.stdout.strip() == "configmap/repo-key"
    for args in (("get", "secret", "kvm-ssh", "-n", OTHER),
                 ("get", "configmap", "repo-key", "-n", OTHER),
                 ("get", "kvmhosts", "-n", OTHER),
                 ("get", "secrets", "-n", WATCHED),  # by name only, never listed
                 ("get", "configmaps", "-n", WATCHED),
                 ("get", "secrets", "--all-namespaces"),
                 ("get", "kvmhosts", "--all-namespaces"),
                 ("get", "namespaces")):
        refused = cluster.kubectl(*args, token=token, check=False)
        assert refused.returncode != 0 and "Forbidden" in refused.stderr, (args, refused.stdout, refused.stderr)
        assert installed["key"] not in refused.stdout


def test_no_forbidden_in_the_operator_log(cluster: Cluster, installed: dict[str, Any]) -> None:
    wait_for(lambda: reconciled(cluster, WATCHED), what="the first reconcile", timeout=90, interval=0.5)
    log = installed["operator"].log_path.read_text(errors="replace")
    assert "forbidden" not in log.lower() and " 403" not in log, installed["operator"].log_tail()
    assert installed["key"] not in log


def test_a_watched_namespace_without_its_role_is_named(cluster: Cluster, installed: dict[str, Any],
                                                       tmp_path: Path) -> None:
    """A `--namespace` added without its Role: the startup retries with a message naming the namespace, and the
    operator does nothing meanwhile (no watch starts, no health answer, so a Pod would be restarted)."""
    second = lab_operator.LocalOperator(kubeconfig=installed["kubeconfig"], log_path=tmp_path / "operator.log",
                                        args=(f"--namespace={WATCHED}", f"--namespace={OTHER}"))
    second.start(wait=False)
    try:
        wait_for(lambda: f"namespace '{OTHER}' is watched (--namespace) but the operator may not create its "
                         f"KopfPeering there" in second.log_path.read_text(errors="replace"),
                 what="the startup to name the namespace without its Role", timeout=90, interval=0.5)
        assert second.process is not None and second.process.poll() is None, second.log_tail()
        assert not second.healthy()
        log = second.log_path.read_text(errors="replace")
        assert "Starting the watch-stream" not in log and "Traceback" not in log, second.log_tail()
    finally:
        second.stop()
