"""kopf settings for production: our own annotation prefix, a named peering, watch timeouts, Events policy."""
from __future__ import annotations

import logging
from typing import Any

import kopf

from ..api.common import GROUP, PAUSED_ANNOTATION

PEERING_NAME = "stackops"
FINALIZER = f"{GROUP}/finalizer"


def is_paused(body: Any) -> bool:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(PAUSED_ANNOTATION, "")).strip().lower() == "true"


class PausableDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """The last-handled configuration, not moved while an object is paused.

    kopf stores the diff-base even when every handler is filtered out; for a paused object that would be a write
    to an object we promised not to touch. Not storing it also means that unpausing hands the handlers every spec
    change made during the pause.
    """

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        if is_paused(body):
            return
        super().store(body=body, patch=patch, essence=essence)


def configure(settings: kopf.OperatorSettings, *, standalone: bool = False, namespaced: bool = False) -> None:
    """Apply stackops' operator settings to kopf's settings object (`namespaced`: started with --namespace)."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = PausableDiffBaseStorage(prefix=GROUP, key="last-handled-configuration")

    # Events: kopf's own log lines become Events only from WARNING up; changes to infrastructure post their own
    # Normal Event each (see reconcile.base).
    settings.posting.level = logging.WARNING

    # Watches: the server closes a watch after server_timeout, the client gives up a little later, and a stream
    # silent for longer than the inactivity timeout (recent API servers send a bookmark every minute) is restarted.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.watching.inactivity_timeout = 90
    settings.watching.reconnect_backoff = 1.0

    # No cluster-wide scanning of CRDs and namespaces: the resources are known and the RBAC stays small. With
    # --namespace, kopf takes the names as they are (no globs) and watches each namespace on its own.
    settings.scanning.disabled = True

    settings.execution.max_workers = 20
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 15
    (getattr(settings, "queueing", None) or settings.batching).worker_limit = 100  # `queueing` since kopf 1.45

    # Named peering: two operator replicas never act at once. Cluster-wide (a ClusterKopfPeering) when the operator
    # watches every namespace; with --namespace, a KopfPeering in each watched namespace, so that the operator
    # needs no cluster-wide permission at all (kopf.run sets the same from its `clusterwide` argument).
    settings.peering.name = PEERING_NAME
    settings.peering.clusterwide = not namespaced
    settings.peering.mandatory = not standalone
    settings.peering.standalone = standalone
