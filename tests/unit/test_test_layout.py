"""The test tree itself: pytest imports test modules by basename (rootdir-less, `pythonpath = tests`), so two
files with the same name in different tiers break collection of the whole suite."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_basenames_are_unique() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
