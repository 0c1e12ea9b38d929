"""`stackops lab up|down|status|reboot`: the local lab for tests and demos."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from stackops_lab import controlplane
from stackops_lab.cloudstack import cli as cloudstack_cli
from stackops_lab.cloudstack.component import CloudStackComponent
from stackops_lab.xenapi.component import XenComponent
from stackops_lab.controlplane import Component, LabError
from stackops_lab.hosts import HostsComponent, LabHosts
from stackops_lab.node import NodeComponent, ensure_lab_binaries
from stackops_lab.operator import OperatorComponent
from stackops_lab.podoperator import PodOperatorComponent
from stackops_lab.release import cli as release_cli
from stackops_lab.release.component import ReleaseSourceComponent
from stackops_lab.xenapi import cli as xenapi_cli

# Started in this order after the cluster by `up`, stopped in reverse order by `down`.
COMPONENTS: Sequence[Component] = ()
# Started only on request (`up --operator`, `make demo`); `down` stops them whenever they run.
OPTIONAL: Sequence[Component] = (OperatorComponent(),)


def report(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def command_prepare(args: argparse.Namespace) -> int:
    if args.node:  # both, in one build when neither is cached
        binaries, node_binaries = ensure_lab_binaries(report)
        report(f"kube-apiserver: {binaries.kube_apiserver}")
        report(f"node binaries: {node_binaries.directory}")
    else:
        report(f"kube-apiserver: {controlplane.ensure_binaries(report).kube_apiserver}")
    return 0


def command_image(args: argparse.Namespace) -> int:
    from stackops_lab import image

    built = image.build(report, base=args.base)
    node = NodeComponent.node((args.dir or controlplane.default_lab_dir()).absolute())
    if node.running():  # the lab's node runs: the image is there for a Pod at once
        node.load_image(built.archive)
        report(f"loaded {built.archive_name} into the lab node (imagePullPolicy IfNotPresent finds it)")
    report(f"{built.name}: {'built' if built.built else 'unchanged, reused'}; OCI archive ({built.archive_name}):")
    print(built.archive)
    return 0


def command_up(args: argparse.Namespace) -> int:
    hosts = [HostsComponent(args.hosts)] if args.hosts else []
    if args.node and (args.cloudstack or args.xen) and not args.hosts:
        report("error: with --node, the lab CloudStack and XenServer hosts serve on the lab hosts' bridge, where the "
               "node's Pods reach them: add --hosts N")
        return 2
    # With a node, the simulators serve where its Pods (the operator's among them) reach them: the lab network.
    cloudstack = [CloudStackComponent(routers=args.routers, lab_network=args.node)] if args.cloudstack else []
    xen = [XenComponent(lab_network=args.node)] if args.xen else []
    if args.release and not args.hosts:
        report("error: --release needs --hosts (a lab host is the build host, and the source is served on their "
               "bridge)")
        return 2
    release = [ReleaseSourceComponent()] if args.release else []
    node = [NodeComponent()] if args.node else []
    operator = ([PodOperatorComponent()] if args.node else list(OPTIONAL)) if args.operator else []
    components = [*node, *COMPONENTS, *hosts, *cloudstack, *xen, *release, *operator]
    if args.node and (args.provider or controlplane.choose_provider()) == "local":
        ensure_lab_binaries(report)  # on a fresh machine, the control plane's and the node's in one build
    cluster = controlplane.up(args.dir, report, provider=args.provider, components=components, serve_node=args.node)
    report(f"the lab is up: {cluster.provider} cluster at {cluster.server}")
    report(f"export KUBECONFIG={cluster.kubeconfig}")
    print(cluster.kubeconfig)
    return 0


def command_down(args: argparse.Namespace) -> int:
    controlplane.down(args.dir, report, components=[NodeComponent(), *COMPONENTS, HostsComponent(),
                                                      CloudStackComponent(), XenComponent(), ReleaseSourceComponent(),
                                                      *OPTIONAL, PodOperatorComponent()])
    report("the lab is down")
    return 0


def command_status(args: argparse.Namespace) -> int:
    cluster = controlplane.running_cluster(args.dir)
    if cluster is None:
        print("not running")
        return 1
    print(f"running: {cluster.provider} cluster at {cluster.server}")
    print(f"kubeconfig: {cluster.kubeconfig}")
    return 0


def command_reboot(args: argparse.Namespace) -> int:
    """Reboot KVM lab hosts as an operator would (`systemctl reboot` in each), one after the other."""
    state = LabHosts(args.dir or controlplane.default_lab_dir()).read_state()
    hosts = {host.name: host for host in (state.hosts if state else [])}
    unknown = [name for name in args.names if name not in hosts]
    if unknown:
        report(f"error: no lab host {', '.join(unknown)} (the lab's hosts: {', '.join(hosts) or 'none'})")
        return 1
    for name in args.names:
        hosts[name].reboot(down_seconds=args.down, wait=not args.no_wait)
        report(f"{name}: {'rebooting' if args.no_wait else 'rebooted, up again'}")
    return 0


def command_examples(args: argparse.Namespace) -> int:
    from stackops_lab import examples

    lab_dir = args.dir or controlplane.default_lab_dir()
    try:
        written = examples.write(lab_dir, args.output)
    except examples.LabMissing as error:
        report(f"error: {error}")
        return 1
    for path in written:
        print(path)
    for kind, dropped in examples.DROPPED.items():
        report(f"{kind}: dropped {'; '.join(dropped)}")
    return 0


def command_cloudstack(args: argparse.Namespace) -> int:
    return cloudstack_cli.run(args, report)


def command_xenapi(args: argparse.Namespace) -> int:
    return xenapi_cli.run(args, report)


def command_release_source(args: argparse.Namespace) -> int:
    return release_cli.run(args, report)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "prepare": command_prepare,
    "image": command_image,
    "up": command_up,
    "down": command_down,
    "status": command_status,
    "reboot": command_reboot,
    "examples": command_examples,
    "cloudstack": command_cloudstack,
    "xenapi": command_xenapi,
    "release-source": command_release_source,
}


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(prog="stackops lab", description=__doc__)
    result.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="lab directory (default: $STACKOPS_LAB_DIR or /tmp/stackops-lab)",
    )
    commands = result.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up", help="start the lab; prints the kubeconfig path as the last line on stdout"
    )
    up.add_argument(
        "--provider",
        choices=controlplane.PROVIDERS,
        default=None,
        help="cluster to use (default: $KUBECONFIG if set, else kind if Docker runs, else local)",
    )
    up.add_argument("--hosts", type=int, default=0, metavar="N",
                    help="also start N KVM lab hosts (sshd, Open vSwitch, libvirtd in namespaces; needs root)")
    up.add_argument("--cloudstack", action="store_true",
                    help="also run the lab CloudStack (the simulator of `stackops lab cloudstack`) in the background")
    up.add_argument("--routers", type=int, default=200, metavar="N",
                    help="virtual routers of the lab CloudStack (default: 200; half of them in redundant pairs)")
    up.add_argument("--xen", action="store_true",
                    help="also run three lab XenServer hosts (the simulator of `stackops lab xenapi`): a pool of two "
                         "and a fresh install")
    up.add_argument("--release", action="store_true",
                    help="also serve the lab's CloudStack-like source repository (`stackops lab release-source`) for "
                         "CloudStackRelease builds on the lab hosts (needs --hosts)")
    up.add_argument("--node", action="store_true",
                    help="also run a node (kubelet on the lab's own containerd with CNI, kube-proxy, "
                         "kube-controller-manager, kube-scheduler) so Pods run; local control plane only, needs root")
    up.add_argument("--operator", action="store_true",
                    help="also install deploy/ and run the operator under its ServiceAccount: with --node as a Pod "
                         "from the image the Dockerfile builds (`stackops lab image`), else as a local process")
    prepare = commands.add_parser("prepare", help="build and cache the control plane binaries (first time: minutes)")
    prepare.add_argument("--node", action="store_true",
                         help="also the node's (kubelet, kube-proxy, kube-controller-manager, kube-scheduler, pause)")
    image = commands.add_parser(
        "image", help="build the operator image from the Dockerfile with buildah (cached by the build context's "
                      "hash) and load it into the lab's node when one runs; prints the path of its OCI archive as "
                      "the last line on stdout")
    image.add_argument("--base", default=None, metavar="IMAGE",
                       help="the Dockerfile's BASE_IMAGE, pulled from its registry (default: a Debian base the lab "
                            "makes with debootstrap from this machine's Debian mirror, no registry needed)")
    commands.add_parser("down", help="stop the lab and remove its directory")
    commands.add_parser("status", help="say whether the lab is running and where its kubeconfig is")
    reboot = commands.add_parser("reboot", help="reboot KVM lab hosts (`systemctl reboot` in each) and wait until "
                                                "each is up again")
    reboot.add_argument("names", nargs="+", metavar="HOST", help="a lab host's name (kvm1, kvm2, …)")
    reboot.add_argument("--down", type=float, default=None, metavar="SECONDS",
                        help="how long the host stays down (default: as set when the hosts were created)")
    reboot.add_argument("--no-wait", action="store_true", help="return once the reboot is under way")
    examples = commands.add_parser(
        "examples", help="write deploy/examples/ pointed at the running lab (for `stackops plan` and `kubectl apply`)")
    examples.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="directory to write")
    cloudstack_cli.add_parser(commands)
    xenapi_cli.add_parser(commands)
    release_cli.add_parser(commands)
    return result


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except LabError as error:
        report(f"error: {error}")
        return 1
    except KeyboardInterrupt:
        report("interrupted")
        return 130
