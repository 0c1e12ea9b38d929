"""Run the GitOps health checks in deploy/gitops/ the way Argo CD and Flux run them, without either.

- Argo CD: `deploy/gitops/argocd/stackops.io/<Kind>/health.lua` in a Lua 5.1 runtime (lupa's; Argo CD embeds
  gopher-lua, a Lua 5.1) with the object as the global `obj`: maps become tables, lists 1-based tables, null
  fields are absent, numbers are Lua numbers (Argo CD's `util/lua` conversion). The script returns a table
  `{status, message}`.
- Flux: the `healthCheckExprs` of the Kustomization in deploy/gitops/flux/, evaluated with cel-python the way
  fluxcd/pkg `runtime/cel` StatusEvaluator does (RFC-0009): an observedGeneration that differs from
  metadata.generation is InProgress without evaluating anything; then inProgress, failed, current in this
  order, the first that is true wins; none true → InProgress; an evaluation error → the status reader reports
  Unknown (Flux keeps waiting until the Kustomization's timeout).
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "deploy" / "gitops"
ARGOCD = GITOPS / "argocd"
ARGOCD_GROUP = ARGOCD / "stackops.io"
FLUX_SYNC = GITOPS / "flux" / "stackops-sync.yaml"
KINDS = ("XenPool", "KvmHost", "SystemVMTemplate", "CloudStackRelease")

# Argo CD health statuses ↔ kstatus ↔ Flux healthCheckExprs
ARGO_FOR_KSTATUS = {"Current": "Healthy", "InProgress": "Progressing", "Failed": "Degraded"}


# ------------------------------------------------------------------------------------------------- Argo CD (Lua)

@functools.lru_cache(maxsize=None)
def _lua_runtime() -> Any:
    from lupa import lua51

    return lua51.LuaRuntime(unpack_returned_tuples=True)


def _to_lua(lua: Any, value: Any) -> Any:
    if isinstance(value, dict):
        table = lua.table()
        for key, item in value.items():
            if item is not None:
                table[key] = _to_lua(lua, item)
        return table
    if isinstance(value, (list, tuple)):
        table = lua.table()
        for index, item in enumerate(value, start=1):
            table[index] = _to_lua(lua, item)
        return table
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return value
    return str(value)  # e.g. a datetime PyYAML parsed from a timestamp: a string in JSON


def health_script(kind: str) -> str:
    return (ARGOCD_GROUP / kind / "health.lua").read_text()


def argo_health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """What Argo CD's health assessment gets from the kind's health.lua for `obj`: {status, message}."""
    lua = _lua_runtime()
    lua.globals().obj = _to_lua(lua, obj)
    try:
        result = lua.execute(health_script(kind))
    finally:
        lua.globals().obj = None
    assert result is not None, f"{kind}/health.lua returned nothing"
    return {"status": str(result["status"]), "message": str(result["message"] or "")}


# ------------------------------------------------------------------------------------------------- Flux (CEL)

def flux_documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(FLUX_SYNC.read_text()) if isinstance(d, dict)]


def health_check_exprs() -> dict[str, dict[str, str]]:
    """kind → its healthCheckExprs entry, from the Kustomization that applies the stackops objects."""
    found: dict[str, dict[str, str]] = {}
    for document in flux_documents():
        for entry in (document.get("spec") or {}).get("healthCheckExprs") or []:
            assert entry["kind"] not in found, f"two healthCheckExprs for {entry['kind']}"
            found[entry["kind"]] = entry
    return found


_STRINGS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_ROOTS = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\s*[.\[]")
_BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|filter|map)\(\s*(\w+)\s*,")


class CELError(Exception):
    pass


@functools.lru_cache(maxsize=None)
def _program(expression: str) -> Any:
    import celpy

    environment = celpy.Environment()
    return environment.program(environment.compile(expression))


def activation_of(obj: dict[str, Any]) -> dict[str, Any]:
    import celpy

    return {key: celpy.json_to_cel(value) for key, value in obj.items() if value is not None}


def evaluate(expression: str, obj: dict[str, Any], activation: dict[str, Any] | None = None) -> bool:
    """One CEL expression over the object, its top-level fields as variables (fluxcd/pkg runtime/cel: parsed,
    not type-checked). A top-level field the object lacks is an error in cel-go even under has() ("no such
    attribute"); cel-python's has() would say false, so that case is raised here first."""
    import celpy

    text = _STRINGS.sub("''", expression)
    bound = set(_BOUND.findall(text))
    missing = sorted({name for name in _ROOTS.findall(text) if name not in bound and name not in obj})
    if missing:
        raise CELError(f"no such attribute: {', '.join(missing)}")
    try:
        value = _program(expression).evaluate(activation if activation is not None else activation_of(obj))
    except celpy.CELEvalError as error:
        raise CELError(str(error)) from None
    if not isinstance(value, celpy.celtypes.BoolType):
        raise CELError(f"{expression!r} gave {value!r}, not a bool")
    return bool(value)


def flux_status(kind: str, obj: dict[str, Any]) -> str:
    """The status Flux's kustomize-controller computes for `obj` with the kind's healthCheckExprs:
    Current, InProgress, Failed or Unknown."""
    check = health_check_exprs()[kind]
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    observed = status.get("observedGeneration")
    generation = (obj.get("metadata") or {}).get("generation")
    if observed is not None and generation is not None and observed != generation:
        return "InProgress"
    activation = activation_of(obj)
    for key, result in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        expression = check.get(key)
        if not expression:
            continue
        try:
            if evaluate(expression, obj, activation):
                return result
        except CELError:
            return "Unknown"
    return "InProgress"
