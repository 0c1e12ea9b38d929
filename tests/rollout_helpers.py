"""Compatibility shim: this helper moved to tests/support/rollout.py. Kept only for
tests/integration/test_pooled_connections.py (uncommitted work of another change): remove it once that test imports
support.rollout."""
from support.rollout import SECRET, spec_for

__all__ = ["SECRET", "spec_for"]
