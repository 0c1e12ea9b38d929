"""XenPool master failover needs the supporters' word (issue 12, item 6): a network partition between the operator
and the master alone makes no second master.

The pool's hosts stand in lab hosts' dom0s (real network namespaces, sshd with pinned host keys; the simulator
serves each XenAPI at its lab host's address). The machine — where the operator runs — is cut from the master
only, by iptables in the master's namespace: the operator finds no master, while the supporters, asked over dom0
SSH, still reach it. Past the delay there is no emergency transition, a reason in status and a Warning Event.
Then the master really dies: the supporters cannot reach it either, and after `delaySeconds` counted from then one
of them is made master. Order is asserted on the simulator's audit log and the operator's own stamps (one wall
clock); the test's own duration is never asserted, so a busy machine only makes it slower."""
from __future__ import annotations

import datetime
import socket
import time
from typing import Any

from pydantic import SecretStr
from support.xenpool import FAST, Driver, condition, lab, ready, spec_for
from support.credentials import secret

from stackops.api.xenpool import XenPoolSpec
from stackops.drivers.ssh import SSHPool
from stackops.reconcile.base import Outcome
from stackops_lab.hosts import LabHost
from stackops_lab.xenapi import XenHostSpec, XenLab

KEY_SECRET = "dom0-ssh"
DELAY = 30  # the smallest delaySeconds the API accepts
NAMES = ["xen1", "xen2", "xen3"]


