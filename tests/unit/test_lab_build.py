"""Building the lab's Kubernetes binaries (stackops_lab.controlplane, stackops_lab.node) with the download, the
unpacking and `make` faked: `stackops lab prepare --node` on a fresh machine builds kube-apiserver, kubectl and the
node's binaries in one pass (one download, one `make`), each set installed into its own cache directory as when built
alone; with one set cached it builds only the other; `prepare` alone builds only kube-apiserver and kubectl, at the
shared work path with the kept Go build cache; a failed build leaves no half-installed cache directory."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stackops_lab import cli, controlplane, node
from stackops_lab.controlplane import LabError

VERSION = "1.20.5+really1.20.2-1.1+deb12u1"
CONTROL_PLANE = {"kube-apiserver", "kubectl"}
NODE = {"kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy", "pause"}


@dataclass
class FakeBuild:
    cache: Path
    downloads: int = 0
    makes: list[set[str]] = field(default_factory=list)
    trees: list[Path] = field(default_factory=list)
    go_caches: list[Path | None] = field(default_factory=list)
    missing: str = ""  # a binary `make` does not produce

    def download_source(self, directory: Path, log: Path) -> Path:
        self.downloads += 1
        directory.mkdir(parents=True)
        dsc = directory / f"kubernetes_{VERSION}.dsc"
        dsc.write_text(f"Format: 3.0 (quilt)\nSource: kubernetes\nVersion: {VERSION}\n")
        return dsc

    def run_logged(self, command: list[str], log: Path, cwd: Path | None = None) -> None:
        if command[0] == "dpkg-source":
            Path(command[-1]).mkdir(parents=True)
        elif command[0] == "gcc":
            binary = Path(command[command.index("-o") + 1])
            binary.write_text("built: pause\n")
        else:
            raise AssertionError(command)

    def run_make(self, tree: Path, targets: list[str], home: Path, log: Path, progress: controlplane.Progress) -> None:
        names = {target.removeprefix("cmd/") for target in targets}
        self.makes.append(names)
        self.trees.append(tree)
        go_cache = tree / "_output" / "local" / "go" / "cache"
        self.go_caches.append(go_cache.resolve() if go_cache.is_symlink() else None)
        output = tree / "_output" / "bin"
        output.mkdir(parents=True, exist_ok=True)
        for name in names - {self.missing}:
            (output / name).write_text(f"built: {name}\n")


@pytest.fixture
def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBuild:
    cache = tmp_path / "cache"
    monkeypatch.setenv("STACKOPS_CACHE", str(cache))
    fake = FakeBuild(cache)
    monkeypatch.setattr(controlplane, "require_packages", lambda names: None)
    monkeypatch.setattr(controlplane, "download_source", fake.download_source)
    monkeypatch.setattr(controlplane, "run_logged", fake.run_logged)
    monkeypatch.setattr(node, "run_logged", fake.run_logged)
    monkeypatch.setattr(controlplane, "replace_reflect2", lambda tree: None)
    monkeypatch.setattr(controlplane, "fix_zero_value_validation", lambda tree: None)
    monkeypatch.setattr(controlplane, "run_make", fake.run_make)
    return fake


def installed(directory: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in directory.iterdir()}


def cached(directory: Path, names: set[str], by: str = "built") -> None:
    directory.mkdir(parents=True)
    for name in names:
        (directory / name).write_text(f"{by}: {name}\n")
        (directory / name).chmod(0o755)


def leftovers(cache: Path) -> list[str]:
    """What is in the cache besides the builds `find_cached_*` find, the logs, the locks and the Go build cache."""
    found = {controlplane.find_cached_build(), node.find_cached_node_build()}
    return sorted(path.name for path in cache.iterdir()
                  if path not in found and path.suffix not in (".log", ".lock") and path.name != "kube-node-gocache")


def test_prepare_node_on_a_fresh_machine_builds_everything_in_one_pass(build: FakeBuild) -> None:
    assert cli.main(["prepare", "--node"]) == 0
    assert build.downloads == 1
    assert build.makes == [CONTROL_PLANE | NODE - {"pause"}]
    control_plane = build.cache / f"kube-apiserver-{VERSION}-{controlplane.BUILD_RECIPE}"
    node_build = build.cache / f"kube-node-{VERSION}-{node.NODE_RECIPE}"
    assert installed(control_plane) == {name: f"built: {name}\n" for name in CONTROL_PLANE}
    assert installed(node_build) == {name: f"built: {name}\n" for name in NODE}
    assert controlplane.find_cached_build() == control_plane
    assert node.find_cached_node_build() == node_build
    assert build.trees == [build.cache / "kube-node-build" / "src"]
    assert build.go_caches == [build.cache / "kube-node-gocache"]
    assert leftovers(build.cache) == []  # the work tree is gone


def test_prepare_node_with_the_control_plane_cached_builds_only_the_node(build: FakeBuild) -> None:
    control_plane = build.cache / f"kube-apiserver-{VERSION}-{controlplane.BUILD_RECIPE}"
    cached(control_plane, CONTROL_PLANE, by="cached")
    assert cli.main(["prepare", "--node"]) == 0
    assert build.makes == [NODE - {"pause"}]
    assert installed(control_plane) == {name: f"cached: {name}\n" for name in CONTROL_PLANE}
    node_build = build.cache / f"kube-node-{VERSION}-{node.NODE_RECIPE}"
    assert installed(node_build) == {name: f"built: {name}\n" for name in NODE}
    assert leftovers(build.cache) == []


def test_prepare_node_with_the_node_cached_builds_only_the_control_plane(build: FakeBuild) -> None:
    node_build = build.cache / f"kube-node-{VERSION}-{node.NODE_RECIPE}"
    cached(node_build, NODE, by="cached")
    assert cli.main(["prepare", "--node"]) == 0
    assert build.makes == [CONTROL_PLANE]
    assert installed(node_build) == {name: f"cached: {name}\n" for name in NODE}
    control_plane = build.cache / f"kube-apiserver-{VERSION}-{controlplane.BUILD_RECIPE}"
    assert installed(control_plane) == {name: f"built: {name}\n" for name in CONTROL_PLANE}
    assert leftovers(build.cache) == []


def test_prepare_node_with_both_cached_builds_nothing(build: FakeBuild) -> None:
    cached(build.cache / f"kube-apiserver-{VERSION}-{controlplane.BUILD_RECIPE}", CONTROL_PLANE)
    cached(build.cache / f"kube-node-{VERSION}-{node.NODE_RECIPE}", NODE)
    assert cli.main(["prepare", "--node"]) == 0
    assert build.downloads == 0 and build.makes == []


def test_prepare_without_node_builds_only_the_control_plane_keeping_its_go_build_cache(build: FakeBuild) -> None:
    """At the node build's work path, with its Go build cache: a later `prepare --node` (or a new recipe of either)
    finds the shared packages compiled."""
    assert cli.main(["prepare"]) == 0
    assert build.makes == [CONTROL_PLANE]
    assert node.find_cached_node_build() is None
    assert build.trees == [build.cache / "kube-node-build" / "src"]
    assert build.go_caches == [build.cache / "kube-node-gocache"]
    assert leftovers(build.cache) == []
    assert cli.main(["prepare", "--node"]) == 0
    assert build.makes == [CONTROL_PLANE, NODE - {"pause"}]
    assert build.trees[1] == build.trees[0] and build.go_caches[1] == build.go_caches[0]


def test_an_older_recipe_of_the_control_plane_is_replaced_and_the_node_build_kept(build: FakeBuild) -> None:
    old = build.cache / f"kube-apiserver-{VERSION}-r1"
    cached(old, CONTROL_PLANE)
    node_build = build.cache / f"kube-node-{VERSION}-{node.NODE_RECIPE}"
    cached(node_build, NODE, by="cached")
    assert cli.main(["prepare", "--node"]) == 0
    assert build.makes == [CONTROL_PLANE]
    assert not old.exists() and node_build.is_dir()


@pytest.mark.parametrize("arguments, missing", [
    (["prepare"], "kube-apiserver"),
    (["prepare"], "kubectl"),
    (["prepare", "--node"], "kube-apiserver"),
    (["prepare", "--node"], "kube-proxy"),
])
def test_a_failed_build_leaves_no_half_installed_cache_directory(build: FakeBuild, arguments: list[str],
                                                                 missing: str) -> None:
    build.missing = missing
    assert cli.main(arguments) == 1
    assert leftovers(build.cache) == []
    assert not any((directory / missing).exists() for directory in build.cache.iterdir() if directory.is_dir())


def test_a_failed_make_installs_nothing(build: FakeBuild, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_make(*args: object) -> None:
        raise LabError("building cmd/kube-apiserver … failed (make exited 2)")

    monkeypatch.setattr(controlplane, "run_make", failing_make)
    assert cli.main(["prepare", "--node"]) == 1
    assert controlplane.find_cached_build() is None and node.find_cached_node_build() is None
    assert leftovers(build.cache) == []


def test_both_locks_are_taken_in_one_order_and_a_build_finished_meanwhile_is_not_repeated(
        build: FakeBuild, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever takes both locks takes the control plane's first; the node's alone guards the shared work path. A node
    build another process finished while this one waited for the locks is used, and only the rest built."""
    taken: list[str] = []
    real_lock = controlplane.file_lock

    @contextmanager
    def file_lock(path: Path, progress: controlplane.Progress, what: str = "") -> Iterator[None]:
        with real_lock(path, progress):
            taken.append(path.name)
            if path.name == "kube-node.lock" and len(taken) == 2:  # the other process's node build, done meanwhile
                cached(build.cache / f"kube-node-{VERSION}-{node.NODE_RECIPE}", NODE, by="other")
            yield

    monkeypatch.setattr(controlplane, "file_lock", file_lock)
    assert cli.main(["prepare", "--node"]) == 0
    assert taken == ["kube-apiserver.lock", "kube-node.lock", "kube-apiserver.lock", "kube-node.lock"]
    assert build.makes == [CONTROL_PLANE]
    node_build = build.cache / f"kube-node-{VERSION}-{node.NODE_RECIPE}"
    assert installed(node_build) == {name: f"other: {name}\n" for name in NODE}


