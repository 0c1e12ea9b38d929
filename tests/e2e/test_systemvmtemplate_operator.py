"""A SystemVMTemplate rollout through the operator as `make demo` runs it (real API server, deploy/ RBAC), killed
with SIGKILL in the middle of the router stage (from inside the lab CloudStack, as it records the 30th upgraded
router: exactly there, however busy the machine is) and started again at once: it finishes without rebooting an
upgraded router again, within its limits, and `kubectl get systemvmtemplates` shows the progress."""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import yaml

from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.rollout import SECRET, analyse, spec_for
from support.wait import wait_for

MAX_UNAVAILABLE = 6
KILL_AFTER = 30  # upgraded routers


def upgraded(sim: CloudStackSimulator) -> int:
    return sum(1 for e in sim.audit() if e.get("event") == "router.reboot.end" and e.get("ok"))


def test_rollout_survives_sigkill_of_the_operator(kube: Any, operator: Any) -> None:
    fleet = Fleet(zones=2, hypervisors=("KVM", "XenServer"), routers=120, redundant_pairs=20)
    timings = Timings(template_download=1.0, router_reboot=1.0, systemvm_recreate=0.5, job=0.02)
    namespace = f"e2e-svt-{int(time.time())}"
    kube.kubectl("create", "namespace", namespace)
    with CloudStackSimulator(fleet=fleet, timings=timings) as sim:
        spec = spec_for(sim, max_unavailable=MAX_UNAVAILABLE).model_dump(by_alias=True, mode="json",
                                                                         exclude_none=True)
        documents = [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET, "namespace": namespace},
             "stringData": {"url": sim.endpoint, "apiKey": sim.api_key, "secretKey": sim.secret_key,
                            "allowPlainHTTP": "true"}},
            {"apiVersion": "stackops.io/v1alpha1", "kind": "SystemVMTemplate",
             "metadata": {"name": "cve-fix", "namespace": namespace}, "spec": spec},
        ]
        killed = threading.Event()
        killed_at: list[int] = []
        record = sim.audit_log.record
        one_at_a_time = threading.Lock()

        def kill_at_the_30th(event: str, **fields: Any) -> dict[str, Any]:
            """The operator dies as the lab records the 30th upgraded router (in the lab's thread, before anything
            else is recorded: the kill lands exactly there)."""
            with one_at_a_time:
                entry = record(event, **fields)
                if event == "router.reboot.end" and fields.get("ok") and not killed.is_set() \
                        and upgraded(sim) >= KILL_AFTER:
                    operator.kill()
                    killed_at.append(upgraded(sim))
                    killed.set()
                return entry

        sim.audit_log.record = kill_at_the_30th  # type: ignore[method-assign]
        try:
            kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))
            wait_for(killed.is_set, timeout=600, what=f"{KILL_AFTER} routers upgraded", interval=0.5)
        finally:
            sim.audit_log.record = record  # type: ignore[method-assign]
        operator.start()

        def ready() -> bool:
            obj = json.loads(kube.kubectl("get", "systemvmtemplate", "cve-fix", "-n", namespace, "-o",
                                          "json").stdout)
            return any(c["type"] == "Ready" and c["status"] == "True"
                       for c in (obj.get("status") or {}).get("conditions") or [])

        wait_for(ready, timeout=600, what="Ready after the restart", interval=0.5)
        audit = sim.audit()

    assert killed_at == [KILL_AFTER], "the kill happened in the middle of the rollout"
    report = analyse(audit)
    assert len(report.reboots) == 120 and max(report.reboots.values()) == 1, "no router rebooted twice"
    assert report.rebooted_after_success == []
    assert report.max_rebooting <= MAX_UNAVAILABLE and report.both_down == 0
    table = kube.kubectl("get", "systemvmtemplates", "-n", namespace).stdout
    assert "Complete" in table and "120" in table, table
    log = operator.log_path.read_text(errors="replace")
    assert sim.secret_key not in log and sim.api_key not in log
