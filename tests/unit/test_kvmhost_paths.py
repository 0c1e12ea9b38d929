"""KvmHost's host paths exist once, in paths.py: no other module of the kind and no script spells one out (scripts
get them in a preamble), and the scripts that take them work with the values they are given."""
from __future__ import annotations

import ast
import importlib
import subprocess
from pathlib import Path

from stackops.reconcile.kvmhost import actions, guard, network, paths, probe, repository

planner = importlib.import_module("stackops.reconcile.kvmhost.plan")  # the package exports the function `plan`

KIND = Path(paths.__file__).parent
VALUES = sorted({*paths.PROBED_FILES, paths.PKI_DIR, paths.GENERATED_KEY, paths.GENERATED_CERT, paths.CA_CERT,
                 *paths.SECRET_FILES, paths.OWNER_REFERENCE, paths.CHECKPOINT_DIR, paths.APPARMOR_DIR,
                 paths.IFCFG_DIR, paths.NETWORK_SOURCED_DIR})


def strings(source: str) -> list[str]:
    """The string constants of a module, docstrings left out."""
    tree = ast.parse(source)
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs]


def test_no_module_or_script_of_the_kind_has_a_copy_of_a_path() -> None:
    copies = []
    for module in sorted(KIND.glob("*.py")):
        if module.name != "paths.py":
            copies += [(module.name, v) for text in strings(module.read_text()) for v in VALUES if v in text]
    for script in sorted((KIND / "scripts").glob("*.sh")):
        copies += [(script.name, v) for v in VALUES if v in script.read_text()]
    assert copies == []


def test_the_planner_and_the_probe_name_the_same_files() -> None:
    written = {planner.LIBVIRTD_CONF, planner.QEMU_CONF, planner.AGENT_PROPERTIES, planner.AGENT_LOG4J,
               paths.SELINUX_CONFIG, *planner.LIBVIRTD_DEFAULTS.values(), *repository.SOURCE_FILES.values(),
               *repository.KEY_FILES.values(), network.NETWORK_INTERFACES, network.NETWORK_STACKOPS}
    assert written == set(paths.PROBED_FILES)
    assert f"PROBED_FILES='{' '.join(paths.PROBED_FILES)}'\n" in probe.SCRIPT
    assert f"CHECKPOINT_DIR={paths.CHECKPOINT_DIR}\n" in guard.START and guard.CHECKPOINT_DIR == paths.CHECKPOINT_DIR


def apparmor(script: str, directory: Path, profile: str) -> str:
    """Runs an AppArmor script on `directory` with an `apparmor_parser` that only says what it was asked."""
    text = script.replace(f"APPARMOR_DIR={paths.APPARMOR_DIR}\n", f"APPARMOR_DIR={directory}\n")
    assert text != script
    parser = "apparmor_parser() { echo \"apparmor_parser $*\"; }\n"
    done = subprocess.run(["sh", "-c", parser + text, "stackops-apparmor", profile], capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout


def test_the_apparmor_scripts_link_and_unlink_the_profile_in_the_directory_they_are_given(tmp_path: Path) -> None:
    (tmp_path / "disable").mkdir()
    (tmp_path / "usr.sbin.libvirtd").write_text("profile\n")
    said = apparmor(actions.APPARMOR_DISABLE, tmp_path, "usr.sbin.libvirtd")
    link = tmp_path / "disable" / "usr.sbin.libvirtd"
    assert link.is_symlink() and link.resolve() == tmp_path / "usr.sbin.libvirtd"
    assert said == f"apparmor_parser -R {tmp_path}/usr.sbin.libvirtd\n"
    said = apparmor(actions.APPARMOR_ENFORCE, tmp_path, "usr.sbin.libvirtd")
    assert not link.exists() and not link.is_symlink()
    assert said == f"apparmor_parser -r {tmp_path}/usr.sbin.libvirtd\n"
