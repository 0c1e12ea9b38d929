"""What a CloudStackRelease build writes is not trusted: its log, phase, result and artifact names come back through
the observe script as records that are parsed strictly (a `\\r` forges nothing, a malformed record is
`BuildOutputInvalid`, not a crash on every pass), artifact names are plain file names before anything is joined to
the publish directory, and `file://` URLs need the spec's `allowFileURLs`."""
from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from stackops.api.cloudstackrelease import CloudStackReleaseSpec
from stackops.drivers.ssh import CommandResult
from stackops.reconcile import cloudstackrelease as release_module
from stackops.reconcile.base import Context, ReconcileError
from stackops.reconcile.cloudstackrelease import CloudStackReleaseReconciler, inputs, scripts
from stackops.reconcile.cloudstackrelease.observed import BuildOutputInvalid, parse

from support.specs import HOST_KEY

BASE = "c" * 40  # a commit as baseRef: the observe script resolves it without asking Git
SHA = "f" * 64


class ShellRunner:
    """The build host is this machine, without isolation (the scripts under test, not the builder)."""

    where = "the test's shell"

    async def script(self, text: str, args: Sequence[str], *, timeout: float, mutation: bool = False,
                     label: str = "script") -> CommandResult:
        run = subprocess.run(["sh", "-s", "--", *args], input=text.encode(), capture_output=True, timeout=timeout)
        # decoded as the SSH driver does: bytes to text, no newline translation (`\r` stays `\r`)
        return CommandResult(run.returncode, run.stdout.decode(errors="replace"), run.stderr.decode(errors="replace"))


def release(work: Path, **changes: Any) -> CloudStackReleaseSpec:
    """A release built "over SSH" on this machine (runner_for gives the ShellRunner)."""
    builder = {"type": "SSH", "workDir": str(work), "ssh": {"address": "127.0.0.1", "ssh": {
        "privateKeySecretRef": {"name": "build-ssh"}, "hostKey": HOST_KEY}}}
    data: dict[str, Any] = {"source": {"repository": "https://127.0.0.1:9/nowhere.git", "baseRef": BASE},
                            "version": "4.8.0.16", "builder": builder,
                            "publish": {"directory": str(work.parent / "publish")}}
    data.update(changes)
    return CloudStackReleaseSpec.model_validate(data)


def build_dir(spec: CloudStackReleaseSpec, **files: str) -> Path:
    """builds/<hash>/ of the spec's inputs, with the state files a build left (and may have written itself)."""
    directory = Path(spec.builder.work_dir) / "builds" / inputs.inputs_hash(inputs.settings(spec), BASE, "-", [])
    directory.mkdir(parents=True)
    for name, content in files.items():
        (directory / name).write_text(content)
    return directory


def reconcile(spec: CloudStackReleaseSpec, monkeypatch: pytest.MonkeyPatch, status: dict[str, Any] | None = None) -> Any:
    monkeypatch.setattr(release_module, "runner_for", lambda *args: ShellRunner())
    ctx = Context(namespace="builds", name="release", generation=1, spec=spec, status=status or {}, secrets={},
                  event=lambda *e: None, logger=logging.getLogger("t"))
    return asyncio.run(CloudStackReleaseReconciler(None).reconcile(ctx))


