"""`stackops plan -f …`: what the operator would change, without a cluster.

Today it parses every manifest through the models (the same validation the operator applies) and reports each
resource's plan where the kind's reconciler can compute one. Exit codes: 0 nothing would change, 2 changes are
pending, 1 an error (invalid manifest, or a kind that cannot be planned yet).
"""
from __future__ import annotations

from pathlib import Path
from typing import IO, Any, Iterator

import yaml
from pydantic import ValidationError

from .api.common import API_VERSION
from .api.kinds import BY_KIND
from .handlers.resources import format_validation_error
from .reconcile import default_reconcilers
from .reconcile.base import PlannedReconciler


def manifests(paths: list[Path]) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")) if path.is_dir() else [path]
        for file in files:
            for document in yaml.safe_load_all(file.read_text()):
                if isinstance(document, dict):
                    yield file, document


def plan_files(paths: list[Path], out: IO[str]) -> int:
    reconcilers = default_reconcilers()
    errors = pending = 0
    for file, document in manifests(paths):
        kind = BY_KIND.get(str(document.get("kind")))
        if kind is None or document.get("apiVersion") != API_VERSION:
            continue  # Secrets and other manifests are inputs, not plans
        name = f"{kind.kind}/{(document.get('metadata') or {}).get('name', '?')}"
        try:
            kind.spec.model_validate(document.get("spec") or {})
        except ValidationError as error:
            print(f"{name} ({file}): invalid: {format_validation_error(error)}", file=out)
            errors += 1
            continue
        if not isinstance(reconcilers[kind.kind], PlannedReconciler):
            print(f"{name} ({file}): valid; cannot plan: this version has no {kind.kind} reconciler yet", file=out)
            errors += 1
            continue
        print(f"{name} ({file}): planning against live infrastructure is not wired into this command yet", file=out)
        errors += 1
    if errors:
        return 1
    return 2 if pending else 0
