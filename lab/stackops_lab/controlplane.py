"""A real local Kubernetes control plane: etcd + kube-apiserver, envtest style.

kube-apiserver is built once from Debian bookworm's `kubernetes` source package and cached;
etcd comes from Debian's `etcd-server` package. No kubelet, controller-manager or scheduler
runs, so there is no garbage collection, namespaces never finish deleting and pods never run, unless the lab
has a node (`stackops lab up --node`, node.py).

`up` / `down` pick the cluster for the lab: the cluster named by `KUBECONFIG`, else kind
(when a Docker engine answers), else the local control plane.
"""

from __future__ import annotations

import base64
import datetime
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Progress = Callable[[str], None]

BUILD_PACKAGES = (
    "golang-go",
    "rsync",
    "jq",
    "golang-github-modern-go-reflect2-dev",
    "dpkg-dev",
    "build-essential",
)
RUN_PACKAGES = ("etcd-server",)
ETCD = Path("/usr/bin/etcd")
SOURCE_PACKAGE = "kubernetes"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
REFLECT2_DEBIAN = Path("/usr/share/gocode/src/github.com/modern-go/reflect2")
REFLECT2_VENDORED = Path("vendor/github.com/modern-go/reflect2")
OPENAPI_TYPE_VALIDATOR = Path("vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go")
OPENAPI_ZERO_CHECK = "if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {"
OPENAPI_NIL_CHECK = "if data == nil {"
# Part of the cache key: bump it whenever the build changes what the binary does, so that a
# binary built by an older recipe is never reused (r2: empty strings in custom resources accepted).
BUILD_RECIPE = "r2"
HEARTBEAT_SECONDS = 30.0
START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 10.0
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
KIND_CLUSTER = "stackops"
PROVIDERS = ("external", "kind", "local")


class LabError(RuntimeError):
    """A lab step failed; the message says what went wrong and what to do."""


def ignore_progress(message: str) -> None:
    """A `Progress` that says nothing."""


def cache_dir() -> Path:
    return Path(os.environ.get("STACKOPS_CACHE") or "~/.cache/stackops").expanduser()


def default_lab_dir() -> Path:
    return Path(os.environ.get("STACKOPS_LAB_DIR") or "/tmp/stackops-lab")


# --------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    etcd: Path
    kubectl: Path


def ensure_binaries(progress: Progress) -> Binaries:
    """Return the control plane binaries, building kube-apiserver and kubectl (once) if they are not cached.

    The lab's own kubectl, built from the same source, never one the machine happens to have: a machine that
    never ran the project has none, and a newer one would hide what the built one does not do."""
    require_packages(RUN_PACKAGES)
    build = find_cached_build()
    if build is None:
        require_packages(BUILD_PACKAGES)
        build = build_once(progress)
    return Binaries(kube_apiserver=build / "kube-apiserver", etcd=ETCD, kubectl=build / "kubectl")


def find_kubectl() -> Path:
    """The kubectl built next to the cached kube-apiserver."""
    build = find_cached_build()
    if build is None:
        raise LabError("the lab's kubectl is not built yet; run `stackops lab prepare` (or `make test`) once")
    return build / "kubectl"


def require_packages(names: Sequence[str]) -> None:
    missing = [name for name in names if not package_installed(name)]
    if missing:
        listed = " ".join(missing)
        raise LabError(
            f"missing Debian packages: {listed}. Install them with `make deps` "
            f"(or `sudo apt-get install {listed}`)."
        )


def package_installed(name: str) -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and result.stdout.startswith("ii")


BUILT = ("kube-apiserver", "kubectl")


def find_cached_build() -> Path | None:
    """The most recent cached build directory holding both binaries, if any."""
    candidates = []
    for directory in cache_dir().glob(f"kube-apiserver-*-{BUILD_RECIPE}"):
        if all(os.access(directory / name, os.X_OK) for name in BUILT):
            candidates.append(directory)
    return max(candidates, key=lambda d: d.stat().st_mtime, default=None)


# Builds share one work path and one Go build cache, kept between builds: Go's build cache keys hold the -trimpath
# flag, which holds the tree's path, so the cache only helps a later build (the node's after kube-apiserver's, another
# recipe, a new Debian revision) at the same path. The names are the node build's, which had them first.
SHARED_WORK = "kube-node-build"
GOCACHE = "kube-node-gocache"
LOCK = "kube-apiserver.lock"
# Held by whoever uses SHARED_WORK; taken after LOCK by whoever takes both, never the other way round.
SHARED_WORK_LOCK = "kube-node.lock"