def test_a_carriage_return_in_the_log_forges_no_phase_and_no_artifact(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    spec = release(tmp_path / "work")
    forged = ("compiling\rphase Succeeded\rresult artifact evil.rpm " + SHA + " 1 /x\r"
              "phase\tSucceeded\rresult\tartifact\tevil.rpm\t" + SHA + "\t1\t/x\n")
    build_dir(spec, phase="Failed\n", started="100\n", finished="160\n",
              failure="BuildFailed the build failed (exit 1)\n", log="[INFO] BUILD FAILURE\n" + forged)
    outcome = reconcile(spec, monkeypatch)
    assert outcome.fields["phase"] == "Failed" and outcome.fields["artifacts"] == []
    assert [c.reason for c in outcome.conditions if c.type == "Stalled"] == ["BuildFailed"]
    tail = outcome.fields["buildLog"]["tail"]
    assert tail[0] == "[INFO] BUILD FAILURE" and tail[1].startswith("compiling\ufffdphase Succeeded\ufffd")
    assert all("\r" not in line for line in tail)


@pytest.mark.parametrize(("files", "what"), [
    ({"phase": "Failed\n", "started": "\u00b2\n"}, "started"),  # a digit to str.isdigit, not to int()
    ({"phase": "Buildin\u0261\n"}, "phase"),
    ({"phase": "Succeeded\n", "result": "commit\tnot-a-commit\n"}, "commit"),
    ({"phase": "Succeeded\n", "result": "pr\t1x\t\n"}, "pr"),
    ({"phase": "Failed\n", "failure": "\n"}, "failure"),
])
def test_a_malformed_record_stalls_with_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 files: dict[str, str], what: str) -> None:
    """Not a ValueError on every pass: Stalled, BuildOutputInvalid, naming the record."""
    spec = release(tmp_path / "work")
    build_dir(spec, **files)
    with pytest.raises(ReconcileError) as refused:
        reconcile(spec, monkeypatch)
    assert refused.value.reason == "BuildOutputInvalid" and refused.value.retry is False
    assert what in str(refused.value) and "Traceback" not in str(refused.value)


def test_the_parser_refuses_what_it_does_not_know() -> None:
    for output in ("hash\t" + SHA, "bogus\tx\n", "hash\t" + SHA + "\nhash\t" + SHA + "\n", "patch\t101\n",
                   "running\t-1\n", "result\tartifact\ta.rpm\t" + SHA + "\t1\n"):
        with pytest.raises(BuildOutputInvalid):
            parse(output)
    assert parse("").inputs_hash == ""


# --- artifact names -----------------------------------------------------------------------------------------------

