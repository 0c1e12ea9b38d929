"""Compatibility shim: what it held moved to lab/stackops_lab/rollout.py. Kept only for
tests/integration/test_pooled_connections.py (uncommitted work of another change): remove it once that test imports
stackops_lab.rollout."""
from stackops_lab.rollout import SECRET, spec_for

__all__ = ["SECRET", "spec_for"]
