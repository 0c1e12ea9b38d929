"""The lab is its own distribution (stackops-lab, lab/): the operator package imports none of it, its wheel (what the
image installs) holds none of it, and the lab finds the repository files it needs in the checkout it runs from."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from stackops_lab import checkout
from stackops_lab.controlplane import LabError

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "stackops"


def lab_references(source: str) -> list[str]:
    """Imports of stackops_lab in `source`, and strings naming it (importlib.import_module("stackops_lab…"))."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append(node.value)
    return [name for name in found if name == "stackops_lab" or name.startswith("stackops_lab.")]


def test_lab_references_finds_imports_anywhere() -> None:
    source = ("import stackops_lab.hosts\n"
              "def f():\n    from stackops_lab.cli import main\n    from stackops.plugins import run\n"
              "    return __import__('stackops_lab')\n")
    assert lab_references(source) == ["stackops_lab.hosts", "stackops_lab.cli", "stackops_lab"]


def test_no_module_of_the_operator_package_imports_the_lab() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 50
    assert {str(m.relative_to(REPO)): refs for m in modules if (refs := lab_references(m.read_text()))} == {}


def dockerfile_build_sources() -> list[str]:
    """What the Dockerfile's build stage copies into its context (`COPY <sources…> <destination>`)."""
    sources = []
    for line in (REPO / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--") for w in words):
            sources += words[1:-1]
    return sources


def test_the_operator_wheel_the_image_installs_holds_no_lab_file(tmp_path: Path) -> None:
    """The Dockerfile builds the image from this wheel (`pip wheel .` on what it copies) and installs nothing else
    of the project."""
    context = tmp_path / "context"
    context.mkdir()
    sources = dockerfile_build_sources()
    assert sorted(sources) == ["README.md", "operator/", "pyproject.toml"]
    for source in sources:
        if (REPO / source).is_dir():
            shutil.copytree(REPO / source, context / source,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy(REPO / source, context / source)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                             "--disable-pip-version-check", "--wheel-dir", str(tmp_path / "wheels"), str(context)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    [wheel] = (tmp_path / "wheels").glob("stackops-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "stackops/cli.py" in names and "stackops/plugins.py" in names
    assert [name for name in names if "stackops_lab" in name or name.startswith("lab/")] == []


def test_the_lab_finds_deploy_and_its_examples_in_this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STACKOPS_CHECKOUT", raising=False)
    assert checkout.root() == REPO
    assert checkout.path(checkout.DEPLOY) == REPO / "deploy"
    assert (checkout.path(checkout.NAMESPACED) / "kustomization.yaml").is_file()
    assert sorted(checkout.path(checkout.EXAMPLES).glob("*.yaml"))
    assert checkout.path(Path("/elsewhere/deploy")) == Path("/elsewhere/deploy")


def test_the_lab_installed_without_a_checkout_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """What a `pip install lab/` (not editable) leaves: the lab in site-packages, no deploy/ beside it."""
    monkeypatch.delenv("STACKOPS_CHECKOUT", raising=False)
    monkeypatch.setattr(checkout, "INSTALLED_FROM", tmp_path / "lib" / "python3.11")
    with pytest.raises(LabError) as error:
        checkout.path(checkout.DEPLOY)
    assert "pip install -e lab/" in str(error.value) and "STACKOPS_CHECKOUT" in str(error.value)
    assert "deploy/kustomization.yaml" in str(error.value)


def test_stackops_checkout_names_another_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(checkout, "INSTALLED_FROM", tmp_path / "site-packages")
    monkeypatch.setenv("STACKOPS_CHECKOUT", str(tmp_path / "other"))
    with pytest.raises(LabError, match=r"\$STACKOPS_CHECKOUT"):
        checkout.root()
    for mark in checkout.MARKS:
        (tmp_path / "other" / mark).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "other" / mark).write_text("")
    assert checkout.path(checkout.EXAMPLES) == tmp_path / "other" / "deploy" / "examples"
