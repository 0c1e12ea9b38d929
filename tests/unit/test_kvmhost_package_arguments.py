"""What a package install may do: the apt-get the operator runs, simulated (`apt-get -s`) by the real apt against a
private repository and dpkg status, installs exactly the packages named and never removes one; a package name the
schema accepts is no pattern to apt or dnf/yum."""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
from typing import Any

import pytest
from pydantic import ValidationError

from support.specs import HOST_KEY
from stackops.api.kvmhost import KvmHostSpec
from stackops.reconcile.kvmhost.actions import InstallPackages

# The private repository: `ba.h` is no package's name but, read as a regular expression, matches bach and bash;
# sysv conflicts with the installed bash; bash is also there in an older version.
REPOSITORY = {"bash": ("5.2-1", "5.1-1"), "bah": ("1.0",), "bach": ("1.0",), "tcpdump": ("4.99",),
              "python3.11": ("3.11",), "g++": ("12",), "sysv": ("1.0",)}
INSTALLED = "Package: bash\nStatus: install ok installed\nVersion: 5.2-1\nArchitecture: all\nDescription: shell\n"


@pytest.fixture(scope="module")
def apt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment that points apt-get at the private repository only (APT_CONFIG: read before the machine's
    configuration, so Dir::Etc and everything under it are the fixture's)."""
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get is not installed")
    root = tmp_path_factory.mktemp("apt")
    repo = root / "repo"
    for directory in ("repo", "etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d", "state/lists/partial",
                      "cache/archives/partial", "log"):
        (root / directory).mkdir(parents=True)
    stanzas = []
    for name, versions in REPOSITORY.items():
        for version in versions:
            conflicts = "Conflicts: bash\n" if name == "sysv" else ""
            stanzas.append(f"Package: {name}\nVersion: {version}\nArchitecture: all\n{conflicts}"
                           f"Filename: ./{name}_{version}_all.deb\nSize: 100\nDescription: {name}\n")
    (repo / "Packages").write_text("\n".join(stanzas))
    (root / "status").write_text(INSTALLED)
    (root / "etc" / "sources.list").write_text(f"deb [trusted=yes] file:{repo} ./\n")
    settings = {"Dir::Etc": root / "etc", "Dir::State": root / "state", "Dir::State::status": root / "status",
                "Dir::Cache": root / "cache", "Dir::Log": root / "log", "Debug::NoLocking": "true"}
    if os.geteuid() == 0:
        settings["APT::Sandbox::User"] = "root"  # _apt could not read the fixture's directory
    (root / "apt.conf").write_text("".join(f'{key} "{value}";\n' for key, value in settings.items()))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "APT_CONFIG": str(root / "apt.conf"), "LC_ALL": "C"}
    subprocess.run(["apt-get", "-q", "update"], env=env, capture_output=True, text=True, check=True, timeout=120)
    return env


def simulate(argv: tuple[str, ...], env: dict[str, str]) -> tuple[int, list[str], str]:
    """(exit status, the Inst/Remv lines, stderr) of the command run as `apt-get -s`."""
    command = list(argv)
    command.insert(command.index("apt-get") + 1, "-s")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    changes = [line.split(" (")[0] for line in result.stdout.splitlines() if line.startswith(("Inst ", "Remv "))]
    return result.returncode, changes, result.stderr


def unguarded(argv: tuple[str, ...]) -> tuple[str, ...]:
    """The command without the two guards (as it was before them)."""
    command = [a for a in argv if a != "--no-remove"]
    while "APT::Cmd::Pattern-Only=1" in command:
        at = command.index("APT::Cmd::Pattern-Only=1")
        del command[at - 1:at + 1]
    return tuple(command)


def install(*packages: str, downgrade: bool = False) -> tuple[str, ...]:
    return InstallPackages("install", manager="apt", packages=packages, downgrade=downgrade).argv()


def test_a_name_no_package_has_is_not_read_as_a_regular_expression(apt: dict[str, str]) -> None:
    assert simulate(unguarded(install("ba.h")), apt)[1] == ["Inst bach"], "the fixture has apt's regex fallback"
    status, changes, stderr = simulate(install("ba.h"), apt)
    assert (status, changes) == (100, []) and "E: Unable to locate package ba.h" in stderr


@pytest.mark.parametrize(("package", "why"), [("bash-", "a trailing - removes"),
                                              ("sysv", "sysv conflicts with the installed bash")])
def test_an_install_never_removes_a_package(apt: dict[str, str], package: str, why: str) -> None:
    assert simulate(unguarded(install(package)), apt)[1][0] == "Remv bash [5.2-1]", why
    status, changes, stderr = simulate(install(package), apt)
    assert (status, changes) == (100, []) and "E: Packages need to be removed but remove is disabled." in stderr


def test_exact_names_and_versions_install_as_before(apt: dict[str, str]) -> None:
    assert simulate(install("python3.11", "g++", "tcpdump=4.99"), apt) == (
        0, ["Inst g++", "Inst python3.11", "Inst tcpdump"], "")
    status, changes, _ = simulate(install("bash=5.1-1", downgrade=True), apt)
    assert (status, changes) == (0, ["Inst bash [5.2-1]"]), "a pinned older version is a downgrade, no removal"


SPEC: dict[str, Any] = {"address": "10.250.0.11", "ssh": {"privateKeySecretRef": {"name": "k"}, "hostKey": HOST_KEY}}


@pytest.mark.parametrize("packages", [
    *({"extra": [name]} for name in [
        "bash-", "bash+", "ba*", "ba?h", "ba[s]h", "^bash", "bash$", "bash^", "b|a", "?installed", "~i", "-bash",
        "/usr/bin/bash", "bash:amd64", "bash/stable", "bash=5.1", "ba\\sh", "bash ",
    ]),
    *({"cloudstackAgentVersion": version} for version in [
        "4.19.1.0-", "4.19.1.0+", "4.19*", "4.1?", "4.19 ", "-4.19", "4.19/x",
    ]),
], ids=repr)
def test_a_package_argument_the_schema_accepts_is_no_pattern(packages: dict[str, Any]) -> None:
    """What makes an argument more than one exact name is refused by the schema: apt's install/remove suffixes and
    the patterns APT::Cmd::Pattern-Only still reads (anchored regexes, globs, tasks, ?/~ patterns), its :arch,
    /release and =version; dnf/yum's globs (`*?[]`: no option of theirs turns globbing off), file paths and
    options. Each argument reaches the host quoted by the SSH driver. A pinned version: `name=version-` removes with
    apt as `name-` does; a glob in dnf's `name-version` matches others."""
    data = copy.deepcopy(SPEC)
    data["packages"] = packages
    with pytest.raises(ValidationError):
        KvmHostSpec.model_validate(data)


def test_the_fixture_names_are_names_the_schema_accepts() -> None:
    data = copy.deepcopy(SPEC)
    data["packages"] = {"extra": list(REPOSITORY)}
    KvmHostSpec.model_validate(data)
