"""A real node for the lab's local control plane: `stackops lab up --node`.

kube-controller-manager, kube-scheduler, kube-proxy (iptables mode) and a kubelet on the lab's own containerd with
CNI (bridge + host-local + portmap + loopback, masquerade), so Deployments, ReplicaSets, Pods, Services, probes and
ServiceAccount token mounts work as in any cluster. The four binaries are built once from the same Debian source
package as kube-apiserver and cached apart from it, so a lab without a node never waits for them; on a fresh machine
`stackops lab prepare --node` builds all of them in one pass (`ensure_lab_binaries`). The sandbox ("pause") image is
compiled from the same source's build/pause/linux/pause.c.

No image comes from a registry: every image is loaded into the node's containerd from a local archive
(`Node.load_image`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from stackops_lab import controlplane, hosts, nodedns, ociimage
from stackops_lab.controlplane import LabError, Progress, format_duration, run_logged

NODE_RECIPE = "n1"
NODE_BUILT = ("kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy")
PAUSE = "pause"
BUILD_PACKAGES = (*controlplane.BUILD_PACKAGES, "libc6-dev")  # libc6-dev: the static pause binary
RUN_PACKAGES = ("containerd", "runc", "containernetworking-plugins", "iptables", "conntrack", "iproute2")


# --------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class NodeBinaries:
    directory: Path

    def __getitem__(self, name: str) -> Path:
        return self.directory / name


def find_cached_node_build() -> Path | None:
    """The most recent cached node build holding every binary and the pause binary, if any."""
    candidates = [
        directory
        for directory in controlplane.cache_dir().glob(f"kube-node-*-{NODE_RECIPE}")
        if all(os.access(directory / name, os.X_OK) for name in (*NODE_BUILT, PAUSE))
    ]
    return max(candidates, key=lambda d: d.stat().st_mtime, default=None)


def ensure_node_binaries(progress: Progress) -> NodeBinaries:
    """The node's binaries, built (once) if they are not cached."""
    controlplane.require_packages(RUN_PACKAGES)
    build = find_cached_node_build()
    if build is None:
        controlplane.require_packages(BUILD_PACKAGES)
        build = build_node_once(progress)
    return NodeBinaries(build)


def ensure_lab_binaries(progress: Progress) -> tuple[controlplane.Binaries, NodeBinaries]:
    """The control plane's binaries and the node's, as `ensure_binaries` and `ensure_node_binaries` give them; when
    neither is cached (a fresh machine), built in one pass: one download and source tree, one `make` for all six
    binaries, whose shared packages (k8s.io/api, apimachinery, client-go…) compile once. Each goes to its own
    cache directory, as if built alone; a machine with one of them cached builds only the other."""
    controlplane.require_packages((*controlplane.RUN_PACKAGES, *RUN_PACKAGES))
    if controlplane.find_cached_build() is None and find_cached_node_build() is None:
        controlplane.require_packages(BUILD_PACKAGES)
        build_all_once(progress)
    return controlplane.ensure_binaries(progress), ensure_node_binaries(progress)


def build_node_once(progress: Progress) -> Path:
    cache = controlplane.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with controlplane.file_lock(cache / controlplane.SHARED_WORK_LOCK, progress, "the node's binaries"):
        build = find_cached_node_build()
        if build is not None:
            return build
        with controlplane.shared_work() as work:
            return build_node_in(work, progress)


def build_all_once(progress: Progress) -> None:
    """Build both sets of binaries under both locks (in the control plane's order), unless another process built
    either meanwhile: then the callers build what is missing alone."""
    cache = controlplane.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with (controlplane.file_lock(cache / controlplane.LOCK, progress),
          controlplane.file_lock(cache / controlplane.SHARED_WORK_LOCK, progress, "the node's binaries")):
        if controlplane.find_cached_build() is not None or find_cached_node_build() is not None:
            return
        with controlplane.shared_work() as work:
            build_node_in(work, progress, control_plane=True)


