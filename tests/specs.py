"""Compatibility shim: this helper moved to tests/support/specs.py. Kept only for
tests/unit/test_kvmhost_guard.py (uncommitted work of another change): remove it once that test imports
support.specs."""
from support.specs import HOST_KEY

__all__ = ["HOST_KEY"]
