"""The lean probe (issue 18): the same facts as the probe before it, from fewer processes on the host.

tests/unit/data/probe/ holds what both probes printed on the same KVM lab host, one after the other, in a rich
state (a bridge with a bond, VLAN bridges, a tunnel and eth0; the OVSDB manager over SSL with the client
certificate from a Secret; a confirmed checkpoint of a guarded change; the agent configured): lab-host.txt by
scripts/probe.sh (its first probe of the host: the binaries' `--version` run), lab-host-before.txt by the probe
before it (the commit before issue 18's)."""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
import re
import subprocess
from pathlib import Path

import pytest
from support.credentials import secret
from support.kvmhost_probe import ProbeOnlyHost
from support.specs import HOST_KEY

from stackops.api.kvmhost import KvmHostSpec
from stackops.reconcile.base import Context, ReconcileError
from stackops.reconcile.kvmhost import KvmHostReconciler
from stackops.reconcile.kvmhost.observed import file_bytes
from stackops.reconcile.kvmhost.paths import NETWORK_INTERFACES, NETWORK_STACKOPS
from stackops.reconcile.kvmhost.probe import KNOWN, SCRIPT, Probe, ProbeError, parse, sections, unpack

DATA = Path(__file__).resolve().parent / "data" / "probe"
LEAN = (DATA / "lab-host.txt").read_text()
BEFORE = (DATA / "lab-host-before.txt").read_text()
IDENTITY = re.compile(r"^@@(ovs|libvirt|qemu)-version (\S+)$", re.M)


def with_known_versions(output: str) -> str:
    """What the script prints when the operator names the binaries it knows: @@known for each version."""
    return re.sub(r"^(@@[a-z]+-version \S+)\n.*$", rf"\1\n{KNOWN}", output, flags=re.M)


def test_the_lean_probe_finds_what_the_probe_before_it_found() -> None:
    lean, before = parse(LEAN, 16509), parse(BEFORE, 16509)
    # the host's clock moved on between the two runs; the identities of the binaries are the lean probe's own;
    # the network configuration files (issue 15) came after both: missing on that host, the one before never
    # looked for them
    missing = {NETWORK_INTERFACES: None, NETWORK_STACKOPS: None}
    assert dataclasses.replace(lean, host_time=None, binary_versions={}) == \
        dataclasses.replace(before, host_time=None, binary_versions={}, files={**before.files, **missing})
    assert lean.host_time is not None and before.host_time is not None and lean.host_time >= before.host_time
    # what the lean probe computes where the one before ran a program: SSL settings from the SSL table (not
    # `get-ssl`), the certificate's fingerprint here (not `openssl x509`), addresses from one `ip`, the
    # checkpoint's values from its files
    assert lean.ovs is not None and lean.ovs.ssl_configured and lean.ovs.ssl_bootstrap
    assert lean.ovs.ssl_certificate == "/etc/openvswitch/stackops-client-cert.pem"
    assert lean.client_certificate_fingerprint is not None and len(lean.client_certificate_fingerprint) == 59
    assert lean.addresses == {"lo": ("127.0.0.1/8",), "eth0": ("10.250.0.11/24",), "mgmt0": ("10.251.123.1/24",)}
    assert lean.links_up["eno49"] and not lean.links_up["storage0"]
    [checkpoint] = lean.checkpoints
    assert checkpoint.owner == "lab/kvm1" and checkpoint.state(lean.host_time) == "confirmed"
    assert checkpoint.changes == "add eth0 to bridge cloudbr0; set MTU of eth0 to 9000"
    assert (lean.ovs_version, lean.libvirt_version, lean.qemu_version) == ("3.1.0", "9.0.0", "7.2.22")
    assert lean.files["/etc/libvirt/libvirtd.conf"] is not None and lean.files["/etc/selinux/config"] is None


def test_the_files_come_in_one_archive_and_secret_keys_never() -> None:
    [(argument, body)] = [(a, b) for name, a, b in sections(LEAN) if name == "files"]
    archive = unpack(body)
    assert sorted(archive) == sorted("/" + path for path in argument.split())
    assert "/etc/openvswitch/stackops-client-privkey.pem" not in archive, "the client key never leaves the host"
    assert [name for name, _, _ in sections(LEAN) if name == "file"] == []


