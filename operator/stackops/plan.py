"""`stackops plan -f …`: what the operator would change on the live infrastructure, without a cluster.

For a GitOps pull request: every resource of the four kinds in the files is validated through the models, its
Secrets are taken from Secret manifests in the same files or from the environment (plan_secrets.py), its ConfigMaps
from ConfigMap manifests in the files (plan_configmaps.py), and its reconciler makes one pass with
`managementPolicy` forced to `Observe` — the operator's own observe and plan code, which reads the infrastructure
and changes nothing — and reports what it would do.

Exit codes: 0 nothing would change, 2 changes are pending, 1 an error (an invalid manifest, missing credentials,
unreachable infrastructure, or a spec the operator would refuse: `Stalled`).

Errors name the file, document, field and line, and never quote a manifest: the files hold Secrets
(plan_manifests.py).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

from pydantic import BaseModel, ValidationError

from . import status as st
from .api.common import API_VERSION
from .api.kinds import BY_KIND, Kind
from .api.references import needed_config_maps, needed_secrets
from .api.validation import field_errors
from .drivers.configmaps import ConfigMapError
from .drivers.secrets import SecretError
from .plan_configmaps import ManifestConfigMaps
from .plan_manifests import Manifest, ManifestError, read
from .plan_secrets import ManifestSecrets
from .reconcile.base import Action, Context, ReconcileError, Reconciler

UNCHANGED, CHANGES, DRIFT, IN_PROGRESS, ERROR = "unchanged", "changes", "drift", "in-progress", "error"
DEFAULT_NAMESPACE = "default"
SYMBOLS = {"add": "+", "remove": "-", "change": "~"}  # what each action declares it does (Action.operation)
log = logging.getLogger("stackops.plan")


@dataclass
class Resource:
    file: Path
    kind: Kind
    namespace: str
    name: str
    document: dict[str, Any]
    manifest: Manifest | None = None  # where it is in the file (None: built by a caller, not read from a file)

    @property
    def title(self) -> str:
        return f"{self.kind.kind} {self.namespace}/{self.name}"

    @property
    def where(self) -> str:
        return self.manifest.where if self.manifest is not None else str(self.file)


@dataclass(frozen=True)
class Change:
    """One change a plan shows: the action's record (`Action.record`) and what the action declares it does."""

    record: dict[str, Any]  # {"description", "disruptive"}
    operation: str  # "add", "remove" or "change"

    @classmethod
    def of(cls, action: Action) -> "Change":
        return cls(action.record(), action.operation)

    @property
    def symbol(self) -> str:
        """`+` adds, `-` removes, `~` changes."""
        return SYMBOLS[self.operation]


@dataclass
class Preview:
    """One resource's plan: what would change, or why it cannot be planned."""

    resource: Resource
    result: str
    changes: list[Change] = field(default_factory=list)
    reason: str = ""
    message: str = ""
    pending: list[str] = field(default_factory=list)  # domain conditions not True yet: what follows the changes

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.resource.kind.kind, "namespace": self.resource.namespace, "name": self.resource.name,
                "file": str(self.resource.file), "result": self.result,
                "changes": [change.record for change in self.changes],
                "reason": st.plain(self.reason), "message": self.message, "pending": self.pending}


def documents(paths: list[Path]) -> Iterator[Manifest]:
    """The mappings among the files' documents (ManifestError names a document that does not parse)."""
    for manifest in read(paths):
        if isinstance(manifest.document, dict):
            yield manifest


def invalid_spec(error: ValidationError, manifest: Manifest | None) -> str:
    """`spec.members[0].address (line 12): String should match pattern …; …` — each field with its line in the
    file (the model's messages name fields and rules; the input is never included)."""
    parts: list[str] = []
    for found in field_errors(error):
        line = manifest.line(list(found.keys)) if manifest is not None else None
        part = f"{found.path}{f' (line {line})' if line else ''}: {found.message}"
        if part not in parts:
            parts.append(part)
    return "; ".join(parts)


def condition(conditions: list[Any], type_: str) -> Any:
    return next((c for c in conditions if c.type == type_), None)