def build_node_in(work: Path, progress: Progress, control_plane: bool = False) -> Path:
    """Build the node's binaries in `work` and install them; with `control_plane`, kube-apiserver and kubectl too
    (installed as `controlplane.build_in` does)."""
    log = controlplane.cache_dir() / "kube-node-build.log"
    log.write_text("")
    tree, version = controlplane.prepare_source(work, log, progress)
    names = [*(controlplane.BUILT if control_plane else ()), *NODE_BUILT]
    progress(f"building {', '.join(names)} from Debian source {version} "
             f"(first time only, ~{8 if control_plane else 10} min)…")
    started = time.monotonic()
    controlplane.run_make(tree, [f"cmd/{name}" for name in names], work / "home", log, progress)
    output = tree / "_output" / "bin"
    compile_pause(tree / "build" / "pause" / "linux" / "pause.c", output / PAUSE, log)
    built = "the binaries" if control_plane else "the node's binaries"
    progress(f"built {built} in {format_duration(time.monotonic() - started)}")
    if control_plane:
        controlplane.install_build(output, version, list(controlplane.BUILT))
    return install_node_build(output, version)


def compile_pause(source: Path, binary: Path, log: Path) -> None:
    """The sandbox process of every Pod, as build/pause/Makefile compiles it (static, so it needs no libc)."""
    run_logged(["gcc", "-Os", "-Wall", "-Werror", "-static", "-DVERSION=v3.4.1-stackops", "-o", str(binary),
                str(source)], log)


def install_node_build(output: Path, version: str) -> Path:
    """Copy the binaries into the cache, the directory appearing only when complete; drop older builds."""
    cache = controlplane.cache_dir()
    destination = cache / f"kube-node-{version}-{NODE_RECIPE}"
    for old in cache.glob("kube-node-*"):
        if old.is_dir() and old != destination and old.name not in (controlplane.SHARED_WORK, controlplane.GOCACHE):
            shutil.rmtree(old, ignore_errors=True)
    return controlplane.install_complete(output, (*NODE_BUILT, PAUSE), destination)


# --------------------------------------------------------------------------- the running node

NODE_NAME = "stackops-lab"
NETNS = "stackops-node"  # the node's network: its bridge, Pods' veths and kube-proxy's rules live and die with it
VETH = "stackops-node"  # the machine's end of the node's eth0
MACHINE_LINK_ADDRESS = "10.252.0.1"
NODE_ADDRESS = "10.252.0.2"
LINK_PREFIX = 24
CLUSTER_CIDR = "10.244.0.0/16"  # apart from the lab hosts (10.250.x, 10.251.x) and the Services (10.96.0.0/16)
NODE_POD_CIDR = "10.244.0.0/24"  # the first (only) node's, as kube-controller-manager allocates it
CGROUP_ROOT = "stackops-node"  # the node's Pods' cgroups: /sys/fs/cgroup/<controller>/stackops-node/kubepods/…
PAUSE_IMAGE = "stackops.lab/pause:3.4.1"
CNI_BIN = Path("/usr/lib/cni")
CONTAINERD_NAMESPACE = "k8s.io"
STATE = "state.json"
START_TIMEOUT_SECONDS = 180.0
# Stop order: the kubelet first (it would restart what the others stop), containerd after its containers.
PROCESSES = ("kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager", "dns", "containerd")
# The Python module a process runs, when it is not a program of its name: the cluster DNS is `python -m
# stackops_lab.nodedns` (whichever python started it: `stackops lab down` may run under another name of it).
MODULES = {"dns": "stackops_lab.nodedns"}
CLUSTER_DOMAIN = nodedns.CLUSTER_DOMAIN
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


