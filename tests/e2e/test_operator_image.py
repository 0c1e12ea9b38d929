"""The operator image built by the project (`make image`: stackops_lab/image.py, buildah, a Debian base made with
debootstrap where no registry is reachable), run with runc as the Deployment runs it: uid 10001, read-only root,
no capabilities, an empty /tmp. Built once for the session and cached by the build context's hash (the same cache
as `make image`, so after one build this file takes seconds)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackops_lab import image
from support.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
# The first build on a machine (the Debian base included) takes ~3 minutes on 2 cores, in the first test's setup.
pytestmark = pytest.mark.timeout(1200)
TINI = "/usr/bin/tini"
PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def progress(message: str) -> None:
    print(f"[image] {message}", file=sys.__stderr__, flush=True)


@pytest.fixture(scope="session")
def operator_image() -> image.BuiltImage:
    return image.build(progress)


@pytest.fixture(scope="session")
def rootfs(operator_image: image.BuiltImage) -> Iterator[Path]:
    with image.mounted(operator_image.name) as root:
        yield root


def python_in_image(name: str, code: str) -> tuple[int, str, str]:
    """`code` run by the image's Python under its PID 1 (tini), as the image's user, read-only root."""
    result = image.run_in_image(name, ["-c", textwrap.dedent(code)], entrypoint=[TINI, "--", "python"])
    return result.returncode, result.stdout, result.stderr


def test_stackops_runs_as_uid_10001_on_a_read_only_root(operator_image: image.BuiltImage) -> None:
    shown = image.run_in_image(operator_image.name, ["--help"])
    assert shown.returncode == 0 and "run" in shown.stdout, shown.stderr
    run_help = image.run_in_image(operator_image.name, ["run", "--help"])
    assert run_help.returncode == 0 and "--allow-local-builds" in run_help.stdout, run_help.stderr
    status, out, err = python_in_image(operator_image.name, """
        import errno, os
        print(os.getuid(), os.getgid())
        try:
            open("/written", "w")
        except OSError as error:
            print("root", errno.errorcode[error.errno])
        with open("/tmp/written", "w") as scratch:
            print("tmp", scratch.write("x"))
    """)
    assert status == 0, err
    assert out.split("\n")[:3] == ["10001 10001", "root EROFS", "tmp 1"]


def test_pid_1_is_tini_and_reaps_orphans(operator_image: image.BuiltImage) -> None:
    """An orphan (a build's detached process) is reparented to PID 1: tini reaps it; the operator as PID 1 would keep
    it a zombie. The loop ends only when no process but PID 1 and this one is left."""
    status, out, err = python_in_image(operator_image.name, """
        import os, subprocess, time
        print(open("/proc/1/comm").read().strip())
        subprocess.run(["sh", "-c", "sleep 0.2 &"], check=True)
        def others():
            return [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid())]
        while others():
            time.sleep(0.05)
        print("reaped")
    """)
    assert status == 0, err
    assert out.split() == ["tini", "reaped"]


def test_the_image_s_configuration(operator_image: image.BuiltImage) -> None:
    config = image.image_config(operator_image.name)["config"]
    assert config["Entrypoint"] == [TINI, "--", "stackops"] and config["Cmd"] == ["run"]
    assert config["User"] == "10001:10001" and config["WorkingDir"] == "/tmp"
    assert set(config["ExposedPorts"]) == {"8080/tcp", "9100/tcp"}
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "stackops"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    names = {entry.split("=", 1)[0] for entry in config["Env"]}
    assert "VIRTUAL_ENV" in names
    assert {n for n in names if n.startswith("PIP_")} == {"PIP_DISABLE_PIP_VERSION_CHECK"}
    assert not names & {"SOURCE_HASH", "BASE_IMAGE", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"}


def test_no_lab_code_in_the_image(operator_image: image.BuiltImage, rootfs: Path) -> None:
    status, out, err = python_in_image(operator_image.name, """
        import importlib.util, stackops
        print(importlib.util.find_spec("stackops_lab"))
    """)
    assert status == 0, err
    assert out.strip() == "None"
    assert [p for p in rootfs.glob("opt/stackops/lib/python3*/site-packages/*") if "lab" in p.name.lower()] == []
    lab = image.run_in_image(operator_image.name, ["lab", "up"])
    assert lab.returncode != 0 and "stackops lab: not installed" in lab.stderr


def test_local_builds_are_refused_with_their_reason(operator_image: image.BuiltImage) -> None:
    """The image has no build tools for `builder.type: Local`, and deploy/ runs it without --allow-local-builds
    (tests/unit/test_deploy.py): the operator in the image refuses a Local release with LocalBuildsDisabled."""
    status, out, err = python_in_image(operator_image.name, """
        import logging
        from stackops.api.cloudstackrelease import CloudStackReleaseSpec
        from stackops.cli import parser
        from stackops.reconcile.base import Context, ReconcileError
        from stackops.reconcile.cloudstackrelease.runner import runner_for
        args = parser().parse_args(["run", "--liveness=http://0.0.0.0:8080/healthz"])
        spec = CloudStackReleaseSpec.model_validate({
            "source": {"repository": "https://127.0.0.1:9/nowhere.git", "baseRef": "4.8"}, "version": "4.8.0.16",
            "builder": {"type": "Local", "workDir": "/tmp/build"}, "packaging": {"enabled": False}})
        context = Context(namespace="n", name="r", generation=1, spec=spec, status={}, secrets={},
                          event=lambda *e: None, logger=logging.getLogger("t"))
        try:
            runner_for(None, context, spec, None)
        except ReconcileError as error:
            print(args.allow_local_builds, error.reason, error.retry)
    """)
    assert status == 0, err
    assert out.split() == ["False", "LocalBuildsDisabled", "False"]


def certificates(text: str) -> set[str]:
    return {"".join(block.split()) for block in PEM.findall(text)}


def test_nothing_of_the_machine_s_pip_settings_or_proxy_ca_in_the_image(rootfs: Path) -> None:
    """The build's pip.conf and the machine's CA bundle were mounted for the build only (on /mnt)."""
    assert [p for p in rootfs.rglob("pip.conf") if not p.is_symlink()] == []
    assert [p for p in rootfs.rglob("pip.ini")] == []
    assert list((rootfs / "mnt").iterdir()) == []
    debian = set()
    for crt in Path("/usr/share/ca-certificates").rglob("*.crt"):
        debian |= certificates(crt.read_text(errors="replace"))
    machine_only = certificates(image.SYSTEM_CA_BUNDLE.read_text()) - debian  # a proxy's CA, if the machine has one
    in_image = certificates((rootfs / "etc/ssl/certs/ca-certificates.crt").read_text())
    for extra in (rootfs / "usr/local/share/ca-certificates").rglob("*"):
        if extra.is_file():
            in_image |= certificates(extra.read_text(errors="replace"))
    assert in_image and not in_image & machine_only


def test_size(operator_image: image.BuiltImage) -> None:
    """Measured: 97 MB compressed (bench/image_build.py); the kubernetes client alone is 126 MB unpacked."""
    assert operator_image.archive.stat().st_size < 130e6


def test_the_archive_names_the_image_as_a_pod_spec_does(operator_image: image.BuiltImage) -> None:
    """A full reference, tagged per build: what the lab's installation sets with kustomize's `images:`."""
    with tarfile.open(operator_image.archive) as archive:
        index = json.load(archive.extractfile("index.json"))  # type: ignore[arg-type]
    [manifest] = index["manifests"]
    version = image.project_version(REPO)
    assert manifest["annotations"]["org.opencontainers.image.ref.name"] == operator_image.archive_name
    assert re.fullmatch(rf"localhost/stackops:{re.escape(version)}-[0-9a-f]{{12}}", operator_image.archive_name)
    assert operator_image.archive.name.startswith(f"stackops-{version}-{operator_image.archive_name[-12:]}")


def test_an_unchanged_tree_reuses_the_archive(operator_image: image.BuiltImage) -> None:
    again = image.build(progress)
    assert not again.built and again.archive == operator_image.archive
    assert again.context_hash == operator_image.context_hash


@pytest.fixture
def private_containerd(tmp_path: Path) -> Iterator[list[str]]:
    """A throwaway containerd of this test's own (root, state, socket under tmp_path; no CRI): the `ctr` command
    that talks to it. The machine's containerd, if any, is not used."""
    socket = tmp_path / "containerd.sock"
    (tmp_path / "config.toml").write_text(textwrap.dedent(f"""\
        version = 2
        root = "{tmp_path / 'root'}"
        state = "{tmp_path / 'state'}"
        disabled_plugins = ["io.containerd.grpc.v1.cri"]
        [grpc]
          address = "{socket}"
        [ttrpc]
          address = "{socket}.ttrpc"
        """))
    with open(tmp_path / "containerd.log", "wb") as log:
        daemon = subprocess.Popen(["containerd", "--config", str(tmp_path / "config.toml")], stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        ctr = ["ctr", "--address", str(socket), "--namespace", "stackops-image-test"]
        wait_for(lambda: subprocess.run([*ctr, "version"], capture_output=True).returncode == 0, timeout=60,
                 what="the private containerd to answer")
        yield ctr
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if line.split()[4].startswith(str(tmp_path))]
        for mount in sorted(mounts, reverse=True):
            subprocess.run(["umount", mount], check=False)
        shutil.rmtree(tmp_path / "root", ignore_errors=True)  # the unpacked image: hundreds of MB
        shutil.rmtree(tmp_path / "state", ignore_errors=True)


def test_the_archive_imports_and_runs_in_containerd(operator_image: image.BuiltImage,
                                                    private_containerd: list[str]) -> None:
    """What a node does with the archive: containerd (Debian's 1.6) imports it under the name a Pod's
    `image: stackops:0.1.0` means, and runs it read-only as the image's user under tini."""
    ctr = private_containerd
    subprocess.run([*ctr, "images", "import", str(operator_image.archive)], check=True, capture_output=True)
    listed = subprocess.run([*ctr, "images", "ls", "-q"], check=True, capture_output=True, text=True).stdout.split()
    assert listed == [operator_image.archive_name]
    result = subprocess.run([*ctr, "run", "--rm", "--read-only", operator_image.archive_name, "image-test",
                             TINI, "--", "python", "-c",
                             "import os; print(os.getuid(), os.getgid(), open('/proc/1/comm').read().strip())"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["10001", "10001", "tini"]