async def preview(reconciler: Reconciler, resource: Resource, spec: BaseModel, secrets: ManifestSecrets,
                  timeout: float, config_maps: ManifestConfigMaps | None = None) -> Preview:
    """One pass under Observe: the drift it reports is what a pass under Manage would change."""
    elsewhere = reconciler.not_observable_here(spec)
    if elsewhere is not None:
        return Preview(resource, ERROR, reason=elsewhere[0], message=elsewhere[1])
    try:
        values = secrets.read(resource.namespace, list(needed_secrets(spec)))
        maps = (config_maps or ManifestConfigMaps()).read(resource.namespace, list(needed_config_maps(spec)))
    except (SecretError, ConfigMapError) as error:
        return Preview(resource, ERROR, reason=error.reason, message=str(error))
    observe = spec.model_copy(update={"management_policy": "Observe"})
    ctx = Context(namespace=resource.namespace, name=resource.name,
                  generation=int((resource.document.get("metadata") or {}).get("generation") or 1), spec=observe,
                  status=dict(resource.document.get("status") or {}), secrets=values,
                  event=lambda *_: None, logger=log, config_maps=maps)
    try:
        outcome = await asyncio.wait_for(reconciler.reconcile(ctx), timeout)
    except ReconcileError as error:
        return Preview(resource, ERROR, reason=error.reason, message=str(error))
    except asyncio.TimeoutError:
        return Preview(resource, ERROR, reason="Timeout", message=f"no answer within {timeout:.0f}s")
    except Exception as error:  # a bug must not hide the other resources' plans
        log.debug("planning %s failed", resource.title, exc_info=True)
        return Preview(resource, ERROR, reason=st.Reason.INTERNAL_ERROR, message=f"{type(error).__name__}: {error}")
    changes = [Change.of(action) for action in outcome.drift or []]
    stalled = condition(outcome.conditions, st.ConditionType.STALLED)
    reconciling = condition(outcome.conditions, st.ConditionType.RECONCILING)
    ready = condition(outcome.conditions, st.ConditionType.READY)
    if stalled is not None and stalled.status == "True":
        return Preview(resource, ERROR, changes, stalled.reason, stalled.message)
    reachable = condition(outcome.conditions, st.ConditionType.REACHABLE)
    if reachable is not None and reachable.status == "False":  # e.g. a pool whose master does not answer
        return Preview(resource, ERROR, changes, reachable.reason, reachable.message)
    reason, message = (ready.reason, ready.message) if ready is not None else ("", "")
    pending = [f"{c.type}: {c.reason}" + (f" ({c.message})" if c.message else "") for c in outcome.conditions
               if c.type not in st.KSTATUS and c.reason.startswith("Waiting")]
    pending += reconciler.later_stages(outcome.conditions)
    if changes and spec.management_policy == "Observe":  # nothing follows: the operator will not act
        return Preview(resource, DRIFT, changes, reason, message)
    if changes:
        return Preview(resource, CHANGES, changes, reason, message, pending)
    if reconciling is not None and reconciling.status == "True":
        return Preview(resource, IN_PROGRESS, [], reconciling.reason, reconciling.message, pending)
    return Preview(resource, UNCHANGED, [], reason, message, pending)


def collect(paths: list[Path], default_namespace: str) -> tuple[list[Resource | Preview], ManifestSecrets,
                                                                ManifestConfigMaps]:
    """The resources of the four kinds (or an invalid-manifest Preview in their place), the Secrets and the
    ConfigMaps."""
    found: list[Resource | Preview] = []
    secrets, config_maps = ManifestSecrets(), ManifestConfigMaps()
    for manifest in documents(paths):
        document = manifest.document
        metadata = document.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        namespace = str(metadata.get("namespace") or default_namespace)
        if document.get("apiVersion") == "v1" and document.get("kind") == "Secret":
            secrets.add(namespace, document, manifest)
            continue
        if document.get("apiVersion") == "v1" and document.get("kind") == "ConfigMap":
            config_maps.add(namespace, document, manifest)
            continue
        kind = BY_KIND.get(str(document.get("kind")))
        if kind is None or document.get("apiVersion") != API_VERSION:
            continue  # namespaces and other manifests are not planned
        found.append(Resource(manifest.file, kind, namespace, str(metadata.get("name") or "?"), document,
                              manifest))
    return found, secrets, config_maps


