"""The test tiers are folders of tests/: unit/ (no services), integration/ (a real kube-apiserver, simulators, local
processes) and e2e/ (the lab: root, network namespaces). tests/conftest.py marks every test with its folder's tier
(`pytest -m unit`, `make unit`); no test file declares a tier of its own."""
from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
TIERS = ("unit", "integration", "e2e")


def tier_of(path: Path) -> str | None:
    """The tier of the test file at `path`: the folder of tests/ it sits in (at any depth), or None."""
    try:
        parts = Path(path).resolve().relative_to(TESTS).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 and parts[0] in TIERS else None
