"""XenPool through the operator as `make demo` runs it (real API server, deploy/ RBAC): a membership change (a
fourth host joined, then ejected, and so on) with the operator killed by SIGKILL at 20 random moments of it.
After every restart HA ends enabled with timeout 180 and the pool's members match the spec."""
from __future__ import annotations

import json
import os
import random
import time
from typing import Any, Callable

import pytest
import XenAPI
import yaml

from stackops_lab.xenapi import XenHostSpec, XenLab, XenTimings

pytestmark = pytest.mark.e2e

# Slow enough that a random moment lands inside the dance (HA off → join/eject → HA on takes ~3 s).
TIMINGS = XenTimings(ha_enable=1.0, ha_disable=0.5, join=1.0, eject_reboot=1.0, master_transition=0.5,
                     host_boot=0.5, xapi_restart=0.3)
KILLS = 20
WINDOW_SECONDS = 4.0


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def pool_state(lab: XenLab) -> tuple[bool, dict[str, str], list[str]]:
    """(ha_enabled, ha_configuration, member names) as the pool master tells it."""
    session = XenAPI.Session(lab.url(lab.pool_of("xen1")["master"]))
    session.xenapi.login_with_password(lab.username, lab.password, "2.21", "e2e")
    try:
        pool = session.xenapi.pool.get_all_records()
        record = next(iter(pool.values()))
        names = sorted(h["name_label"] for h in session.xenapi.host.get_all_records().values())
        return bool(record["ha_enabled"]), dict(record["ha_configuration"]), names
    finally:
        session.xenapi.session.logout()


def test_membership_change_survives_sigkill_at_random_moments(kube: Any, operator: Any) -> None:
    seed = int(os.environ.get("STACKOPS_E2E_SEED", time.time()))
    rng = random.Random(seed)
    print(f"random seed {seed} (STACKOPS_E2E_SEED to repeat)")
    namespace = f"e2e-xenpool-{int(time.time())}"
    kube.kubectl("create", "namespace", namespace)
    hosts = [XenHostSpec("xen1"), XenHostSpec("xen2"), XenHostSpec("xen3"), XenHostSpec("xen4", vms=0)]
    with XenLab(hosts=hosts, pools=[["xen1", "xen2", "xen3"]], timings=TIMINGS, vms_per_host=1) as lab:

        def manifest(names: list[str]) -> str:
            spec = {"members": [{"name": n, "address": lab.address(n)} for n in names],
                    "credentialsSecretRef": {"name": "xen-root"}, "tls": {"plainHTTP": True},
                    "xenapiPort": lab.port, "ha": {"timeoutSeconds": 180},
                    "allowedDestructiveActions": ["Eject"], "resyncIntervalSeconds": 30}
            documents = [
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "xen-root", "namespace": namespace},
                 "stringData": {"username": lab.username, "password": lab.password}},
                {"apiVersion": "stackops.io/v1alpha1", "kind": "XenPool",
                 "metadata": {"name": "pool", "namespace": namespace}, "spec": spec}]
            return yaml.safe_dump_all(documents)

        def ready() -> bool:
            obj = json.loads(kube.kubectl("get", "xenpool", "pool", "-n", namespace, "-o", "json").stdout)
            status = obj.get("status") or {}
            return status.get("observedGeneration") == obj["metadata"]["generation"] and any(
                c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])

        three = ["xen1", "xen2", "xen3"]
        kube.kubectl("apply", "-f", "-", input=manifest(three))
        wait_for(ready, timeout=120, what="the three-host pool Ready")
        assert pool_state(lab) == (True, {"timeout": "180"}, three)

        landed_with_ha_off = 0
        try:
            for kill in range(KILLS):
                wanted = three + ["xen4"] if kill % 2 == 0 else three
                kube.kubectl("apply", "-f", "-", input=manifest(wanted))
                began = time.monotonic()
                time.sleep(rng.uniform(0.0, WINDOW_SECONDS))
                operator.kill()
                ha_on, _, _ = wait_for(lambda: _try(pool_state, lab), timeout=30, what="the pool master")
                landed_with_ha_off += not ha_on
                operator.start()
                wait_for(ready, timeout=180, what=f"Ready after kill {kill + 1}")
                state = wait_for(lambda: _try(pool_state, lab), timeout=30, what="the pool master")
                assert state == (True, {"timeout": "180"}, sorted(wanted)), f"after kill {kill + 1}: {state}"
                print(f"kill {kill + 1}: HA {'on' if ha_on else 'off'} when killed, converged "
                      f"{time.monotonic() - began:.1f}s after the change")
        finally:
            if operator.process is None or operator.process.poll() is not None:
                operator.start()
            kube.kubectl("delete", "xenpool", "pool", "-n", namespace, "--wait=true", "--timeout=60s", check=False)

    print(f"{landed_with_ha_off} of {KILLS} kills landed while HA was off")
    assert landed_with_ha_off >= 3, "the kills must hit the dance itself, not only before or after it"
    events = kube.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "ResumingHADance" in events


def _try(function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except (XenAPI.Failure, OSError):
        return None
