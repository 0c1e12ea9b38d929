"""The GitOps health checks in deploy/gitops/, run for real: the Argo CD Lua health checks on a Lua 5.1 runtime
with their own `health_test.yaml` cases (Argo CD's layout and format), the argocd-cm patch generated from them,
and the Flux Kustomization's healthCheckExprs evaluated with a CEL implementation on the same objects.

The mapping of every condition reason the operator writes is in test_kstatus_mapping.py.
"""
from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml

from support import gitops_eval as ge
from support import kstatus
from stackops.api.common import API_VERSION, PAUSED_ANNOTATION
from stackops.api.kinds import KINDS

ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended"}


def argo_cases() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for kind in ge.KINDS:
        spec = yaml.safe_load((ge.ARGOCD_GROUP / kind / "health_test.yaml").read_text())
        cases += [(kind, test) for test in spec["tests"]]
    return cases


def load_input(kind: str, test: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load((ge.ARGOCD_GROUP / kind / test["inputPath"]).read_text())


def test_one_health_check_per_kind_in_argo_cds_layout() -> None:
    assert sorted(ge.KINDS) == sorted(k.kind for k in KINDS)
    assert sorted(p.name for p in ge.ARGOCD_GROUP.iterdir()) == sorted(ge.KINDS)
    for kind in ge.KINDS:
        folder = ge.ARGOCD_GROUP / kind
        assert (folder / "health.lua").is_file() and (folder / "health_test.yaml").is_file(), kind


def test_the_kinds_share_one_health_check() -> None:
    """The four scripts differ only in the kind named in their first line: a fix goes into all of them."""
    bodies = {kind: ge.health_script(kind).replace(f"stackops.io/{kind} ", "stackops.io/KIND ", 1) for kind in ge.KINDS}
    assert len(set(bodies.values())) == 1, "the health.lua files have drifted apart"


@pytest.mark.parametrize(("kind", "test"), argo_cases(), ids=lambda v: v if isinstance(v, str) else v["inputPath"])
def test_argo_cd_health_case(kind: str, test: dict[str, Any]) -> None:
    """Each case of the kind's health_test.yaml, as Argo CD's own resource_customizations test runs it."""
    expected = test["healthStatus"]
    assert expected["status"] in ARGO_STATUSES
    assert ge.argo_health(kind, load_input(kind, test)) == {"status": expected["status"],
                                                             "message": expected["message"]}


@pytest.mark.parametrize("kind", ge.KINDS)
def test_every_health_status_and_testdata_file_is_used(kind: str) -> None:
    folder = ge.ARGOCD_GROUP / kind
    tests = yaml.safe_load((folder / "health_test.yaml").read_text())["tests"]
    assert {t["healthStatus"]["status"] for t in tests} == ARGO_STATUSES
    used = sorted(t["inputPath"] for t in tests)
    assert used == sorted(f"testdata/{p.name}" for p in (folder / "testdata").glob("*.yaml"))
    assert len(used) == len(set(used))
    for path in used:
        obj = yaml.safe_load((folder / path).read_text())
        assert obj["apiVersion"] == API_VERSION and obj["kind"] == kind, path


@pytest.mark.parametrize("kind", ge.KINDS)
def test_the_lua_sets_no_global(kind: str) -> None:
    """Argo CD runs the script with only `obj` set; a misspelt local would silently be a nil global."""
    from lupa import lua51

    lua = lua51.LuaRuntime()
    before = set(lua.globals().keys())
    for _, test in [c for c in argo_cases() if c[0] == kind]:
        lua.globals().obj = ge._to_lua(lua, load_input(kind, test))
        lua.execute(ge.health_script(kind))
    assert set(lua.globals().keys()) - before == {"obj"}


def test_argocd_cm_patch_is_generated_from_the_lua_files() -> None:
    result = subprocess.run([sys.executable, str(ge.ROOT / "scripts" / "argocd-cm-patch.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    patch = yaml.safe_load((ge.ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert (patch["kind"], patch["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    assert patch["data"] == {f"resource.customizations.health.stackops.io_{kind}": ge.health_script(kind)
                             for kind in ge.KINDS}


# --- Flux ------------------------------------------------------------------------------------------------------

def kustomization(name: str) -> dict[str, Any]:
    found = [d for d in ge.flux_documents() if d["kind"] == "Kustomization" and d["metadata"]["name"] == name]
    assert len(found) == 1, name
    return found[0]


def test_flux_applies_the_objects_after_the_operator_with_health_checks() -> None:
    for document in ge.flux_documents():
        group = document["apiVersion"].split("/")[0]
        assert group in ("source.toolkit.fluxcd.io", "kustomize.toolkit.fluxcd.io"), document["apiVersion"]
    operator = kustomization("stackops-operator")
    assert operator["spec"]["path"] == "./deploy" and operator["spec"]["wait"] is True
    resources = kustomization("stackops-resources")["spec"]
    assert resources["dependsOn"] == [{"name": "stackops-operator"}]
    assert resources["wait"] is True and resources["prune"] is True
    assert resources["decryption"]["provider"] == "sops"  # Secrets are encrypted in Git
    checks = resources["healthCheckExprs"]
    assert sorted(c["kind"] for c in checks) == sorted(ge.KINDS)
    for check in checks:
        assert check["apiVersion"] == API_VERSION
        assert set(check) == {"apiVersion", "kind", "inProgress", "failed", "current"}


def test_flux_expressions_are_the_same_for_every_kind() -> None:
    checks = ge.health_check_exprs()
    assert len({(c["inProgress"], c["failed"], c["current"]) for c in checks.values()}) == 1


@pytest.mark.parametrize(("kind", "test"), argo_cases(), ids=lambda v: v if isinstance(v, str) else v["inputPath"])
def test_flux_and_kstatus_agree_with_argo_cd_on_the_test_objects(kind: str, test: dict[str, Any]) -> None:
    """Flux (healthCheckExprs) and kstatus' generic rules say what the Lua says, except where they cannot:
    a paused object (neither knows the annotation: they read its last status) and an object without status
    (kstatus' generic rules call it Current; the expressions make Flux wait for the operator)."""
    obj = load_input(kind, test)
    argo = test["healthStatus"]["status"]
    flux = ge.flux_status(kind, obj)
    generic = kstatus.compute(obj).status
    if "status" not in obj:
        assert (argo, flux, generic) == ("Progressing", "Unknown", "Current")
        return
    if argo == "Suspended":
        assert str(obj["metadata"]["annotations"][PAUSED_ANNOTATION]).strip().lower() == "true"
        unpaused = {**obj, "metadata": {**obj["metadata"], "annotations": {}}}
        argo = ge.argo_health(kind, unpaused)["status"]
    assert ge.ARGO_FOR_KSTATUS[flux] == argo
    assert generic == flux


def test_flux_expressions_need_the_operators_conditions() -> None:
    """Status without the conditions (e.g. only the operator's first checkpoint): not Current."""
    obj = {"apiVersion": API_VERSION, "kind": "XenPool", "metadata": {"name": "p", "generation": 1},
           "status": {"observedGeneration": 1}}
    assert ge.flux_status("XenPool", obj) == "InProgress"
    assert ge.argo_health("XenPool", obj)["status"] == "Progressing"
    obj["status"] = {"masterUnreachableSince": "2025-03-04T10:00:00.000Z"}
    assert ge.flux_status("XenPool", obj) == "InProgress"
    assert ge.argo_health("XenPool", obj)["status"] == "Progressing"


def test_cel_harness_follows_flux_on_errors_and_order() -> None:
    """The evaluator itself: a missing top-level field is an error (Unknown), inProgress wins over failed."""
    obj = {"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "conditions": [
        {"type": "Stalled", "status": "True"}, {"type": "Reconciling", "status": "True"}]}}
    assert ge.flux_status("KvmHost", obj) == "InProgress"
    with pytest.raises(ge.CELError):
        ge.evaluate("has(spec.x)", {"metadata": {}})
    assert ge.evaluate("status.conditions.exists(c, c.type == 'Stalled')", obj) is True
    assert ge.flux_status("KvmHost", {**obj, "status": {**obj["status"], "observedGeneration": 1}}) == "InProgress"
