"""kopf wiring for the four kinds: thin handlers around the reconcile engine.

Each handler parses the spec through the kind's model, reads the referenced Secrets and ConfigMaps, runs the kind's
reconciler and writes status through the conditions helper. Paused objects are filtered out before any handler runs
(and their diff-base is not moved: see settings.PausableDiffBaseStorage), so the operator writes nothing to them.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError

from .. import metrics
from .. import status as st
from ..api.kinds import KINDS, Kind
from ..api.references import needed_config_maps, needed_secrets
from ..api.validation import format_validation_error
from ..drivers import kube
from ..drivers.configmaps import ConfigMapError, ConfigMapReader, read_config_maps
from ..drivers.holdings import Holdings
from ..drivers.secrets import SecretError, SecretReader
from ..reconcile.base import Context, Outcome, PartialApply, ReconcileError, Reconciler
from .resync import Resync, resync_in
from .settings import is_paused

SECRET_RETRY_SECONDS = 30.0
INTERNAL_RETRY_SECONDS = 60.0


@dataclass
class Deps:
    """What the handlers need from the outside world."""

    reconcilers: dict[str, Reconciler]
    secrets: SecretReader
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    custom_api: Any = None  # for status checkpoints written in the middle of a pass
    holdings: Holdings = field(default_factory=Holdings)  # the pooled connections each object holds
    config_maps: ConfigMapReader | None = None  # None: a spec referencing a ConfigMap gets ConfigMapUnreadable
    resync: Resync | None = None  # None: no resync (the scheduler needs custom_api to read objects afresh)

    def lock(self, uid: str) -> asyncio.Lock:
        return self.locks.setdefault(uid, asyncio.Lock())


def _not_paused(body: Any, **_: Any) -> bool:
    return not is_paused(body)


class StatusWriter:
    """Turns an outcome into a status patch, keeping kstatus' rules (observedGeneration, transition times)."""

    def __init__(self, kind: Kind, body: Any, patch: kopf.Patch):
        self.kind = kind
        self.body = body
        self.patch = patch
        self.previous = dict(body.get("status") or {})
        self.generation = int(body["metadata"].get("generation") or 0)

    def write(self, conditions: list[st.ConditionState], *, fields: dict[str, Any] | None = None,
              drift: list | None = None, applied: list | None = None) -> None:
        status = self.patch.status
        status["observedGeneration"] = self.generation
        status["conditions"] = st.merge_conditions(self.previous.get("conditions"), conditions, self.generation)
        status["lastReconcileTime"] = st.now()
        if drift is not None:
            status["drift"] = [a.record() for a in drift]
        if applied:
            status["lastApplied"] = [a.record() for a in applied]
        if fields:
            checked = self.kind.status.model_validate(fields)  # a bug in a reconciler must not corrupt status
            for key, value in checked.model_dump(by_alias=True, exclude_unset=True, mode="json").items():
                status[key] = value

    def write_outcome(self, outcome: Outcome) -> None:
        self.write(outcome.conditions, fields=outcome.fields, drift=outcome.drift, applied=outcome.applied)


def _checkpoint(kind: Kind, deps: Deps, meta: Any, writer: StatusWriter) -> Any:
    """Status fields patched at once (validated like every status write), and kept in the pass's view of status."""
    async def write(fields: dict[str, Any]) -> None:
        checked = kind.status.model_validate(fields).model_dump(by_alias=True, exclude_unset=True, mode="json")
        writer.previous.update(checked)
        if deps.custom_api is None:
            return
        await kube.call(deps.custom_api.patch_namespaced_custom_object_status, kind.group, kind.version,
                        meta["namespace"], kind.plural, meta["name"], {"status": checked})
    return write


def _post(body: Any) -> Any:
    def event(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=st.plain(reason), message=message)  # a reason enum member: its string
    return event


MAX_BACKOFF_SECONDS = 300.0


def backoff(delay: float, retry: int) -> float:
    """Exponential backoff from `delay`, capped: an unreachable host is not hammered."""
    return min(delay * (2 ** min(retry, 10)), MAX_BACKOFF_SECONDS)


async def reconcile_object(kind: Kind, deps: Deps, body: Any, patch: kopf.Patch, logger: Any,
                           retry: int = 0) -> None:
    """One pass over one object (a change or kopf's retry of one); raises kopf.TemporaryError when a retry can
    help. Counted and timed (stackops_reconciles_total, …: see metrics.py).

    One pass at a time per object, and the spec and generation are read once the pass holds the object's lock: a
    pass that waited for another sees what that one left, and never writes an older generation's status over
    it."""
    async with deps.lock(body["metadata"]["uid"]):
        body = await _fresh(kind, deps, body)
        if body is None or is_paused(body):
            return  # gone, or paused while this pass waited: kopf's `when=` looked before the wait
        await _held_pass(kind, deps, body, patch, logger, retry)


