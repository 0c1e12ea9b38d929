"""The pure part of CloudStackRelease: the inputs hash (the same on the build host as in the operator), the version
rule, the inputs file, what the observe script's lines mean, and what a pass decides."""
from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from stackops.api.cloudstackrelease import CloudStackReleaseSpec
from stackops.reconcile.cloudstackrelease import inputs, scripts
from stackops.reconcile.cloudstackrelease.observed import parse
from stackops.reconcile.cloudstackrelease.plan import RETRY_SECONDS, STALLING, TRANSIENT, StartBuild, plan
from stackops.reconcile.cloudstackrelease.reasons import Reason


def spec(**changes: Any) -> CloudStackReleaseSpec:
    data: dict[str, Any] = {
        "source": {"repository": "https://github.com/apache/cloudstack.git", "baseRef": "4.8"},
        "version": "4.8.0.16", "pullRequests": [{"number": 101}, {"number": 102}],
        "builder": {"type": "Local", "workDir": "/var/lib/stackops/build"},
    }
    data.update(changes)
    return CloudStackReleaseSpec.model_validate(data)


def test_the_hash_is_the_one_the_build_host_computes() -> None:
    line = inputs.settings(spec())
    patches = [(101, "a" * 64), (102, "b" * 64)]
    hashes = "".join(f" {n}:{d}" for n, d in patches)
    shell = subprocess.run(["sh", "-c", 'printf "%s\\n" "$1" "$2" "$3" "$4" | sha256sum | cut -d" " -f1', "sh",
                            line, "c" * 40, "-", hashes], capture_output=True, text=True, check=True).stdout.strip()
    assert inputs.inputs_hash(line, "c" * 40, "-", patches) == shell


def test_every_input_changes_the_hash() -> None:
    base = inputs.inputs_hash(inputs.settings(spec()), "c" * 40, "-", [(101, "a" * 64)])
    assert inputs.inputs_hash(inputs.settings(spec()), "d" * 40, "-", [(101, "a" * 64)]) != base
    assert inputs.inputs_hash(inputs.settings(spec()), "c" * 40, "-", [(101, "f" * 64)]) != base
    assert inputs.inputs_hash(inputs.settings(spec(version="4.8.0.17")), "c" * 40, "-", [(101, "a" * 64)]) != base
    assert inputs.settings(spec(pullRequests=[{"number": 101}])) != inputs.settings(spec())
    assert inputs.settings(spec(build={"skipTests": False})) != inputs.settings(spec())


def test_default_commands_and_patch_urls() -> None:
    release = spec()
    assert inputs.patch_url(release, 101, None) == "https://github.com/apache/cloudstack/pull/101.patch"
    assert inputs.maven_command(release) == ["mvn", "clean", "install", "-P", "systemvm", "-DskipTests"]
    assert inputs.version_command(release) == ["tools/build/setnextversion.sh", "-v", "4.8.0.16", "-b",
                                               "stackops-build", "-s", "/var/lib/stackops/build/src"]
    lines = inputs.inputs_file(release, "c" * 40, "-", {101: "a" * 64, 102: "b" * 64}, "h" * 64)
    assert "pr=101 https://github.com/apache/cloudstack/pull/101.patch " + "a" * 64 in lines
    assert "publish=/var/lib/stackops/build/builds/" + "h" * 64 + "/rpms" in lines
    assert all("\n" not in line for line in lines)


@pytest.mark.parametrize(("rule", "version", "base", "upgrade"), [
    ("Legacy", "4.8.0.16", "4.8.0", False), ("Legacy", "4.8.0.16", "4.8.0-SNAPSHOT", False),
    ("Legacy", "4.9.0.1", "4.8.0", True), ("FourPart", "4.8.0.16", "4.8.0.0", True),
    ("FourPart", "4.19.1.0", "4.19.1.0-SNAPSHOT", False)])
def test_version_rule(rule: str, version: str, base: str, upgrade: bool) -> None:
    assert inputs.version_verdict(rule, version, base).schema_upgrade_required is upgrade


HASH = "9" * 64
OTHER = "8" * 64
C1, C2, C3 = "1" * 40, "2" * 40, "3" * 40


def records(*lines: str) -> str:
    """Observe records written as `key field…` with ` | ` between fields, tab-separated as the script writes them."""
    return "".join(line.replace(" | ", "\t") + "\n" for line in lines)


def observed(*lines: str) -> Any:
    return parse(records("base | " + "c" * 40, "upstream | -", "patch | 101 | " + "a" * 64,
                         "patch | 102 | " + "b" * 64, "hash | " + HASH, "current | -", *lines))


def test_parse_a_finished_build() -> None:
    facts = observed("phase | Succeeded", "started | 100", "finished | 160", "progress | Publishing",
                     "base_version | 4.8.0", "result | commit | " + "e" * 40, f"result | pr | 101 | {C1} {C2}",
                     f"result | pr | 102 | {C3}",
                     "result | artifact | cloudstack-agent-4.8.0.16-1.el7.noarch.rpm | " + "f" * 64 +
                     " | 1234 | /srv/x.rpm")
    assert facts.exists and facts.patches == {101: "a" * 64, 102: "b" * 64}
    assert facts.applied == {101: [C1, C2], 102: [C3]} and facts.commit == "e" * 40
    assert facts.artifacts[0].size == 1234 and facts.artifacts[0].path == "/srv/x.rpm"


