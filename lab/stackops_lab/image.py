"""The operator image, built by the project: `stackops lab image` (`make image`).

The project's Dockerfile is built with Debian's buildah, no Docker engine and no registry needed:

- the base image (the Dockerfile's `BASE_IMAGE`) is `python:3.11-slim-bookworm` for whoever names it (`--base`, with a
  registry); by default the lab makes one from Debian's packages (`debootstrap --variant=minbase` of the machine's
  Debian release from the mirror its apt already uses, Python 3.11 in /usr/bin), built once and kept in buildah's
  storage under a name that holds BASE_RECIPE;
- pip inside the build gets the machine's settings (index, proxy CA) through a pip.conf and a CA bundle that
  `buildah bud --volume` mounts for the build only: nothing of them is in a layer;
- buildah's storage is under the cache directory ($STACKOPS_CACHE or ~/.cache/stackops, like the kube-apiserver
  build), so that a CI job that keeps that one directory keeps the base, the layers and the archives;
- the result is tagged `localhost/stackops:<version>` and written as an OCI archive named after the hash of the build
  context (Dockerfile, .dockerignore, pyproject.toml, README.md, operator/) and the base: an unchanged tree reuses it
  without building. In the archive the image is `localhost/stackops:<version>-<that hash>`, the reference the lab's
  installation gives the Deployment (podoperator.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stackops_lab import checkout
from stackops_lab.controlplane import (
    AptSource,
    LabError,
    Progress,
    cache_dir,
    configured_apt_sources,
    format_duration,
    ignore_progress,
    is_debian_archive,
    os_codename,
    require_packages,
    tail,
)

# Part of the base image's name: bump it whenever the base's recipe changes, so that an older base is never reused.
BASE_RECIPE = "b2"
BASE_REPOSITORY = "localhost/stackops-base"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
# The name in buildah's storage, and in the archive with a tag of its own per build (<version>-<build key>): the lab
# installs deploy/ with kustomize's `images:` set to it, so a changed tree is a new image and `kubectl apply -k`
# rolls the Deployment out, as a release with a new tag does (a full reference: containerd keeps it as it is).
LOCAL_REPOSITORY = "localhost/stackops"
# Part of an archive's key: bump it whenever what the archive holds changes for the same build context (a2: its name).
ARCHIVE_RECIPE = "a2"
# What the build reads: the files the Dockerfile copies (its .dockerignore lets in only these) and the Dockerfile.
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md")
CONTEXT_DIRS = ("operator",)
IGNORED_PARTS = ("__pycache__",)
IGNORED_SUFFIXES = (".pyc", ".egg-info")
# Inside the build's RUN containers only (buildah bud --volume): pip's settings and the machine's CA bundle. /mnt is
# in every Debian image: a mount point that does not exist would be left behind in the image, empty.
BUILD_SETTINGS_DIR = "/mnt"
# pip settings that say where and how to reach the index; paths of this machine (find-links…) mean nothing inside.
PIP_KEYS = ("index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout", "retries", "proxy")
# The slimming of Debian's own container images (debian:bookworm-slim, which python:3.11-slim is made from): no
# documentation but copyrights, no manual pages, no translations; apt keeps no package caches.
SLIM_DPKG_CONFIG = """\
# stackops lab base image: as debian:*-slim
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
"""
SLIM_APT_CONFIG = """\
// stackops lab base image: as Debian's container images (docker-clean)
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_PACKAGES = ("buildah", "runc")  # runc: the OCI runtime of RUN steps (buildah only recommends one)
BASE_BUILD_PACKAGES = ("debootstrap",)


@dataclass(frozen=True)
class BuiltImage:
    name: str  # in buildah's storage: localhost/stackops:<version>
    archive: Path  # OCI archive holding `archive_name`
    # localhost/stackops:<version>-<build key>: the reference a Pod spec gives (podoperator.overlay)
    archive_name: str
    context_hash: str
    built: bool  # False: the archive of this context was there already


