"""KvmHost round trips on a real lab host (issue 13): a fresh host converges in one pass of at most 4 mutating round
trips after the probe (one Open vSwitch transaction per run of changes, one script for the other commands), with one
`Applied` Event per change."""
from __future__ import annotations

from typing import Any

from support.kvmhost_lab import context, ready, reconcile, spec_for

from stackops.drivers.ssh import SSHPool
from stackops.reconcile.kvmhost import KvmHostReconciler


def test_a_fresh_host_converges_in_at_most_four_round_trips_after_the_probe(make_lab_hosts: Any) -> None:
    host, peer = make_lab_hosts(2)  # hosts of its own: the session's lab hosts are configured by other tests
    events: list = []
    ctx = context(host, spec_for(host, peer), events)  # the layout test_kvmhost converges
    pool = SSHPool()
    try:
        outcome = reconcile(KvmHostReconciler(pool), ctx)
        counters = pool.counters(host.address)
    finally:
        pool.close_all()
    assert ready(outcome), outcome.conditions
    assert len(outcome.applied) >= 15
    assert counters.mutations <= 4 and counters.round_trips == counters.mutations + 2, counters  # + 2 probes
    assert [e for e in events if e[1] == "Applied"] == [("Normal", "Applied", a.describe()) for a in outcome.applied]
