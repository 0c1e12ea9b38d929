"""KvmHost package repositories are verified: `packages.repositoryURL` needs the repository's OpenPGP key
(`signingKeySecretRef`) or an explicit `allowUnsigned`, and https or an explicit `allowPlainHTTP`; the key is
written next to the source that names it (apt `signed-by=`, dnf/yum `gpgcheck=1`, `repo_gpgcheck=1`, `gpgkey=`),
before it and removed after it; a Secret value that is not one armored public key stops the plan before anything
is written. The real apt (where installed, with gpg to sign) reads the planned source and key."""
from __future__ import annotations

import asyncio
import copy
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from support.kvmhost_probe import INSTALLED, OWNER, ProbeOnlyHost, probe_output
from support.specs import HOST_KEY
from support.credentials import secret
from stackops.api.kvmhost import KvmHostSpec
from stackops.api.references import needed_secrets
from stackops.reconcile.base import Context, ReconcileError
from stackops.reconcile.kvmhost import KvmHostReconciler
from stackops.reconcile.kvmhost.actions import WRITE_READABLE_FILE, RunCommand, WriteFile
from stackops.reconcile.kvmhost.plan import REPOSITORY_MARKER, PlanError, plan
from stackops.reconcile.kvmhost.paths import PROBED_FILES
from stackops.reconcile.kvmhost.probe import SCRIPT, parse
from stackops.reconcile.kvmhost.repository import armored_public_key, source

DATA = Path(__file__).parent / "data"
KEY = (DATA / "repository-key.asc").read_text()
SECRET, SECRET_KEY = "repo-key", "signing-key.asc"
URL = "https://repo.example.com/cloudstack/4.19/"
APT_SOURCE = "/etc/apt/sources.list.d/stackops-cloudstack.list"
APT_KEY = "/etc/apt/keyrings/stackops-cloudstack.asc"
YUM_REPO = "/etc/yum.repos.d/stackops-cloudstack.repo"
RPM_KEY = "/etc/pki/rpm-gpg/RPM-GPG-KEY-stackops-cloudstack"
SIGNED_APT = f"{REPOSITORY_MARKER}\ndeb [signed-by={APT_KEY}] https://repo.example.com/cloudstack/4.19 /\n"
UNSIGNED_APT = f"{REPOSITORY_MARKER}\ndeb [trusted=yes] https://repo.example.com/cloudstack/4.19 /\n"
WITHOUT_AGENT = {k: v for k, v in INSTALLED.items() if k != "cloudstack-agent"}
RPM_PACKAGES = {"qemu-kvm": "6.2.0-1.el8", "libvirt": "8.0.0-1.el8", "libvirt-client": "8.0.0-1.el8",
                "bridge-utils": "1.7-1.el8", "openvswitch": "2.17-1.el8"}


def spec(**packages: Any) -> KvmHostSpec:
    return KvmHostSpec.model_validate({"address": "10.250.0.11",
                                       "ssh": {"privateKeySecretRef": {"name": "k"}, "hostKey": HOST_KEY},
                                       "packages": packages})


def signed(**packages: Any) -> KvmHostSpec:
    return spec(repositoryURL=URL, signingKeySecretRef={"name": SECRET, "key": SECRET_KEY}, **packages)


def host(files: dict[str, str | None] | None = None, manager: str = "apt",
         packages: dict[str, str] | None = None) -> str:
    text = probe_output(files=files, packages=packages)
    return text if manager == "apt" else text.replace("@@pm -\napt\n", f"@@pm -\n{manager}\n")


def repository_actions(actions: list) -> list:
    return [a for a in actions if isinstance(a, (WriteFile, RunCommand)) and
            (getattr(a, "path", "") in (APT_SOURCE, APT_KEY, YUM_REPO, RPM_KEY) or
             any(p in a.argv() for p in (APT_SOURCE, APT_KEY, YUM_REPO, RPM_KEY)))]


# ------------------------------------------------------------------------------------------------------ schema


