"""Reconcilers, one per kind, behind the engine in `base`."""
from __future__ import annotations

from ..api.kinds import KINDS
from .base import NotImplementedReconciler, Reconciler


def default_reconcilers() -> dict[str, Reconciler]:
    """The reconciler of every kind. Kinds whose reconciler has not landed yet report
    `Ready=Unknown`/`ReconcilerNotImplemented`."""
    return {kind.kind: NotImplementedReconciler(kind.kind) for kind in KINDS}
