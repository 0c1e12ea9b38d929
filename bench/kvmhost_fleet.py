#!/usr/bin/env python3
"""Converge N KVM lab hosts from scratch with the KvmHost reconciler, then reconcile them again unchanged.

Prints, for both passes: wall time, and SSH round trips and mutations per host (from the SSH driver's counters).
Needs root (lab hosts are namespaces) and the packages of `make deps`.

    .venv/bin/python bench/kvmhost_fleet.py [--hosts 20] [--concurrency 10]
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.secrets import SecretData, parse_destinations
from stackops.drivers.ssh import SSHPool
from stackops.reconcile.base import Context, Outcome
from stackops.reconcile.kvmhost import KvmHostReconciler
from stackops_lab.hosts import LabHosts
from stackops_lab.manifests import SSH_SECRET, kvmhost_manifests


def contexts(hosts: list, namespace: str = "bench") -> list[Context]:
    documents = kvmhost_manifests(hosts, namespace)
    secret = documents[0]
    key = SecretData({"ssh-privatekey": SecretStr(secret["stringData"]["ssh-privatekey"])},
                     parse_destinations(namespace, SSH_SECRET, secret["metadata"].get("annotations")))
    result = []
    for document in documents[1:]:
        result.append(Context(namespace=namespace, name=document["metadata"]["name"], generation=1,
                              spec=KvmHostSpec.model_validate(document["spec"]), status={},
                              secrets={SSH_SECRET: key}, event=lambda *_: None,
                              logger=logging.getLogger("bench")))
    return result


async def one_pass(reconciler: KvmHostReconciler, ctxs: list[Context], concurrency: int) -> list[Outcome]:
    limit = asyncio.Semaphore(concurrency)

    async def run(ctx: Context) -> Outcome:
        async with limit:
            outcome = await reconciler.reconcile(ctx)
            for _ in range(3):  # a daemon restarted in the pass may need one more look
                if not outcome.drift:
                    break
                outcome = await reconciler.reconcile(ctx)
            return outcome

    return await asyncio.gather(*(run(ctx) for ctx in ctxs))


def measure(name: str, pool: SSHPool, reconciler: KvmHostReconciler, ctxs: list[Context], hosts: list,
            concurrency: int) -> None:
    pool.reset_counters()
    started = time.monotonic()
    outcomes = asyncio.run(one_pass(reconciler, ctxs, concurrency))
    wall = time.monotonic() - started
    counters = [pool.counters(h.address) for h in hosts]
    ready = sum(1 for o in outcomes if any(c.type == "Ready" and c.status == "True" for c in o.conditions))
    trips = [c.round_trips for c in counters]
    mutations = [c.mutations for c in counters]
    print(f"{name:<10} wall {wall:6.2f}s  ready {ready}/{len(hosts)}  "
          f"round trips/host mean {statistics.mean(trips):5.1f} max {max(trips):3d}  "
          f"mutations/host mean {statistics.mean(mutations):5.1f} max {max(mutations):3d}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    lab_dir = Path(tempfile.mkdtemp(prefix="stackops-bench-"))
    lab = LabHosts(lab_dir)
    started = time.monotonic()
    hosts = lab.create(args.hosts)
    print(f"{len(hosts)} lab hosts created in {time.monotonic() - started:.1f}s (concurrency {args.concurrency})")
    pool = SSHPool()
    try:
        reconciler = KvmHostReconciler(pool)
        ctxs = contexts(hosts)
        measure("converge", pool, reconciler, ctxs, hosts, args.concurrency)
        measure("unchanged", pool, reconciler, ctxs, hosts, args.concurrency)
    finally:
        pool.close_all()
        lab.destroy()
        lab_dir.rmdir() if lab_dir.exists() and not any(lab_dir.iterdir()) else None
    return 0


if __name__ == "__main__":
    sys.exit(main())