async def plan_all(resources: list[Resource | Preview], secrets: ManifestSecrets,
                   reconcilers: dict[str, Reconciler], timeout: float, concurrency: int = 16,
                   config_maps: ManifestConfigMaps | None = None) -> list[Preview]:
    limit = asyncio.Semaphore(concurrency)

    async def one(item: Resource | Preview) -> Preview:
        if isinstance(item, Preview):
            return item
        try:
            spec = item.kind.spec.model_validate(item.document.get("spec") or {})
        except ValidationError as error:
            return Preview(item, ERROR, reason=st.Reason.INVALID_SPEC, message=invalid_spec(error, item.manifest))
        async with limit:
            return await preview(reconcilers[item.kind.kind], item, spec, secrets, timeout, config_maps)

    return list(await asyncio.gather(*(one(item) for item in resources)))


def render_text(previews: list[Preview], out: IO[str]) -> None:
    for item in previews:
        where = f"({item.resource.where if item.result == ERROR else item.resource.file})"
        if item.result == UNCHANGED:
            print(f"{item.resource.title} {where}: no changes", file=out)
        elif item.result == ERROR:
            print(f"{item.resource.title} {where}: cannot plan: {item.reason}: {item.message}", file=out)
        elif item.result == IN_PROGRESS:
            print(f"{item.resource.title} {where}: no new changes; in progress: {item.reason}: {item.message}",
                  file=out)
        else:
            count = len(item.changes)
            noun = "change" if count == 1 else "changes"
            heading = (f"{count} {noun} left alone (managementPolicy: Observe)" if item.result == DRIFT
                       else f"{count} {noun}")
            print(f"{item.resource.title} {where}: {heading}", file=out)
            for change in item.changes:
                text = str(change.record.get("description", ""))
                mark = " (disruptive)" if change.record.get("disruptive") else ""
                print(f"  {change.symbol} {text}{mark}", file=out)
            for line in item.pending:
                print(f"  then {line}", file=out)
    counts = {result: sum(1 for p in previews if p.result == result)
              for result in (CHANGES, UNCHANGED, DRIFT, IN_PROGRESS, ERROR)}
    parts = [f"{counts[CHANGES]} to change", f"{counts[UNCHANGED]} unchanged"]
    parts += [f"{counts[r]} {label}" for r, label in ((DRIFT, "observed with drift"), (IN_PROGRESS, "in progress"),
                                                     (ERROR, "with errors")) if counts[r]]
    noun = "resource" if len(previews) == 1 else "resources"
    print(f"{len(previews)} {noun}: " + ", ".join(parts), file=out)


def exit_code(previews: list[Preview]) -> int:
    if any(p.result == ERROR for p in previews):
        return 1
    return 2 if any(p.result in (CHANGES, IN_PROGRESS) for p in previews) else 0


def plan_files(paths: list[Path], out: IO[str], *, output: str = "text", timeout: float = 120.0,
               namespace: str = DEFAULT_NAMESPACE, environ: Mapping[str, str] | None = None,
               reconcilers: dict[str, Reconciler] | None = None) -> int:
    """Plan every resource in `paths`; returns the exit code. `reconcilers` replaces the real ones (tests)."""
    try:
        resources, secrets, config_maps = collect(paths, namespace)
    except (OSError, ManifestError) as error:
        print(f"stackops plan: cannot read the manifests: {error}", file=out)
        return 1
    secrets.environ = dict(os.environ if environ is None else environ)
    previews = asyncio.run(_plan(resources, secrets, config_maps, reconcilers, timeout))
    if output == "json":
        json.dump({"resources": [p.to_json() for p in previews], "exitCode": exit_code(previews)}, out, indent=2)
        out.write("\n")
    else:
        render_text(previews, out)
    return exit_code(previews)


async def _plan(resources: list[Resource | Preview], secrets: ManifestSecrets, config_maps: ManifestConfigMaps,
                reconcilers: dict[str, Reconciler] | None, timeout: float) -> list[Preview]:
    if reconcilers is not None:
        return await plan_all(resources, secrets, reconcilers, timeout, config_maps=config_maps)
    from .drivers.cloudstack import CloudStackPool
    from .drivers.ssh import SSHPool
    from .reconcile import default_reconcilers

    ssh, cloudstack = SSHPool(), CloudStackPool(per_endpoint=8, poll_interval=1.0)
    try:
        return await plan_all(resources, secrets, default_reconcilers(ssh, cloudstack), timeout,
                              config_maps=config_maps)
    finally:
        await cloudstack.close()
        ssh.close_all()