def test_known_versions_are_not_asked_for_again_until_a_binary_changes() -> None:
    probe, packages = Probe(), ["bridge-utils", "apt:openvswitch-switch"]
    assert probe.arguments("lab/kvm1@10.250.0.11", packages) == ["", *packages], "nothing known: all are asked"
    first = probe.parse("lab/kvm1@10.250.0.11", LEAN, 16509)
    identities = [match.group(2) for match in IDENTITY.finditer(LEAN)]
    assert len(identities) == 3 and set(first.binary_versions) == set(identities)
    known, *rest = probe.arguments("lab/kvm1@10.250.0.11", packages)
    assert sorted(known.split()) == sorted(identities) and rest == packages
    assert probe.arguments("lab/other@10.250.0.12", packages)[0] == "", "per host"

    again = probe.parse("lab/kvm1@10.250.0.11", with_known_versions(LEAN), 16509)
    assert again == first

    # an upgrade replaced libvirtd (another inode, size and time): that one is asked again, the others not
    libvirtd = next(i for i in identities if i.endswith("/libvirtd"))
    upgraded = "1:2:3:4:/usr/sbin/libvirtd"
    output = with_known_versions(LEAN).replace(f"@@libvirt-version {libvirtd}\n{KNOWN}",
                                               f"@@libvirt-version {upgraded}\nlibvirtd (libvirt) 9.0.1")
    assert probe.parse("lab/kvm1@10.250.0.11", output, 16509).libvirt_version == "9.0.1"
    known = probe.arguments("lab/kvm1@10.250.0.11", packages)[0].split()
    assert upgraded in known and libvirtd not in known and len(known) == 3


def test_the_probe_remembers_a_bounded_number_of_hosts() -> None:
    probe = Probe(hosts=2)
    for host in ("a", "b", "c"):
        probe.parse(host, LEAN, 16509)
    assert probe.arguments("a", [])[0] == "" and probe.arguments("c", [])[0] != ""


FILES_SECTION = SCRIPT[SCRIPT.index("\nsection files "):]


def run_files_section(paths: list[Path], tar: bool) -> str:
    """The probe's files section run here on `paths` (as the probe lists them: relative to /), with or without
    tar on the PATH."""
    have = 'have() { command -v "$1" >/dev/null 2>&1; }\n' if tar else \
        'have() { [ "$1" != tar ] && command -v "$1" >/dev/null 2>&1; }\n'
    script = ("section() { printf '\\n@@%s %s\\n' \"$1\" \"$2\"; }\n" + have
              + f"dump='{''.join(' ' + str(p).lstrip('/') for p in paths)}'\n" + FILES_SECTION)
    return subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=30,
                          check=True).stdout


@pytest.mark.parametrize("tar", [True, False], ids=["tar", "without tar"])
def test_the_files_keep_their_bytes_with_or_without_tar(tmp_path: Path, tar: bool) -> None:
    contents = {"latin1.conf": b"name = caf\xe9\n", "no-newline.conf": b"a = 1", "empty.conf": b"",
                "nul.bin": b"\x00\x01\xff", "linked.conf": b"a = 1"}
    paths = []
    for name, content in contents.items():
        if name != "linked.conf":
            (tmp_path / name).write_bytes(content)
        paths.append(tmp_path / name)
    (tmp_path / "linked.conf").symlink_to("no-newline.conf")  # read through the link (tar: a hard link the 2nd time)
    output = run_files_section(paths, tar)
    read: dict[str, bytes | None] = {}
    for name, argument, body in sections(output):
        if name == "files":
            read.update(unpack(body))
        elif name == "file":
            read[argument] = base64.b64decode(body)
    assert read == {str(tmp_path / name): content for name, content in contents.items()}
    assert len([name for name, _, _ in sections(output) if name == "file"]) == (0 if tar else len(contents))


def test_a_file_found_but_not_read_stops_the_pass(tmp_path: Path) -> None:
    """A file the script found must be in the archive: planning from "missing" would write it anew."""
    present = tmp_path / "present.conf"
    present.write_text("a = 1\n")
    output = run_files_section([present], tar=True)
    vanished = output.replace("@@files ", f"@@files {str(tmp_path / 'vanished.conf').lstrip('/')} ", 1)
    with pytest.raises(ProbeError, match="vanished.conf"):
        parse(vanished, 16509)
    assert unpack(next(b for n, _, b in sections(output) if n == "files"))[str(present)] == b"a = 1\n"


def test_a_configuration_file_round_trips_through_the_archive() -> None:
    facts = parse(LEAN, 16509)
    for path, text in facts.files.items():
        if text is not None:
            assert hashlib.sha256(file_bytes(text)).hexdigest() == hashlib.sha256(
                unpack(next(b for n, _, b in sections(LEAN) if n == "files"))[path]).hexdigest()