@pytest.mark.parametrize(("packages", "message"), [
    ({"repositoryURL": URL}, "repositoryURL needs signingKeySecretRef"),
    ({"repositoryURL": "http://repo.example.com/el8/", "allowUnsigned": True},
     "repositoryURL is plain http://: use https://, or set allowPlainHTTP: true"),
    ({"repositoryURL": "http://repo.example.com/el8/", "signingKeySecretRef": {"name": SECRET, "key": SECRET_KEY}},
     "allowPlainHTTP"),
    ({"repositoryURL": URL, "allowUnsigned": True, "signingKeySecretRef": {"name": SECRET, "key": SECRET_KEY}},
     "either signingKeySecretRef or allowUnsigned"),
    ({"signingKeySecretRef": {"name": SECRET, "key": SECRET_KEY}}, "without a repositoryURL"),
])
def test_an_unverified_or_plain_http_repository_needs_an_explicit_opt_in(packages: dict, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        spec(**packages)
    assert message in str(refused.value)


def test_the_opt_ins_accept_what_they_name_and_the_key_is_a_secret_the_operator_reads() -> None:
    assert spec(repositoryURL="http://r.example.com/", allowUnsigned=True, allowPlainHTTP=True).packages.allow_unsigned
    assert spec(repositoryURL="http://r.example.com/", allowPlainHTTP=True,
                signingKeySecretRef={"name": SECRET, "key": SECRET_KEY}).packages.allow_plain_http
    assert [(n.path, n.name, n.keys) for n in needed_secrets(signed()) if n.name == SECRET] == [
        ("spec.packages.signingKeySecretRef", SECRET, (SECRET_KEY,))]


# -------------------------------------------------------------------------------------------------------- plan


def test_apt_gets_the_key_first_then_a_source_signed_by_it() -> None:
    key, write, refresh, install = plan(signed(), parse(host(packages=WITHOUT_AGENT), 16509), OWNER, KEY)
    assert isinstance(key, WriteFile) and key.path == APT_KEY and key.content == KEY and key.readable
    assert key.argv() == ("sh", "-c", WRITE_READABLE_FILE, "stackops-write-file", APT_KEY)
    assert 'chmod 0644 "$f.stackops-new"; mv -f' in WRITE_READABLE_FILE and "stackops-backup" not in \
        WRITE_READABLE_FILE
    assert key.describe() == f"add the signing key of the package repository {URL} ({APT_KEY})"
    assert isinstance(write, WriteFile) and write.path == APT_SOURCE and write.content == SIGNED_APT
    assert "trusted=yes" not in write.content
    assert refresh.describe().endswith("the repository source changed") and install.argv()[-1] == "cloudstack-agent"


@pytest.mark.parametrize("manager", ["dnf", "yum"])
def test_dnf_and_yum_check_package_and_metadata_signatures_with_the_key(manager: str) -> None:
    key, write, *_ = plan(signed(), parse(host(manager=manager, packages=RPM_PACKAGES), 16509), OWNER, KEY)
    assert key.path == RPM_KEY and key.content == KEY and key.readable
    assert write.path == YUM_REPO and write.content == (
        f"{REPOSITORY_MARKER}\n[stackops-cloudstack]\nname=CloudStack packages (stackops)\nbaseurl={URL}\n"
        f"enabled=1\ngpgcheck=1\nrepo_gpgcheck=1\ngpgkey=file://{RPM_KEY}\n")


def test_a_host_with_the_key_and_source_plans_nothing_and_a_new_key_rewrites_only_the_key() -> None:
    converged = parse(host({APT_SOURCE: SIGNED_APT, APT_KEY: KEY}), 16509)
    assert repository_actions(plan(signed(), converged, OWNER, KEY)) == []
    assert repository_actions(plan(signed(), converged, OWNER, KEY.replace("\n", "\r\n") + "\n\n")) == [], \
        "a Secret written with CRLF or trailing blank lines is the same key"
    other = KEY.replace("mDMEaxZNOxYJKwYBBAHaRw8BAQdA", "mDMEaxZNOxYJKwYBBAHaRw8BAQdB")
    (rotated,) = repository_actions(plan(signed(), converged, OWNER, other))
    assert rotated.path == APT_KEY and rotated.content == other
    assert rotated.describe().startswith("update the signing key of the package repository")


def test_going_unsigned_or_dropping_the_repository_removes_the_key_after_the_source() -> None:
    observed = parse(host({APT_SOURCE: SIGNED_APT, APT_KEY: KEY}), 16509)
    write, remove = repository_actions(plan(spec(repositoryURL=URL, allowUnsigned=True), observed, OWNER))
    assert isinstance(write, WriteFile) and write.content == UNSIGNED_APT
    assert remove.argv() == ("rm", "-f", APT_KEY)
    dropped = repository_actions(plan(spec(), observed, OWNER))
    assert [a.argv() for a in dropped] == [("rm", "-f", APT_SOURCE), ("rm", "-f", APT_KEY)]


def test_the_probe_reads_both_key_files() -> None:
    for path in (APT_KEY, RPM_KEY):
        assert path in PROBED_FILES and path in SCRIPT
    assert parse(host({APT_KEY: KEY}), 16509).files[APT_KEY] == KEY


PRIVATE = KEY.replace("PUBLIC KEY BLOCK", "PRIVATE KEY BLOCK")


@pytest.mark.parametrize(("value", "why"), [
    (PRIVATE, "it is a private key"),
    ("70A5AFCEAA32F8B25CDB4F27D24A3B5554A252CF", "one ASCII-armored OpenPGP public key"),
    (KEY + KEY, "one key block only"),
    (KEY.replace("=VbHx", "=VbHx\nsecret tail"), "one key block only"),
    (KEY.replace("mDMEaxZNOxYJ", "iQEzBAABCAAd"), "does not start with an OpenPGP public key packet"),
    ("", "one ASCII-armored OpenPGP public key"),
])
def test_a_secret_value_that_is_not_one_armored_public_key_is_refused(value: str, why: str) -> None:
    with pytest.raises(PlanError) as refused:
        plan(signed(), parse(host(), 16509), OWNER, value)
    assert refused.value.reason == "SigningKeyInvalid" and why in str(refused.value)
    assert f"Secret {SECRET}, key {SECRET_KEY}" in str(refused.value)
    for line in value.splitlines():
        if len(line) > 8 and "-----" not in line:
            assert line not in str(refused.value), "the value is never quoted"


def test_the_reconciler_reads_the_key_from_its_secret_and_stalls_on_a_private_key() -> None:
    connection = ProbeOnlyHost(host())
    ctx = Context(namespace="lab", name="kvm1", generation=1, spec=signed(), status={},
                  secrets={"k": secret({"ssh-privatekey": "unused"}, "10.250.0.0/24"), SECRET: {SECRET_KEY: SecretStr(PRIVATE)}},
                  event=lambda *e: None, logger=logging.getLogger("test"))
    with pytest.raises(ReconcileError) as stalled:
        asyncio.run(KvmHostReconciler(connection).reconcile(ctx))  # type: ignore[arg-type]
    assert stalled.value.reason == "SigningKeyInvalid" and not stalled.value.retry
    assert connection.ran == [], "no key and no source reach the host"
    ctx.secrets[SECRET] = {SECRET_KEY: SecretStr(KEY)}
    observe = ctx.spec.model_copy(update={"management_policy": "Observe"})
    ctx.spec = observe
    outcome = asyncio.run(KvmHostReconciler(connection).reconcile(ctx))  # type: ignore[arg-type]
    assert [a.describe() for a in outcome.drift or []][:2] == [
        f"add the signing key of the package repository {URL} ({APT_KEY})",
        f"add the package repository {URL} ({APT_SOURCE})"]


# ------------------------------------------------------------------------------------------------ the real apt


def apt_update(tmp_path: Path, repository: Path, key: str) -> tuple[int, str, str]:
    """`apt-get update` in a private apt root whose only source is the planned one (its keyring path moved into
    the root), then `apt-cache madison cloudstack-agent`: (exit status, madison's output, update's stderr)."""
    root = tmp_path / "apt"
    for directory in ("etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d", "state/lists/partial",
                      "cache/archives/partial", "log", "keyrings"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "status").write_text("")
    keyring = root / "keyrings" / Path(APT_KEY).name
    keyring.write_text(armored_public_key(key))
    keyring.chmod(0o644)
    line = source("apt", f"file:{repository}", signed=True).replace(APT_KEY, str(keyring))
    (root / "etc" / "sources.list").write_text(line)
    settings = {"Dir::Etc": root / "etc", "Dir::State": root / "state", "Dir::State::status": root / "status",
                "Dir::Cache": root / "cache", "Dir::Log": root / "log", "Debug::NoLocking": "true"}
    if os.geteuid() == 0:
        settings["APT::Sandbox::User"] = "root"
    (root / "apt.conf").write_text("".join(f'{key} "{value}";\n' for key, value in settings.items()))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "APT_CONFIG": str(root / "apt.conf"), "LC_ALL": "C"}
    update = subprocess.run(["apt-get", "-q", "update"], env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    madison = subprocess.run(["apt-cache", "madison", "cloudstack-agent"], env=env, capture_output=True, text=True,
                             timeout=60, check=False)
    return update.returncode, madison.stdout, update.stderr


def test_the_real_apt_reads_the_planned_source_and_armored_key_and_refuses_another_key(tmp_path: Path) -> None:
    if shutil.which("apt-get") is None or shutil.which("gpg") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("apt-get, gpg and dpkg-deb are needed")
    from stackops_lab import aptrepo

    repository = aptrepo.build(tmp_path / "srv")
    assert (repository / "InRelease").is_file() and "BEGIN PGP SIGNED MESSAGE" in (
        repository / "InRelease").read_text()
    status, madison, stderr = apt_update(tmp_path / "right", repository, aptrepo.public_key(repository))
    assert status == 0 and "4.19.2.0" in madison, stderr
    assert "NO_PUBKEY" not in stderr and "not signed" not in stderr
    status, madison, stderr = apt_update(tmp_path / "wrong", repository, KEY)
    assert status != 0 and madison == "", "a repository signed by another key is not read"
    assert "NO_PUBKEY" in stderr or "not signed" in stderr, stderr