# --------------------------------------------------------------------------- pure parts


def debian_mirror(sources: Sequence[AptSource], codename: str) -> str:
    """The URI of the first Debian archive this machine's apt uses for the release itself (not -security, -updates)."""
    for source in sources:
        if is_debian_archive(source) and "main" in source.components and codename in source.suites:
            return source.uri
    raise LabError(f"no Debian {codename} mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/")


def apt_lines(sources: Sequence[AptSource], codename: str) -> str:
    """sources.list lines for the base image: the Debian archives (release, updates, security) the machine uses."""
    lines = []
    for source in sources:
        if not is_debian_archive(source) or "main" not in source.components:
            continue
        for suite in source.suites:
            if suite == codename or suite.startswith(codename + "-"):
                lines.append(f"deb {source.uri} {suite} main")
    return "\n".join(dict.fromkeys(lines)) + "\n"


def parse_pip_config(listing: str) -> dict[str, str]:
    """`pip config list` output (`global.cert='…'`, `:env:.index-url='…'`) as {key: value}; later lines win, as
    the environment wins over files in pip."""
    settings: dict[str, str] = {}
    for line in listing.splitlines():
        name, sep, value = line.partition("=")
        if not sep:
            continue
        section, _, key = name.rpartition(".")
        if section not in ("global", "install", "wheel", "download", ":env:"):
            continue
        settings[key] = value.strip().strip("'\"")
    return settings


def build_pip_conf(settings: dict[str, str]) -> str:
    """The pip.conf the build's pip reads: the index settings of this machine (not its local paths: file: URLs mean
    nothing inside the build), its CA bundle at the mounted path."""
    lines = ["[global]", f"cert = {BUILD_SETTINGS_DIR}/ca.crt"]
    for key in PIP_KEYS:
        values = [v for v in settings.get(key, "").split() if not v.startswith(("file:", "/"))]
        if values:
            lines.append(f"{key} = {' '.join(values)}")
    return "\n".join(lines) + "\n"


def slim(root: Path) -> None:
    """What debian:*-slim leaves out, out of a debootstrap root; and the configuration that keeps it out."""
    for pattern in ("usr/share/doc/*/*", "usr/share/groff/*", "usr/share/info/*", "usr/share/linda/*",
                    "usr/share/lintian/overrides/*", "usr/share/locale/*", "usr/share/man/*",
                    "var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*"):
        for path in root.glob(pattern):
            if path.name == "copyright" and path.parent.parent.name == "doc":
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.is_file() or path.is_symlink():
                path.unlink()
    (root / "etc/dpkg/dpkg.cfg.d/stackops-slim").write_text(SLIM_DPKG_CONFIG)
    (root / "etc/apt/apt.conf.d/stackops-clean").write_text(SLIM_APT_CONFIG)


def built_image_ids(build_output: str) -> set[str]:
    """The (short, 11 hex digits) ids of the images a `buildah bud --layers` made or took from its cache: each step's
    `--> <id>` and `--> Using cache <id>` lines."""
    return {found[:11] for found in re.findall(r"^--> (?:Using cache )?([0-9a-f]{11,64})\s*$", build_output, re.M)}


def context_files(root: Path) -> list[Path]:
    """The files of the build context, relative to `root`, sorted."""
    files = [Path(name) for name in CONTEXT_FILES if (root / name).is_file()]
    for directory in CONTEXT_DIRS:
        for path in (root / directory).rglob("*"):
            relative = path.relative_to(root)
            if any(part in IGNORED_PARTS or part.endswith(IGNORED_SUFFIXES) for part in relative.parts):
                continue
            if path.is_file():
                files.append(relative)
    return sorted(files)