@dataclass
class NodeState:
    pids: dict[str, int]
    ip_forward: str  # the machine's net.ipv4.ip_forward before the node set it, restored by `stop`
    server: str = ""  # the API server as the node (kubelet, kube-proxy) and Pods reach it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Node:
    """One node, `stackops-lab`, with its state in `workdir` (the lab's `node/`), for the control plane whose
    workdir is `control_plane.workdir` (it must have been started with `serve_node`)."""

    def __init__(self, workdir: Path, control_plane: controlplane.LocalControlPlane) -> None:
        self.workdir = Path(workdir).absolute()
        self.control_plane = control_plane
        self.state_file = self.workdir / STATE

    # ------------------------------------------------------------------ paths

    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    @property
    def kubelet_dir(self) -> Path:
        return self.workdir / "kubelet"

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    # ------------------------------------------------------------------ start / stop

    def start(self, cluster: controlplane.ClusterInfo, progress: Progress = controlplane.ignore_progress) -> None:
        if self.running():
            progress(f"the lab node `{NODE_NAME}` already runs")
            return
        binaries = ensure_node_binaries(progress)
        pki = self.control_plane.pki
        if not pki.kubelet_client_cert.is_file():
            raise LabError("the lab's API server was started without a node (it listens on 127.0.0.1 only); "
                           "run `stackops lab down` and `stackops lab up --node`")
        check_node_prerequisites()
        self.stop()  # leftovers of an earlier node of this lab
        started = time.monotonic()
        progress(f"starting the lab node `{NODE_NAME}` (containerd, kubelet, kube-proxy, kube-controller-manager, "
                 f"kube-scheduler, cluster DNS)…")
        self.workdir.mkdir(parents=True, exist_ok=True)
        advertise = apiserver_advertise_address(cluster)
        port = cluster.server.rsplit(":", 1)[1]
        state = NodeState(pids={}, ip_forward=IP_FORWARD.read_text().strip(), server=f"https://{advertise}:{port}")
        self.write_state(state)
        try:
            self.create_network()
            create_cgroups(CGROUP_ROOT)
            IP_FORWARD.write_text("1\n")  # Pods reach the lab hosts' bridges and the machine's other networks
            local = self.write_kubeconfig("local.kubeconfig", cluster.server, cluster)
            remote = self.write_kubeconfig("node.kubeconfig", state.server, cluster)
            self.spawn(state, "dns", [sys.executable, "-m", "stackops_lab.nodedns", f"--kubeconfig={local}",
                                      f"--listen={MACHINE_LINK_ADDRESS}"])
            self.spawn(state, "containerd", ["/usr/bin/containerd", f"--config={self.write_containerd_config()}"],
                       in_node=True)
            self.wait_for(lambda: self.containerd_socket.is_socket(), "containerd's socket", state)
            pause = ociimage.write_archive(ociimage.pause_image(binaries[PAUSE], PAUSE_IMAGE),
                                           self.workdir / "images" / "pause.tar")
            self.load_image(pause)
            self.write_cni_config()
            self.spawn(state, "kube-controller-manager",
                       self.controller_manager_command(binaries["kube-controller-manager"], local, pki))
            self.spawn(state, "kube-scheduler", [
                str(binaries["kube-scheduler"]), f"--kubeconfig={local}", f"--authentication-kubeconfig={local}",
                f"--authorization-kubeconfig={local}", "--leader-elect=false", "--port=0", "--secure-port=0"])
            self.spawn(state, "kubelet", self.kubelet_command(binaries["kubelet"], remote, pki), in_node=True)
            self.spawn(state, "kube-proxy", self.proxy_command(binaries["kube-proxy"], remote), in_node=True)
            api = NodeApi(cluster)
            self.wait_for(lambda: api.node_ready(NODE_NAME), f"node {NODE_NAME} Ready", state)
            self.wait_for(lambda: api.default_service_account_ready(), "the default ServiceAccount's token", state)
        except BaseException:
            self.stop()
            raise
        progress(f"the lab node `{NODE_NAME}` is Ready in {format_duration(time.monotonic() - started)}")

    def stop(self, progress: Progress = controlplane.ignore_progress) -> None:
        """Stop every process of the node and its containers, remove its mounts, network namespace (bridge, veths,
        iptables rules), cgroups and files; idempotent."""
        state = self.read_state()
        if state is None and not self.workdir.exists():
            return
        # The machine's one node (its network namespace, cgroups, forwarding) is ours to clear only when its cable
        # names our directory, or when we started one and there is none left (we crashed half-way).
        ours = self.netns_is_ours() or (state is not None and not hosts.netns_exists(NETNS))
        shim_sockets = self.shim_sockets()  # before containerd, seeing its shims die, removes their task directories
        if state is not None:
            for name in PROCESSES:
                if name == "containerd" and ours:
                    self.kill_containers()
                pid = state.pids.get(name)
                if self.is_ours(pid, name):
                    controlplane.terminate(pid)  # type: ignore[arg-type]
        if ours:
            self.kill_containers()
        for path in shim_sockets:
            path.unlink(missing_ok=True)
        unmount_under(self.workdir)
        remove_empty_dirs(SHIM_SOCKET_DIRS)
        if ours:
            if hosts.netns_exists(NETNS):
                hosts.kill_namespace_processes(NETNS)
                hosts.ip("netns", "del", NETNS, check=False)
            remove_cgroups(CGROUP_ROOT)
            if state is not None and state.ip_forward in ("0", "1"):
                IP_FORWARD.write_text(state.ip_forward + "\n")
        shutil.rmtree(self.workdir, ignore_errors=True)
        if state is not None:
            progress(f"stopped the lab node `{NODE_NAME}`")

    def running(self) -> bool:
        state = self.read_state()
        return state is not None and all(self.is_ours(state.pids.get(name), name) for name in PROCESSES)

    # ------------------------------------------------------------------ images

    def load_image(self, archive: Path) -> list[str]:
        """Import an OCI archive (as `buildah push … oci-archive:PATH:NAME` writes it) into the node's containerd,
        where the kubelet finds it (imagePullPolicy IfNotPresent or Never); the names imported."""
        names = oci_archive_names(archive)
        if not names:
            raise LabError(f"{archive} names no image (org.opencontainers.image.ref.name in its index.json)")
        repository = names[0].rsplit(":", 1)[0]
        self.ctr("images", "import", f"--base-name={repository}", str(archive))
        listed = set(self.ctr("images", "ls", "-q").split())
        missing = [name for name in names if name not in listed]
        if missing:
            raise LabError(f"importing {archive} did not give the image(s) {', '.join(missing)}")
        return names

    def ctr(self, *args: str) -> str:
        result = subprocess.run(
            ["ctr", f"--address={self.containerd_socket}", f"--namespace={CONTAINERD_NAMESPACE}", *args],
            capture_output=True, text=True, check=False, timeout=300,
        )
        if result.returncode != 0:
            raise LabError(f"ctr {' '.join(args[:2])} failed: {result.stderr.strip()}")
        return result.stdout

    # ------------------------------------------------------------------ network

    def create_network(self) -> None:
        """The node's network namespace, cabled to the machine by a veth; the machine routes the Services' and the
        Pods' ranges to it (so a ClusterIP answers from the machine), the node routes everything else back."""
        if hosts.link_exists(VETH) or hosts.netns_exists(NETNS):
            raise LabError(f"another lab's node runs on this machine (network namespace `{NETNS}`, link `{VETH}`); "
                           f"one lab node at a time: take that lab down first")
        hosts.ip("netns", "add", NETNS)
        try:
            hosts.ip_batch([
                f"link add {VETH} type veth peer name eth0 netns {NETNS}",
                f"link set dev {VETH} alias {self.workdir}",
            ])
        except BaseException:
            hosts.ip("netns", "del", NETNS, check=False)
            raise
        hosts.ip_batch([
            f"addr add {MACHINE_LINK_ADDRESS}/{LINK_PREFIX} dev {VETH}",
            f"link set dev {VETH} up",
            f"route add {controlplane.SERVICE_CLUSTER_IP_RANGE} via {NODE_ADDRESS} dev {VETH}",
            f"route add {CLUSTER_CIDR} via {NODE_ADDRESS} dev {VETH}",
        ])
        hosts.ip_batch([
            "link set dev lo up",
            f"addr add {NODE_ADDRESS}/{LINK_PREFIX} dev eth0",
            "link set dev eth0 up",
            f"route add default via {MACHINE_LINK_ADDRESS}",
        ], netns=NETNS)
        # In the node's namespace only (these sysctls are per network namespace).
        self.in_node(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1",
                      "net.ipv4.conf.all.route_localnet=1"])

    def netns_is_ours(self) -> bool:
        """The machine's end of the node's cable names the node's directory (its alias)."""
        return hosts.netns_exists(NETNS) and hosts.link_exists(VETH) and hosts.link_alias(VETH) == str(self.workdir)

    def in_node(self, command: list[str]) -> str:
        result = subprocess.run(["nsenter", f"--net=/run/netns/{NETNS}", "--", *command], capture_output=True,
                                text=True, check=False)
        if result.returncode != 0:
            raise LabError(f"`{' '.join(command)}` in the node's network namespace failed: {result.stderr.strip()}")
        return result.stdout

    # ------------------------------------------------------------------ configuration

    def write_kubeconfig(self, name: str, server: str, cluster: controlplane.ClusterInfo) -> Path:
        path = self.workdir / name
        controlplane.write_kubeconfig(path, server, self.control_plane.pki.ca_cert, cluster.admin_token)
        return path

    def write_containerd_config(self) -> Path:
        base = self.workdir / "containerd"
        base.mkdir(parents=True, exist_ok=True)
        config = base / "config.toml"
        config.write_text(f"""\
# the lab node's own containerd (stackops_lab.node): nothing of the machine's /var/lib/containerd or /run/containerd
version = 2
root = "{base / 'root'}"
state = "{base / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{self.containerd_socket}"

[ttrpc]
  address = "{base / 'containerd.sock.ttrpc'}"

[debug]
  address = "{base / 'debug.sock'}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / 'opt'}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  enable_selinux = false
  # Never below containerd's own: lowering a process's oom_score_adj is refused on machines of this kind
  # (runc: "failed to update /proc/self/oom_score_adj: Permission denied" for the sandbox's -998).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{base / 'runc'}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.workdir / 'cni' / 'net.d'}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
""")
        return config

    def write_cni_config(self) -> None:
        directory = self.workdir / "cni" / "net.d"
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "cniVersion": "0.4.0",
            "name": "stackops-lab",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": NODE_POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.workdir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (directory / "10-stackops-lab.conflist").write_text(json.dumps(config, indent=2) + "\n")

    def controller_manager_command(self, binary: Path, kubeconfig: Path, pki: controlplane.Pki) -> list[str]:
        return [
            str(binary),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-cidr={CLUSTER_CIDR}",
            "--allocate-node-cidrs=true",
            "--node-cidr-mask-size=24",
            f"--service-cluster-ip-range={controlplane.SERVICE_CLUSTER_IP_RANGE}",
            "--leader-elect=false",
            "--use-service-account-credentials=false",
            "--port=0",
            "--secure-port=0",
            "--controllers=*,-csrsigning,-csrapproving,-csrcleaner,-bootstrapsigner,-tokencleaner",
        ]

    def kubelet_command(self, binary: Path, kubeconfig: Path, pki: controlplane.Pki) -> list[str]:
        root = self.kubelet_dir
        return [
            str(binary),
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={root}",
            f"--cert-dir={root / 'pki'}",
            f"--volume-plugin-dir={root / 'volume-plugins'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_ADDRESS}",
            "--container-runtime=remote",
            f"--container-runtime-endpoint=unix://{self.containerd_socket}",
            f"--containerd={self.containerd_socket}",
            f"--pod-infra-container-image={PAUSE_IMAGE}",
            "--cgroup-driver=cgroupfs",
            f"--cgroup-root=/{CGROUP_ROOT}",
            "--fail-swap-on=false",
            # This machine's disk is what it is: never evict the lab's Pods for it, never delete an image (none
            # could be pulled again: there is no registry).
            "--eviction-hard=memory.available<1Mi,nodefs.available<1Mi,nodefs.inodesFree<1,imagefs.available<1Mi",
            "--image-gc-high-threshold=100",
            "--image-gc-low-threshold=99",
            "--anonymous-auth=false",
            f"--client-ca-file={pki.ca_cert}",
            "--authentication-token-webhook=true",
            "--authorization-mode=Webhook",
            "--read-only-port=0",
            f"--address={NODE_ADDRESS}",
            "--healthz-bind-address=127.0.0.1",
            "--resolv-conf=/etc/resolv.conf",
            f"--cluster-dns={MACHINE_LINK_ADDRESS}",  # nodedns.py
            f"--cluster-domain={CLUSTER_DOMAIN}",
            "--serialize-image-pulls=false",
            "--v=1",
        ]

    def proxy_command(self, binary: Path, kubeconfig: Path) -> list[str]:
        return [
            str(binary),
            f"--kubeconfig={kubeconfig}",
            "--proxy-mode=iptables",
            f"--cluster-cidr={CLUSTER_CIDR}",
            f"--hostname-override={NODE_NAME}",
            f"--bind-address={NODE_ADDRESS}",
            "--healthz-bind-address=127.0.0.1:10256",
            "--metrics-bind-address=127.0.0.1:10249",
            # conntrack's table size is the machine's, not the namespace's: leave it (and its timeouts) alone.
            "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0",
        ]

    # ------------------------------------------------------------------ processes

    def spawn(self, state: NodeState, name: str, command: list[str], in_node: bool = False) -> None:
        if in_node:
            command = ["/usr/bin/nsenter", f"--net=/run/netns/{NETNS}", "--", *command]
        state.pids[name] = controlplane.spawn(command, self.log(name))
        self.write_state(state)

    def wait_for(self, condition: Callable[[], bool], what: str, state: NodeState) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            for name, pid in state.pids.items():
                if not controlplane.process_alive(pid):
                    raise LabError(f"{name} exited while waiting for {what}; last lines of {self.log(name)}:\n"
                                   f"{controlplane.tail(self.log(name))}")
            try:
                if condition():
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise LabError(f"no {what} after {START_TIMEOUT_SECONDS:.0f}s; see the logs in {self.workdir}")

    def is_ours(self, pid: int | None, name: str) -> bool:
        if not pid or not controlplane.process_alive(pid):
            return False
        command = controlplane.process_command(pid)
        runs = command[1:3] == ["-m", MODULES[name]] if name in MODULES else Path(command[0]).name == name
        return bool(command) and runs and any(str(self.workdir) in argument for argument in command[1:])

    def kill_containers(self) -> None:
        """Every process of the node's Pods (in its cgroups) and containerd's shims for this node."""
        socket = str(self.containerd_socket)
        for _ in range(2):
            pids = set(cgroup_pids(CGROUP_ROOT))
            for pid in hosts.all_pids():
                command = controlplane.process_command(pid)
                if command and Path(command[0]).name.startswith("containerd-shim") and socket in command:
                    pids.add(pid)
            if not pids:
                return
            for pid in pids:
                hosts.with_signal(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while any(controlplane.process_alive(pid) for pid in pids) and time.monotonic() < deadline:
                time.sleep(0.05)

    def shim_sockets(self) -> list[Path]:
        """The sockets of the shims of this node's containerd, removed once they are killed (a shim that exits
        normally removes its own): containerd 1.6 names them sha256(<its socket>/<namespace>/<task id>) in
        /run/containerd/s."""
        tasks = self.workdir / "containerd" / "state" / "io.containerd.runtime.v2.task"
        return [SHIM_SOCKET_DIRS[0] / hashlib.sha256(str(self.containerd_socket / task.parent.name / task.name)
                                                     .encode()).hexdigest()
                for task in tasks.glob("*/*")]

    def write_state(self, state: NodeState) -> None:
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state.to_json(), indent=2))
        os.replace(temporary, self.state_file)

    def read_state(self) -> NodeState | None:
        try:
            return NodeState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None


