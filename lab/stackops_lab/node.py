"""A real node for the lab's local control plane: `stackops lab up --node`.

kube-controller-manager, kube-scheduler, kube-proxy (iptables mode) and a kubelet on the lab's own containerd with
CNI (bridge + host-local + portmap + loopback, masquerade), so Deployments, ReplicaSets, Pods, Services, probes and
ServiceAccount token mounts work as in any cluster. The four binaries are built once from the same Debian source
package as kube-apiserver (`stackops lab prepare --node`) and cached apart from it, so a lab without a node never
waits for them; the sandbox ("pause") image is compiled from the same source's build/pause/linux/pause.c.

No image comes from a registry: every image is loaded into the node's containerd from a local archive
(`Node.load_image`).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from stackops_lab import controlplane
from stackops_lab.controlplane import Progress, format_duration, run_logged

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


def build_node_once(progress: Progress) -> Path:
    cache = controlplane.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with controlplane.file_lock(cache / "kube-node.lock", progress):
        build = find_cached_node_build()
        if build is not None:
            return build
        # Always the same work path: Go's build cache keys hold the -trimpath flag, which holds the tree's path,
        # so a kept GOCACHE (below) only helps a later build (another recipe, a new Debian revision) at one path.
        work = cache / "kube-node-build"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            return build_node_in(work, progress)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def build_node_in(work: Path, progress: Progress) -> Path:
    cache = controlplane.cache_dir()
    log = cache / "kube-node-build.log"
    log.write_text("")
    progress(f"downloading Debian source package `{controlplane.SOURCE_PACKAGE}` (build log: {log})…")
    dsc = controlplane.download_source(work / "download", log)
    version = controlplane.dsc_version(dsc)
    tree = work / "src"
    run_logged(["dpkg-source", "--skip-patches", "-x", str(dsc), str(tree)], log)
    controlplane.apply_debian_patches(tree, progress)
    controlplane.replace_reflect2(tree)
    controlplane.fix_zero_value_validation(tree)
    # hack/lib/golang.sh sets GOCACHE=_output/local/go/cache: point it at a cache that outlives the tree.
    gocache = cache / "kube-node-gocache"
    gocache.mkdir(exist_ok=True)
    (tree / "_output" / "local" / "go").mkdir(parents=True)
    (tree / "_output" / "local" / "go" / "cache").symlink_to(gocache)
    progress(f"building {', '.join(NODE_BUILT)} from Debian source {version} (first time only, ~15 min)…")
    started = time.monotonic()
    controlplane.run_make(tree, [f"cmd/{name}" for name in NODE_BUILT], work / "home", log, progress)
    output = tree / "_output" / "bin"
    compile_pause(tree / "build" / "pause" / "linux" / "pause.c", output / PAUSE, log)
    progress(f"built the node's binaries in {format_duration(time.monotonic() - started)}")
    return install_node_build(output, version)


def compile_pause(source: Path, binary: Path, log: Path) -> None:
    """The sandbox process of every Pod, as build/pause/Makefile compiles it (static, so it needs no libc)."""
    run_logged(["gcc", "-Os", "-Wall", "-Werror", "-static", "-DVERSION=v3.4.1-stackops", "-o", str(binary),
                str(source)], log)


def install_node_build(output: Path, version: str) -> Path:
    """Copy the binaries into the cache, each under its final name only when complete; drop older builds."""
    cache = controlplane.cache_dir()
    destination = cache / f"kube-node-{version}-{NODE_RECIPE}"
    for old in cache.glob("kube-node-*"):
        if old.is_dir() and old != destination and old.name not in ("kube-node-build", "kube-node-gocache"):
            shutil.rmtree(old, ignore_errors=True)
    destination.mkdir(parents=True, exist_ok=True)
    for name in (*NODE_BUILT, PAUSE):
        temporary = destination / f".{name}.partial-{os.getpid()}"
        shutil.copyfile(output / name, temporary)
        temporary.chmod(0o755)
        os.replace(temporary, destination / name)
    return destination