def context_hash(root: Path) -> str:
    """sha256 over the context's paths, executable bits and contents: what changes the image."""
    digest = hashlib.sha256()
    for relative in context_files(root):
        path = root / relative
        digest.update(f"{relative.as_posix()}\0{int(os.access(path, os.X_OK))}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def project_version(root: Path) -> str:
    return str(tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"])


def base_name(codename: str) -> str:
    return f"{BASE_REPOSITORY}:{codename}-{BASE_RECIPE}"


# --------------------------------------------------------------------------- buildah


def storage_dir() -> Path:
    return cache_dir() / "containers"


def buildah_command(*args: str) -> list[str]:
    """buildah on the lab's own storage (under the cache directory); overlay unless $STACKOPS_BUILDAH_DRIVER says
    otherwise (vfs where the cache directory is itself on overlayfs)."""
    storage = storage_dir()
    driver = os.environ.get("STACKOPS_BUILDAH_DRIVER") or "overlay"
    return ["buildah", "--root", str(storage / "root"), "--runroot", str(storage / "run"),
            "--storage-driver", driver, *args]


def buildah(*args: str, log: Path | None = None) -> str:
    """Run buildah; its output, or a LabError with the end of it."""
    command = buildah_command(*args)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if log is not None:
        with open(log, "a") as output:
            output.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        raise LabError(f"`buildah {args[0]}` failed (exit {result.returncode}):\n"
                       + "\n".join((result.stdout + result.stderr).splitlines()[-30:]))
    return result.stdout


def image_exists(name: str) -> bool:
    command = buildah_command("inspect", "--type", "image", "--format", "{{.FromImageID}}", name)
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def run_logged(command: list[str], log: Path, what: str) -> None:
    with open(log, "ab") as output:
        output.write(f"$ {' '.join(command)}\n".encode())
        output.flush()
        result = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise LabError(f"{what} failed (exit {result.returncode}), log {log}:\n{tail(log)}")


@contextmanager
def image_lock(progress: Progress) -> Iterator[None]:
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "image.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("another process is building the operator image; waiting for it…")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("building the image needs root here (buildah and debootstrap without user namespaces); "
                       "run `sudo make image`")


# --------------------------------------------------------------------------- base image


def ensure_base(progress: Progress = ignore_progress) -> str:
    """The Debian base image (built once: debootstrap, then `buildah commit`); its name."""
    codename = os_codename()
    name = base_name(codename)
    if image_exists(name):
        return name
    require_packages(BASE_BUILD_PACKAGES)
    sources = configured_apt_sources()
    mirror = debian_mirror(sources, codename)
    log = cache_dir() / "image-base.log"
    log.write_text("")
    progress(f"making the base image {name} from Debian {codename} ({mirror}; first time only, ~2 min; log {log})…")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="image-base-", dir=cache_dir()) as work:
        root = Path(work) / "root"
        run_logged(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", codename,
                    str(root), mirror], log, "debootstrap")
        (root / "etc/apt/sources.list").write_text(apt_lines(sources, codename))
        slim(root)
        container = buildah("from", "--pull=never", "scratch", log=log).strip()
        try:
            mount = buildah("mount", container, log=log).strip()
            run_logged(["cp", "-a", f"{root}/.", mount], log, "copying the root into the image")
            buildah("umount", container, log=log)
            buildah("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "--env", "LANG=C.UTF-8", "--cmd", "/bin/bash",
                    "--label", f"org.opencontainers.image.description=Debian {codename} with Python (stackops lab)",
                    container, log=log)
            # the release's updates and security fixes, as a python:*-slim image has them
            buildah("run", "--network", "host", container, "--", "sh", "-c",
                    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -y -qq upgrade "
                    "&& apt-get clean && rm -rf /var/lib/apt/lists/*", log=log)
            buildah("commit", "--quiet", "--rm", container, name, log=log)
        except BaseException:
            subprocess.run(buildah_command("rm", container), capture_output=True, check=False)
            raise
    for old in buildah("images", "--format", "{{.Name}}:{{.Tag}}").split():
        # bases of older recipes (their layers stay while a cached build uses them)
        if old.startswith(BASE_REPOSITORY + ":") and old != name:
            subprocess.run(buildah_command("rmi", old), capture_output=True, check=False)
    progress(f"base image made in {format_duration(time.monotonic() - started)}")
    return name