class NodeApi:
    """The few reads `Node.start` waits on, as the lab's admin."""

    def __init__(self, cluster: controlplane.ClusterInfo) -> None:
        self.cluster = cluster
        ca = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["certificate-authority-data"]
        self.context = ssl.create_default_context(cadata=base64.b64decode(ca).decode())

    def get(self, path: str) -> dict[str, Any] | None:
        request = urllib.request.Request(self.cluster.server + path,
                                         headers={"Authorization": f"Bearer {self.cluster.admin_token}"})
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=5) as response:
                return json.load(response)  # type: ignore[no-any-return]
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def node_ready(self, name: str) -> bool:
        node = self.get(f"/api/v1/nodes/{name}") or {}
        conditions = node.get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def default_service_account_ready(self) -> bool:
        account = self.get("/api/v1/namespaces/default/serviceaccounts/default") or {}
        return bool(account.get("secrets"))


# --------------------------------------------------------------------------- helpers


def check_node_prerequisites() -> None:
    if os.geteuid() != 0:
        raise LabError("a lab node needs root (network namespaces, cgroups, containerd)")
    missing = [name for name in ("bridge", "host-local", "portmap", "loopback") if not (CNI_BIN / name).is_file()]
    if missing:
        raise LabError(f"CNI plugins missing in {CNI_BIN}: {', '.join(missing)}; install containernetworking-plugins")


