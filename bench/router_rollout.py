#!/usr/bin/env python3
"""Roll a new system VM template out to N routers of the lab CloudStack with the SystemVMTemplate reconciler,
maxUnavailable M at a time, each reboot taking a fixed simulated time R.

Prints the router stage's wall time (first reboot started → last reboot finished, from the simulator's audit log),
its ratio to the ideal ceil(N/M) × R, the peak of routers rebooting at once, and the API requests the operator made:
every HTTP request the simulator answered (its access log, each page of a listing counted), per router and by
command, as CloudStack's API throttling (`api.throttling.max`) would count them. Exits 1 when a limit is missed
(a router not upgraded, more than M rebooting at once, the ratio over --max-ratio, the requests over --max-requests).

    .venv/bin/python bench/router_rollout.py [--routers 500] [--max-unavailable 25] [--reboot-seconds 2]
"""
from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections import Counter
from urllib.parse import parse_qs, urlsplit

from stackops.drivers.cloudstack import CloudStackPool
from stackops.reconcile.systemvmtemplate import SystemVMTemplateReconciler
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.cloudstack.server import API_PATH
from stackops_lab.rollout import Driver, analyse, secrets_for, spec_for


def requests_by_command(access_log: list[str]) -> Counter:
    """The API requests of an access log by command: `GET /client/api?command=listRouters&… HTTP/1.1 200` →
    Counter({"listRouters": 1}); a POST (its command is in the body) as "POST". Other paths (the lab's template
    images) are not API requests."""
    counts: Counter = Counter()
    for line in access_log:
        method, target = (line.split(" ") + ["", ""])[:2]
        url = urlsplit(target)
        if url.path.rstrip("/") != API_PATH.rstrip("/"):
            continue
        command = parse_qs(url.query).get("command", [""])[0]
        counts[command or method] += 1
    return counts


async def main(args: argparse.Namespace) -> int:
    fleet = Fleet(zones=args.zones, hypervisors=("KVM", "XenServer"), routers=args.routers,
                  redundant_pairs=args.redundant_pairs)
    timings = Timings(template_download=1.0, router_reboot=args.reboot_seconds, systemvm_recreate=0.5, job=0.02)
    with CloudStackSimulator(fleet=fleet, timings=timings) as sim:
        pool = CloudStackPool(per_endpoint=args.concurrency, poll_interval=args.poll_seconds)
        reconciler = SystemVMTemplateReconciler(pool, pass_seconds=args.pass_seconds, poll_seconds=args.poll_seconds)
        driver = Driver(reconciler, spec_for(sim, max_unavailable=args.max_unavailable), secrets_for(sim))
        started = time.monotonic()
        await driver.until_settled(timeout=3600)
        total = time.monotonic() - started
        await pool.close()
        report = analyse(sim.audit())
        by_command = requests_by_command(sim.access_log())
    requests = sum(by_command.values())
    stage = (report.last_end or 0) - (report.first_start or 0)
    ideal = math.ceil(args.routers / args.max_unavailable) * args.reboot_seconds
    upgraded = driver.status.get("routers", {}).get("upgraded")
    print(f"routers {args.routers} (redundant pairs {args.redundant_pairs}), maxUnavailable {args.max_unavailable}, "
          f"reboot {args.reboot_seconds:.1f}s, pass {args.pass_seconds:.0f}s, poll {args.poll_seconds:.2f}s")
    print(f"  upgraded                 {upgraded}/{args.routers}  (Ready={driver.condition('Ready').get('status')})")
    print(f"  router stage wall time   {stage:.1f}s")
    print(f"  ideal ceil(N/M) x R      {ideal:.1f}s")
    print(f"  ratio                    {stage / ideal:.2f}")
    print(f"  peak rebooting at once   {report.max_rebooting}  (pair both down: {report.both_down})")
    print(f"  whole rollout            {total:.1f}s in {driver.passes} passes "
          "(register, activate, system VMs, routers)")
    print(f"  API requests             {requests}  ({requests / args.routers:.2f} per router)")
    print("    by command             " + ", ".join(f"{name} {count}" for name, count in by_command.most_common()))
    limits = {"every router upgraded": upgraded == args.routers,
              f"at most {args.max_unavailable} rebooting at once": report.max_rebooting <= args.max_unavailable,
              f"ratio at most {args.max_ratio:.2f}": stage / ideal <= args.max_ratio,
              f"at most {args.max_requests:.0f} requests per router": requests / args.routers <= args.max_requests}
    missed = [limit for limit, kept in limits.items() if not kept]
    print("  limits                   " + ("kept" if not missed else "MISSED: " + "; ".join(missed)))
    return 1 if missed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", type=int, default=500)
    parser.add_argument("--redundant-pairs", type=int, default=0,
                        help="pairs among the routers (they constrain the order; 0 measures the budget alone)")
    parser.add_argument("--zones", type=int, default=2)
    parser.add_argument("--max-unavailable", type=int, default=25)
    parser.add_argument("--reboot-seconds", type=float, default=2.0)
    parser.add_argument("--pass-seconds", type=float, default=15.0)
    parser.add_argument("--poll-seconds", type=float, default=0.25)
    parser.add_argument("--concurrency", type=int, default=16, help="CloudStack requests in flight")
    parser.add_argument("--max-ratio", type=float, default=1.05, help="the router stage's limit, × the ideal")
    parser.add_argument("--max-requests", type=float, default=3.0, help="the API requests' limit, per router")
    sys.exit(asyncio.run(main(parser.parse_args())))
