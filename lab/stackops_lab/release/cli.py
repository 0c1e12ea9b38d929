"""`stackops lab release-source`: the lab's CloudStack-like source repository (Git over HTTP, pull request patches
at GitHub-like URLs) in the foreground, for CloudStackRelease builds on lab hosts.

Creates the repository under --directory, serves it on --bind (a lab host reaches the machine at its bridge
address, `LabHost.gateway`: 10.250.<slot>.1), prints `ready <repository URL>` on stdout once serving, writes the
state as JSON to --state-file (mode 0600, removed on exit) and runs until SIGINT or SIGTERM.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stackops_lab.background import serve
from stackops_lab.release.fixture import make_source_repository
from stackops_lab.release.server import ReleaseServer


def add_parser(commands: Any) -> None:
    """Declare `release-source` on the `stackops lab` sub-command parser."""
    parser = commands.add_parser(
        "release-source", help="serve the lab's CloudStack-like source repository and pull request patches in the "
                               "foreground; prints `ready <repository URL>` on stdout once serving")
    parser.add_argument("--directory", type=Path, required=True, help="where the repository is created")
    parser.add_argument("--bind", default="127.0.0.1", help="address to serve on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port, 0 for any free one (default: %(default)s)")
    parser.add_argument("--state-file", type=Path, default=None, metavar="PATH",
                        help="write {repository, base_ref, base_version, maven_command, pull_requests, pid} as "
                             "JSON here (mode 0600); removed on exit")


def run(args: argparse.Namespace, report: Any) -> int:
    try:
        fixture = make_source_repository(args.directory)
        server = ReleaseServer(fixture, bind=args.bind, port=args.port)
    except (OSError, ValueError) as error:
        report(f"error: {error}")
        return 1

    def state() -> dict:
        return {"repository": server.repository_url, "base_ref": fixture.base_ref,
                "base_version": fixture.base_version, "maven_command": list(fixture.maven_command),
                "applying": list(fixture.applying), "conflicting": list(fixture.conflicting)}

    banner = [f"pull requests that apply: {', '.join(f'#{n}' for n in fixture.applying)}; "
              f"that conflict: {', '.join(f'#{n}' for n in fixture.conflicting)}"]
    return serve(server.start, server.stop, state_file=args.state_file, state=state, ready=server.repository_url,
                 report=report, banner=banner, what="lab release source")


def main(argv: list[str] | None = None) -> int:
    """`python -m stackops_lab.release.cli …` (the same options as `stackops lab release-source`)."""
    parser = argparse.ArgumentParser(prog="stackops_lab.release.cli")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["release-source", *(sys.argv[1:] if argv is None else argv)])
    return run(args, lambda message: print(message, file=sys.stderr, flush=True))


if __name__ == "__main__":
    sys.exit(main())