def apiserver_advertise_address(cluster: controlplane.ClusterInfo) -> str:
    pid = cluster.pids.get("kube-apiserver")
    for argument in controlplane.process_command(pid) if pid else []:
        if argument.startswith("--advertise-address="):
            return argument.split("=", 1)[1]
    raise LabError("cannot find the lab API server's --advertise-address (is the lab's local control plane up?)")


def oci_archive_names(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        if member is None:
            raise LabError(f"{archive} is not an OCI archive (no index.json)")
        index = json.load(member)
    names = []
    for manifest in index.get("manifests", []):
        annotations = manifest.get("annotations") or {}
        name = annotations.get("io.containerd.image.name") or annotations.get("org.opencontainers.image.ref.name")
        if name:
            names.append(name)
    return names


CGROUP_BASE = Path("/sys/fs/cgroup")


def cgroup_dirs(root: str) -> list[Path]:
    """`root`'s cgroup directories in every hierarchy, deepest first."""
    found = []
    for hierarchy in CGROUP_BASE.iterdir():
        top = hierarchy / root
        if top.is_dir():
            found += [Path(dirpath) for dirpath, _, _ in os.walk(top)]
    return sorted(found, key=lambda path: len(path.parts), reverse=True)


def cgroup_pids(root: str) -> list[int]:
    pids = []
    for directory in cgroup_dirs(root):
        with suppress(OSError):
            pids += [int(word) for word in (directory / "cgroup.procs").read_text().split()]
    return pids


def create_cgroups(root: str) -> None:
    """The kubelet's --cgroup-root in every hierarchy (it must exist); cpuset's needs its CPUs and memory nodes."""
    for hierarchy in CGROUP_BASE.iterdir():
        if hierarchy.is_dir() and (hierarchy / "cgroup.procs").is_file():
            (hierarchy / root).mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / name).is_file():
                    (hierarchy / root / name).write_text((hierarchy / name).read_text())


