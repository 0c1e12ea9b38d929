"""`stackops` command line: run | plan | crds | docs | lab."""
from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from pathlib import Path

REPO_CRDS = Path("crds")
# A namespace name. kopf would also take globs and negations (`team-*`, `!kube-system`), but only by listing and
# watching every namespace, which the namespaced installation must not need: names only.
NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _maintenance_locks(namespace: str) -> object:
    """The KvmHost maintenance locks of a namespace (Leases), through the API client `core_api()` configured."""
    from .drivers.maintenance_lock import MaintenanceLocks, coordination_api

    return MaintenanceLocks(coordination_api(), namespace)


def _run(args: argparse.Namespace) -> int:
    import kopf

    from .drivers import kube, xenapi
    from .drivers.kube import core_api, custom_objects_api
    from .drivers.cloudstack import CloudStackPool
    from .drivers.configmaps import ConfigMapReader
    from .drivers.secrets import SecretReader
    from .drivers.ssh import SSHPool
    from .handlers import Deps, build
    from .handlers.peering import own_identity
    from .reconcile import default_reconcilers

    namespaces = list(dict.fromkeys(args.namespace or []))  # in order, each once
    invalid = [n for n in namespaces if not NAMESPACE_NAME.fullmatch(n)]
    if invalid:
        print(f"stackops run: --namespace takes namespace names (RFC 1123 labels, no patterns): "
              f"{', '.join(map(repr, invalid))}", file=sys.stderr)
        return 2
    kopf.configure(verbose=args.verbose, debug=args.debug)
    if args.metrics_address:
        from . import metrics

        try:
            host, port = metrics.serve(args.metrics_address)
        except (OSError, ValueError) as error:
            print(f"stackops run: cannot serve metrics on {args.metrics_address!r}: {error}", file=sys.stderr)
            return 2
        logging.getLogger(__name__).info("serving Prometheus metrics on http://%s:%d/metrics", host, port)
    local_builds = None
    if args.allow_local_builds:  # before any Secret is read: the process is made non-dumpable first
        from .reconcile.cloudstackrelease.isolation import LocalBuilds, protect_operator

        try:
            protect_operator()
        except OSError as error:
            print(f"stackops run: --allow-local-builds: {error}", file=sys.stderr)
            return 2
        local_builds = LocalBuilds.discover()
    xenapi.use_workers(args.xenapi_workers)
    kube.use_workers(args.kube_workers)
    cloudstack = CloudStackPool(per_endpoint=args.cloudstack_concurrency, poll_interval=args.cloudstack_poll_seconds)
    ssh = SSHPool(max_workers=args.ssh_workers, idle_seconds=args.ssh_idle_seconds, max_idle=args.ssh_max_idle)
    reconcilers = default_reconcilers(ssh, cloudstack, pass_seconds=args.rollout_pass_seconds,
                                      poll_seconds=args.cloudstack_poll_seconds,
                                      retry_backoff=args.router_retry_seconds, xen_poll_seconds=args.xen_poll_seconds,
                                      local_builds=local_builds, maintenance_locks=_maintenance_locks)
    try:
        core = core_api()
        kube.check_server()
    except kube.ClusterUnavailable as error:  # before kopf, whose login would end in a traceback
        print(f"stackops run: {error}", file=sys.stderr)
        return 2 if isinstance(error, kube.NoCredentials) else 1
    deps = Deps(reconcilers=reconcilers, secrets=SecretReader(core), custom_api=custom_objects_api(),
                config_maps=ConfigMapReader(core))
    identity = own_identity()
    registry, settings = build(deps, standalone=args.standalone, custom_api=deps.custom_api, namespaces=namespaces,
                               identity=identity)
    kopf.run(
        identity=identity,
        registry=registry,
        settings=settings,
        standalone=args.standalone,
        priority=args.priority,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness or None,
    )
    return 0


def _crds(args: argparse.Namespace) -> int:
    from .api import crds

    directory = Path(args.output_dir)
    if args.check:
        problems = crds.stale(directory)
        for problem in problems:
            print(f"{directory}: {problem}", file=sys.stderr)
        if problems:
            print("run `stackops crds` to regenerate", file=sys.stderr)
        return 1 if problems else 0
    for path in crds.write(directory):
        print(path)
    return 0


def _docs(args: argparse.Namespace) -> int:
    from .api import reference

    readme = Path(args.readme)
    if args.check:
        if reference.readme_is_current(readme):
            return 0
        print(f"{readme}: the field reference is stale; run `stackops docs`", file=sys.stderr)
        return 1
    reference.update_readme(readme)
    print(readme)
    return 0


def _plan(args: argparse.Namespace) -> int:
    from .plan import plan_files

    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.ERROR)  # the plan is the output
    return plan_files([Path(f) for f in args.filename], out=sys.stdout, output=args.output, timeout=args.timeout,
                      namespace=args.namespace)


def _lab(args: argparse.Namespace, rest: list[str]) -> int:
    from . import plugins  # the lab is its own distribution (lab/), found by its entry point

    return plugins.run("lab", rest)


def _seconds(text: str) -> float:
    number = float(text)
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f"needs a positive number of seconds, not {text}")
    return number


