"""Reconcilers, one per kind, behind the engine in `base`."""
from __future__ import annotations

from typing import Any

from .base import Reconciler


def default_reconcilers(ssh_pool: object | None = None, cloudstack_pool: object | None = None,
                        xen_poll_seconds: float = 1.0, local_builds: object | None = None,
                        maintenance_locks: Any = None, **rollout: Any) -> dict[str, Reconciler]:
    """The reconciler of every kind whose driver pools are given: KvmHost, XenPool and CloudStackRelease need the
    SSH pool, SystemVMTemplate the CloudStack pool (the operator and `stackops plan` give both).
    `rollout` tunes the SystemVMTemplate rollout (pass_seconds, poll_seconds, retry_backoff);
    `xen_poll_seconds` how often XenPool changes are polled; `local_builds` (a cloudstackrelease.isolation.LocalBuilds)
    lets CloudStackReleases build in the operator's container, None refuses them; `maintenance_locks` (namespace →
    drivers.maintenance_lock.MaintenanceLocks) lets KvmHost maintenance take its group's lock, None makes it wait."""
    reconcilers: dict[str, Reconciler] = {}
    if ssh_pool is not None:
        from .kvmhost import KvmHostReconciler
        from .xenpool import XenPoolReconciler

        reconcilers["XenPool"] = XenPoolReconciler(ssh_pool, cloudstack_pool, poll_seconds=xen_poll_seconds)

        reconcilers["KvmHost"] = KvmHostReconciler(ssh_pool, cloudstack_pool,  # type: ignore[arg-type]
                                                     locks=maintenance_locks)
        from .cloudstackrelease import CloudStackReleaseReconciler

        reconcilers["CloudStackRelease"] = CloudStackReleaseReconciler(
            ssh_pool, local_builds)  # type: ignore[arg-type]
    if cloudstack_pool is not None:
        from .systemvmtemplate import SystemVMTemplateReconciler

        reconcilers["SystemVMTemplate"] = SystemVMTemplateReconciler(cloudstack_pool, **rollout)  # type: ignore[arg-type]
    return reconcilers