async def _fresh(kind: Kind, deps: Deps, body: Any) -> Any:
    """The object as the API server has it now, once the pass holds its lock: kopf hands a handler the body of
    the event that woke it, and a pass that waited for another (a resync) would otherwise plan from the status
    that one found — for multi-step work recorded in status (an HA dance, a roll, a host's maintenance) a step
    already taken. None: gone (or another object of that name) meanwhile. Without an API client (tests of the
    handlers alone), the body as given."""
    if deps.custom_api is None:
        return body
    meta = body["metadata"]
    try:
        found = await kube.call(deps.custom_api.get_namespaced_custom_object, kind.group, kind.version,
                                meta["namespace"], kind.plural, meta["name"])
    except Exception as error:
        if getattr(error, "status", None) == 404:
            return None
        raise kopf.TemporaryError(f"reading {kind.kind} {meta['namespace']}/{meta['name']} before its pass failed "
                                  f"({type(error).__name__})", delay=SECRET_RETRY_SECONDS) from None
    return found if (found.get("metadata") or {}).get("uid") == meta.get("uid") else None


async def resync_object(kind: Kind, namespace: str, name: str, uid: str, retry: int, *, deps: Deps,
                        settings: kopf.OperatorSettings) -> float | None:
    """A resync pass (handlers/resync.py): the object read afresh once the pass holds its lock, reconciled if it
    is still due (not reconciled meanwhile, not paused, not being deleted), its status patched. Returns the delay
    after which the object is to be looked at again when its status does not say (a retry the pass asks for, or
    the seconds until it is due), else None."""
    async with deps.lock(uid):
        try:
            body = await kube.call(deps.custom_api.get_namespaced_custom_object, kind.group, kind.version, namespace,
                                   kind.plural, name)
        except Exception as error:  # gone (its DELETED event forgets it), or the API server unreachable
            if getattr(error, "status", None) == 404:
                return None
            logging.getLogger(__name__).warning("resync of %s %s/%s: reading it failed (%s); trying again in %.0f s",
                                                kind.kind, namespace, name, type(error).__name__, SECRET_RETRY_SECONDS)
            return SECRET_RETRY_SECONDS
        wait = resync_in(body)
        if body["metadata"].get("uid") != uid or wait is None:
            return None  # another object of that name, paused or being deleted: its watch event forgot it
        if wait > 0:  # reconciled while this pass waited, or the wall clock went back: looked at again when due
            return wait
        patch = kopf.Patch()
        try:
            await _held_pass(kind, deps, body, patch, kopf.ObjectLogger(body=body, settings=settings), retry)
        except kopf.TemporaryError as error:
            return error.delay
        finally:
            if patch.get("status"):
                await kube.call(deps.custom_api.patch_namespaced_custom_object_status, kind.group, kind.version,
                                namespace, kind.plural, name, {"status": dict(patch["status"])})
        return None


async def _held_pass(kind: Kind, deps: Deps, body: Any, patch: kopf.Patch, logger: Any, retry: int) -> None:
    meta = body["metadata"]
    async with deps.holdings.held_by(meta["uid"]):  # what the pass does not use (any more) is released
        with metrics.METRICS.reconcile_pass(kind.kind, meta["namespace"], meta["name"]) as counted:
            counted.status = patch.status
            await _reconcile_pass(kind, deps, body, patch, logger, retry, counted)


async def _reconcile_pass(kind: Kind, deps: Deps, body: Any, patch: kopf.Patch, logger: Any, retry: int,
                          counted: metrics.ReconcilePass) -> None:
    writer = StatusWriter(kind, body, patch)
    meta = body["metadata"]
    try:
        spec = kind.spec.model_validate(dict(body.get("spec") or {}))
    except ValidationError as error:
        message = format_validation_error(error)
        writer.write(st.stalled(st.Reason.INVALID_SPEC, message), drift=[])
        counted.result = "invalid_spec"
        kopf.warn(body, reason=st.plain(st.Reason.INVALID_SPEC), message=message)
        return  # nothing to retry until the spec changes
    try:
        secrets = await deps.secrets.read(meta["namespace"], list(needed_secrets(spec)))
        config_maps = await read_config_maps(deps.config_maps, meta["namespace"], list(needed_config_maps(spec)))
    except (SecretError, ConfigMapError) as error:
        writer.write(st.progressing(error.reason, str(error)))
        counted.result = "secret_error"
        raise kopf.TemporaryError(str(error), delay=SECRET_RETRY_SECONDS) from None
    ctx = Context(namespace=meta["namespace"], name=meta["name"], generation=writer.generation, spec=spec,
                  status=writer.previous, secrets=secrets, event=_post(body), logger=logger,
                  checkpoint=_checkpoint(kind, deps, meta, writer), config_maps=config_maps)
    reconciler = deps.reconcilers[kind.kind]
    try:
        outcome = await reconciler.reconcile(ctx)
    except ReconcileError as error:
        applied = error.applied if isinstance(error, PartialApply) else []
        counted.result = "retry" if error.retry else "stalled"
        if error.retry:
            writer.write(st.progressing(error.reason, str(error)) + error.conditions, applied=applied)
            raise kopf.TemporaryError(str(error), delay=backoff(error.delay, retry)) from None
        writer.write(st.stalled(error.reason, str(error)) + error.conditions, applied=applied)
        return
    except Exception as error:  # a bug or an unexpected library failure: log it, keep status readable
        logger.exception("reconcile failed unexpectedly")
        message = f"internal error ({type(error).__name__}); see the operator log"
        writer.write(st.progressing(st.Reason.INTERNAL_ERROR, message))
        counted.result = "internal_error"
        raise kopf.TemporaryError(message, delay=INTERNAL_RETRY_SECONDS) from None
    writer.write_outcome(outcome)
    counted.result = metrics.outcome_result(outcome)
    if outcome.requeue_after:
        raise kopf.TemporaryError("not converged yet; checking again",
                                  delay=outcome.requeue_after)


