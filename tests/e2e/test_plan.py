"""`stackops plan` on deploy/examples/ against the lab, as a GitOps pull-request check runs it: on fresh lab
infrastructure it lists what the operator will do to each resource and exits 2; credentials may come from the
environment instead of Secret manifests; once the operator has converged the examples, it plans nothing and
exits 0; a change to the manifests shows up as exactly that change.

The lab: `stackops lab up --hosts 2 --cloudstack --routers 20 --xen --release --operator`, and
`stackops lab examples` (deploy/examples/ pointed at the lab: addresses, keys, endpoints)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from stackops_lab.controlplane import find_kubectl

REPO = Path(__file__).resolve().parents[2]
KINDS = "xenpools,kvmhosts,systemvmtemplates,cloudstackreleases"
EXPECTED_FRESH = {  # per resource, lines the plan must show on fresh lab infrastructure
    "XenPool stackops-demo/ams1-a": ["  + join host xen3", "  + enable pool HA on heartbeat SR nfs-pri with timeout 180s",
                                     "  ~ set the pool's vswitch controller to 10.10.0.5",
                                     "  + add CloudStack cluster lab-xen-pool"],
    "KvmHost stackops-demo/kvm01": ["  + create bridge cloudbr0", "  + create bond bond0 of eno49, eno50 on cloudbr0",
                                    "  + create VLAN bridge mgmt0 (VLAN 123)", "  + add address 10.20.0.11/24 to mgmt0",
                                    "  ~ restart libvirtd", "  then Registered: WaitingForConfiguration"],
    "SystemVMTemplate stackops-demo/systemvm-4.19.1": ["  + register template systemvm-kvm-4.19.1 (KVM) in zone lab-zone-1",
                                                       "  + register template systemvm-xenserver-4.19.1 (XenServer)",
                                                       "  then RolloutStages: once the templates are Ready"],
    "CloudStackRelease stackops-demo/cloudstack-4.8.0.16": ["  + build CloudStack 4.8.0.16 with #101, #102"],
}


class Lab:
    def __init__(self, directory: Path):
        self.env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        self.env.update(STACKOPS_LAB_DIR=str(directory), PATH=f"{Path(sys.executable).parent}:{self.env.get('PATH', '')}")
        self.kubeconfig = ""

    def stackops(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "stackops.cli", *args], cwd=REPO, env=env or self.env,
                              capture_output=True, text=True, timeout=timeout)

    def kubectl(self, *args: str) -> str:
        result = subprocess.run([str(find_kubectl()), f"--kubeconfig={self.kubeconfig}", *args], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout


def plan(lab: Lab, *paths: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = lab.stackops("plan", *(f"-f={p}" for p in paths), env=env)
    assert not result.stderr.strip() or result.returncode == 1, result.stderr  # nothing logged in a clean run
    return result.returncode, result.stdout


def sections(output: str) -> dict[str, list[str]]:
    """Resource title → its lines (heading first)."""
    found: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith("  "):
            assert current is not None, output
            found[current].append(line)
        elif " (" in line:
            current = line.split(" (", 1)[0]
            found[current] = [line]
    return found


def wait_converged(lab: Lab, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        items = json.loads(lab.kubectl("get", KINDS, "-A", "-o", "json"))["items"]
        ready = [any(c["type"] == "Ready" and c["status"] == "True" for c in (i.get("status") or {}).get("conditions", []))
                 and i["status"].get("observedGeneration") == i["metadata"]["generation"] for i in items]
        if len(items) == 4 and all(ready):
            return
        if time.monotonic() > deadline:
            summary = [(i["kind"], [(c["type"], c["status"], c["reason"]) for c in (i.get("status") or {}).get(
                "conditions", [])]) for i in items]
            raise AssertionError(f"not converged after {timeout:.0f}s: {summary}")
        time.sleep(2)


def test_plan_examples_against_the_lab(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab")
    examples = tmp_path / "examples"
    try:
        up = lab.stackops("lab", "up", "--hosts", "2", "--cloudstack", "--routers", "20", "--xen", "--release",
                          "--operator", timeout=600)
        assert up.returncode == 0, up.stderr[-3000:]
        lab.kubeconfig = up.stdout.strip().splitlines()[-1]
        written = lab.stackops("lab", "examples", "-o", str(examples))
        assert written.returncode == 0, written.stderr
        assert len(list(examples.glob("*.yaml"))) == len(list((REPO / "deploy" / "examples").glob("*.yaml")))

        # fresh infrastructure: every resource has changes
        code, output = plan(lab, examples)
        assert code == 2, output
        found = sections(output)
        assert set(found) == set(EXPECTED_FRESH), output
        for title, expected in EXPECTED_FRESH.items():
            for line in expected:
                assert any(got.startswith(line) for got in found[title][1:]), f"{title}: no {line!r} in\n{output}"
        assert "(disruptive)" in "\n".join(found["XenPool stackops-demo/ams1-a"])  # the join
        assert output.splitlines()[-1] == "4 resources: 4 to change, 0 unchanged"

        # the same plan with the credentials in the environment instead of Secret manifests (a CI job's secrets)
        bare = tmp_path / "bare"
        bare.mkdir()
        env = dict(lab.env)
        for path in examples.glob("*.yaml"):
            kept = []
            for document in yaml.safe_load_all(path.read_text()):
                if document and document.get("kind") == "Secret":
                    for key, value in document.get("stringData", {}).items():
                        name = "".join(c if c.isalnum() else "_" for c in f"{document['metadata']['name']}_{key}".upper())
                        env[f"STACKOPS_SECRET_{name}"] = value
                    allowed = (document["metadata"].get("annotations") or {}).get("stackops.io/allowed-destinations")
                    if allowed:  # where the job lets each credential go: its own variable, never the manifests'
                        name = "".join(c if c.isalnum() else "_" for c in document["metadata"]["name"].upper())
                        env[f"STACKOPS_DESTINATIONS_{name}"] = allowed
                elif document:
                    kept.append(document)
            (bare / path.name).write_text(yaml.safe_dump_all(kept, sort_keys=False))
        code, from_env = plan(lab, bare, env=env)
        assert code == 2, from_env
        assert from_env.replace(str(bare), str(examples)) == output
        unlisted = {k: v for k, v in env.items() if not k.startswith("STACKOPS_DESTINATIONS_")}
        code, refused = plan(lab, bare, env=unlisted)  # the manifests' lists do not count for the job's credentials
        assert code == 1 and "CredentialNotAllowed: Secret stackops-demo/xenpool-ams1-a-root" in refused, refused
        code, missing = plan(lab, bare)
        assert code == 1 and "STACKOPS_SECRET_KVM01_SSH_SSH_PRIVATEKEY in the environment" in missing, missing

        # the operator converges the examples; then nothing is left to do
        lab.kubectl("apply", "-f", str(examples))
        wait_converged(lab)
        code, output = plan(lab, examples)
        assert code == 0, output
        assert output.count(": no changes") == 4 and output.splitlines()[-1] == "4 resources: 0 to change, 4 unchanged"

        # a pull request changing the HA timeout shows exactly that change
        pool = examples / "xenpool.yaml"
        pool.write_text(pool.read_text().replace("timeoutSeconds: 180", "timeoutSeconds: 120"))
        code, output = plan(lab, examples)
        assert code == 2, output
        assert sections(output)["XenPool stackops-demo/ams1-a"][1:] == [
            "  - disable pool HA (to apply timeout 180 → 120) (disruptive)",
            "  + enable pool HA on heartbeat SR nfs-pri with timeout 120s (timeout 180 → 120)"], output
        assert output.splitlines()[-1] == "4 resources: 1 to change, 3 unchanged"
    finally:
        down = lab.stackops("lab", "down", timeout=180)
    assert down.returncode == 0, down.stderr