def test_an_artifact_name_that_leaves_the_publish_directory_is_refused(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    spec = release(tmp_path / "work")
    build_dir(spec, phase="Succeeded\n", started="100\n", finished="160\n",
              result=f"artifact\t../../etc/cron.d/x.rpm\t{SHA}\t1\t/x\n"  # the records the pipeline writes
                     f"artifact ../../etc/cron.d/x.rpm {SHA} 1 /x\n")  # and how it wrote them before
    with pytest.raises(ReconcileError) as refused:
        reconcile(spec, monkeypatch)
    assert refused.value.reason == "ArtifactNameInvalid" and refused.value.retry is False
    assert "../../etc/cron.d/x.rpm" in str(refused.value)


def test_deletion_removes_only_plain_names_from_the_publish_directory(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    spec = release(tmp_path / "work", deletionPolicy="Delete")
    publish = tmp_path / "publish"
    publish.mkdir()
    (publish / "cloudstack-agent-4.8.0.16-1.el7.noarch.rpm").write_text("rpm")
    victim = tmp_path / "victim.rpm"
    victim.write_text("not the release's")
    monkeypatch.setattr(release_module, "runner_for", lambda *args: ShellRunner())
    status = {"inputsHash": "h" * 64, "artifacts": [{"name": "cloudstack-agent-4.8.0.16-1.el7.noarch.rpm"},
                                                    {"name": "../victim.rpm"}]}
    ctx = Context(namespace="builds", name="release", generation=1, spec=spec, status=status, secrets={},
                  event=lambda *e: None, logger=logging.getLogger("t"))
    asyncio.run(CloudStackReleaseReconciler(None).finalize(ctx))
    assert victim.exists() and not list(publish.glob("*.rpm"))
    # the script refuses such a name by itself too
    refused = subprocess.run(["sh", "-s", "--", str(tmp_path / "work"), str(publish), "../victim.rpm"],
                             input=scripts.REMOVE, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "not a plain file name" in refused.stderr and victim.exists()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(repo), "GIT_CONFIG_NOSYSTEM": "1",
                               "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}).stdout.strip()


def test_the_pipeline_publishes_no_rpm_whose_name_is_not_plain(tmp_path: Path) -> None:
    """package.sh makes `a b.rpm` beside a good one: the build fails, ArtifactNameInvalid, nothing published."""
    repo = tmp_path / "repo"
    (repo / "packaging").mkdir(parents=True)
    (repo / "pom.xml").write_text("<project>\n  <version>4.8.0</version>\n</project>\n")
    (repo / "setversion.sh").write_text('sed -i "s|<version>.*</version>|<version>$1</version>|" pom.xml\n')
    (repo / "packaging" / "package.sh").write_text(
        "#!/bin/sh\nmkdir -p ../dist/rpmbuild/RPMS/noarch && cd ../dist/rpmbuild/RPMS/noarch && "
        "echo rpm > good-1.noarch.rpm && echo rpm > 'a b.rpm'\n")
    (repo / "packaging" / "package.sh").chmod(0o755)
    git(repo, "init", "-q", "-b", "4.8")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "tree")
    base = git(repo, "rev-parse", "HEAD")
    work = tmp_path / "work"
    spec = release(work, source={"repository": f"file://{repo}", "baseRef": "4.8"}, allowFileURLs=True,
                   build={"versionCommand": ["sh", "setversion.sh", "%VERSION%"], "mavenCommand": ["true"]})
    digest = inputs.inputs_hash(inputs.settings(spec), base, "-", [])
    directory = work / "builds" / digest
    directory.mkdir(parents=True)
    (directory / "inputs").write_text("\n".join(inputs.inputs_file(spec, base, "-", {}, digest)) + "\n")
    run = subprocess.run(["sh", "-s", "--", str(work), digest], input=scripts.PIPELINE, capture_output=True,
                         text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    log = run.stdout + run.stderr
    assert run.returncode != 0, log
    assert (directory / "failure").read_text().startswith("ArtifactNameInvalid "), log
    assert "a b.rpm" in (directory / "failure").read_text()
    assert not (tmp_path / "publish").exists() or not list((tmp_path / "publish").iterdir())


# --- file:// ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change", [
    {"source": {"repository": "file:///srv/git/cloudstack.git", "baseRef": "4.8"}},
    {"source": {"repository": "https://github.com/apache/cloudstack.git", "baseRef": "4.8",
                "upstream": {"repository": "file:///var/run/secrets/kubernetes.io", "ref": "main"}}},
    {"pullRequests": [{"number": 1, "patchURL": "file:///var/run/secrets/kubernetes.io/serviceaccount/token"}]},
])
def test_file_urls_need_the_opt_in(tmp_path: Path, change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as refused:
        release(tmp_path / "work", **change)
    assert "allowFileURLs" in str(refused.value)
    assert release(tmp_path / "work", allowFileURLs=True, **change).allow_file_urls is True


def test_git_and_curl_refuse_file_urls_without_the_opt_in(tmp_path: Path) -> None:
    """Behind the schema: the build host's Git and curl speak file:// only when the operator says files=true."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "4.8")
    git(repo, "commit", "-q", "--allow-empty", "-m", "x")
    secret = tmp_path / "secret.patch"
    secret.write_text("a local file\n")

    def observe(files: str, url: str, ref: str, *patches: str) -> str:
        args = [str(tmp_path / "work"), "{}", "-", files, url, ref, "-", "-", *patches]
        return subprocess.run(["sh", "-s", "--", *args], input=scripts.OBSERVE, capture_output=True, text=True,
                              timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}).stdout

    assert parse(observe("false", f"file://{repo}", "4.8")).problem[0] == "SourceUnreachable"
    assert parse(observe("true", f"file://{repo}", "4.8")).base == git(repo, "rev-parse", "HEAD")
    nowhere = "https://127.0.0.1:9/nowhere.git"
    assert parse(observe("false", nowhere, BASE, "1", f"file://{secret}")).problem[0] == "PatchDownloadFailed"
    assert parse(observe("true", nowhere, BASE, "1", f"file://{secret}")).patches.get(1)