async def finalize_object(kind: Kind, deps: Deps, body: Any, logger: Any) -> None:
    if is_paused(body):
        raise kopf.TemporaryError("paused: remove the stackops.io/paused annotation to let deletion finish", delay=60)
    try:
        spec = kind.spec.model_validate(dict(body.get("spec") or {}))
    except ValidationError:
        logger.warning("spec is invalid; deleting without touching infrastructure (as with deletionPolicy Orphan)")
        return
    if spec.management_policy == "Observe":  # read-only means read-only, deletion included
        logger.info("managementPolicy is Observe: deleting without touching infrastructure")
        return
    if spec.deletion_policy == "Orphan" and not deps.reconcilers[kind.kind].in_flight(body.get("status") or {}):
        return
    meta = body["metadata"]
    try:
        secrets = await deps.secrets.read(meta["namespace"], list(needed_secrets(spec)))
        config_maps = await read_config_maps(deps.config_maps, meta["namespace"], list(needed_config_maps(spec)))
    except (SecretError, ConfigMapError) as error:
        raise kopf.TemporaryError(f"deletionPolicy Delete needs its Secrets and ConfigMaps: {error}",
                                  delay=SECRET_RETRY_SECONDS)
    async with deps.lock(meta["uid"]), deps.holdings.held_by(meta["uid"]):
        body = await _fresh(kind, deps, body) or body
        writer = StatusWriter(kind, body, kopf.Patch())
        ctx = Context(namespace=meta["namespace"], name=meta["name"], generation=int(meta.get("generation") or 0),
                      spec=spec, status=writer.previous, secrets=secrets, event=_post(body), logger=logger,
                      config_maps=config_maps, checkpoint=_checkpoint(kind, deps, meta, writer))
        try:
            await deps.reconcilers[kind.kind].finalize(ctx)
        except ReconcileError as error:
            raise kopf.TemporaryError(f"{error.reason}: {error}", delay=error.delay) from None


def register_kind(registry: kopf.OperatorRegistry, kind: Kind, deps: Deps) -> None:
    resource = dict(group=kind.group, version=kind.version, plural=kind.plural)

    @kopf.on.resume(**resource, registry=registry, when=_not_paused, id="reconcile")
    @kopf.on.create(**resource, registry=registry, when=_not_paused, id="reconcile")
    @kopf.on.update(**resource, registry=registry, when=_not_paused, id="reconcile")
    async def on_change(body: Any, patch: kopf.Patch, logger: Any, retry: int, **_: Any) -> None:
        await reconcile_object(kind, deps, body, patch, logger, retry)

    if deps.resync is not None and getattr(deps.reconcilers[kind.kind], "resync", True):
        schedule = deps.resync

        @kopf.on.event(**resource, registry=registry, id="resync")
        async def on_event(type: str, body: Any, **_: Any) -> None:  # noqa: A002 (kopf's argument name)
            """Every watch event (the listing at start included) tells the scheduler when the object is due."""
            if type == "DELETED":
                schedule.forget(body["metadata"]["uid"])
            else:
                schedule.note(kind, body)

    @kopf.on.delete(**resource, registry=registry, id="finalize")
    async def on_delete(body: Any, logger: Any, **_: Any) -> None:
        await finalize_object(kind, deps, body, logger)
        async with deps.lock(body["metadata"]["uid"]):  # whatever the deletionPolicy, valid spec or not
            await deps.holdings.forget(body["metadata"]["uid"])
        metrics.METRICS.forget(kind.kind, body["metadata"]["namespace"], body["metadata"]["name"])


def register(registry: kopf.OperatorRegistry, deps: Deps) -> None:
    for kind in KINDS:
        register_kind(registry, kind, deps)


logging.getLogger(__name__).addHandler(logging.NullHandler())