def _count(text: str) -> int:
    number = int(text)
    if number < 0:
        raise argparse.ArgumentTypeError(f"needs 0 or more, not {number}")
    return number


def _threads(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"needs at least 1 thread, not {number}")
    return number


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="stackops", description="Run CloudStack infrastructure from Git.")
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument("-n", "--namespace", action="append",
                     help="watch only this namespace (repeatable; peering by a KopfPeering in each, RBAC: "
                          "deploy/namespaced/); default: all namespaces")
    run.add_argument("--standalone", action="store_true", help="no peering (for a single local run)")
    run.add_argument("--priority", type=int, default=0, help="peering priority")
    run.add_argument("--liveness", default="http://0.0.0.0:8080/healthz",
                     help="health endpoint URL to serve ('' to disable)")
    run.add_argument("--metrics-address", default="0.0.0.0:9100", metavar="HOST:PORT",
                     help="serve Prometheus metrics on http://HOST:PORT/metrics ('' to disable; default 0.0.0.0:9100)")
    run.add_argument("--cloudstack-concurrency", type=int, default=8, metavar="N",
                     help="requests in flight per CloudStack endpoint (default 8)")
    run.add_argument("--cloudstack-poll-seconds", type=float, default=2.0, metavar="S",
                     help="the longest wait between two polls of a CloudStack async job (default 2); a router "
                          "rollout polls its reboot jobs when they are due by the reboot times it has seen, and "
                          "then more often, up to this")
    run.add_argument("--rollout-pass-seconds", type=float, default=15.0, metavar="S",
                     help="length of one router-rollout pass; status is written after each (default 15)")
    run.add_argument("--router-retry-seconds", type=float, default=30.0, metavar="S",
                     help="first backoff before a failed router reboot is retried; doubles per attempt (default 30)")
    run.add_argument("--xen-poll-seconds", type=float, default=1.0, metavar="S",
                     help="how often a XenServer pool change (HA, join, eject, master) is polled (default 1)")
    run.add_argument("--ssh-workers", type=_threads, default=12, metavar="N",
                     help="SSH commands running at once, all hosts together; more wait, and the wait counts against "
                          "their timeouts (default 12; 4 more threads confirm guarded KvmHost changes)")
    run.add_argument("--ssh-idle-seconds", type=_seconds, default=60.0, metavar="S",
                     help="close an SSH connection no command has used for S seconds, and end its thread; the next "
                          "command to the host connects again (default 60, below KvmHost's default resync of 300 s: "
                          "hosts between resyncs hold no connection)")
    run.add_argument("--ssh-max-idle", type=_count, default=4, metavar="N",
                     help="keep at most N SSH connections open while no command uses them; the longest idle beyond "
                          "that are closed at once (default 4; 0: close each connection when its commands end)")
    run.add_argument("--xenapi-workers", type=_threads, default=8, metavar="N",
                     help="XenAPI calls running at once, all XenPools together (default 8)")
    run.add_argument("--kube-workers", type=_threads, default=4, metavar="N",
                     help="Secret reads and status patches running at once (default 4)")
    run.add_argument("--allow-local-builds", action="store_true",
                     help="let CloudStackReleases with builder.type Local build in this operator's container, in user "
                          "and mount namespaces without its credentials (default: refused, LocalBuildsDisabled)")
    run.add_argument("-v", "--verbose", action="store_true")
    run.add_argument("--debug", action="store_true")

    plan = sub.add_parser(
        "plan", help="show what the operator would change on the live infrastructure, without a cluster",
        description="Observe the infrastructure of every resource in the files (read-only, with the operator's own "
                    "code) and print what the operator would change. Credentials: Secret manifests in the files, "
                    "else environment variables STACKOPS_SECRET_<SECRET NAME>_<KEY> (upper-cased, other characters "
                    "than A-Z and 0-9 as _). Exit 0: nothing would change; 2: changes pending; 1: an error.")
    plan.add_argument("-f", "--filename", action="append", required=True, help="manifest file or directory")
    plan.add_argument("-o", "--output", choices=("text", "json"), default="text")
    plan.add_argument("-n", "--namespace", default="default",
                      help="namespace of manifests that name none (default: default)")
    plan.add_argument("--timeout", type=float, default=120.0, metavar="S",
                      help="give up on a resource whose infrastructure does not answer within S seconds (default 120)")
    plan.add_argument("-v", "--verbose", action="store_true", help="log what is done (to stderr)")

    crds = sub.add_parser("crds", help="write the CRDs generated from the models")
    crds.add_argument("--output-dir", default=str(REPO_CRDS))
    crds.add_argument("--check", action="store_true", help="exit 1 when the directory is stale")

    docs = sub.add_parser("docs", help="write the spec field reference into the README")
    docs.add_argument("--readme", default="README.md")
    docs.add_argument("--check", action="store_true", help="exit 1 when the README's reference is stale")

    sub.add_parser("lab", help="the local lab: up | down | status (the stackops-lab distribution, lab/)",
                   add_help=False)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lab"]:
        return _lab(argparse.Namespace(), argv[1:])
    args = parser().parse_args(argv)
    if args.command != "run":  # kopf configures logging for the operator itself
        logging.basicConfig(level=logging.INFO)
    handlers = {"run": _run, "plan": _plan, "crds": _crds, "docs": _docs}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
