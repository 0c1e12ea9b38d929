"""Network safety, against a real lab host (sshd, Open vSwitch, addresses in its own namespaces), in process so
that the SSH driver's counters can be read.

A spec that cuts the management path — eth0 becomes a port of cloudbr0 and the management address moves to a VLAN
bridge the lab's switch does not carry — is applied under an on-host checkpoint; the operator cannot reconnect,
so the host reverts it by itself and is reachable again; the rollback is reported (`RolledBack`, `status.rollback`)
and the same generation is not tried again. A management-path change that keeps the host reachable is confirmed
and kept; a change off the management path applies without any checkpoint.

(In the lab, eth0 joining a bridge does not by itself cut SSH: the bridges use the userspace datapath, which reads
NICs with packet sockets and leaves the kernel its copy. On a kernel-datapath host it would.)
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import time
from typing import Any

import pytest
from pydantic import SecretStr
from support.credentials import secret

from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.ssh import SSHError, SSHPool, SSHTarget
from stackops.reconcile.base import Context, Outcome, ReconcileError
from stackops.reconcile.kvmhost import KvmHostReconciler
from stackops.reconcile.kvmhost.guard import CHECKPOINT_DIR
from support.wait import wait_for

SECRET = "kvm-ssh"
TIMEOUT = 10  # rollbackTimeoutSeconds: the smallest allowed


def spec_for(host: Any, bridge: dict[str, Any]) -> KvmHostSpec:
    return KvmHostSpec.model_validate({
        "address": host.address,
        "ssh": {"privateKeySecretRef": {"name": SECRET}, "hostKey": host.host_key, "connectTimeoutSeconds": 5},
        "openvswitch": {"bridges": [{"name": "cloudbr0", "datapathType": "netdev", **bridge}],
                        "rollbackTimeoutSeconds": TIMEOUT},
    })


def context(host: Any, spec: KvmHostSpec, generation: int, events: list, status: dict | None = None) -> Context:
    return Context(namespace="lab", name=host.name, generation=generation, spec=spec, status=status or {},
                   secrets={SECRET: secret({"ssh-privatekey": host.client_key_pem}, host.address)},
                   event=lambda *e: events.append(e), logger=logging.getLogger("e2e"))


def reconcile(reconciler: KvmHostReconciler, ctx: Context) -> Outcome:
    return asyncio.run(reconciler.reconcile(ctx))


def condition(outcome: Outcome, type_: str) -> tuple[str, str, str]:
    found = next(c for c in outcome.conditions if c.type == type_)
    return found.status, found.reason, found.message


def ready(outcome: Outcome) -> bool:
    return condition(outcome, "Ready")[0] == "True"


def checkpoints(host: Any) -> dict[str, list[str]]:
    """This host's checkpoint directories (the lab's hosts share the machine's /var/lib) → their markers."""
    listing = host.run(f'm=$(cat /etc/machine-id); for d in {CHECKPOINT_DIR}/*/; do [ -d "$d" ] || continue; '
                       '[ "$(cat "$d/machine-id")" = "$m" ] && echo "$(basename "$d") $(ls "$d" | tr "\\n" " ")"; '
                       'done; true').stdout
    return {line.split()[0]: line.split()[1:] for line in listing.splitlines() if line.strip()}


def ssh_works(host: Any) -> bool:
    """A fresh connection (a new pool, nothing reused) runs a command."""
    pool = SSHPool()
    target = SSHTarget(host.address, 22, "root", host.host_key, SecretStr(host.client_key_pem), connect_timeout=1)
    try:
        asyncio.run(pool.connection(target).run(["true"], timeout=3))
        return True
    except SSHError:
        return False
    finally:
        pool.shutdown()


def checkpoint_file(host: Any, checkpoint: str, name: str) -> str:
    return host.run(f"cat {CHECKPOINT_DIR}/{checkpoint}/{name}", check=True).stdout


def timer_running(host: Any, checkpoint: str) -> bool:
    """Whether the checkpoint's revert timer (`sh revert.sh <dir> <seconds>`, pid in timer.pid) still runs."""
    return host.run(f'pid=$(cat {CHECKPOINT_DIR}/{checkpoint}/timer.pid) && '
                    f'tr "\\0" " " < /proc/$pid/cmdline | grep -q "revert.sh {CHECKPOINT_DIR}/{checkpoint} "'
                    ).returncode == 0


class Timed(KvmHostReconciler):
    """Keeps the deadline the operator gives itself to reconnect and confirm (on its monotonic clock)."""

    deadlines: list[float]

    async def reconnect_and_confirm(self, target, checkpoint, deadline):  # noqa: ANN001, ANN201
        self.deadlines.append(deadline)
        return await super().reconnect_and_confirm(target, checkpoint, deadline)