def build_once(progress: Progress) -> Path:
    """Build kube-apiserver and kubectl under the locks, unless another process just did: the control plane's,
    then the shared work path's (another process may be building the node's binaries there)."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with file_lock(cache / LOCK, progress), file_lock(cache / SHARED_WORK_LOCK, progress, "the node's binaries"):
        build = find_cached_build()
        if build is not None:
            return build
        with shared_work() as work:
            return build_in(work, progress)


@contextmanager
def file_lock(path: Path, progress: Progress, what: str = "kube-apiserver") -> Iterator[None]:
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"another process is building {what}; waiting for it…")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def shared_work() -> Iterator[Path]:
    """The builds' work directory, always at the same path (SHARED_WORK), empty, removed afterwards.

    The caller holds SHARED_WORK_LOCK."""
    work = cache_dir() / SHARED_WORK
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_in(work: Path, progress: Progress) -> Path:
    log = cache_dir() / "kube-apiserver-build.log"
    log.write_text("")
    tree, version = prepare_source(work, log, progress)
    names = list(BUILT)
    progress(f"building {' and '.join(names)} from Debian source {version} (first time only, ~6 min)…")
    started = time.monotonic()
    run_make(tree, [f"cmd/{name}" for name in names], work / "home", log, progress)
    progress(f"built in {format_duration(time.monotonic() - started)}")
    return install_build(tree / "_output" / "bin", version, names)


def prepare_source(work: Path, log: Path, progress: Progress) -> tuple[Path, str]:
    """Download Debian's source package into `work`, unpack and patch it as every build needs it; the tree and
    the package's version. The tree's Go build cache is the one kept in the cache directory (GOCACHE)."""
    progress(f"downloading Debian source package `{SOURCE_PACKAGE}` (build log: {log})…")
    dsc = download_source(work / "download", log)
    version = dsc_version(dsc)
    tree = work / "src"
    run_logged(["dpkg-source", "--skip-patches", "-x", str(dsc), str(tree)], log)
    apply_debian_patches(tree, progress)
    replace_reflect2(tree)
    fix_zero_value_validation(tree)
    # hack/lib/golang.sh sets GOCACHE=_output/local/go/cache: point it at a cache that outlives the tree.
    gocache = cache_dir() / GOCACHE
    gocache.mkdir(exist_ok=True)
    (tree / "_output" / "local" / "go").mkdir(parents=True)
    (tree / "_output" / "local" / "go" / "cache").symlink_to(gocache)
    return tree, version


def download_source(directory: Path, log: Path) -> Path:
    """`apt-get source --download-only` through a private apt configuration; returns the .dsc."""
    apt = directory / "apt"
    for sub in ("parts", "lists/partial", "cache"):
        (apt / sub).mkdir(parents=True)
    source_list = apt / "sources.list"
    source_list.write_text(deb_src_lines())
    options = [
        f"Dir::Etc::SourceList={source_list}",
        f"Dir::Etc::SourceParts={apt / 'parts'}",
        f"Dir::State::Lists={apt / 'lists'}",
        f"Dir::Cache={apt / 'cache'}",
    ]
    if os.geteuid() == 0:
        options.append("APT::Sandbox::User=root")
    apt_get = ["apt-get", "-q"] + [arg for option in options for arg in ("-o", option)]
    run_logged([*apt_get, "update"], log)
    run_logged([*apt_get, "source", "--download-only", SOURCE_PACKAGE], log, cwd=directory)
    found = sorted(directory.glob(f"{SOURCE_PACKAGE}_*.dsc"))
    if len(found) != 1:
        raise LabError(f"expected one {SOURCE_PACKAGE} .dsc file, found {len(found)}; see {log}")
    return found[0]


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str


def deb_src_lines() -> str:
    """deb-src lines for the Debian archives this machine already uses (main component only)."""
    codename = os_codename()
    lines = []
    for source in configured_apt_sources():
        if not is_debian_archive(source) or "main" not in source.components:
            continue
        for suite in source.suites:
            if suite == codename or suite.startswith(codename + "-"):
                lines.append(f"deb-src [signed-by={source.signed_by}] {source.uri} {suite} main")
    if not lines:
        raise LabError(
            f"no Debian {codename} mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/"
        )
    return "\n".join(dict.fromkeys(lines)) + "\n"


def os_codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME" and value:
            return value.strip('"')
    raise LabError("cannot read VERSION_CODENAME from /etc/os-release")


def configured_apt_sources() -> list[AptSource]:
    sources: list[AptSource] = []
    directory = Path("/etc/apt/sources.list.d")
    for path in sorted(directory.glob("*.sources")):
        sources += parse_deb822_sources(path.read_text())
    for path in [Path("/etc/apt/sources.list"), *sorted(directory.glob("*.list"))]:
        if path.is_file():
            sources += parse_one_line_sources(path.read_text())
    return sources


def parse_deb822_sources(text: str) -> list[AptSource]:
    sources = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
            continue
        for uri in fields.get("uris", "").split():
            sources.append(
                AptSource(
                    uri=uri,
                    suites=tuple(fields.get("suites", "").split()),
                    components=tuple(fields.get("components", "").split()),
                    signed_by=fields.get("signed-by") or DEBIAN_KEYRING,
                )
            )
    return sources


def parse_one_line_sources(text: str) -> list[AptSource]:
    sources = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        signed_by = DEBIAN_KEYRING
        if words and words[0].startswith("["):
            options = []
            while words:
                word = words.pop(0)
                options.append(word.strip("[]"))
                if word.endswith("]"):
                    break
            for option in options:
                if option.startswith("signed-by="):
                    signed_by = option.removeprefix("signed-by=")
        if len(words) >= 3:
            sources.append(AptSource(words[0], (words[1],), tuple(words[2:]), signed_by))
    return sources


def is_debian_archive(source: AptSource) -> bool:
    last_part = source.uri.rstrip("/").rsplit("/", 1)[-1]
    return "debian-archive-keyring" in source.signed_by or last_part in ("debian", "debian-security")


def dsc_version(dsc: Path) -> str:
    for line in dsc.read_text(errors="replace").splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    raise LabError(f"no Version field in {dsc}")


def apply_debian_patches(tree: Path, progress: Progress) -> None:
    """Apply debian/patches/series in order with `patch`; skip and report those that do not apply."""
    series = tree / "debian" / "patches" / "series"
    if not series.is_file():
        return
    applied, skipped = [], []
    for line in series.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        strip = next((word for word in words[1:] if word.startswith("-p")), "-p1")
        command = ["patch", strip, "--forward", "--batch", "--silent", "-i", f"debian/patches/{words[0]}"]
        dry_run = subprocess.run([*command, "--dry-run"], cwd=tree, capture_output=True, check=False)
        if dry_run.returncode == 0:
            subprocess.run(command, cwd=tree, capture_output=True, check=True)
            applied.append(words[0])
        else:
            skipped.append(words[0])
            progress(f"skipped Debian patch {words[0]}: it does not apply cleanly")
    progress(f"applied {len(applied)} Debian patch(es): {', '.join(applied) or 'none'}")


def replace_reflect2(tree: Path) -> None:
    """The vendored reflect2 1.0.1 crashes under Go >= 1.18; use Debian's 1.0.2 instead."""
    if not REFLECT2_DEBIAN.is_dir():
        raise LabError(f"{REFLECT2_DEBIAN} is missing; install golang-github-modern-go-reflect2-dev")
    vendored = tree / REFLECT2_VENDORED
    shutil.rmtree(vendored)
    shutil.copytree(REFLECT2_DEBIAN, vendored, ignore=shutil.ignore_patterns("*_test.go"))


