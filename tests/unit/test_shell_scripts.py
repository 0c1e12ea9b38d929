"""Every shell script passes shellcheck: the .sh files that run on hosts (package data next to the module that runs
each), and the project's own scripts/ and .ci/run. Also: each host script ships in the package and is used."""
from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "stackops"
HOST_SCRIPTS = sorted(PACKAGE.rglob("*.sh"))
OWN_SCRIPTS = sorted(ROOT.glob("scripts/*.sh")) + [ROOT / ".ci" / "run"]


def shellcheck() -> str:
    found = shutil.which("shellcheck")
    if found:
        return found
    if os.geteuid() == 0:
        pytest.fail("shellcheck is not installed: `make deps` installs it (Debian package shellcheck)")
    pytest.skip("shellcheck is not installed and this is not root: apt-get install shellcheck (or `make deps` as "
                "root) to check the shell scripts")


def test_there_are_host_scripts_and_each_is_in_a_scripts_directory() -> None:
    assert len(HOST_SCRIPTS) >= 10, HOST_SCRIPTS
    assert [p for p in HOST_SCRIPTS if p.parent.name != "scripts"] == []


@pytest.mark.parametrize("group", ["host", "own"])
def test_shellcheck_finds_nothing(group: str) -> None:
    files = HOST_SCRIPTS if group == "host" else OWN_SCRIPTS
    checked = subprocess.run([shellcheck(), "--format=gcc", *map(str, files)], capture_output=True, text=True,
                             cwd=ROOT, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_host_script_is_package_data_and_loaded_by_a_module_beside_it() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for script in HOST_SCRIPTS:
        package = ".".join(script.parent.parent.relative_to(ROOT / "operator").parts)
        assert "scripts/*.sh" in package_data.get(package, []), f"{script.name}: {package} ships no scripts/*.sh"
        users = [p.name for p in script.parent.parent.glob("*.py") if f'"{script.name}"' in p.read_text()]
        assert users, f"no module of {package} loads {script.name}"
