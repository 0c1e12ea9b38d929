"""How long the lab's node takes to start, against the control plane alone, and the operator's Pod on it.

`stackops lab up` (etcd + kube-apiserver) and `stackops lab up --node` (the same, then containerd, the kubelet,
kube-proxy, kube-controller-manager, kube-scheduler and the cluster DNS until the node is Ready), each `--rounds`
times in turn, each in a lab directory of its own taken down after; with `--operator`, also `up --node --operator`:
the operator image (as cached: an unchanged tree is not built again) loaded into the node and deploy/ installed with
it, until its Pod is Ready. The binaries are the cached ones (`stackops lab prepare --node` builds them first when
missing, and that build is timed on its own). Prints the median, minimum and maximum of each, and the node's
median against the control plane's: what a node adds to `up`.

Run as root from a checkout: `.venv/bin/python bench/lab_node.py [--rounds 3] [--operator]`. No other lab node may
run on the machine (one at a time). On the 2-core development machine, 3 rounds, binaries and image cached: the
control plane 5.0 s (4.4-5.6), with the node Ready 27.9 s (19.0-28.0; 5.6x), with the operator's Pod Ready 36.3 s
(35.9-38.8; 7.3x). The first time, `prepare --node` builds every binary in one pass: about 7 minutes.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STACKOPS = Path(sys.executable).with_name("stackops")


def timed(*args: str, lab_dir: Path | None = None) -> float:
    """Seconds `stackops lab [--dir D] ARGS` took; its output goes away unless it fails."""
    command = [str(STACKOPS), "lab", *(["--dir", str(lab_dir)] if lab_dir else []), *args]
    started = time.monotonic()
    env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}  # the lab's own control plane
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    took = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return took


def round_of(variant: list[str], scratch: Path, index: int) -> float:
    lab_dir = scratch / f"lab-{index}-{'-'.join(a.strip('-') for a in variant) or 'plain'}"
    try:
        return timed("up", *variant, lab_dir=lab_dir)
    finally:
        timed("down", lab_dir=lab_dir)


def line(name: str, figures: list[float], against: float | None = None) -> str:
    median = statistics.median(figures)
    ratio = f"  {median / against:5.2f}× the control plane" if against else ""
    return f"{name:<28} median {median:6.1f} s  min {min(figures):6.1f} s  max {max(figures):6.1f} s{ratio}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--operator", action="store_true", help="also `up --node --operator` (the operator's Pod)")
    args = parser.parse_args()
    prepare = timed("prepare", "--node")
    print(f"stackops lab prepare --node {prepare:6.1f} s (the cached binaries checked; minutes when it builds)")
    variants = {"up (control plane)": [], "up --node": ["--node"]}
    if args.operator:
        variants["up --node --operator"] = ["--node", "--operator"]
    figures: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="bench-lab-node-") as scratch:
        for index in range(args.rounds):
            for name, variant in variants.items():  # in turn, so that a busy moment weighs on every variant
                figures[name].append(round_of(variant, Path(scratch), index))
    plain = statistics.median(figures["up (control plane)"])
    for name, values in figures.items():
        print(line(name, values, None if name == "up (control plane)" else plain))
    return 0


if __name__ == "__main__":
    sys.exit(main())