def test_lab_up_with_a_node_on_a_fresh_machine_builds_everything_in_one_pass(
        build: FakeBuild, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    started: list[bool] = []

    def up(lab_dir: Path | None, progress: controlplane.Progress, provider: str | None,
           components: object, serve_node: bool) -> controlplane.ClusterInfo:
        started.append(serve_node)
        return controlplane.ClusterInfo("local", tmp_path / "kubeconfig", "https://127.0.0.1:6443")

    monkeypatch.setattr(controlplane, "up", up)
    monkeypatch.setattr(controlplane, "choose_provider", lambda: "local")
    assert cli.main(["--dir", str(tmp_path / "lab"), "up", "--node"]) == 0
    assert started == [True]
    assert build.downloads == 1 and build.makes == [CONTROL_PLANE | NODE - {"pause"}]
    assert controlplane.find_cached_build() is not None and node.find_cached_node_build() is not None


def test_lab_up_with_a_node_of_another_provider_builds_nothing(build: FakeBuild, monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    monkeypatch.setattr(controlplane, "up", lambda *args, **kwargs: controlplane.ClusterInfo(
        "kind", tmp_path / "kubeconfig", "https://127.0.0.1:6443"))
    monkeypatch.setattr(controlplane, "choose_provider", lambda: "kind")
    assert cli.main(["--dir", str(tmp_path / "lab"), "up", "--node"]) == 0
    assert build.makes == []
