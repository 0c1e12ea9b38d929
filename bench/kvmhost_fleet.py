#!/usr/bin/env python3
"""Converge N KVM lab hosts from scratch with the KvmHost reconciler, then reconcile them again unchanged.

Prints, for both passes: wall time, CPU time (the hosts' processes, those they waited for included, and the
operator's: less sensitive than wall time to what else the machine runs), and SSH round trips and mutations per
host (from the SSH driver's counters); and how many processes one probe starts on a host (the first host, counted
under strace: stackops_lab.spawns), fresh (the first probe of a host: its binaries' `--version` too) and unchanged.

--baseline: the same with the probe before issue 18 (bench/kvmhost_probe_before.sh, read by the same parser), in
the same run: first a set of fresh hosts converged with it, then, on the hosts converged with today's probe, the
unchanged pass with one probe and the other in turn (--rounds each, so that both see the same machine); the
medians and their ratio are printed. Only the probe differs: plan, apply and report are today's code.

Needs root (lab hosts are namespaces) and the packages of `make deps` (strace among them).

    .venv/bin/python bench/kvmhost_fleet.py [--hosts 20] [--concurrency 10] [--baseline] [--rounds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from pydantic import SecretStr

from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.secrets import SecretData, parse_destinations
from stackops.drivers.ssh import SSHPool
from stackops.reconcile.base import Context, Outcome
from stackops.reconcile.kvmhost import KvmHostReconciler
from stackops.reconcile.kvmhost.observed import HostState
from stackops.reconcile.kvmhost.plan import probe_arguments
from stackops.reconcile.kvmhost.probe import Probe, parse
from stackops_lab.hosts import LabHost, LabHosts
from stackops_lab.manifests import SSH_SECRET, kvmhost_manifests
from stackops_lab.spawns import spawned_by

BEFORE = Path(__file__).with_name("kvmhost_probe_before.sh")


class ProbeBefore(Probe):
    """The probe before issue 18: its script, its arguments (the packages only), nothing remembered."""

    script = BEFORE.read_text()

    def arguments(self, host: str, packages: Sequence[str]) -> list[str]:
        return list(packages)

    def parse(self, host: str, output: str, libvirt_tcp_port: int) -> HostState:
        return parse(output, libvirt_tcp_port)


def reconciler(pool: SSHPool, before: bool = False) -> KvmHostReconciler:
    made = KvmHostReconciler(pool)
    if before:
        made.probe = ProbeBefore()
    return made


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


def host_cpu(hosts: list[LabHost]) -> float:
    """CPU seconds the hosts' processes have used, those they waited for included (user + system, and the same of
    their reaped children: a probe's processes end in their shell's, the shell's in its sshd's)."""
    total = 0
    for host in hosts:
        for pid in host.processes():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def measure(name: str, pool: SSHPool, reconciler: KvmHostReconciler, ctxs: list[Context], hosts: list,
            concurrency: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the hosts and the operator) of one pass over `ctxs`."""
    pool.reset_counters()
    cpu = host_cpu(hosts) + time.process_time()
    started = time.monotonic()
    outcomes = asyncio.run(one_pass(reconciler, ctxs, concurrency))
    wall = time.monotonic() - started
    cpu = host_cpu(hosts) + time.process_time() - cpu
    counters = [pool.counters(h.address) for h in hosts]
    ready = sum(1 for o in outcomes if any(c.type == "Ready" and c.status == "True" for c in o.conditions))
    trips = [c.round_trips for c in counters]
    mutations = [c.mutations for c in counters]
    print(f"{name:<18} wall {wall:6.2f}s  cpu {cpu:6.2f}s  ready {ready}/{len(hosts)}  "
          f"round trips/host mean {statistics.mean(trips):4.1f} max {max(trips):2d}  "
          f"mutations/host mean {statistics.mean(mutations):4.1f} max {max(mutations):2d}", flush=True)
    return wall, cpu


def processes(reconciler: KvmHostReconciler, ctx: Context, host: LabHost) -> int:
    """The processes the reconciler's next probe of `host` starts (with the arguments it would pass)."""
    key = f"{ctx.namespace}/{ctx.name}@{ctx.spec.address}"  # as the reconciler names the host to its probe
    spawned = spawned_by(host, reconciler.probe.script, reconciler.probe.arguments(key, probe_arguments(ctx.spec)))
    if spawned.exit_status != 0:
        raise RuntimeError(f"the probe exited {spawned.exit_status} on {host.name}")
    return spawned.count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--baseline", action="store_true",
                        help="also measure the probe before issue 18 in this run, and print the ratios")
    parser.add_argument("--rounds", type=int, default=3, help="unchanged passes with each probe (default 3)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    lab_dir = Path(tempfile.mkdtemp(prefix="stackops-bench-"))
    lab = LabHosts(lab_dir)
    pool = SSHPool()
    passes: dict[str, list[tuple[float, float]]] = {"today": [], "before": []}
    try:
        if args.baseline:  # hosts of their own: converged with the probe before
            hosts = create(lab, args.hosts, args.concurrency)
            ctxs = contexts(hosts)
            before = reconciler(pool, before=True)
            fresh_before = processes(before, ctxs[0], hosts[0])
            measure("converge (before)", pool, before, ctxs, hosts, args.concurrency)
            pool.close_all()
            pool = SSHPool()
        hosts = create(lab, args.hosts, args.concurrency)
        ctxs = contexts(hosts)
        today = reconciler(pool)
        fresh = processes(today, ctxs[0], hosts[0])
        measure("converge", pool, today, ctxs, hosts, args.concurrency)
        unchanged = processes(today, ctxs[0], hosts[0])
        if args.baseline:
            before = reconciler(pool, before=True)
            unchanged_before = processes(before, ctxs[0], hosts[0])
        for _ in range(args.rounds):
            passes["today"].append(measure("unchanged", pool, today, ctxs, hosts, args.concurrency))
            if args.baseline:
                passes["before"].append(measure("unchanged (before)", pool, before, ctxs, hosts, args.concurrency))
        print(f"processes per probe (host 1, strace): fresh {fresh} (its first probe: with the binaries' "
              f"--version), unchanged {unchanged}")
        if args.baseline:
            print(f"processes per probe before issue 18: fresh {fresh_before}, unchanged {unchanged_before} "
                  f"({unchanged_before / unchanged:.1f}x as many)")
            for what, index in (("wall", 0), ("cpu", 1)):
                now, then = (statistics.median(p[index] for p in passes[k]) for k in ("today", "before"))
                print(f"unchanged pass, {what} median of {args.rounds}: {now:.2f}s today, {then:.2f}s before: "
                      f"{then / now:.2f}x faster")
    finally:
        pool.close_all()
        lab.destroy()
        lab_dir.rmdir() if lab_dir.exists() and not any(lab_dir.iterdir()) else None
    return 0


def create(lab: LabHosts, count: int, concurrency: int) -> list[LabHost]:
    started = time.monotonic()
    hosts = lab.create(count)  # after removing the hosts this lab had
    print(f"{len(hosts)} lab hosts created in {time.monotonic() - started:.1f}s (concurrency {concurrency})",
          flush=True)
    return hosts


if __name__ == "__main__":
    sys.exit(main())
