#!/usr/bin/env python3
"""Write (or, with --check, verify) deploy/gitops/argocd/argocd-cm-patch.yaml from the health checks in
deploy/gitops/argocd/stackops.io/<Kind>/health.lua: one `resource.customizations.health.stackops.io_<Kind>` key
per kind with the Lua inlined, as Argo CD reads it from its argocd-cm ConfigMap.

    python3 scripts/argocd-cm-patch.py          # regenerate after editing a health.lua
    python3 scripts/argocd-cm-patch.py --check  # exit 1 when the patch is out of date (as the tests do)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARGOCD = ROOT / "deploy" / "gitops" / "argocd"
PATCH = ARGOCD / "argocd-cm-patch.yaml"
GROUP = "stackops.io"

HEADER = """\
# Argo CD health checks for the stackops kinds, as keys of Argo CD's argocd-cm ConfigMap: merge it into yours
# (a kustomize patch of the Argo CD install, or `kubectl -n argocd patch configmap argocd-cm --patch-file …`).
# Generated from deploy/gitops/argocd/stackops.io/<Kind>/health.lua by scripts/argocd-cm-patch.py: edit the .lua
# files (their health_test.yaml cases run in tests/unit/test_gitops_health.py) and run the script again.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
"""


def render() -> str:
    parts = [HEADER]
    for script in sorted((ARGOCD / GROUP).glob("*/health.lua")):
        kind = script.parent.name
        lines = script.read_text().rstrip("\n").split("\n")
        parts.append(f"  resource.customizations.health.{GROUP}_{kind}: |\n")
        parts.extend(f"    {line}\n" if line else "\n" for line in lines)
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the patch differs from the .lua files")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not PATCH.exists() or PATCH.read_text() != text:
            print(f"{PATCH.relative_to(ROOT)} is out of date: run python3 scripts/argocd-cm-patch.py",
                  file=sys.stderr)
            return 1
        return 0
    PATCH.write_text(text)
    print(f"wrote {PATCH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