# --------------------------------------------------------------------------- the image


def archive_dir() -> Path:
    return cache_dir() / "image"


def machine_pip_settings() -> dict[str, str]:
    result = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                            check=False)
    return parse_pip_config(result.stdout) if result.returncode == 0 else {}


def stage_context(source: Path, context: Path) -> None:
    for relative in context_files(source):
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative, context / relative)


def build(progress: Progress = ignore_progress, source: Path | None = None, base: str | None = None) -> BuiltImage:
    """Build (or reuse) the operator image of the checkout `source`; see the module's docstring."""
    require_root()
    require_packages(BUILD_PACKAGES)
    source = source or checkout.root()
    version = project_version(source)
    digest = context_hash(source)
    name = f"{LOCAL_REPOSITORY}:{version}"
    base_ref = base or base_name(os_codename())
    key = hashlib.sha256(f"{digest}\0{base_ref}\0{ARCHIVE_RECIPE}".encode()).hexdigest()[:16]
    archive_name = f"{LOCAL_REPOSITORY}:{version}-{key[:12]}"
    archive = archive_dir() / f"stackops-{version}-{key}.oci.tar"
    with image_lock(progress):
        if archive.is_file():
            if not image_exists(name) or image_id(name) != archive_image_id(archive):
                buildah("pull", "--quiet", f"oci-archive:{archive}")
                buildah("tag", archive_name, name)
            return BuiltImage(name, archive, archive_name, digest, built=False)
        base_image = base or ensure_base(progress)
        assert base_image == base_ref
        archive.parent.mkdir(parents=True, exist_ok=True)
        log = cache_dir() / "image-build.log"
        log.write_text("")
        progress(f"building {name} with buildah (base {base_image}; log {log})…")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="image-context-", dir=cache_dir()) as work:
            context, settings = Path(work) / "context", Path(work) / "settings"
            context.mkdir()
            settings.mkdir(mode=0o700)
            stage_context(source, context)
            pip_settings = machine_pip_settings()
            ca = Path(pip_settings.get("cert") or SYSTEM_CA_BUNDLE)
            shutil.copyfile(ca, settings / "ca.crt")
            (settings / "pip.conf").write_text(build_pip_conf(pip_settings))
            for path in settings.iterdir():
                path.chmod(0o600)
            run_logged(buildah_command(
                "bud", "--layers", "--pull=never" if base is None else "--pull", "--network", "host",
                "--build-arg", f"BASE_IMAGE={base_image}",
                "--build-arg", f"PIP_CONFIG_FILE={BUILD_SETTINGS_DIR}/pip.conf",
                "--build-arg", f"DEPS_HASH={hashlib.sha256((source / 'pyproject.toml').read_bytes()).hexdigest()}",
                "--build-arg", f"SOURCE_HASH={digest}",
                "--volume", f"{settings}:{BUILD_SETTINGS_DIR}:ro",
                "--tag", name, "--file", str(context / "Dockerfile"), str(context)), log, "buildah bud")
        prune_layers(built_image_ids(log.read_text(errors="replace")), log)
        partial = archive.with_name(f".{archive.name}.partial-{os.getpid()}")
        partial.unlink(missing_ok=True)
        buildah("push", "--quiet", name, f"oci-archive:{partial}:{archive_name}", log=log)
        os.replace(partial, archive)
        for old in archive_dir().glob("stackops-*.oci.tar"):
            if old != archive:
                old.unlink(missing_ok=True)
        progress(f"built in {format_duration(time.monotonic() - started)}")
        return BuiltImage(name, archive, archive_name, digest, built=True)


