"""The lab's own apt repository: stand-in cloudstack-agent packages that lab hosts install for real.

cloudstack-agent is not packaged in Debian, so the lab builds stand-ins with `dpkg-deb --build`: the configuration
files the real package installs in /etc/cloudstack/agent (conffiles, so dpkg keeps an edited file on upgrade)
and its log directory, nothing under /usr (read-only in a lab host). Two versions, so that a pinned
`cloudstackAgentVersion` and an upgrade can be tried; 4.19.2.0 ships an agent.properties that differs from
4.19.1.0's, so an upgrade over a file the operator edited meets dpkg's conffile question for real.

The repository is flat (`Packages`, `Packages.gz`, `Release`) and signed for real: a throwaway OpenPGP key made
when the repository is built signs `InRelease` and `Release.gpg` (gpg, from Debian's gpg and gpg-agent packages),
and its private half is deleted with the temporary GNUPGHOME it was made in; the public half is `stackops-lab.asc`
in the repository. Built once per lab in `<lab>/hosts/srv/stackops-lab-repo` and bind-mounted read-only on every
host's `/srv`, where the host's only apt source points at it (`file:` URI, `signed-by=` the key): a lab host never
reaches the machine's Debian mirrors or the Internet, and its apt checks the signature as it would a mirror's. The
same directory can be served over HTTP to try `spec.packages.repositoryURL` with `signingKeySecretRef` naming a
Secret that holds the key (manifests.py).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from stackops_lab import hostfiles
from stackops_lab.controlplane import LabError

SRV = "srv"  # the lab's directory mounted on each host's /srv
REPO_NAME = "stackops-lab-repo"
REPO_PATH = f"/srv/{REPO_NAME}"  # where a host sees the repository
KEY_NAME = "stackops-lab.asc"  # the signing key's public half, in the repository
SOURCE_LINE = f"deb [signed-by={REPO_PATH}/{KEY_NAME}] file:{REPO_PATH} ./"
SIGNED = ("InRelease", "Release.gpg")
AGENT = "cloudstack-agent"
AGENT_VERSIONS = ("4.19.1.0", "4.19.2.0")
PACKAGES = (AGENT,)  # the packages the repository has (and a lab host can therefore start without)
AGENT_LOG_DIR = "/var/log/cloudstack/agent"


@dataclass(frozen=True)
class Deb:
    package: str
    version: str
    path: Path
    control: str  # the control stanza as built (without the repository's Filename/Size/checksums)


def agent_files(version: str) -> dict[str, str]:
    """The conffiles a stand-in cloudstack-agent version installs (path → content)."""
    properties = hostfiles.AGENT_PROPERTIES if version == hostfiles.AGENT_VERSION else \
        hostfiles.AGENT_PROPERTIES + hostfiles.AGENT_PROPERTIES_LATER
    return {
        "/etc/cloudstack/agent/agent.properties": properties,
        "/etc/cloudstack/agent/log4j-cloud.xml": hostfiles.LOG4J_CLOUD_XML,
        "/etc/cloudstack/agent/environment.properties": hostfiles.ENVIRONMENT_PROPERTIES,
    }


def build_agent(version: str, output: Path) -> Deb:
    """`dpkg-deb --build` of one stand-in cloudstack-agent version into `output`."""
    files = agent_files(version)
    with tempfile.TemporaryDirectory(prefix="stackops-agent-deb-") as temporary:
        root = Path(temporary) / "root"
        for path, content in files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(0o644)
        (root / AGENT_LOG_DIR.lstrip("/")).mkdir(parents=True)
        size_kib = max(1, (sum(len(c.encode()) for c in files.values()) + 1023) // 1024)
        control = hostfiles.agent_control(version, size_kib)
        debian = root / "DEBIAN"
        debian.mkdir()
        (debian / "control").write_text(control)
        (debian / "conffiles").write_text("".join(f"{path}\n" for path in files))
        for directory, _, _ in os.walk(root):
            os.chmod(directory, 0o755)
        deb = output / f"{AGENT}_{version}_all.deb"
        result = subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
                                capture_output=True, text=True, check=False, timeout=60)
        if result.returncode != 0:
            raise LabError(f"dpkg-deb --build of {AGENT} {version} failed: {result.stderr.strip()}")
    deb.chmod(0o644)
    return Deb(AGENT, version, deb, control)


def packages_index(debs: list[Deb], repository: Path) -> str:
    """The `Packages` index of a flat repository: each control stanza with Filename, Size and checksums."""
    stanzas = []
    for deb in debs:
        data = deb.path.read_bytes()
        fields = deb.control.rstrip("\n")
        head, _, description = fields.partition("\nDescription:")
        stanzas.append(
            f"{head}\n"
            f"Filename: ./{deb.path.relative_to(repository)}\n"
            f"Size: {len(data)}\n"
            f"MD5sum: {hashlib.md5(data).hexdigest()}\n"  # noqa: S324 - the index format's own checksum
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
            f"Description:{description}\n")
    return "\n".join(stanzas)


def release_file(repository: Path, indexes: list[str]) -> str:
    lines = ["Origin: stackops-lab", "Label: stackops lab CloudStack packages", "Suite: stackops-lab",
             "Codename: stackops-lab", f"Date: {formatdate(usegmt=True)}",
             "Description: stand-in CloudStack packages of a stackops lab (signed with a throwaway key)"]
    for field, algorithm in (("MD5Sum", hashlib.md5), ("SHA256", hashlib.sha256)):
        lines.append(f"{field}:")
        for name in indexes:
            data = (repository / name).read_bytes()
            lines.append(f" {algorithm(data).hexdigest()} {len(data)} {name}")
    return "\n".join(lines) + "\n"


def _gpg(home: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = ["gpg", "--homedir", home, "--batch", "--quiet", "--no-tty", "--pinentry-mode", "loopback",
               "--passphrase", "", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120,
                            env={**os.environ, "LC_ALL": "C"})
    if result.returncode != 0:
        raise LabError(f"gpg {arguments[0]} failed: {result.stderr.strip()}")
    return result


def sign(repository: Path) -> str:
    """Sign `repository`'s Release with a key made for it (InRelease clear-signed, Release.gpg detached) and write
    the public key to KEY_NAME; returns the public key. The private key lives only in a temporary GNUPGHOME,
    deleted (and its gpg-agent stopped) before this returns."""
    if shutil.which("gpg") is None or shutil.which("gpgconf") is None:
        raise LabError("gpg is not installed: the lab signs its apt repository with it (Debian packages gpg and "
                       "gpg-agent; scripts/install-system-deps.sh installs them)")
    with tempfile.TemporaryDirectory(prefix="stackops-gpg-") as home:
        try:
            _gpg(home, "--quick-generate-key", "stackops lab repository <lab@stackops.invalid>", "ed25519", "sign",
                 "never")
            key = _gpg(home, "--armor", "--export").stdout
            release = str(repository / "Release")
            _gpg(home, "--yes", "--clearsign", "--output", str(repository / "InRelease"), release)
            _gpg(home, "--yes", "--armor", "--detach-sign", "--output", str(repository / "Release.gpg"), release)
        finally:
            subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], capture_output=True, check=False,
                           timeout=30)
    if "BEGIN PGP PUBLIC KEY BLOCK" not in key:
        raise LabError("gpg --export printed no public key")
    (repository / KEY_NAME).write_text(key)
    return key


def public_key(repository: Path) -> str:
    """The armored public key the repository is signed with."""
    return (repository / KEY_NAME).read_text()


def build(srv: Path) -> Path:
    """The lab's repository in `srv/stackops-lab-repo` (built once per lab; reused when already complete: signed,
    with its key)."""
    repository = srv / REPO_NAME
    if all((repository / name).is_file() for name in ("Release", *SIGNED, KEY_NAME)):
        return repository
    shutil.rmtree(repository, ignore_errors=True)
    repository.mkdir(parents=True, mode=0o755)
    srv.chmod(0o755)
    debs = [build_agent(version, repository) for version in AGENT_VERSIONS]
    index = packages_index(debs, repository)
    (repository / "Packages").write_text(index)
    with gzip.open(repository / "Packages.gz", "wt", compresslevel=9) as handle:
        handle.write(index)
    (repository / "Release").write_text(release_file(repository, ["Packages", "Packages.gz"]))
    sign(repository)
    for name in ("Packages", "Packages.gz", "Release", *SIGNED, KEY_NAME):
        (repository / name).chmod(0o644)
    return repository
