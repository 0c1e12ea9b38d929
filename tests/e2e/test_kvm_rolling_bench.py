"""bench/kvm_rolling.py keeps working: a quick run (a cluster of 3 KVM lab hosts, one VM per host, short polls and
reboots) rolls a restart to Completed on every KvmHost and prints every figure — the wall times and the ideal from
the simulators' records, reboots, migrations, stops, the most hosts in maintenance at once, the Leases, SSH round
trips — within the limits."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
NAMES = {"lab-kvm1", "lab-kvm2", "lab-kvm3"}


def bench(*more: str) -> dict[str, Any]:
    """The figures of one quick roll of 3 hosts (one VM each); the bench exits 0 (every limit kept)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "operator"), str(REPO / "lab"),
                                                      env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "kvm_rolling.py"), "--hosts", "3", "--vms-per-host", "1",
         "--down-seconds", "2", "--ping-seconds", "0.2", "--ping-timeout", "0.4",
         "--poll-seconds", "0.3", "--requeue-seconds", "0.5", "--json", *more],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    [roll] = json.loads(result.stdout)["rolls"]
    return roll


def test_kvm_rolling_bench_prints_every_figure() -> None:
    roll = bench()

    assert roll["hosts"] == 3 and roll["maxUnavailable"] == 1
    assert roll["phases"] == dict.fromkeys(NAMES, "Completed") and roll["failures"] == {}
    assert sorted(roll["order"]) == sorted(NAMES)
    assert roll["reboots"] == dict.fromkeys(NAMES, 1)
    assert roll["cloudstack"] == {**roll["cloudstack"], "vms": 3, "stops": 0, "restarts": 0}
    assert roll["cloudstack"]["migrationsPerVM"] >= 1  # every VM left its host at least once
    assert roll["maxInMaintenance"] == 1 and roll["maxDown"] == 1
    assert roll["lock"] == {"leases": 1, "heldAtEnd": 0}  # one slot (maxUnavailable 1), a real Lease, released
    assert set(roll["perHost"]) == NAMES
    # each span found in the simulators' records: CloudStack's ping finds a host down (0.2 s + 0.4 s) long before
    # it is up again (2 s down, then its boot), so every host goes Disconnected and comes back Up
    for name, host in roll["perHost"].items():
        assert host["drain"] > 0 and host["reboot"] > 0 and host["back"] > 0, (name, host)
    phases = roll["phaseSeconds"]
    assert abs(roll["idealSeconds"] - (phases["drain"] + phases["reboot"] + phases["back"])) < 1e-6
    assert 0 < roll["idealSeconds"] <= roll["turnsSeconds"] <= roll["wallSeconds"]
    assert roll["ratio"] >= 1 and roll["turnsRatio"] >= 1
    assert 0 <= roll["handoverSeconds"] <= roll["turnsSeconds"] - roll["idealSeconds"]
    assert roll["shutdownSeconds"] > 0 and all(host["shutdown"] > 0 for host in roll["perHost"].values())
    assert roll["sshRoundTripsPerMaintenance"] > 0
    assert roll["sshRoundTripsPerHost"] >= roll["sshRoundTripsPerMaintenance"]


def test_kvm_rolling_bench_two_at_a_time() -> None:
    """maxUnavailable 2: two slots, at most two hosts in maintenance at once, yet CloudStack takes one
    prepareHostForMaintenance of a cluster at a time (it refuses a second one while a host is in
    PrepareForMaintenance): the drains take turns, and every host is rebooted once, no VM stopped."""
    roll = bench("--max-unavailable", "2")
    assert roll["maxUnavailable"] == 2
    assert roll["phases"] == dict.fromkeys(NAMES, "Completed") and roll["failures"] == {}
    assert roll["reboots"] == dict.fromkeys(NAMES, 1)
    assert roll["cloudstack"]["stops"] == 0 and roll["cloudstack"]["restarts"] == 0
    assert roll["maxInMaintenance"] <= 2 and roll["maxDown"] <= 2
    assert 1 <= roll["lock"]["leases"] <= 2 and roll["lock"]["heldAtEnd"] == 0
    assert 0 < roll["idealSeconds"] <= roll["turnsSeconds"] <= roll["wallSeconds"]
