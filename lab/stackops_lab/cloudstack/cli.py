"""`stackops lab cloudstack`: run the CloudStack simulator in the foreground.

Prints the endpoint and keys on stderr, writes them as JSON to --state-file if given, prints one line
`ready <endpoint>` on stdout once serving, and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stackops_lab.background import serve
from stackops_lab.cloudstack import catalog
from stackops_lab.cloudstack.fleet import Fleet
from stackops_lab.cloudstack.simulator import CloudStackSimulator
from stackops_lab.cloudstack.timings import Timings


def add_parser(commands: Any) -> None:
    """Declare `cloudstack` on the `stackops lab` sub-command parser."""
    parser = commands.add_parser(
        "cloudstack", help="run the lab CloudStack management server simulator in the foreground; prints "
                           "`ready <endpoint>` on stdout once serving")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on, 0 for any free one (default: 8080)")
    parser.add_argument("--zones", type=int, default=Fleet.zones, metavar="N", help="zones (default: %(default)s)")
    parser.add_argument("--routers", type=int, default=Fleet.routers, metavar="N",
                        help="virtual routers, redundant pairs included (default: %(default)s)")
    parser.add_argument("--redundant-pairs", type=int, default=Fleet.redundant_pairs, metavar="N",
                        help="redundant router pairs among the routers (default: %(default)s)")
    parser.add_argument("--router-version", default=Fleet.router_version, metavar="VERSION",
                        help="system VM template version the fleet starts on (default: %(default)s)")
    parser.add_argument("--router-reboot", type=float, default=Timings.router_reboot, metavar="SECONDS",
                        help="how long a router reboot takes (default: %(default)s)")
    parser.add_argument("--template-download", type=float, default=Timings.template_download, metavar="SECONDS",
                        help="how long a template download takes (default: %(default)s)")
    parser.add_argument("--cloudstack-version", default=catalog.CLOUDSTACK_VERSION, metavar="VERSION",
                        help="the management server version listCapabilities reports; parameters newer than it are "
                             "ignored, as that CloudStack does (default: %(default)s)")
    parser.add_argument("--api-key", default=None, help="the admin's API key (default: random)")
    parser.add_argument("--secret-key", default=None, help="the admin's secret key (default: random)")
    parser.add_argument("--ssh-key", default=None, metavar="PATH",
                        help="private key the simulator logs in to KVM hosts with for addHost without password")
    parser.add_argument("--state-file", type=Path, default=None, metavar="PATH",
                        help="write {endpoint, baseUrl, apiKey, secretKey, pid} as JSON here (mode 0600); "
                             "removed on exit")


def run(args: argparse.Namespace, report: Any) -> int:
    if (args.api_key is None) != (args.secret_key is None):
        report("error: give both --api-key and --secret-key, or neither")
        return 2
    fleet = Fleet(zones=args.zones, routers=args.routers, redundant_pairs=args.redundant_pairs,
                  router_version=args.router_version)
    timings = Timings(router_reboot=args.router_reboot, template_download=args.template_download)
    try:
        sim = CloudStackSimulator(fleet=fleet, timings=timings, host=args.host, port=args.port,
                                  ssh_key_path=args.ssh_key, api_key=args.api_key, secret_key=args.secret_key,
                                  version=args.cloudstack_version)
    except (OSError, ValueError) as error:
        report(f"error: {error}")
        return 1
    def state() -> dict:
        return {"endpoint": sim.endpoint, "baseUrl": sim.base_url, "apiKey": sim.api_key, "secretKey": sim.secret_key}

    def banner() -> list[str]:
        routers = len(sim.state.tables["router"])
        return [f"CloudStack simulator: {sim.endpoint} ({routers} routers, {fleet.zones} zones)",
                f"api key: {sim.api_key}", f"secret key: {sim.secret_key}"]

    return serve(sim.start, sim.stop, state_file=args.state_file, state=state, ready=sim.endpoint, report=report,
                 banner=banner(), what="CloudStack simulator")


def main(argv: list[str] | None = None) -> int:
    """`python -m stackops_lab.cloudstack.cli …` (the same options as `stackops lab cloudstack`)."""
    parser = argparse.ArgumentParser(prog="stackops lab")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cloudstack", *(sys.argv[1:] if argv is None else argv)])
    return run(args, lambda message: print(message, file=sys.stderr, flush=True))


if __name__ == "__main__":
    sys.exit(main())
