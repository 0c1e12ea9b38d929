"""The namespaced installation (deploy/namespaced/), checked without a cluster; the operator under it on a real API
server is in tests/integration/test_operator_namespaced.py.

- it builds with the lab's kubectl 1.20 (kustomize v2.0) and with a current kustomize, to the same objects;
- it holds no ClusterRole or ClusterRoleBinding: a Role and a RoleBinding in each watched namespace, with the exact
  rules written out below (no wildcards, Secrets `get` only), bound to the operator's ServiceAccount;
- the Deployment is deploy/'s with one `--namespace` per Role appended, and nothing else changed;
- `stackops run --namespace` takes names only, and the operator then keeps a KopfPeering in each watched namespace
  (created at startup, a clear retry where the Role is missing) instead of the ClusterKopfPeering.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kopf
import pytest
import yaml

from stackops.api.crds import all_crds
from stackops.api.kinds import KINDS
from stackops.cli import main as cli_main
from stackops.handlers import Deps, build, peering
from stackops.handlers.settings import PEERING_NAME
from stackops_lab.controlplane import LabError, find_kubectl

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NAMESPACED = DEPLOY / "namespaced"
OPERATOR_NAMESPACE = "stackops-system"
SERVICE_ACCOUNT = "stackops-operator"
SHIPPED_NAMESPACES = ["stackops-demo"]  # deploy/examples/' namespace

# Every (API group, resource, verb) each Role grants in its namespace, and nothing else: the four kinds listed,
# watched and patched, their status patched, Secrets and ConfigMaps read by name, Events posted, and the
# KopfPeering created at startup when missing, listed, watched and patched (keep-alives), and the maintenance lock's
# Leases listed, read, created and patched (drivers/maintenance_lock.py; no update, no delete).
_KIND_PLURALS = ("xenpools", "kvmhosts", "systemvmtemplates", "cloudstackreleases")
EXPECTED_ROLE_RULES: frozenset[tuple[str, str, str]] = frozenset(
    {("stackops.io", plural, verb) for plural in _KIND_PLURALS for verb in ("get", "list", "watch", "patch")}
    | {("stackops.io", f"{plural}/status", "patch") for plural in _KIND_PLURALS}
    | {("", "secrets", "get")}
    | {("", "configmaps", "get")}
    | {("", "events", "create")}
    | {("coordination.k8s.io", "leases", verb) for verb in ("get", "list", "create", "patch")}
    | {("kopf.dev", "kopfpeerings", verb) for verb in ("get", "list", "watch", "patch", "create")}
)


def build_with(kubectl: str, directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def lab_kubectl() -> str:
    """kubectl 1.20 with kustomize v2.0, built by the lab (`make test` builds it before the tests)."""
    try:
        return str(find_kubectl())
    except LabError as error:
        pytest.skip(str(error))


def current_kustomize() -> list[str]:
    """A kustomize of v4 or later: `kustomize` itself, or a kubectl that embeds one."""
    if shutil.which("kustomize"):
        return [shutil.which("kustomize"), "build"]  # type: ignore[list-item]
    kubectl = shutil.which("kubectl")
    if kubectl and kubectl != lab_kubectl():
        version = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True,
                                 timeout=60)
        found = re.match(r"v(\d+)\.", json.loads(version.stdout or "{}").get("kustomizeVersion", ""))
        if version.returncode == 0 and found and int(found.group(1)) >= 4:
            return [kubectl, "kustomize"]
    pytest.skip("no kustomize v4 or later on PATH")


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return build_with(lab_kubectl(), NAMESPACED)


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def deployment_args(objects: list[dict[str, Any]]) -> list[str]:
    [deployment] = of_kind(objects, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container["args"]


def watched(objects: list[dict[str, Any]]) -> list[str]:
    return [a.split("=", 1)[1] for a in deployment_args(objects) if a.startswith("--namespace=")]


def test_builds_the_same_with_a_current_kustomize(objects: list[dict[str, Any]]) -> None:
    command = current_kustomize()
    result = subprocess.run([*command, str(NAMESPACED)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    key = lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])  # noqa: E731
    current = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert sorted(current, key=key) == sorted(objects, key=key)


def test_objects_are_the_common_ones_plus_roles(objects: list[dict[str, Any]]) -> None:
    kinds = sorted((o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects)
    assert kinds == sorted([
        ("Namespace", "", OPERATOR_NAMESPACE),
        *[("CustomResourceDefinition", "", d["metadata"]["name"]) for d in all_crds().values()],
        ("ServiceAccount", OPERATOR_NAMESPACE, SERVICE_ACCOUNT),
        *[("Role", namespace, "stackops-operator") for namespace in SHIPPED_NAMESPACES],
        *[("RoleBinding", namespace, "stackops-operator") for namespace in SHIPPED_NAMESPACES],
        ("Deployment", OPERATOR_NAMESPACE, "stackops-operator"),
        ("Service", OPERATOR_NAMESPACE, "stackops-operator-metrics"),
    ])
    assert "kopfpeerings.kopf.dev" in {d["metadata"]["name"] for d in all_crds().values()}
    for o in objects:
        assert o["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "stackops", o["kind"]


def test_no_cluster_wide_permission(objects: list[dict[str, Any]]) -> None:
    assert not of_kind(objects, "ClusterRole") and not of_kind(objects, "ClusterRoleBinding")
    for binding in of_kind(objects, "RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role", "a ClusterRole bound per namespace would still be cluster-wide"
    assert not (NAMESPACED / "kustomization.yaml").read_text().count("../rbac.yaml")


def test_every_role_grants_exactly_the_expected_rules(objects: list[dict[str, Any]]) -> None:
    roles = of_kind(objects, "Role")
    assert roles
    for role in roles:
        granted: set[tuple[str, str, str]] = set()
        assert "aggregationRule" not in role
        for rule in role["rules"]:
            assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
            for field in ("apiGroups", "resources", "verbs"):
                assert not [value for value in rule[field] if "*" in value], f"wildcard in {field}: {rule}"
            if {"secrets", "configmaps"} & set(rule["resources"]):
                assert rule["verbs"] == ["get"], "Secrets and ConfigMaps are read by name only, never listed or watched"
            granted |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
        where = role["metadata"]["namespace"]
        assert granted - EXPECTED_ROLE_RULES == set(), f"Role in {where} grants more than expected"
        assert EXPECTED_ROLE_RULES - granted == set(), f"Role in {where} grants less than expected"
    assert set(_KIND_PLURALS) == {k.plural for k in KINDS}


def test_each_role_is_bound_to_the_operator_only(objects: list[dict[str, Any]]) -> None:
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in of_kind(objects, "Role")}
    bindings = of_kind(objects, "RoleBinding")
    assert {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in bindings} == roles
    for binding in bindings:
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": "stackops-operator"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT,
                                        "namespace": OPERATOR_NAMESPACE}]


def test_the_operator_watches_exactly_the_namespaces_it_holds_roles_in(objects: list[dict[str, Any]]) -> None:
    assert watched(objects) == SHIPPED_NAMESPACES
    assert sorted(r["metadata"]["namespace"] for r in of_kind(objects, "Role")) == sorted(watched(objects))
    assert OPERATOR_NAMESPACE not in watched(objects), "the operator's own namespace holds nothing it reads"


def test_the_deployment_is_the_common_one_with_namespaces_appended(objects: list[dict[str, Any]]) -> None:
    [everywhere] = of_kind(build_with(lab_kubectl(), DEPLOY), "Deployment")
    [namespaced] = of_kind(objects, "Deployment")
    args = deployment_args(objects)
    base_args = deployment_args([everywhere])
    assert args == base_args + [f"--namespace={n}" for n in watched(objects)]
    assert not [a for a in base_args if a.startswith(("--namespace", "-n"))], "deploy/ watches every namespace"
    everywhere["spec"]["template"]["spec"]["containers"][0]["args"] = args
    assert namespaced == everywhere


# --- the operator's side: `--namespace`, namespaced peering -----------------------------------------------------


@pytest.mark.parametrize("name", ["team-*", "!kube-system", "Team", "a_b", "-a", "a" * 64])
def test_run_refuses_a_namespace_that_is_not_a_name(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["run", "--namespace=ok", f"--namespace={name}"]) == 2
    assert "names" in capsys.readouterr().err


def test_namespaced_operator_uses_namespaced_peering() -> None:
    deps = Deps(reconcilers={k.kind: SimpleNamespace() for k in KINDS}, secrets=None)  # type: ignore[arg-type]
    _, everywhere = build(deps)
    assert everywhere.peering.clusterwide is True and everywhere.peering.mandatory is True
    _, namespaced = build(deps, namespaces=["team-a"])
    assert namespaced.peering.clusterwide is False and namespaced.peering.mandatory is True
    assert namespaced.peering.name == PEERING_NAME


class FakeCustomApi:
    """The custom-objects API the startup handler calls: discovery, and creating peering objects."""

    def __init__(self, peering_plural: str, forbidden: set[str] = frozenset(), absent: set[str] = frozenset()):
        self.served = {("stackops.io", "v1alpha1"): list(_KIND_PLURALS), ("kopf.dev", "v1"): [peering_plural]}
        self.forbidden, self.absent = forbidden, absent
        self.created: list[tuple[str | None, str, str]] = []  # (namespace, kind, name)

    def get_api_resources(self, group: str, version: str) -> Any:
        from kubernetes.client.exceptions import ApiException

        if (group, version) not in self.served:
            raise ApiException(status=404)
        return SimpleNamespace(resources=[SimpleNamespace(name=n) for n in self.served[(group, version)]])

    def create_cluster_custom_object(self, group: str, version: str, plural: str, body: dict) -> None:
        self.created.append((None, body["kind"], body["metadata"]["name"]))

    def create_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str,
                                        body: dict) -> None:
        from kubernetes.client.exceptions import ApiException

        assert (group, version, plural, body["kind"]) == ("kopf.dev", "v1", "kopfpeerings", "KopfPeering")
        assert body["metadata"]["namespace"] == namespace
        if namespace in self.forbidden:
            raise ApiException(status=403, reason="Forbidden")
        if namespace in self.absent:
            raise ApiException(status=404, reason="NotFound")
        if (namespace, body["kind"], body["metadata"]["name"]) in self.created:
            raise ApiException(status=409, reason="AlreadyExists")
        self.created.append((namespace, body["kind"], body["metadata"]["name"]))


def prepare(api: FakeCustomApi, namespaces: list[str]) -> None:
    asyncio.run(peering.prepare(api, PEERING_NAME, logging.getLogger("t"), namespaces))


def test_startup_creates_a_kopfpeering_in_each_watched_namespace() -> None:
    api = FakeCustomApi("kopfpeerings")
    prepare(api, ["team-a", "team-b"])
    prepare(api, ["team-a", "team-b"])  # a restart: they exist
    assert api.created == [("team-a", "KopfPeering", "stackops"), ("team-b", "KopfPeering", "stackops")]


def test_startup_waits_for_the_kopfpeering_crd() -> None:
    api = FakeCustomApi("clusterkopfpeerings")  # deploy/ applied before this release: no KopfPeering CRD
    with pytest.raises(kopf.TemporaryError, match="kopfpeerings.kopf.dev"):
        prepare(api, ["team-a"])
    assert api.created == []


def test_startup_names_a_namespace_without_the_role_or_missing() -> None:
    api = FakeCustomApi("kopfpeerings", forbidden={"team-b"}, absent={"team-c"})
    with pytest.raises(kopf.TemporaryError, match="'team-b'.*Role of deploy/namespaced/"):
        prepare(api, ["team-a", "team-b"])
    with pytest.raises(kopf.TemporaryError, match="'team-c'.*does not exist"):
        prepare(api, ["team-c"])