def remove_cgroups(root: str) -> None:
    for directory in cgroup_dirs(root):
        with suppress(OSError):
            directory.rmdir()


# containerd 1.6 keeps its shims' sockets in /run/containerd/s whatever its configuration says (and ctr its fifos in
# /run/containerd/fifo): removed when empty, deepest first.
SHIM_SOCKET_DIRS = (Path("/run/containerd/s"), Path("/run/containerd/fifo"), Path("/run/containerd"))


def remove_empty_dirs(directories: tuple[Path, ...]) -> None:
    for directory in directories:
        with suppress(OSError):
            directory.rmdir()


def unmount_under(directory: Path) -> None:
    """Unmount everything mounted under `directory` (Pods' volumes, root filesystems, network namespaces),
    deepest first."""
    prefix = str(directory) + "/"
    for _ in range(3):
        mounts = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                mounts.append(point)
        if not mounts:
            return
        for point in sorted(set(mounts), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)


class NodeComponent:
    """`stackops lab up --node`: the node, for the lab's local control plane (started with `serve_node`)."""

    name = "node"

    def start(self, lab_dir: Path, cluster: controlplane.ClusterInfo, progress: Progress) -> None:
        if cluster.provider != "local":
            raise LabError(f"--node runs a node for the lab's local control plane, not for a {cluster.provider} "
                           f"cluster (which has nodes of its own)")
        self.node(lab_dir).start(cluster, progress)

    def stop(self, lab_dir: Path, progress: Progress) -> None:
        self.node(lab_dir).stop(progress)

    @staticmethod
    def node(lab_dir: Path) -> Node:
        return Node(lab_dir / "node", controlplane.control_plane_for(lab_dir, serve_node=True))