def fix_zero_value_validation(tree: Path) -> None:
    """Let custom resources hold empty strings again when built with Go >= 1.16.

    kube-openapi's type validator (vendored in 1.20) treats a value as JSON null when
    `reflect.DeepEqual(reflect.Zero(T), reflect.ValueOf(data))`. That compares the two
    `reflect.Value` structs, internal pointer included, so it was never true before Go 1.16;
    since Go 1.16, `reflect.Zero` of a small type points at the runtime's shared zero buffer, the
    same one an empty string stored in an interface points at (0 and false point elsewhere). The
    API server then rejected every "" in a custom resource with
    `spec.s in body must be of type string: "null"` (kubernetes#99804). Upstream fixed it by
    testing only for nil (kube-openapi#230, in Kubernetes 1.21); do the same.
    It is not a decoding problem: json-iterator decodes "" correctly, and Debian's json-iterator
    1.1.12 in place of the vendored 1.1.10 does not change the result.
    """
    path = tree / OPENAPI_TYPE_VALIDATOR
    source = path.read_text()
    if source.count(OPENAPI_ZERO_CHECK) != 1:
        raise LabError(f"cannot patch {OPENAPI_TYPE_VALIDATOR}: its zero-value check is not there as expected")
    path.write_text(source.replace(OPENAPI_ZERO_CHECK, OPENAPI_NIL_CHECK))


