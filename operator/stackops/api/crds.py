"""CustomResourceDefinitions generated from the pydantic models.

pydantic's JSON schema is turned into a Kubernetes *structural* OpenAPI v3 schema: references inlined, titles
dropped, ``anyOf [X, null]`` collapsed to ``X``, defaults stripped of nulls, int-or-string marked the way the API
server wants it. Everything the API server can check by itself (enums, patterns, bounds, required fields,
defaults) is in the schema; cross-field rules live in the models' validators and surface as ``Stalled``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .common import GROUP, PAUSED_ANNOTATION, VERSION
from .kinds import KINDS, Kind

# Keywords a structural schema may carry (apiextensions.k8s.io/v1 JSONSchemaProps), minus the ones we never use.
_KEEP = {
    "type", "description", "properties", "required", "items", "additionalProperties", "enum", "pattern",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems",
    "maxItems", "minProperties", "maxProperties", "uniqueItems", "default", "format", "anyOf", "nullable",
    "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
}


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline $refs and normalise one schema node (recursively)."""
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").split("/")[-1]]
        node = {**target, **node}  # siblings (description, default) override the referenced definition
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**_resolve(node.pop("allOf")[0], defs), **node}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) == 1:
            del node["anyOf"]
            node = {**_resolve(branches[0], defs), **node}
        else:
            node["anyOf"] = branches
    if node.get("x-kubernetes-int-or-string"):
        # The only anyOf a structural schema allows: types inside, nothing else.
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        node.pop("type", None)
    if "patternProperties" in node and "additionalProperties" not in node:
        # A map with a key pattern: Kubernetes has no key patterns (1.20), so the value schema is kept and the key
        # rule is left to the model (→ Stalled/InvalidSpec).
        (value_schema,) = node.pop("patternProperties").values()
        node["additionalProperties"] = value_schema
    if "default" in node:
        if node["default"] is None or node["default"] == "":
            del node["default"]  # 1.20 rejects an empty-string default as "null"
        else:
            node["default"] = _strip_nulls(node["default"])
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    if node.get("properties") is not None or node.get("additionalProperties") not in (None, False):
        node.setdefault("type", "object")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _KEEP:
            continue
        if key == "properties":
            out[key] = {name: _resolve(prop, defs) for name, prop in value.items()}
        elif key in ("items", "anyOf"):
            out[key] = _resolve(value, defs)
        elif key == "additionalProperties":
            if value is False:
                continue  # unknown fields are pruned by the API server anyway
            out[key] = _resolve(value, defs)
        elif key == "description":
            out[key] = " ".join(value.split())
        else:
            out[key] = value
    if out.get("type") == "object" and "additionalProperties" in out and "properties" in out:
        del out["additionalProperties"]
    return out


def openapi_schema(model: type) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _resolve(raw, defs)



def _without_defaults(schema: Any) -> Any:
    """Status is written only by the operator: defaults there would only invent values it did not observe."""
    if isinstance(schema, list):
        return [_without_defaults(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {k: (v if k == "enum" else _without_defaults(v)) for k, v in schema.items() if k != "default"}


def crd(kind: Kind) -> dict[str, Any]:
    spec_schema = openapi_schema(kind.spec)
    spec_schema["description"] = " ".join((kind.spec.__doc__ or "").split())
    status_schema = _without_defaults(openapi_schema(kind.status))
    status_schema["description"] = " ".join((kind.status.__doc__ or "").split())
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.crd_name, "labels": {"app.kubernetes.io/part-of": "stackops"}},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": ["stackops"],
            },
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [c.to_crd() for c in kind.columns],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": f"{kind.description} Pause with the annotation `{PAUSED_ANNOTATION}: \"true\"`.",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec_schema,
                        "status": status_schema,
                    },
                }},
            }],
        },
    }


def peering_crd(*, namespaced: bool = False) -> dict[str, Any]:
    """kopf's peering resource, so that two operator replicas never both act (named peering): cluster-scoped
    ClusterKopfPeering for the operator that watches every namespace, KopfPeering (one in each watched namespace)
    for the one started with `--namespace` (deploy/namespaced/)."""
    kind = "KopfPeering" if namespaced else "ClusterKopfPeering"
    singular = kind.lower()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{singular}s.kopf.dev", "labels": {"app.kubernetes.io/part-of": "stackops"}},
        "spec": {
            "group": "kopf.dev",
            "names": {"kind": kind, "plural": f"{singular}s", "singular": singular},
            "scope": "Namespaced" if namespaced else "Cluster",
            "versions": [{
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    },
                }},
            }],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    """File name → CRD, for every kind and kopf's two peering resources."""
    files = {f"{GROUP}_{k.plural}.yaml": crd(k) for k in KINDS}
    files["kopf.dev_clusterkopfpeerings.yaml"] = peering_crd()
    files["kopf.dev_kopfpeerings.yaml"] = peering_crd(namespaced=True)
    return files


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # YAML reads U+0085, U+2028 and U+2029 as line breaks, and PyYAML would write them raw into a folded scalar:
    # a string holding one (a pattern that refuses them) is double-quoted instead, where they read \N, \L, \P.
    style = '"' if any(char in data for char in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_NoAliasDumper.add_representer(str, _string)


def render(document: dict[str, Any]) -> str:
    header = "# Generated by `stackops crds` from operator/stackops/api; do not edit.\n"
    return header + yaml.dump(document, Dumper=_NoAliasDumper, sort_keys=False, width=120, allow_unicode=True)


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in all_crds().items():
        path = directory / name
        path.write_text(render(document))
        written.append(path)
    return written


def stale(directory: Path) -> list[str]:
    """Files in `directory` that differ from what the models generate (or are missing or extra)."""
    expected = {name: render(doc) for name, doc in all_crds().items()}
    present = {p.name for p in directory.glob("*.yaml")} if directory.is_dir() else set()
    problems = [f"missing {n}" for n in sorted(set(expected) - present)]
    problems += [f"unexpected {n}" for n in sorted(present - set(expected))]
    problems += [f"stale {n}" for n in sorted(set(expected) & present)
                 if (directory / n).read_text() != expected[n]]
    return problems
