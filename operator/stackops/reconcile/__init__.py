"""Reconcilers, one per kind, behind the engine in `base`."""
from __future__ import annotations

from ..api.kinds import KINDS
from .base import NotImplementedReconciler, Reconciler


def default_reconcilers(ssh_pool: object | None = None) -> dict[str, Reconciler]:
    """The reconciler of every kind. Kinds whose reconciler has not landed yet report
    `Ready=Unknown`/`ReconcilerNotImplemented`. Without an SSH pool (offline tools) KvmHost cannot be reconciled."""
    reconcilers: dict[str, Reconciler] = {kind.kind: NotImplementedReconciler(kind.kind) for kind in KINDS}
    if ssh_pool is not None:
        from .kvmhost import KvmHostReconciler

        reconcilers["KvmHost"] = KvmHostReconciler(ssh_pool)  # type: ignore[arg-type]
    return reconcilers
