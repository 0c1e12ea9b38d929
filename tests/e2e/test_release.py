"""CloudStackRelease on a lab build host over SSH (pinned host key), from the lab's CloudStack-like source
repository served over Git HTTP with pull request patches at GitHub-like URLs: 4.8.0.16 with #101 and #102 is
built, packaged as RPMs and published as a yum repository; applying the same spec again builds nothing and a
restarted reconciler neither loses nor doubles a running build; a changed pull request list builds again; a
conflicting patch fails naming it with the work tree left clean; a legacy-rule violation stalls."""
from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from support.credentials import secret

from stackops.api.cloudstackrelease import CloudStackReleaseSpec
from stackops.drivers.ssh import SSHPool
from stackops.reconcile.base import Context, Outcome
from stackops.reconcile.cloudstackrelease import CloudStackReleaseReconciler
from stackops_lab.hosts import LabHost
from stackops_lab.release import ReleaseServer, SourceFixture, make_source_repository

KEY = "build-ssh"
WORK = "/var/lib/stackops/build"
PUBLISH = "/var/lib/stackops/repo/4.8.0.16"


@pytest.fixture
def fixture() -> Iterator[SourceFixture]:
    with tempfile.TemporaryDirectory(prefix="stackops-release-") as directory:
        yield make_source_repository(Path(directory))


def spec_for(host: LabHost, server: ReleaseServer, fixture: SourceFixture, **changes: Any) -> CloudStackReleaseSpec:
    data: dict[str, Any] = {
        "source": {"repository": server.repository_url, "baseRef": fixture.base_ref},
        "version": "4.8.0.16", "pullRequests": [{"number": 101}, {"number": 102}],
        "builder": {"type": "SSH", "workDir": WORK, "ssh": {"address": host.address, "ssh": {
            "privateKeySecretRef": {"name": KEY}, "hostKey": host.host_key}}},
        "build": {"mavenCommand": fixture.maven_command, "timeoutMinutes": 10},
        "packaging": {"distribution": "centos7"},
        "publish": {"directory": PUBLISH, "baseURL": "http://packages.lab.invalid/cloudstack/4.8.0.16"},
    }
    data.update(changes)
    return CloudStackReleaseSpec.model_validate(data)


class Driver:
    def __init__(self, host: LabHost, spec: CloudStackReleaseSpec):
        self.spec = spec
        self.status: dict[str, Any] = {}
        self.events: list[tuple[str, str, str]] = []
        self.secrets = {KEY: secret({"ssh-privatekey": host.client_key_pem}, host.address)}

    def run(self, reconciler: CloudStackReleaseReconciler) -> Outcome:
        ctx = Context(namespace="lab", name="release", generation=1, spec=self.spec, status=self.status,
                      secrets=self.secrets, event=lambda *e: self.events.append(e), logger=logging.getLogger("e2e"))
        outcome = asyncio.run(reconciler.reconcile(ctx))
        self.status.update(outcome.fields)
        return outcome

    def until_done(self, reconciler: CloudStackReleaseReconciler, timeout: float = 180) -> Outcome:
        deadline = time.monotonic() + timeout
        while True:
            outcome = self.run(reconciler)
            if self.status.get("phase") in ("Succeeded", "Failed") or condition(outcome, "Stalled").status == "True":
                return outcome
            assert time.monotonic() < deadline, f"still {self.status.get('phase')}: {outcome.conditions}"
            time.sleep(0.5)

    def started(self) -> int:
        return sum(1 for _, reason, _ in self.events if reason == "BuildStarted")


def condition(outcome: Outcome, type_: str) -> Any:
    return next(c for c in outcome.conditions if c.type == type_)