def test_a_change_that_cuts_the_management_path_is_reverted_by_the_host(make_lab_hosts, pool: SSHPool) -> None:
    host = make_lab_hosts(1)[0]
    events: list = []
    reconciler = Timed(pool)
    reconciler.deadlines = []
    try:
        # generation 1: off the management path (a spare NIC) — applied directly, no checkpoint
        safe = spec_for(host, {"ports": [host.nics[0]]})
        outcome = reconcile(reconciler, context(host, safe, 1, events))
        assert ready(outcome), outcome.conditions
        assert checkpoints(host) == {}
        assert not any(e[1] == "GuardedApply" for e in events)
        pool.reset_counters(host.address)
        assert ready(reconcile(reconciler, context(host, safe, 1, events)))
        assert pool.counters(host.address).round_trips == 1 and pool.counters(host.address).mutations == 0

        # generation 2: eth0 joins cloudbr0 and the management address moves to VLAN 123, which the lab's switch
        # does not carry: the host is cut off
        cut = spec_for(host, {"ports": [host.nics[0], "eth0"],
                              "vlanBridges": [{"name": "mgmt0", "vlan": 123, "addresses": [f"{host.address}/24"]}]})
        guarded_at: list[float] = []  # when the operator announced the guarded apply (before it starts the timer)

        def event(*e: Any) -> None:
            events.append(e)
            if e[1] == "GuardedApply":
                guarded_at.append(time.monotonic())

        ctx = context(host, cut, 2, events)
        ctx.event = event
        started = time.monotonic()
        with pytest.raises(ReconcileError) as pending:
            reconcile(reconciler, ctx)
        assert pending.value.reason == "RollbackPending" and pending.value.retry, pending.value
        assert len(guarded_at) == 1 and len(reconciler.deadlines) == 1
        # the operator stops reconnecting before the host's timer (started after the announcement) can revert:
        # how long the pass took on a busy machine is not the point, the deadline it set itself is
        assert reconciler.deadlines[0] < guarded_at[0] + TIMEOUT, (reconciler.deadlines[0] - guarded_at[0], TIMEOUT)

        # nobody touches the host: it reverts by itself and is reachable again
        [checkpoint] = checkpoints(host)
        wait_for(lambda: "rolled-back" in checkpoints(host)[checkpoint], what="the host to revert by itself",
                 timeout=300, interval=0.5)
        wait_for(lambda: ssh_works(host), what="the host reachable again after its revert", timeout=300, interval=0.5)
        back = time.monotonic() - started
        assert back >= TIMEOUT - 1, f"reachable after {back:.1f}s: the change did not cut the path?"
        armed = int(checkpoint_file(host, checkpoint, "started"))
        reverted = next(line.split()[1] for line in checkpoint_file(host, checkpoint, "rolled-back").splitlines()
                        if line.startswith("time "))
        reverted_at = datetime.datetime.strptime(reverted, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        assert reverted_at - armed >= TIMEOUT, "the host's timer waited its timeout before reverting"
        [(checkpoint, markers)] = checkpoints(host).items()
        assert "rolled-back" in markers and "confirmed" not in markers, markers
        show = host.run("ovs-vsctl show").stdout
        assert "eth0" not in show and "mgmt0" not in show, show
        assert f"Port {host.nics[0]}" in show, "restored to the checkpoint (generation 1), not to nothing"
        assert f"inet {host.address}/24" in host.run("ip -4 -o addr show dev eth0").stdout
        assert "default via" in host.run("ip -4 route show dev eth0").stdout

        # the same generation again: observed (one round trip), not retried, reported with the reason
        pool.reset_counters(host.address)
        again = reconcile(reconciler, context(host, cut, 2, events))
        counters = pool.counters(host.address)
        assert counters.mutations == 0 and counters.round_trips == 1, counters
        status, reason, message = condition(again, "Stalled")
        assert (status, reason) == ("True", "RolledBack")
        assert condition(again, "Ready")[:2] == ("False", "RolledBack")
        assert "add eth0 to bridge cloudbr0" in message and "reverted by the host" in message, message
        assert f"no confirmation from the operator within {TIMEOUT}s" in message, message
        assert checkpoint in message
        rollback = again.fields["rollback"]
        assert rollback["generation"] == 2 and rollback["time"] and "mgmt0" in rollback["reason"], rollback
        assert any(e[1] == "RolledBack" for e in events)
        assert again.drift and again.applied == []
        # …also when only status remembers it (as the handler passes it back)
        pool.reset_counters(host.address)
        remembered = reconcile(reconciler, context(host, cut, 2, events, status={"rollback": rollback}))
        assert condition(remembered, "Stalled")[:2] == ("True", "RolledBack")
        assert pool.counters(host.address).mutations == 0

        # generation 3: a management-path change that keeps the host reachable (eth0 joins cloudbr0, its address
        # stays) is applied under a checkpoint, confirmed over a fresh connection and kept
        events.clear()
        kept = spec_for(host, {"ports": [host.nics[0], "eth0"]})
        outcome = reconcile(reconciler, context(host, kept, 3, events))
        assert ready(outcome), outcome.conditions
        assert [e[1] for e in events if e[1] in ("GuardedApply", "ChangeConfirmed")] == ["GuardedApply",
                                                                                         "ChangeConfirmed"]
        assert any(e[1] == "Applied" and "eth0" in e[2] for e in events)
        [(newer, markers)] = checkpoints(host).items()
        assert newer != checkpoint, "the finished checkpoint of generation 2 was cleaned up"
        assert "confirmed" in markers and "rolled-back" not in markers, markers
        # nothing is reverted later: the confirmation took `decided` (mkdir, atomic) and the timer reverts only if
        # it takes it first; it sees `confirmed` and exits
        assert "decided" in markers, markers
        wait_for(lambda: not timer_running(host, newer), what="the revert timer to exit", timeout=300, interval=0.5)
        assert "rolled-back" not in checkpoints(host)[newer]
        assert "Port eth0" in host.run("ovs-vsctl show").stdout
        pool.reset_counters(host.address)
        quiet = reconcile(reconciler, context(host, kept, 3, events))
        assert ready(quiet) and pool.counters(host.address).round_trips == 1
        assert pool.counters(host.address).mutations == 0
    finally:
        host.run(f'm=$(cat /etc/machine-id); for d in {CHECKPOINT_DIR}/*/; do '
                 '[ "$(cat "$d/machine-id" 2>/dev/null)" = "$m" ] && rm -rf "$d"; done; true')
