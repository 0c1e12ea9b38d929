"""bench/xen_rolling.py keeps working: a quick run (a pool of 3 hosts, one VM per host in each simulator) rolls to
Completed and prints every figure — the wall times and the ideal from the simulators' records, migrations, stops,
reboots, XenAPI calls per turn."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_xen_rolling_bench_prints_every_figure() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "operator"), str(REPO / "lab"),
                                                      env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "xen_rolling.py"), "--hosts", "3", "--vms-per-host", "1",
         "--reboot-seconds", "0.5", "--boot-seconds", "0.5", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    [roll] = json.loads(result.stdout)["rolls"]

    assert roll["phase"] == "Completed" and roll["progress"] == "Completed"
    assert roll["reboots"] == {"xen1": 1, "xen2": 1, "xen3": 1}
    for side in ("xen", "cloudstack"):
        assert roll[side]["vms"] == 3 and roll[side]["stops"] == 0, roll[side]
        assert roll[side]["migrationsPerVM"] >= 1, roll[side]  # every VM left its host at least once
    assert roll["cloudstack"]["restarts"] == 0
    for name, host in roll["perHost"].items():  # each span found in the simulators' records
        assert host["drain"] > 0 and host["evacuate"] > 0 and host["reboot"] > 0 and host["back"] > 0, (name, host)
    assert 0 < roll["idealSeconds"] <= roll["turnsSeconds"] <= roll["wallSeconds"]
    assert roll["ratio"] >= 1 and roll["turnsRatio"] >= 1
    assert roll["xenapiCallsPerTurn"] > 0 and roll["xenapiCallsPerTurnByCall"]["host.reboot"] == 1
