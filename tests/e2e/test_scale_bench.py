"""bench/scale.py keeps working: a tiny run (5 KvmHosts on light lab hosts, 2 of each other kind) prints every
figure and leaves nothing behind.

The bench starts a control plane of its own (KUBECONFIG is removed from its environment): the session's operator
fixture, if it runs, holds the cluster's peering, which would pause the bench's operator.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from stackops_lab.lighthosts import SLOTS, claim_link, link_alias

REPO = Path(__file__).resolve().parents[2]


def test_scale_bench_prints_every_figure() -> None:
    claimed_before = {slot: link_alias(claim_link(slot)) for slot in range(SLOTS)}
    env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "operator"), str(REPO / "lab"),
                                                      env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "scale.py"), "--kvmhosts", "5", "--others", "2", "--resync", "30",
         "--idle-seconds", "5", "--settle-seconds", "2", "--latency-samples", "3", "--routers", "20",
         "--timeout", "120", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    figures = json.loads(result.stdout)

    assert figures["objects"] == {"KvmHost": 5, "XenPool": 2, "SystemVMTemplate": 2, "CloudStackRelease": 2}
    assert figures["convergence"]["seconds"] > 0
    assert set(figures["convergence"]["ready"]) == {"KvmHost", "XenPool", "SystemVMTemplate", "CloudStackRelease"}
    for phase in ("convergence", "resync", "massUpdate", "idle", "latency"):
        assert figures[phase]["operatorCpuSeconds"] >= 0, phase
        assert "operatorCpuPercent" in figures[phase], phase
    assert figures["resync"]["seconds"] > 0
    assert figures["resync"]["lagP50"] <= figures["resync"]["lagP95"] <= figures["resync"]["lagMax"]
    assert figures["latency"]["samples"] == 3
    assert 0 < figures["latency"]["p50"] <= figures["latency"]["p95"]
    assert figures["memory"]["peakRssMiB"] > 0

    # the light hosts are gone: no claim of ours left, no cell namespace of a slot that was free before
    for slot in range(SLOTS):
        if not claimed_before[slot]:
            assert not link_alias(claim_link(slot)), f"light-host slot {slot} left claimed"
            leftovers = [p.name for p in Path("/run/netns").glob(f"stackops-light{slot}-*")]
            assert not leftovers, leftovers
