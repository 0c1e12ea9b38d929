"""The test tree itself: pytest imports test modules by basename (rootdir-less, `pythonpath = tests`), so two
files with the same name in different tiers break collection of the whole suite; and the benches stand on their own
(what they share with the tests is in the lab, stackops_lab)."""
from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
BENCH = TESTS.parent / "bench"


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