def prune_layers(kept: set[str], log: Path) -> None:
    """Remove the untagged images of earlier builds (each changed tree leaves its steps' images behind): all but
    those of the build just done, which are the next build's cache."""
    dangling = buildah("images", "--filter", "dangling=true", "--format", "{{.ID}}").split()
    stale = [image for image in dangling if image[:11] not in kept]
    if stale:  # an image a working container still uses stays (its removal fails)
        with open(log, "a") as output:
            subprocess.run(buildah_command("rmi", *stale), stdout=output, stderr=subprocess.STDOUT, check=False)


def image_id(name: str) -> str:
    return buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", name).strip()


def archive_image_id(archive: Path) -> str:
    """The image id (config digest) of the image in an OCI archive written by `build`."""
    import tarfile

    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest_digest = index["manifests"][0]["digest"].split(":", 1)[1]
        manifest = json.load(tar.extractfile(f"blobs/sha256/{manifest_digest}"))  # type: ignore[arg-type]
    return str(manifest["config"]["digest"].split(":", 1)[1])


def image_config(name: str) -> dict:
    """The OCI image configuration (config, rootfs, history) of an image in the lab's storage."""
    return json.loads(buildah("inspect", "--type", "image", name))["OCIv1"]


# --------------------------------------------------------------------------- running it (tests, bench)


@contextmanager
def mounted(name: str) -> Iterator[Path]:
    """The root filesystem of a working container of image `name` (removed afterwards)."""
    container = buildah("from", "--pull=never", "--quiet", name).strip()
    try:
        yield Path(buildah("mount", container).strip())
    finally:
        subprocess.run(buildah_command("umount", container), capture_output=True, check=False)
        subprocess.run(buildah_command("rm", container), capture_output=True, check=False)


def runtime_spec(bundle: Path, rootfs: Path, config: dict, args: list[str], read_only: bool) -> dict:
    """An OCI runtime spec as a kubelet would make it from the Deployment: the image's user, environment and working
    directory, a read-only root, no capabilities, no new privileges, an empty /tmp (the emptyDir)."""
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True, capture_output=True)
    spec = json.loads((bundle / "config.json").read_text())
    uid, _, gid = (config.get("User") or "0:0").partition(":")
    process = spec["process"]
    process.update(terminal=False, args=args, cwd=config.get("WorkingDir") or "/", noNewPrivileges=True,
                   env=[*config.get("Env", []), "HOME=/tmp"], user={"uid": int(uid), "gid": int(gid or uid)},
                   capabilities={key: [] for key in ("bounding", "effective", "permitted", "ambient")})
    spec["root"] = {"path": str(rootfs), "readonly": read_only}
    spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]})
    spec["hostname"] = "stackops"
    return spec


def run_in_image(name: str, args: Sequence[str] | None = None, entrypoint: Sequence[str] | None = None,
                 read_only: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the image `name` with runc (no container engine): its entrypoint (or `entrypoint`) with `args` (or its
    CMD), as its user, read-only root; its own pid, network (loopback only), ipc, uts and mount namespaces."""
    config = image_config(name).get("config", {})
    command = [*(config.get("Entrypoint") or [] if entrypoint is None else entrypoint),
               *(config.get("Cmd") or [] if args is None else args)]
    with mounted(name) as rootfs, tempfile.TemporaryDirectory(prefix="image-run-", dir=cache_dir()) as bundle:
        spec = runtime_spec(Path(bundle), rootfs, config, command, read_only)
        (Path(bundle) / "config.json").write_text(json.dumps(spec))
        container_id = f"stackops-image-{os.getpid()}-{time.monotonic_ns()}"
        try:
            return subprocess.run(["runc", "run", "--bundle", bundle, container_id], capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        finally:
            subprocess.run(["runc", "delete", "--force", container_id], capture_output=True, check=False)