def test_an_answer_that_cannot_be_read_is_a_reason_in_status_and_changes_nothing() -> None:
    """A garbled files section (or a file listed but not sent) is ProbeOutputInvalid, retried, Reachable still
    true: never an internal error, and nothing is planned from a host the operator could not read."""
    garbled = re.sub(r"(?m)^(@@files .*\n)(?:[A-Za-z0-9+/=]+\n)+", r"\1%%% not base64 %%%\n", LEAN, count=1)
    assert garbled != LEAN
    host = ProbeOnlyHost(garbled)
    spec = KvmHostSpec.model_validate({"address": "10.250.0.11", "ssh": {"privateKeySecretRef": {"name": "k"},
                                                                          "hostKey": HOST_KEY}})
    ctx = Context(namespace="lab", name="kvm1", generation=1, spec=spec, status={},
                  secrets={"k": secret({"ssh-privatekey": "unused"}, "10.250.0.11")},
                  event=lambda *e: None, logger=logging.getLogger("test"))
    with pytest.raises(ReconcileError) as refused:
        asyncio.run(KvmHostReconciler(host).reconcile(ctx))  # type: ignore[arg-type]
    assert refused.value.reason == "ProbeOutputInvalid" and refused.value.retry
    assert "could not be read: the probe's files section is no tar archive" in str(refused.value)
    assert [(c.type, c.status) for c in refused.value.conditions] == [("Reachable", "True")]
    assert host.ran == [], "nothing was run besides the probe"


APT_SECTION = SCRIPT[SCRIPT.index("section apt-index -\n"):SCRIPT.index("# The binaries whose version is reported")]


def run_apt_section(tmp_path: Path, known: str, todo: str) -> tuple[str, int]:
    """The probe's apt-index section run here, on an index in `tmp_path/lists`, with an `apt-cache` that answers
    for every name and counts its runs: (output, runs)."""
    bin_dir, runs = tmp_path / "bin", tmp_path / "apt-cache-runs"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "apt-cache"
    fake.write_text('#!/bin/sh\necho run >> "%s"\nshift\nfor p in "$@"; do\n'
                    '  echo " $p | 4.19.1.0 | http://repo stable/main amd64 Packages"\ndone\n' % runs)
    fake.chmod(0o755)
    script = ("section() { printf '\\n@@%s %s\\n' \"$1\" \"$2\"; }\n"
              'have() { command -v "$1" >/dev/null 2>&1; }\n'
              f"export PATH={bin_dir}:$PATH\nknown='{known}'\ntodo='{todo}'\n"
              + APT_SECTION.replace("/var/lib/apt/lists", str(tmp_path / "lists")))
    output = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=30,
                            check=True).stdout
    return output, len(runs.read_text().splitlines()) if runs.exists() else 0


def test_the_package_index_is_asked_once_per_index_and_names(tmp_path: Path) -> None:
    """A host that lacks packages (an Observe fleet in drift, or one waiting for its agent): `apt-cache madison`
    (a process and three `dpkg` here; on a host with full indexes, hundreds of milliseconds) runs again only when
    the index or the names asked change; the operator keeps the answer (Probe)."""
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "deb.example_dists_stable_main_binary-amd64_Packages").write_text("Package: a\n")
    first, runs = run_apt_section(tmp_path, "", " cloudstack-agent qemu-kvm")
    [(_, _, body)] = [s for s in sections(first) if s[0] == "apt-index"]
    identity = next(line.split()[1] for line in body.splitlines() if line.startswith("index "))
    assert runs == 1 and identity.endswith(":cloudstack-agent:qemu-kvm")
    again, runs = run_apt_section(tmp_path, f"1:2:3:4:/usr/sbin/libvirtd {identity}", " cloudstack-agent qemu-kvm")
    assert runs == 1 and f"known {identity}" in again and "available" not in again
    _, runs = run_apt_section(tmp_path, identity, " cloudstack-agent")
    assert runs == 2, "other names: asked"
    (lists / "deb.example_dists_stable_main_binary-amd64_Packages").write_text("Package: a\nPackage: b\n")
    _, runs = run_apt_section(tmp_path, identity, " cloudstack-agent qemu-kvm")
    assert runs == 3, "the index changed (apt-get update): asked"


def test_the_probe_remembers_the_package_index_answer() -> None:
    asked = LEAN.replace("@@apt-index -\n", "@@apt-index -\nage 5\nindex apt-index:1:1:9:cloudstack-agent\n"
                         "available cloudstack-agent 4.19.1.0\n")
    probe = Probe()
    first = probe.parse("h", asked, 16509)
    assert first.available == {"cloudstack-agent": ("4.19.1.0",)}
    assert "apt-index:1:1:9:cloudstack-agent" in probe.arguments("h", ["cloudstack-agent"])[0].split()
    known = LEAN.replace("@@apt-index -\n", "@@apt-index -\nage 6\nknown apt-index:1:1:9:cloudstack-agent\n")
    again = probe.parse("h", known, 16509)
    assert again.available == first.available and again.package_index_age == 6
    with pytest.raises(ProbeError, match="does not remember"):
        Probe().parse("other", known, 16509)
