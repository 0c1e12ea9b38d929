"""`make demo` as a user runs it, then `stackops lab down`: the operator runs as a Pod on the lab's node, from the
image the Dockerfile builds (`kubectl -n stackops-system get pods`: Running, 1/1), the demo rolls the lab XenServer
pool (restartAfter set to now: `kubectl get xenpools` shows each host's turn in MAINTENANCE, then Completed) and ends
with `kubectl get` of the four kinds showing their printer columns — two KVM lab hosts converged (Ready), a three-host
XenServer pool, the system VM template rollout, a CloudStack release built on a lab host — and taking the lab down
leaves no process and no file behind."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from stackops_lab import controlplane
from stackops_lab.operator import kubectl


REPO = Path(__file__).resolve().parents[2]


def lab_processes(lab_dir: Path) -> list[str]:
    """Command lines of running processes whose command line or environment mention the lab directory."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environment = (proc / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(lab_dir) in command or str(lab_dir) in environment:
            found.append(f"{proc.name}: {command}")
    return found


def maintenance_column(output: str) -> list[str]:
    """The MAINTENANCE values of the demo's roll: each `kubectl get xenpools -n …` table after the roll's own
    command (header, then one row; the column sliced at the header's offsets, as its values hold spaces)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("$ kubectl get xenpools -n "))
    values = []
    for index in range(start + 1, len(lines) - 1):
        header, row = lines[index], lines[index + 1]
        if header.startswith("$ "):
            break
        if header.startswith("NAME ") and "MAINTENANCE" in header:
            begin, end = header.index("MAINTENANCE"), header.index("READY")
            values.append(row[begin:end].strip())
    return values


def test_demo_then_lab_down(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env.update(STACKOPS_LAB_DIR=str(lab_dir), PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    try:
        demo = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=900)  # the image builds in it when the tree changed
        assert demo.returncode == 0, demo.stderr[-3000:]
        assert "$ kubectl patch xenpool lab-pool" in demo.stdout and "restartAfter" in demo.stdout, demo.stdout
        shown = maintenance_column(demo.stdout)
        assert shown[-1] == "Completed", shown
        turns = [value for value in shown if re.fullmatch(r"[0-2]/3 xen[1-3] [A-Za-z]+", value)]
        assert turns, f"no host's turn shown in MAINTENANCE: {shown}"
        header = next(line for line in demo.stdout.splitlines() if line.startswith("NAMESPACE"))
        for column in ("NAME", "MASTER", "HOSTS", "HA", "READY", "AGE"):
            assert column in header, demo.stdout
        for kind in ("xenpool.stackops.io/", "kvmhost.stackops.io/", "systemvmtemplate.stackops.io/",
                     "cloudstackrelease.stackops.io/"):
            assert kind in demo.stdout, demo.stdout
        assert "ADDRESS" in demo.stdout and "COMMIT" in demo.stdout and "PHASE" in demo.stdout
        line = next(line for line in demo.stdout.splitlines() if "cloudstackrelease.stackops.io/lab-4.8.0.16 " in line)
        assert "4.8.0.16" in line.split() and "Succeeded" in line.split(), line  # built on a lab host
        for host in ("lab-kvm1", "lab-kvm2"):
            line = next(line for line in demo.stdout.splitlines() if f"kvmhost.stackops.io/{host} " in line)
            assert "True" in line.split() and "10.250." in line, line
        # the final table's line, not `kubectl patch`'s "xenpool.stackops.io/lab-pool patched"
        line = [line for line in demo.stdout.splitlines() if "xenpool.stackops.io/lab-pool " in line][-1]
        assert "xen1" in line and "3" in line.split() and "True" in line.split(), line  # joined, HA on, Ready
        assert "Completed" in line.split(), line  # the roll, HA back on
        line = next(line for line in demo.stdout.splitlines() if "systemvmtemplate.stackops.io/systemvm-" in line)
        assert "4.19.1" in line and "200" in line, line  # the lab CloudStack's routers, in the rollout's columns
        pods = demo.stdout[demo.stdout.index("$ kubectl -n stackops-system get pods"):].splitlines()[1:3]
        assert pods[0].split()[:3] == ["NAME", "READY", "STATUS"], pods
        assert re.fullmatch(r"stackops-operator-[a-z0-9]+-[a-z0-9]+ +1/1 +Running +0 +.*", pods[1]), pods
        cluster = controlplane.running_cluster(lab_dir)
        assert cluster is not None
        after = kubectl(cluster.kubeconfig, "-n", "stackops-system", "get", "pods", "-o", "json").stdout
        assert [p["status"]["phase"] for p in json.loads(after)["items"]] == ["Running"], after  # it keeps running
    finally:
        down = subprocess.run([sys.executable, "-m", "stackops.cli", "lab", "down"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert lab_processes(lab_dir) == []
    assert not lab_dir.exists()
