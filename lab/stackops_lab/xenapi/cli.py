"""`stackops lab xenapi`: run the lab XenServer pools in the foreground.

Hosts xen1…xenN listen on 127.0.1.10… (one port for all; --address: on that address and the next ones); consecutive groups of --pool-size hosts form a pool
(the first is its master, with a shared NFS SR); a remainder of one host stays standalone and joinable. Prints
one line `ready <url> <url> …` (a URL per host) on stdout once serving, writes the state as JSON to
--state-file (mode 0600, removed on exit) and runs until SIGINT or SIGTERM. With --tls the hosts speak HTTPS
with certificates of a lab CA whose certificate is the state's `ca_pem` (what a XenPool's tls.caSecretRef needs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stackops_lab.background import serve
from stackops_lab.xenapi.simulator import XenHostSpec, XenLab
from stackops_lab.xenapi.timings import XenTimings


def add_parser(commands: Any) -> None:
    """Declare `xenapi` on the `stackops lab` sub-command parser."""
    parser = commands.add_parser(
        "xenapi", help="run lab XenServer hosts (a XenAPI simulator, one endpoint per host) in the foreground; "
                       "prints `ready <url of each host>` on stdout once serving")
    parser.add_argument("--hosts", type=int, default=3, metavar="N", help="hosts (default: %(default)s)")
    parser.add_argument("--pool-size", type=int, default=2, metavar="K",
                        help="hosts per pool, in order; a remainder of one host is standalone (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8090, help="port every host listens on, 0 for any free one "
                                                               "(default: %(default)s)")
    parser.add_argument("--address", default=None, metavar="IPV4",
                        help="the first host's address, the next hosts' the following ones: addresses of this "
                             "machine, e.g. on the lab's bridge where Pods reach them (default: 127.0.1.10…)")
    parser.add_argument("--username", default="root", help="dom0 user (default: root)")
    parser.add_argument("--password", default="xenroot", help="dom0 password (default: xenroot)")
    parser.add_argument("--vms-per-host", type=int, default=2, metavar="N",
                        help="running guest VMs per host (default: %(default)s)")
    parser.add_argument("--ha-time-scale", type=float, default=XenTimings.ha_time_scale, metavar="F",
                        help="lab seconds per second of HA timeout (default: %(default)s)")
    parser.add_argument("--tls", action="store_true",
                        help="serve HTTPS with certificates signed by a lab CA (its PEM is ca_pem in the state file)")
    parser.add_argument("--state-file", type=Path, default=None, metavar="PATH",
                        help="write {hosts: {name: {address, url}}, port, username, password, pools, tls, ca_pem, "
                             "pid} as JSON here (mode 0600); removed on exit")


def pools_of(names: list[str], size: int) -> list[list[str]]:
    groups = [names[i:i + size] for i in range(0, len(names), max(1, size))]
    return [group for group in groups if len(group) > 1 or size == 1]


def run(args: argparse.Namespace, report: Any) -> int:
    if args.hosts < 1 or args.hosts > 200 or args.pool_size < 1:
        report("error: --hosts must be 1..200 and --pool-size at least 1")
        return 2
    names = [f"xen{i + 1}" for i in range(args.hosts)]
    try:
        pools = pools_of(names, args.pool_size)
        pooled = {name for pool in pools for name in pool}  # the others are fresh installs: no VMs, ready to join
        lab = XenLab(hosts=[XenHostSpec(name, vms=None if name in pooled else 0) for name in names], pools=pools,
                     username=args.username, password=args.password, vms_per_host=args.vms_per_host,
                     timings=XenTimings(ha_time_scale=args.ha_time_scale), port=args.port, tls=args.tls,
                     bind=args.address or "loopback")
    except (OSError, ValueError) as error:
        report(f"error: {error}")
        return 1
    def summary() -> dict:
        pools = [lab.pool_of(name) for name in names]
        return {p["uuid"]: {"master": p["master"], "members": p["members"]} for p in pools}

    def state() -> dict:
        return {"hosts": {n: {"address": lab.address(n), "url": lab.url(n)} for n in names}, "port": lab.port,
                "username": lab.username, "password": lab.password, "pools": list(summary().values()),
                "tls": lab.tls is not None, "ca_pem": lab.ca_pem}

    def start() -> None:
        lab.start()
        banner.extend(f"pool: master {p['master']}, members {', '.join(p['members'])}" for p in summary().values())
        banner.append(f"dom0 credentials: {lab.username} / {lab.password}")
        if lab.tls is not None:
            banner.append("HTTPS with certificates of the lab CA (ca_pem in the state file)")

    banner: list[str] = []
    return serve(start, lab.stop, state_file=args.state_file, state=state, ready=" ".join(lab.url(n) for n in names),
                 report=report, banner=banner, what="lab XenServer hosts")


def main(argv: list[str] | None = None) -> int:
    """`python -m stackops_lab.xenapi.cli …` (the same options as `stackops lab xenapi`)."""
    parser = argparse.ArgumentParser(prog="stackops lab")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["xenapi", *(sys.argv[1:] if argv is None else argv)])
    return run(args, lambda message: print(message, file=sys.stderr, flush=True))


if __name__ == "__main__":
    sys.exit(main())