def run_make(tree: Path, targets: list[str], home: Path, log: Path, progress: Progress) -> None:
    home.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("GO")}
    env.update(HOME=str(home), CGO_ENABLED="0", PATH=f"/usr/lib/go/bin:{env.get('PATH', '/usr/bin:/bin')}")
    with open(log, "ab") as output:
        process = subprocess.Popen(
            ["make", f"WHAT={' '.join(targets)}"],
            cwd=tree,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_with_heartbeat(process, progress)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process.returncode != 0:
        raise LabError(f"building {' '.join(targets)} failed (make exited {process.returncode}):\n{tail(log)}")


def wait_with_heartbeat(process: subprocess.Popen[bytes], progress: Progress) -> None:
    started = time.monotonic()
    next_heartbeat = started + HEARTBEAT_SECONDS
    while process.poll() is None:
        time.sleep(1)
        if time.monotonic() >= next_heartbeat:
            progress(f"still building… {format_duration(time.monotonic() - started)}")
            next_heartbeat += HEARTBEAT_SECONDS


def install_build(output: Path, version: str, names: list[str]) -> Path:
    """Copy the binaries into the cache directory of this version and recipe; it appears only when complete.

    Builds by other recipes or of other versions are removed (running processes keep their binary).
    """
    destination = cache_dir() / f"kube-apiserver-{version}-{BUILD_RECIPE}"
    for old in stale_builds(destination):
        shutil.rmtree(old, ignore_errors=True)
    return install_complete(output, names, destination)


def install_complete(output: Path, names: Sequence[str], destination: Path) -> Path:
    """Copy `names` from `output` into a new directory next to `destination`, renamed to `destination` once every
    binary is there: a failure (disk full, a binary missing) leaves no half-installed build behind.
    An earlier `destination` (an incomplete one of older code) is replaced. The caller holds the build's lock, so
    another partial directory of this destination is a killed build's: removed."""
    for killed in destination.parent.glob(f".{destination.name}.partial-*"):
        shutil.rmtree(killed, ignore_errors=True)
    partial = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    try:
        partial.mkdir(parents=True)
        for name in names:
            if not (output / name).is_file():
                raise LabError(f"the build did not produce {name} (in {output})")
            shutil.copyfile(output / name, partial / name)
            (partial / name).chmod(0o755)
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(partial, destination)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return destination


def stale_builds(current: Path) -> list[Path]:
    """Cached build directories other than `current`; not the work directories of builds."""
    return [
        directory
        for directory in cache_dir().glob("kube-apiserver-*")
        if directory.is_dir()
        and directory != current
        and not directory.name.startswith("kube-apiserver-build-")
    ]


def run_logged(command: list[str], log: Path, cwd: Path | None = None) -> None:
    with open(log, "ab") as output:
        output.write(f"$ {' '.join(command)}\n".encode())
        output.flush()
        result = subprocess.run(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise LabError(f"`{' '.join(command[:2])} …` failed (exit {result.returncode}):\n{tail(log)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} is missing)"
    return "\n".join(text.splitlines()[-lines:])


def format_duration(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    service_account_key: Path

    @property
    def kubelet_client_cert(self) -> Path:
        """The API server's client certificate for kubelets (written with `kubelet_client=True`)."""
        return self.ca_cert.with_name("kubelet-client.crt")

    @property
    def kubelet_client_key(self) -> Path:
        return self.ca_cert.with_name("kubelet-client.key")


def pki_in(directory: Path) -> Pki:
    return Pki(
        ca_cert=directory / "ca.crt",
        server_cert=directory / "apiserver.crt",
        server_key=directory / "apiserver.key",
        service_account_key=directory / "service-account.key",
    )


def write_pki(directory: Path, advertise_address: str, kubelet_client: bool = False) -> Pki:
    """A serving CA, a serving certificate for 127.0.0.1 and the service-account signing key; with
    `kubelet_client`, the API server's client certificate for kubelets (system:masters), signed by the same CA,
    which kubelets trust as their --client-ca-file."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stackops-lab-ca")])
    ca_cert = (
        certificate_builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    server_cert = (
        certificate_builder(server_name, ca_name, server_key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(server_names(advertise_address)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    service_account_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki = pki_in(directory)
    pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    write_private(pki.server_key, private_pem(server_key))
    write_private(pki.service_account_key, private_pem(service_account_key))
    if kubelet_client:
        client_key = ec.generate_private_key(ec.SECP256R1())
        client_name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
            x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-kubelet-client"),
        ])
        client_cert = (
            certificate_builder(client_name, ca_name, client_key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        pki.kubelet_client_cert.write_bytes(client_cert.public_bytes(serialization.Encoding.PEM))
        write_private(pki.kubelet_client_key, private_pem(client_key))
    return pki


def certificate_builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def server_names(advertise_address: str) -> list[x509.GeneralName]:
    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local"]
    ips = dict.fromkeys(["127.0.0.1", advertise_address, first_service_ip()])
    return [x509.DNSName(name) for name in dns] + [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips
    ]


def first_service_ip() -> str:
    return str(next(ipaddress.ip_network(SERVICE_CLUSTER_IP_RANGE).hosts()))


def private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(data)


# --------------------------------------------------------------------------- processes


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (all held open at once, then released)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def first_ipv4_address() -> str:
    """The first non-loopback IPv4 address of this machine, else 127.0.0.1."""
    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            try:
                request = struct.pack("256s", name.encode()[:15])
                answer = fcntl.ioctl(sock.fileno(), siocgifaddr, request)
            except OSError:
                continue
            address = socket.inet_ntoa(answer[20:24])
            if not ipaddress.ip_address(address).is_loopback:
                return address
    return "127.0.0.1"


def spawn(command: list[str], log: Path) -> int:
    """Start a process in its own session (it outlives us), output appended to `log`; its pid.

    No `subprocess.Popen` object: the process is meant to outlive it, and is found again by pid.
    """
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(command[0], command, dict(os.environ), file_actions=file_actions, setsid=True)


def process_alive(pid: int) -> bool:
    """True while `pid` runs; an exited child of ours is reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
        return True
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return False


def process_command(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def terminate(pid: int, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout` seconds; waits until it is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not process_alive(pid):
                return
            time.sleep(0.1)
    if process_alive(pid):
        raise LabError(f"process {pid} survived SIGKILL")


# --------------------------------------------------------------------------- API access


@dataclass(frozen=True)
class Api:
    """Just enough HTTPS to probe the API server and create a namespace."""

    server: str
    ca_file: Path
    token: str

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> int:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        context = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(request, context=context, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code


# --------------------------------------------------------------------------- control plane


@dataclass
class ClusterInfo:
    provider: str  # "local", "kind" or "external"
    kubeconfig: Path
    server: str
    admin_token: str = ""  # empty when the kubeconfig authenticates some other way
    pids: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "kubeconfig": str(self.kubeconfig)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterInfo:
        return cls(**{**data, "kubeconfig": Path(data["kubeconfig"])})


class LocalControlPlane:
    """etcd + kube-apiserver on free 127.0.0.1 ports, everything kept in `workdir`.

    The processes run in their own sessions and their pids are kept in `workdir/state.json`,
    so another process can find (`running_info`) and stop them.

    With `serve_node` (a lab node, node.py), kube-apiserver listens on every address of the machine, not
    only 127.0.0.1 (Pods reach it at its advertise address through the `kubernetes` Service, the node's kubelet
    and kube-proxy from their own network namespace), and has a client certificate for kubelets.
    """

    PROCESSES = ("kube-apiserver", "etcd")  # stop order

    def __init__(self, workdir: Path, serve_node: bool = False) -> None:
        self.workdir = Path(workdir).absolute()
        self.kubeconfig = self.workdir / "kubeconfig"
        self.state_file = self.workdir / "state.json"
        self.serve_node = serve_node

    @property
    def pki(self) -> Pki:
        return pki_in(self.workdir / "pki")

    def start(self, progress: Progress = ignore_progress) -> ClusterInfo:
        binaries = ensure_binaries(progress)
        progress("starting etcd and kube-apiserver…")
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        advertise_address = first_ipv4_address()
        pki = write_pki(self.workdir / "pki", advertise_address, kubelet_client=self.serve_node)
        token = secrets.token_urlsafe(32)
        token_file = self.workdir / "tokens.csv"
        write_private(token_file, f'{token},admin,admin,"system:masters"\n'.encode())
        etcd_port, peer_port, api_port = free_ports(3)
        info = ClusterInfo("local", self.kubeconfig, f"https://127.0.0.1:{api_port}", token)
        try:
            etcd = self.etcd_command(binaries.etcd, etcd_port, peer_port)
            info.pids["etcd"] = spawn(etcd, self.workdir / "etcd.log")
            self.write_state(info)
            self.wait_for_etcd(etcd_port, info.pids["etcd"])
            apiserver = self.apiserver_command(
                binaries.kube_apiserver, etcd_port, api_port, advertise_address, pki, token_file
            )
            info.pids["kube-apiserver"] = spawn(apiserver, self.apiserver_log)
            self.write_state(info)
            api = Api(info.server, pki.ca_cert, token)
            self.wait_until_ready(api, info.pids["kube-apiserver"])
            ensure_default_namespace(api)
        except BaseException:
            self.stop_processes(info.pids)
            self.state_file.unlink(missing_ok=True)
            raise
        write_kubeconfig(self.kubeconfig, info.server, pki.ca_cert, token)
        progress(f"control plane ready at {info.server} in {format_duration(time.monotonic() - started)}")
        return info

    def stop(self, progress: Progress = ignore_progress) -> None:
        """Stop our processes (if any still run) and remove the workdir."""
        info = self.read_state()
        if info is not None:
            self.stop_processes(info.pids)
            progress(f"stopped the local control plane ({self.workdir})")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def running_info(self) -> ClusterInfo | None:
        """The recorded cluster if all its processes still run, else None."""
        info = self.read_state()
        if info is None or not self.kubeconfig.is_file():
            return None
        if all(self.is_ours(info.pids.get(name), name) for name in self.PROCESSES):
            return info
        return None

    @property
    def apiserver_log(self) -> Path:
        return self.workdir / "kube-apiserver.log"

    def etcd_command(self, etcd: Path, port: int, peer_port: int) -> list[str]:
        client_url, peer_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer_port}"
        return [
            str(etcd),
            "--name=default",
            f"--data-dir={self.workdir / 'etcd-data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
        ]

    def apiserver_command(
        self, binary: Path, etcd_port: int, port: int, advertise_address: str, pki: Pki, token_file: Path
    ) -> list[str]:
        node_flags = [
            f"--kubelet-client-certificate={pki.kubelet_client_cert}",
            f"--kubelet-client-key={pki.kubelet_client_key}",
            "--kubelet-preferred-address-types=InternalIP",
        ] if self.serve_node else []
        return [
            str(binary),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--secure-port={port}",
            f"--bind-address={'0.0.0.0' if self.serve_node else '127.0.0.1'}",
            *node_flags,
            f"--advertise-address={advertise_address}",
            f"--tls-cert-file={pki.server_cert}",
            f"--tls-private-key-file={pki.server_key}",
            f"--token-auth-file={token_file}",
            "--anonymous-auth=false",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.service_account_key}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            "--service-account-lookup=true",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        ]

    def wait_for_etcd(self, port: int, pid: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not process_alive(pid):
                raise LabError(f"etcd exited during start-up:\n{tail(self.workdir / 'etcd.log')}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if json.load(response).get("health") == "true":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise LabError(f"etcd did not become healthy in 30s:\n{tail(self.workdir / 'etcd.log')}")

    def wait_until_ready(self, api: Api, pid: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        last_problem = "no answer yet"
        while time.monotonic() < deadline:
            if not process_alive(pid):
                raise LabError(
                    f"kube-apiserver exited during start-up; last lines of {self.apiserver_log}:\n"
                    f"{tail(self.apiserver_log)}"
                )
            try:
                status = api.request("GET", "/readyz")
                if status == 200:
                    return
                last_problem = f"/readyz answered {status}"
            except OSError as error:
                last_problem = str(error)
            time.sleep(0.5)
        raise LabError(
            f"kube-apiserver not ready after {START_TIMEOUT_SECONDS:.0f}s ({last_problem}); "
            f"last lines of {self.apiserver_log}:\n{tail(self.apiserver_log)}"
        )

    def write_state(self, info: ClusterInfo) -> None:
        temporary = self.state_file.with_suffix(".tmp")
        write_private(temporary, json.dumps(info.to_json(), indent=2).encode())
        os.replace(temporary, self.state_file)

    def read_state(self) -> ClusterInfo | None:
        try:
            return ClusterInfo.from_json(json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def stop_processes(self, pids: dict[str, int]) -> None:
        for name in self.PROCESSES:
            pid = pids.get(name)
            if self.is_ours(pid, name):
                terminate(pid)  # type: ignore[arg-type]

    def is_ours(self, pid: int | None, name: str) -> bool:
        """Whether `pid` is a live `name` process started for this workdir (pids get reused)."""
        if not pid or not process_alive(pid):
            return False
        command = process_command(pid)
        return (
            bool(command)
            and Path(command[0]).name == name
            and any(str(self.workdir) in argument for argument in command[1:])
        )


def ensure_default_namespace(api: Api) -> None:
    """There is no controller-manager; make sure `default` exists."""
    if api.request("GET", "/api/v1/namespaces/default") == 200:
        return
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}
    status = api.request("POST", "/api/v1/namespaces", body)
    if status not in (201, 409):
        raise LabError(f"creating the default namespace failed with HTTP {status}")


def write_kubeconfig(path: Path, server: str, ca_file: Path, token: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "stackops-lab",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_file.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [
            {"name": "stackops-lab", "context": {"cluster": "stackops-lab", "user": "admin", "namespace": "default"}}
        ],
        "current-context": "stackops-lab",
    }
    write_private(path, yaml.safe_dump(config, sort_keys=False).encode())


# --------------------------------------------------------------------------- other clusters


def kubectl_output(kubeconfig: Path, *args: str) -> str:
    result = subprocess.run(
        [str(find_kubectl()), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise LabError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def external_cluster(kubeconfig: str) -> ClusterInfo:
    """The cluster named by a kubeconfig file (e.g. `$KUBECONFIG`), after checking that it answers."""
    if os.pathsep in kubeconfig:
        raise LabError("KUBECONFIG lists several files; point it at a single kubeconfig file")
    path = Path(kubeconfig).expanduser().absolute()
    kubectl_output(path, "version", "--request-timeout=10s")
    return ClusterInfo(
        provider="external",
        kubeconfig=path,
        server=kubectl_output(path, "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"),
        admin_token=kubectl_output(
            path, "config", "view", "--minify", "--raw", "-o", "jsonpath={.users[0].user.token}"
        ),
    )


def kind_available() -> bool:
    if shutil.which("kind") is None or shutil.which("docker") is None:
        return False
    docker = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30)
    return docker.returncode == 0


def kind_cluster_exists() -> bool:
    if shutil.which("kind") is None:
        return False
    result = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True, check=False)
    return KIND_CLUSTER in result.stdout.split()


def start_kind(lab_dir: Path, progress: Progress) -> ClusterInfo:
    kubeconfig = lab_dir / "kubeconfig"
    if kind_cluster_exists():
        command = ["kind", "export", "kubeconfig", f"--name={KIND_CLUSTER}", f"--kubeconfig={kubeconfig}"]
    else:
        progress(f"creating kind cluster `{KIND_CLUSTER}`…")
        command = ["kind", "create", "cluster", f"--name={KIND_CLUSTER}", f"--kubeconfig={kubeconfig}", "--wait=120s"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LabError(f"{' '.join(command[:3])} failed: {result.stderr.strip()}")
    info = external_cluster(str(kubeconfig))
    return ClusterInfo("kind", info.kubeconfig, info.server, info.admin_token)


def delete_kind(progress: Progress) -> None:
    if kind_cluster_exists():
        subprocess.run(["kind", "delete", "cluster", f"--name={KIND_CLUSTER}"], capture_output=True, check=False)
        progress(f"deleted kind cluster `{KIND_CLUSTER}`")


# --------------------------------------------------------------------------- the lab


class Component(Protocol):
    """Something `up` starts after the cluster and `down` stops before it. Both must be idempotent."""

    name: str

    def start(self, lab_dir: Path, cluster: ClusterInfo, progress: Progress) -> None: ...

    def stop(self, lab_dir: Path, progress: Progress) -> None: ...


LAB_RECORD = "lab.json"


def control_plane_for(lab_dir: Path, serve_node: bool = False) -> LocalControlPlane:
    return LocalControlPlane(lab_dir / "controlplane", serve_node=serve_node)


def choose_provider() -> str:
    if os.environ.get("KUBECONFIG"):
        return "external"
    if kind_available():
        return "kind"
    return "local"


def up(
    lab_dir: Path | None = None,
    progress: Progress = ignore_progress,
    provider: str | None = None,
    components: Sequence[Component] = (),
    serve_node: bool = False,
) -> ClusterInfo:
    """Bring the lab up (idempotent): the cluster, then each component in order. With `serve_node`, a local
    control plane is started for a lab node (LocalControlPlane's `serve_node`)."""
    lab_dir = (lab_dir or default_lab_dir()).absolute()
    cluster = running_cluster(lab_dir)
    if cluster is None:
        claim_lab_dir(lab_dir)
        down(lab_dir, progress, components)  # leftovers of an earlier lab (crashed, rebooted)
        claim_lab_dir(lab_dir)
        cluster = start_cluster(provider or choose_provider(), lab_dir, progress, serve_node)
        write_lab_record(lab_dir, cluster)
    else:
        progress(f"the lab is already up ({cluster.provider} cluster at {cluster.server})")
    for component in components:
        component.start(lab_dir, cluster, progress)
    return cluster


def down(
    lab_dir: Path | None = None,
    progress: Progress = ignore_progress,
    components: Sequence[Component] = (),
) -> None:
    """Take the lab down (idempotent): components in reverse order, the cluster, then `lab_dir` itself."""
    lab_dir = (lab_dir or default_lab_dir()).absolute()
    if not lab_dir.exists():
        return
    if not (lab_dir / LAB_RECORD).is_file() and any(lab_dir.iterdir()):
        raise LabError(f"{lab_dir} is not a stackops lab directory (no {LAB_RECORD}); not touching it")
    for component in reversed(components):
        component.stop(lab_dir, progress)
    record = read_lab_record(lab_dir)
    if record is not None and record.provider == "kind":
        delete_kind(progress)
    control_plane_for(lab_dir).stop(progress)
    shutil.rmtree(lab_dir, ignore_errors=True)


def running_cluster(lab_dir: Path | None = None) -> ClusterInfo | None:
    """The lab's cluster if it is up, else None."""
    lab_dir = (lab_dir or default_lab_dir()).absolute()
    record = read_lab_record(lab_dir)
    if record is None:
        return None
    if record.provider == "local":
        return control_plane_for(lab_dir).running_info()
    if record.provider == "kind" and not kind_cluster_exists():
        return None
    try:
        external_cluster(str(record.kubeconfig))
    except LabError:
        return None
    return record


def start_cluster(provider: str, lab_dir: Path, progress: Progress, serve_node: bool = False) -> ClusterInfo:
    if provider == "external":
        kubeconfig = os.environ.get("KUBECONFIG")
        if not kubeconfig:
            raise LabError("provider `external` needs KUBECONFIG to be set")
        progress(f"using the cluster of KUBECONFIG={kubeconfig}")
        return external_cluster(kubeconfig)
    if provider == "kind":
        return start_kind(lab_dir, progress)
    if provider == "local":
        return control_plane_for(lab_dir, serve_node).start(progress)
    raise LabError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")


def claim_lab_dir(lab_dir: Path) -> None:
    """Create `lab_dir` with its record file; refuse a non-empty directory that is not a lab."""
    record = lab_dir / LAB_RECORD
    if lab_dir.exists() and not record.is_file() and any(lab_dir.iterdir()):
        raise LabError(f"{lab_dir} exists and is not a stackops lab directory; choose another one")
    lab_dir.mkdir(parents=True, exist_ok=True)
    if not record.is_file():
        record.write_text("{}\n")


def write_lab_record(lab_dir: Path, cluster: ClusterInfo) -> None:
    record = json.dumps({"cluster": cluster.to_json()}, indent=2) + "\n"
    write_private(lab_dir / LAB_RECORD, record.encode())  # it may hold a token


def read_lab_record(lab_dir: Path) -> ClusterInfo | None:
    try:
        return ClusterInfo.from_json(json.loads((lab_dir / LAB_RECORD).read_text())["cluster"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
