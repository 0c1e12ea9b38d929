"""The layers hold: `lint-imports` (import-linter, the test extra) checks the contracts in pyproject.toml
([tool.importlinter]): api <- drivers <- reconcile <- handlers and `stackops plan` <- cli, kopf only in the handlers
and cli, `stackops plan` without kind knowledge, drivers without spec models, no lab code in the operator package. Each contract is shown to fail on a
copy of the package with one import that breaks it."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "stackops"


def lint_imports(package_parent: Path) -> tuple[int, str]:
    """`lint-imports` with the project's contracts (pyproject.toml, found in the working directory) over the
    `stackops` package found in `package_parent`: its exit status and output, without colours."""
    beside = Path(sys.executable).parent / "lint-imports"
    command = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert command, "lint-imports not found: install the test extra (pip install -e '.[test]', or make venv)"
    env = {**os.environ, "PYTHONPATH": str(package_parent), "COLUMNS": "200", "NO_COLOR": "1"}  # a line a contract
    result = subprocess.run([command, "--no-cache"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    return result.returncode, re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)


def test_the_contracts_hold() -> None:
    status, output = lint_imports(PACKAGE.parent)
    assert status == 0, output
    assert "Contracts: 7 kept, 0 broken." in output


# (module, the line appended to it, the contract that must break)
BREAKS = [
    ("drivers/kube.py", "from ..reconcile import base", "Layers:"),
    ("api/common.py", "from ..drivers import kube", "Layers:"),
    ("reconcile/shell.py", "from ..handlers import settings", "Layers:"),
    ("new_module.py", "", "Layers:"),  # a module no layer places
    ("plan_manifests.py", "from .handlers import settings", "stackops plan imports neither the handlers nor kopf"),
    ("plan.py", "from .reconcile.systemvmtemplate import plan", "stackops plan knows no kind"),
    ("handlers/settings.py", "from .. import plan", "The handlers do not import stackops plan"),
    ("reconcile/shell.py", "import kopf", "kopf only in the handlers"),
    ("drivers/ssh.py", "from ..api.common import SSHSettings", "Drivers take plain values"),
    ("status.py", "import stackops_lab", "The operator package imports no lab code"),
]


@pytest.mark.parametrize(("module", "line", "contract"), BREAKS, ids=[f"{m}:{c}" for m, _, c in BREAKS])
def test_an_import_that_breaks_a_contract_fails(tmp_path: Path, module: str, line: str, contract: str) -> None:
    copy = tmp_path / "src" / "stackops"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text((target.read_text() if target.exists() else "") + f"\n{line}\n")
    status, output = lint_imports(copy.parent)
    assert status == 1, output
    broken = [text for text in output.splitlines() if " BROKEN" in text]  # "<name> BROKEN (1 ignored …)"
    assert any(text.startswith(contract) for text in broken), output
