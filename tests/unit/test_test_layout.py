"""The test tree itself: a test's tier is the folder it sits in (unit/, integration/, e2e/), marked by
tests/conftest.py and never declared by the file; helpers live in tests/support/; pytest imports test modules by
basename (rootdir-less, `pythonpath = tests`), so two files with the same name in different tiers break collection
of the whole suite; and the benches stand on their own (what they share with the tests is in the lab,
stackops_lab)."""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from support.tiers import TESTS, TIERS, tier_of

BENCH = TESTS.parent / "bench"
TEST_FILES = ("test_*.py", "*_test.py")  # pytest's python_files


def collected_files() -> list[Path]:
    return sorted({path for pattern in TEST_FILES for path in TESTS.rglob(pattern)
                   if "__pycache__" not in path.parts})


def test_test_module_basenames_are_unique() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []


def modules_of_the_tests() -> set[str]:
    """What `pythonpath = tests` makes importable: the modules and packages at the top of tests/, and every test
    module by its basename."""
    top = {path.stem for path in TESTS.glob("*.py")} | {path.name for path in TESTS.iterdir()
                                                       if (path / "__init__.py").is_file()}
    return top | {path.stem for path in TESTS.rglob("test_*.py")}


def reaches_into_tests(source: str, tests: set[str]) -> list[str]:
    """Imports in `source` of a module of the tests, and a "tests" path component (a sys.path entry for them)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] in tests]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [node.module] if node.module.split(".")[0] in tests else []
        elif isinstance(node, ast.Constant) and node.value == "tests":
            found.append("'tests'")
    return found


def test_reaches_into_tests_finds_imports_and_a_path_to_the_tests() -> None:
    source = ("import sys\nsys.path.insert(0, str(ROOT / 'tests'))\nfrom support.xenapi import FAST\n"
              "def f():\n    import specs, json\n    from stackops_lab.rollout import Driver\n")
    assert sorted(reaches_into_tests(source, {"support", "specs"})) == ["'tests'", "specs", "support.xenapi"]


def test_benches_import_nothing_from_the_tests() -> None:
    tests = modules_of_the_tests()
    assert {"support", "conftest", "test_test_layout"} <= tests
    benches = sorted(BENCH.glob("*.py"))
    assert benches
    assert {path.name: found for path in benches if (found := reaches_into_tests(path.read_text(), tests))} == {}


def test_no_test_module_imports_another() -> None:
    """What two test modules share is in support/ (an SSH server, a spec): importing a test module would also
    bring in its fixtures and tests, and tie one file's layout to another's."""
    test_modules = {path.stem for path in TESTS.rglob("test_*.py")}
    imports = {str(path.relative_to(TESTS)): found for path in collected_files()
               if (found := [name for name in reaches_into_tests(path.read_text(), test_modules) if name != "'tests'"])}
    assert imports == {}


def test_wait_for_is_defined_once_in_support() -> None:
    defined = sorted(str(path.relative_to(TESTS)) for path in TESTS.rglob("*.py") if "__pycache__" not in path.parts
                     for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "wait_for")
    assert defined == ["support/wait.py"]


# ------------------------------------------------------------------------------------------------------- tiers


def test_tier_of_is_the_folder_under_tests() -> None:
    assert [tier_of(TESTS / path) for path in ("unit/test_x.py", "integration/test_x.py", "e2e/deep/test_x.py",
                                               "test_x.py", "support/test_x.py", "unit")] == [
        "unit", "integration", "e2e", None, None, None]
    assert tier_of(TESTS.parent / "unit" / "test_x.py") is None


def test_every_test_file_sits_in_a_tier_folder() -> None:
    files = collected_files()
    assert len(files) > 80
    assert [str(path.relative_to(TESTS)) for path in files if tier_of(path) is None] == []


def tier_markers(source: str) -> list[str]:
    """Tier markers `source` uses anywhere: pytestmark, a decorator, pytest.param(marks=…), `mark.e2e` alone."""
    return [node.attr for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Attribute) and node.attr in TIERS
            and (isinstance(node.value, ast.Attribute) and node.value.attr == "mark"
                 or isinstance(node.value, ast.Name) and node.value.id == "mark")]


def test_tier_markers_finds_every_way_of_marking() -> None:
    source = ("import pytest\nfrom pytest import mark\npytestmark = [pytest.mark.e2e, pytest.mark.timeout(5)]\n"
              "@pytest.mark.integration\ndef test_a(): pass\n@mark.unit\ndef test_b(): pass\n"
              "@pytest.mark.parametrize('x', [pytest.param(1, marks=pytest.mark.e2e)])\ndef test_c(x): pass\n"
              "def test_d(request): request.node.add_marker(pytest.mark.integration)\n"
              "e2e = unit = 1\n")
    assert sorted(tier_markers(source)) == ["e2e", "e2e", "integration", "integration", "unit"]


def test_no_test_file_declares_a_tier_of_its_own() -> None:
    declared = {str(path.relative_to(TESTS)): found for path in collected_files()
                if (found := tier_markers(path.read_text()))}
    assert declared == {}


def test_conftest_marks_this_test_unit_and_no_other_tier(request: pytest.FixtureRequest) -> None:
    assert [mark.name for mark in request.node.iter_markers() if mark.name in TIERS] == ["unit"]


def test_each_tier_marker_selects_exactly_its_folder(tmp_path: Path) -> None:
    """What `pytest -m <tier>` collects from one file of each tier (collection only: nothing runs)."""
    files = ["tests/unit/test_test_layout.py", "tests/integration/test_controlplane.py", "tests/e2e/test_demo.py"]
    for tier in TIERS:
        result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                 "-m", tier, *files], cwd=TESTS.parent, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        selected = {line.split("::")[0] for line in result.stdout.splitlines() if "::" in line}
        assert selected == {f"tests/{tier}/{files[TIERS.index(tier)].split('/')[-1]}"}, result.stdout


# ------------------------------------------------------------------------------------------------------ helpers


def test_helpers_live_in_support_and_the_top_of_tests_holds_only_conftest() -> None:
    top = {path.name for path in TESTS.glob("*.py")}
    assert top == {"conftest.py"}
    assert (TESTS / "support" / "__init__.py").is_file()


# ----------------------------------------------------------------------------------------------------- Makefile


def make_rules() -> dict[str, tuple[list[str], list[str]]]:
    """Makefile target → (prerequisites, recipe lines)."""
    rules: dict[str, tuple[list[str], list[str]]] = {}
    target = None
    for line in (TESTS.parent / "Makefile").read_text().splitlines():
        if line.startswith("\t") and target is not None:
            rules[target][1].append(line.strip())
        elif ":" in line and not line.startswith(("#", ".", " ")) and "=" not in line.split(":")[0]:
            name, prerequisites = line.split(":", 1)
            target = name.strip()
            rules[target] = (prerequisites.split(), [])
        else:
            target = None
    return rules


def test_make_runs_each_tier_and_test_runs_them_all() -> None:
    rules = make_rules()
    for tier in TIERS:
        assert rules[tier][1] == [f"$(BIN)/pytest tests/{tier} $(PYTEST_ARGS)"], tier
    assert rules["unit"][0] == ["venv"]
    assert rules["integration"][0] == ["deps", "lab-prepare"]
    assert rules["e2e"][0] == ["deps", "lab-prepare-node"]  # the lab node's binaries too (tests/e2e run a node)
    assert rules["test"] == (["deps", "check-generated", "lab-prepare-node"], ["$(BIN)/pytest $(PYTEST_ARGS)"])
