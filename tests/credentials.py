"""Compatibility shim: this helper moved to tests/support/credentials.py. Kept only for
tests/unit/test_kvmhost_guard.py (uncommitted work of another change): remove it once that test imports
support.credentials."""
from support.credentials import secret

__all__ = ["secret"]
