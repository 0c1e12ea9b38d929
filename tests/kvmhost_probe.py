"""Compatibility shim: this helper moved to tests/support/kvmhost_probe.py. Kept only for
tests/unit/test_kvmhost_guard.py (uncommitted work of another change): remove it once that test imports
support.kvmhost_probe."""
from support.kvmhost_probe import probe_output

__all__ = ["probe_output"]