def test_decisions() -> None:
    release = spec()
    start = plan(release, observed("state | none"), now=1000)
    assert start.state == "Start" and isinstance(start.action, StartBuild)
    assert start.action.pull_requests == (101, 102) and not start.action.superseding
    assert plan(release, observed("state | none"), 1000, built_before=True).state == "Succeeded"
    running = plan(release, observed("running | 42", "phase | Building", "progress | Building"), 1000)
    assert running.state == "Running" and running.reason == "Building" and running.requeue_after
    # the pipeline wrote its terminal phase and has not exited yet
    assert plan(release, observed("running | 42", "phase | Succeeded"), 1000).state == "Succeeded"
    conflict = plan(release, observed("phase | Failed", "finished | 900", "failure | PatchDoesNotApply | pull "
                                        "request #102 does not apply"), 1000)
    assert conflict.state == "Failed" and conflict.stalled and "#102" in conflict.message
    legacy = plan(release, observed("phase | Failed", "failure | SchemaUpgradeRequired | version 4.9.0.1"), 1000)
    assert legacy.stalled and legacy.reason == "SchemaUpgradeRequired"
    flaky = observed("phase | Failed", "finished | 990", "failure | FetchFailed | git fetch failed")
    assert plan(release, flaky, 1000).state == "Waiting"
    again = plan(release, flaky, 990 + RETRY_SECONDS)
    assert again.state == "Start" and again.action is not None and again.action.retry_of == "FetchFailed"
    killed = plan(release, observed("phase | Building"), 1000)  # nothing runs, no result: the host rebooted
    assert killed.state == "Start" and "Building" in killed.action.retry_of
    superseding = plan(release, parse(records("hash | " + HASH, "current | " + OTHER, "current-running | 7",
                                                "state | none", "base | " + C1, "upstream | -",
                                                "patch | 101 | " + "a" * 64, "patch | 102 | " + "b" * 64)), 1000)
    assert superseding.action is not None and superseding.action.superseding == OTHER


def test_problems_before_a_build() -> None:
    assert plan(spec(), parse(records("missing | createrepo_c")), 0).reason == "ToolMissing"
    missing = plan(spec(), parse(records("ref-missing | base | 4.99")), 0)
    assert missing.stalled and missing.reason == "RefNotFound"
    unreachable = plan(spec(), parse(records("fetch-failed | base | fatal: unable to access")), 0)
    assert not unreachable.stalled and unreachable.requeue_after


def test_a_running_build_is_reported_without_resolving_its_inputs_again(tmp_path: Any) -> None:
    """While the recorded build runs with the same settings, observe neither asks Git nor downloads a patch (the
    URLs here lead nowhere): it reports that build's inputs, and the operator's hash check still holds."""
    from stackops.reconcile.cloudstackrelease.scripts import OBSERVE

    release = spec()
    line = inputs.settings(release)
    patches = [(101, "a" * 64), (102, "b" * 64)]
    known = inputs.inputs_hash(line, "c" * 40, "-", patches)
    build = tmp_path / "builds" / known
    build.mkdir(parents=True)
    (build / "settings").write_text(line + "\n")
    (build / "inputs").write_text("\n".join(inputs.inputs_file(release, "c" * 40, "-", dict(patches), known)) + "\n")
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (build / "pid").write_text(f"{sleeper.pid}\n")
        (build / "phase").write_text("Building\n")
        args = [str(tmp_path), line, known, "false", "http://127.0.0.1:9/nowhere.git", "4.8", "-", "-",
                "101", "http://127.0.0.1:9/pull/101.patch", "102", "http://127.0.0.1:9/pull/102.patch"]
        output = subprocess.run(["sh", "-s", "--", *args], input=OBSERVE, capture_output=True, text=True,
                                timeout=30).stdout
        facts = parse(output)
        assert facts.problem is None and facts.running and facts.phase == "Building", output
        assert facts.inputs_hash == known and facts.patches == dict(patches) and facts.base == "c" * 40
        # other settings (the spec changed): resolved again, which fails here without a reachable repository
        changed = subprocess.run(["sh", "-s", "--", str(tmp_path), line + "x", known, *args[3:]], input=OBSERVE,
                                 capture_output=True, text=True, timeout=60).stdout
        assert parse(changed).problem is not None, changed
    finally:
        sleeper.kill()
        sleeper.wait()


def test_every_failure_the_build_scripts_write_is_a_reason_the_plan_sorts() -> None:
    """The pipeline writes its failures in shell (`fail FetchFailed …`, start.sh's `Superseded`): each is a member
    of the kind's Reason enum, and either transient (built again later) or stalling."""
    text = scripts.PIPELINE + scripts.START
    written = set(re.findall(r"\bfail ([A-Z][a-z]\w*) ", text)) | set(re.findall(r'echo "([A-Z][a-z]\w*) ', text))
    assert {"FetchFailed", "PublishFailed", "Superseded", "Interrupted"} <= written
    assert written <= {r.value for r in Reason}
    assert written <= TRANSIENT | STALLING
    assert not TRANSIENT & STALLING