def _epoch(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def events(xen: XenLab, name: str) -> list[dict[str, Any]]:
    return [e for e in xen.audit() if e["event"] == name]


def spec(xen: XenLab, hosts: list[LabHost]) -> XenPoolSpec:
    return XenPoolSpec.model_validate({
        "members": [{"name": n, "address": xen.address(n), "sshHostKey": h.host_key} for n, h in zip(NAMES, hosts)],
        "credentialsSecretRef": {"name": "xen-root"}, "tls": {"plainHTTP": True}, "xenapiPort": xen.port,
        "ha": {"enabled": False},
        "uniqueness": {"policy": "Detect", "ssh": {"privateKeySecretRef": {"name": KEY_SECRET}}},
        "masterFailover": {"policy": "EmergencyTransition", "delaySeconds": DELAY},
    })


def passes(driver: Driver, until: Any, hang_guard: float) -> list[tuple[float, Outcome]]:
    """Passes about once a second (each honours its requeue, capped) until `until(started, outcome)`; (wall time
    each pass started, its outcome). The guard only stops a hang."""
    done: list[tuple[float, Outcome]] = []
    deadline = time.monotonic() + hang_guard
    while True:
        reasons = [condition(o, "Ready").reason for _, o in done]
        assert time.monotonic() < deadline, f"hung: {reasons}"
        started = time.time()
        outcome = driver.run()
        done.append((started, outcome))
        if until(started, outcome):
            return done
        time.sleep(min(outcome.requeue_after or 1, 1))


def masters(xen: XenLab) -> list[str]:
    """The hosts that are up and take themselves for a pool master."""
    return [n for n in NAMES if xen.status(n)["power"] == "up" and xen.status(n)["role"] == "master"]


def test_the_operator_cut_from_the_master_only_makes_no_second_master(make_lab_hosts) -> None:
    hosts = make_lab_hosts(3)
    with XenLab(hosts=[XenHostSpec(n) for n in NAMES], pools=[NAMES], timings=FAST, vms_per_host=1,
                dom0s=dict(zip(NAMES, hosts))) as xen:
        assert xen.dom0s is not None
        ssh = SSHPool()
        try:
            driver = Driver(xen, spec(xen, hosts), ssh=ssh)
            driver.secrets[KEY_SECRET] = secret({"ssh-privatekey": hosts[0].client_key_pem},
                                                *(xen.address(n) for n in NAMES))
            assert ready(driver.converge()) and driver.status["master"] == "xen1"

            # the machine (the operator) is cut from xen1 only: refused at once, so passes stay short
            xen.dom0s.cut_off("xen1", [hosts[0].gateway], reject=True)

            def past_the_delay(started: float, outcome: Outcome) -> bool:
                since = driver.status.get("masterUnreachableSince")
                return (condition(outcome, "Ready").reason == "MasterFailedOver"
                        or since is not None and started >= _epoch(since) + DELAY)

            cut = passes(driver, past_the_delay, hang_guard=DELAY + 600)
            reasons = [condition(o, "Ready").reason for _, o in cut]
            assert not events(xen, "master.changed"), f"an emergency transition while the master is alive: {reasons}"
            # (a supporter's view may be unknown for a pass on a very busy machine: an SSH timeout — no failover either)
            assert set(reasons) <= {"MasterUnreachableFromOperatorOnly", "SupportersViewUnavailable"}, reasons
            partitioned = [o for _, o in cut if condition(o, "Ready").reason == "MasterUnreachableFromOperatorOnly"]
            assert partitioned, reasons
            last = condition(partitioned[-1], "Ready").message
            assert "xen2: reaches" in last and "xen3: reaches" in last, last
            assert condition(partitioned[-1], "Reachable").status == "False"
            warned = [m for _, r, m in driver.events if r == "MasterUnreachableFromOperatorOnly"]
            assert warned, driver.events
            assert xen.pool_of("xen2")["master"] == "xen1" and masters(xen) == ["xen1"]
            assert driver.status.get("supportersLostMasterSince") is None

            # now xen1 really dies: its supporters cannot reach it either
            xen.kill("xen1")
            agreed: list[str] = []  # each value supportersLostMasterSince took

            def failed_over(started: float, outcome: Outcome) -> bool:
                stamp = driver.status.get("supportersLostMasterSince")
                if stamp and stamp not in agreed:
                    agreed.append(stamp)
                return condition(outcome, "Ready").reason not in ("MasterUnreachable", "SupportersViewUnavailable",
                                                                  "MasterUnreachableFromOperatorOnly")

            dead = passes(driver, failed_over, hang_guard=DELAY + 600)
        finally:
            ssh.shutdown()
        reasons = [condition(o, "Ready").reason for _, o in dead]
        assert reasons[-1] == "MasterFailedOver" and "MasterUnreachable" in reasons, reasons

        audit = xen.audit()
        order = [e["event"] for e in audit]
        cut_at, killed_at = order.index("net.cut"), order.index("host.killed")
        changed = [(i, e) for i, e in enumerate(audit) if e["event"] == "master.changed"]
        assert len(changed) == 1, changed
        at, emergency = changed[0]
        assert cut_at < killed_at < at and emergency["reason"] == "emergency" and emergency["old"] == "xen1"
        assert emergency["new"] == "xen2", "the first supporter in spec order that cannot reach the master"
        # the delay counts from the first pass the supporters agreed (since the last pass that found no majority, if
        # any), which came after the kill (one wall clock)
        assert agreed, reasons
        counted_from = _epoch(agreed[-1])
        assert counted_from >= audit[killed_at]["time"] - 0.001
        assert emergency["time"] - counted_from >= DELAY
        # …and none later than needed: each pass waiting for the delay asked to be called back by its end (+0.5 s),
        # and the first pass that started after it failed over
        end = counted_from + DELAY
        for started, outcome in dead[:-1]:
            assert started < end, f"a pass {started - end:.3f}s after the end of the delay did not fail over"
            if condition(outcome, "Ready").reason == "MasterUnreachable":
                assert outcome.requeue_after is not None and outcome.requeue_after <= end - started + 0.5 + 0.001
        assert masters(xen) == ["xen2"], "at most one master"
        assert xen.pool_of("xen3")["master"] == "xen2"
        assert [r for _, r, _ in driver.events].count("MasterFailover") == 1
        assert hosts[0].client_key_pem not in str(driver.events)


def test_without_dom0_ssh_a_dead_master_is_not_failed_over() -> None:
    """The operator's view alone is never enough: with no dom0 SSH the supporters cannot be asked."""
    with lab(NAMES, [NAMES]) as xen:
        pool = spec_for(xen, NAMES, ha={"enabled": False},
                        masterFailover={"policy": "EmergencyTransition", "delaySeconds": DELAY})
        driver = Driver(xen, pool)
        assert ready(driver.converge())
        xen.kill("xen1")
        long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=600)
        driver.status["masterUnreachableSince"] = long_ago.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for _ in range(3):
            outcome = driver.run()
            assert condition(outcome, "Ready").reason == "SupportersViewUnavailable", outcome.conditions
            assert "uniqueness.ssh" in condition(outcome, "Ready").message
        assert not events(xen, "master.changed") and xen.pool_of("xen2")["master"] == "xen1"
        warned = [r for _, r, _ in driver.events if r in ("SupportersViewUnavailable", "MasterFailover")]
        assert warned and set(warned) == {"SupportersViewUnavailable"}, driver.events


def test_a_lab_host_cut_off_from_the_machine_still_talks_to_the_other_hosts(make_lab_hosts) -> None:
    """LabHost.cut_off: dropped (no answer at all) or refused from the machine; another host still connects to it
    (sshd's port); reconnect ends it."""
    first, second = make_lab_hosts(2)

    def from_machine() -> str:
        try:
            socket.create_connection((second.address, 22), timeout=2).close()
        except TimeoutError:
            return "no answer"
        except ConnectionRefusedError:
            return "refused"
        return "connected"

    def from_first() -> int:
        probe = f"timeout 10 bash -c 'exec 3<>/dev/tcp/{second.address}/22'"
        return first.run(probe).returncode

    assert from_machine() == "connected"
    second.cut_off([second.gateway])
    assert from_machine() == "no answer" and from_first() == 0
    second.reconnect()
    assert from_machine() == "connected"
    second.cut_off([second.gateway], reject=True)
    assert from_machine() == "refused" and from_first() == 0
    second.reconnect()
    assert from_machine() == "connected"
