"""`make demo`: the lab control plane, deploy/ installed, the operator running under its ServiceAccount, the
examples applied, and `kubectl get` of all four kinds.

The operator keeps running after the demo (edit the examples and watch); `stackops lab down` stops everything.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from . import controlplane
from .cli import COMPONENTS, OPTIONAL
from .operator import DEPLOY, kubectl

EXAMPLES = DEPLOY / "examples"
KINDS = "xenpools,kvmhosts,systemvmtemplates,cloudstackreleases"


def progress(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def wait_reconciled(kubeconfig: Path, timeout: float = 120) -> None:
    """Until every stackops object's status.observedGeneration matches its generation."""
    deadline = time.monotonic() + timeout
    while True:
        items = json.loads(kubectl(kubeconfig, "get", KINDS, "-A", "-o", "json").stdout)["items"]
        pending = [i["metadata"]["name"] for i in items
                   if (i.get("status") or {}).get("observedGeneration") != i["metadata"]["generation"]]
        if items and not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not reconciled after {timeout:.0f}s: {', '.join(pending)}")
        time.sleep(1)


def up() -> int:
    cluster = controlplane.up(None, progress, components=[*COMPONENTS, *OPTIONAL])
    kubeconfig = Path(cluster.kubeconfig)
    progress("applying deploy/examples/")
    kubectl(kubeconfig, "apply", "-f", str(EXAMPLES))
    wait_reconciled(kubeconfig)
    progress("every example is reconciled; stop everything with `stackops lab down` (or `make demo-down`)")
    progress(f"export KUBECONFIG={kubeconfig}")
    print(f"$ kubectl get {KINDS} -A", flush=True)
    os.execvp("kubectl", ["kubectl", f"--kubeconfig={kubeconfig}", "get", KINDS, "-A"])
    return 0  # not reached


def down() -> int:
    controlplane.down(None, progress, components=[*COMPONENTS, *OPTIONAL])
    return 0


def main(argv: list[str]) -> int:
    return down() if argv[:1] == ["down"] else up()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