def test_release_built_published_and_not_built_twice(make_lab_hosts, fixture: SourceFixture) -> None:
    (host,) = make_lab_hosts(1)
    ssh = SSHPool()
    try:
        with ReleaseServer(fixture, bind=host.gateway) as server:
            driver = Driver(host, spec_for(host, server, fixture))
            first = driver.run(CloudStackReleaseReconciler(ssh))
            assert condition(first, "Reconciling").reason == "BuildStarted" and driver.started() == 1
            # the operator restarts while the build runs: a new reconciler finds it and starts nothing
            restarted = driver.run(CloudStackReleaseReconciler(ssh))
            assert restarted.applied == [] and driver.started() == 1
            outcome = driver.until_done(CloudStackReleaseReconciler(ssh))
            assert condition(outcome, "Ready").status == "True", outcome.conditions
            status = driver.status
            assert status["phase"] == "Succeeded" and driver.started() == 1
            assert [pr["number"] for pr in status["appliedPullRequests"]] == [101, 102]
            assert len(status["appliedPullRequests"][0]["commits"]) == 2
            names = sorted(a["name"] for a in status["artifacts"])
            assert names == sorted(fixture.rpm_names("4.8.0.16")), names
            assert all(a["location"].startswith("http://packages.lab.invalid/") for a in status["artifacts"])
            assert status["schemaUpgradeRequired"] is False and status["durationSeconds"] is not None

            for artifact in status["artifacts"]:
                path = f"{PUBLISH}/{artifact['name']}"
                assert host.run(f"rpm -qp --queryformat '%{{VERSION}}' {path}", check=True).stdout == "4.8.0.16"
                digest = host.run(f"sha256sum {path}", check=True).stdout.split()[0]
                assert digest == artifact["sha256"]
            primary = host.run(f"zcat {PUBLISH}/repodata/*-primary.xml.gz", check=True).stdout
            for package in ("cloudstack-agent", "cloudstack-common", "cloudstack-management"):
                assert f"<name>{package}</name>" in primary
            log = host.run(f"git -C {WORK}/src log --format=%B -n 4", check=True).stdout
            assert "This closes #101" in log and "This closes #102" in log and "Signed-off-by:" in log
            assert "Updating pom.xml version numbers for release 4.8.0.16" in log
            assert host.run(f"git -C {WORK}/src rev-parse HEAD", check=True).stdout.strip() == status["commit"]

            again = driver.run(CloudStackReleaseReconciler(ssh))
            assert again.applied == [] and driver.started() == 1, "the same inputs never build twice"

            driver.spec = spec_for(host, server, fixture, pullRequests=[{"number": 101}])
            rebuilt = driver.until_done(CloudStackReleaseReconciler(ssh))
            assert condition(rebuilt, "Ready").status == "True" and driver.started() == 2
            assert [pr["number"] for pr in driver.status["appliedPullRequests"]] == [101]
    finally:
        ssh.shutdown()


def test_conflicting_patch_fails_cleanly_and_legacy_rule_stalls(make_lab_hosts, fixture: SourceFixture) -> None:
    (host,) = make_lab_hosts(1)
    ssh = SSHPool()
    try:
        with ReleaseServer(fixture, bind=host.gateway) as server:
            driver = Driver(host, spec_for(host, server, fixture,
                                           pullRequests=[{"number": 101}, {"number": 103}]))
            outcome = driver.until_done(CloudStackReleaseReconciler(ssh))
            stalled = condition(outcome, "Stalled")
            assert stalled.status == "True" and stalled.reason == "PatchDoesNotApply", outcome.conditions
            assert "#103" in stalled.message and driver.status["phase"] == "Failed"
            assert driver.status["buildLog"]["tail"], "the log's last lines on failure"
            assert host.run(f"git -C {WORK}/src status --porcelain", check=True).stdout == "", "clean tree"
            assert any(reason == "BuildFailed" for _, reason, _ in driver.events)
            again = driver.run(CloudStackReleaseReconciler(ssh))
            assert again.applied == [], "a conflict is not retried with the same inputs"

            driver.spec = spec_for(host, server, fixture, version="4.9.0.1")
            legacy = driver.until_done(CloudStackReleaseReconciler(ssh))
            stalled = condition(legacy, "Stalled")
            assert stalled.status == "True" and stalled.reason == "SchemaUpgradeRequired", legacy.conditions
            assert driver.status["schemaUpgradeRequired"] is True
            assert "pull/" not in host.run(f"git -C {WORK}/src log --format=%B -n 1").stdout
    finally:
        ssh.shutdown()
