"""Whether a KVM host needs a reboot (issue 15, the observation half): the probe reads Debian's sentinel
(/var/run/reboot-required and .pkgs, as update-notifier-common and unattended-upgrades leave them) with its other
files, and on EL asks `needs-restarting -r` (exit 1: needed, 0: not); status shows rebootRequired and
rebootRequiredBy. Nothing is rebooted."""
from __future__ import annotations

import asyncio
import base64
import logging
import re
import subprocess
from pathlib import Path

import pytest
from support.credentials import secret
from support.kvmhost_probe import ProbeOnlyHost, probe_output
from support.specs import HOST_KEY

from stackops.api.kvmhost import KvmHostSpec, KvmHostStatus
from stackops.reconcile.base import Context
from stackops.reconcile.kvmhost import KvmHostReconciler
from stackops.reconcile.kvmhost.probe import SCRIPT, parse, sections

SENTINEL = "/var/run/reboot-required"
PKGS = "/var/run/reboot-required.pkgs"
NEEDS_RESTARTING = """Core libraries or services have been updated since boot-up:
  * kernel
  * glibc

Reboot is required to fully utilize these updates.
More information: https://access.redhat.com/solutions/27943"""


def file_section(path: str, content: str) -> str:
    return f"@@file {path}\n{base64.b64encode(content.encode()).decode()}\n"


def debian(*files: tuple[str, str]) -> str:
    """A Debian host's probe output with the reboot section and the sentinel files given."""
    return probe_output() + "@@reboot -\n" + "".join(file_section(p, c) for p, c in files)


def el(exit_status: int | None, output: str = "", pm: str = "dnf") -> str:
    """An EL host's probe output: needs-restarting ran with `exit_status` (None: not installed)."""
    text = probe_output().replace("@@pm -\napt\n", f"@@pm -\n{pm}\n") + "@@reboot -\n"
    if exit_status is not None:
        text += f"@@needs-restarting -\n{output}\n@@needs-restarting-exit {exit_status}\n"
    return text


def test_the_sentinel_with_its_packages_is_a_reboot_asked_for_by_them() -> None:
    facts = parse(debian((SENTINEL, "*** System restart required ***\n"),
                         (PKGS, "linux-image-6.1.0-21-amd64\nlibc6\nlinux-image-6.1.0-21-amd64\n")), 16509)
    assert facts.reboot_required is True
    assert facts.reboot_required_by == ("linux-image-6.1.0-21-amd64", "libc6"), "each once, in their order"
    assert SENTINEL not in facts.files and PKGS not in facts.files, "not configuration files"


def test_the_sentinel_alone_is_a_reboot_asked_for_by_no_package_named() -> None:
    facts = parse(debian((SENTINEL, "")), 16509)
    assert (facts.reboot_required, facts.reboot_required_by) == (True, ())


def test_no_sentinel_is_no_reboot() -> None:
    facts = parse(debian(), 16509)
    assert (facts.reboot_required, facts.reboot_required_by) == (False, ())


def test_a_probe_that_did_not_look_does_not_know() -> None:
    assert parse(probe_output(), 16509).reboot_required is None


@pytest.mark.parametrize("pm", ["dnf", "yum"])
def test_needs_restarting_exit_one_means_a_reboot(pm: str) -> None:
    facts = parse(el(1, NEEDS_RESTARTING, pm), 16509)
    assert (facts.reboot_required, facts.reboot_required_by) == (True, ("kernel", "glibc"))


def test_needs_restarting_exit_zero_means_none() -> None:
    facts = parse(el(0, "No core libraries or services have been updated since boot-up.\n"
                        "Reboot should not be necessary."), 16509)
    assert (facts.reboot_required, facts.reboot_required_by) == (False, ())


def test_el_without_needs_restarting_does_not_know() -> None:
    facts = parse(el(None), 16509)
    assert (facts.reboot_required, facts.reboot_required_by) == (None, ())
    assert parse(el(2, "some error"), 16509).reboot_required is None, "neither 0 nor 1: not an answer"


def test_the_sentinel_counts_on_el_too() -> None:
    facts = parse(el(None) + file_section(SENTINEL, ""), 16509)
    assert facts.reboot_required is True


def run_reboot_section(tmp_path: Path, pm: str, exit_status: int | None) -> str:
    """The script's reboot section, run here with a stand-in needs-restarting on PATH."""
    section = SCRIPT[SCRIPT.index("section reboot -\n"):SCRIPT.index("section listening -")]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if exit_status is not None:
        fake = bin_dir / "needs-restarting"
        fake.write_text(f'#!/bin/sh\n[ "$1" = -r ] || exit 9\nprintf \'%s\\n\' "  * kernel"\nexit {exit_status}\n')
        fake.chmod(0o755)
    script = ("section() { printf '\\n@@%s %s\\n' \"$1\" \"$2\"; }\n"
              'have() { command -v "$1" >/dev/null 2>&1; }\n'
              f"export PATH={bin_dir}:/usr/bin:/bin\npm={pm}\n" + section)
    return subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=30,
                          check=True).stdout


@pytest.mark.parametrize(("pm", "exit_status", "expected"), [
    ("dnf", 1, True), ("yum", 0, False), ("dnf", None, None), ("apt", 1, False)])
def test_the_script_asks_needs_restarting_only_on_el(tmp_path: Path, pm: str, exit_status: int | None,
                                                     expected: bool | None) -> None:
    out = run_reboot_section(tmp_path, pm, exit_status)
    names = [name for name, _, _ in sections(out)]
    assert ("needs-restarting" in names) == (pm != "apt" and exit_status is not None), out
    text = probe_output().replace("@@pm -\napt\n", f"@@pm -\n{pm}\n") + out
    assert parse(text, 16509).reboot_required is expected


def test_the_probe_reads_the_sentinel_with_its_files() -> None:
    """Debian's sentinel costs no process: the script lists it with the files the archive takes."""
    assert re.search(r'for f in \$PROBED_FILES .*\$REBOOT_FILES; do\n', SCRIPT)
    assert "REBOOT_FILES='/var/run/reboot-required /var/run/reboot-required.pkgs'" in SCRIPT


def test_status_shows_the_reboot_and_its_packages() -> None:
    output = debian((SENTINEL, "*** System restart required ***\n"), (PKGS, "linux-image-6.1.0-21-amd64\n"))
    spec = KvmHostSpec.model_validate({"address": "10.250.0.11", "managementPolicy": "Observe",
                                       "ssh": {"privateKeySecretRef": {"name": "k"}, "hostKey": HOST_KEY}})
    ctx = Context(namespace="lab", name="kvm1", generation=1, spec=spec, status={},
                  secrets={"k": secret({"ssh-privatekey": "unused"}, "10.250.0.11")},
                  event=lambda *e: None, logger=logging.getLogger("test"))
    host = ProbeOnlyHost(output)
    outcome = asyncio.run(KvmHostReconciler(host).reconcile(ctx))  # type: ignore[arg-type]
    assert outcome.fields["rebootRequired"] is True
    assert outcome.fields["rebootRequiredBy"] == ["linux-image-6.1.0-21-amd64"]
    status = KvmHostStatus.model_validate(outcome.fields)
    assert status.reboot_required is True and status.reboot_required_by == ["linux-image-6.1.0-21-amd64"]
    assert host.ran == []
