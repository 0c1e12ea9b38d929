"""The lab's CloudStackRelease fixtures on this machine (local processes, no lab hosts, no Kubernetes): the
CloudStack-like repository cloned over dumb HTTP, pull-request patches applied the way the `git pr` alias does,
setnextversion.sh, the Maven stand-in, package.sh and createrepo_c; the pull requests and upstream refs that
conflict; the HTTP server's GitHub-like answers. The same build inside a lab host is test_release_fixture_lab.py.
"""
from __future__ import annotations

import collections
import gzip
import http.client
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackops_lab.release import ReleaseServer, SourceFixture, make_source_repository

WORD = re.compile(r"^[a-zA-Z0-9._/:=+,@%-]+$")


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> SourceFixture:
    return make_source_repository(tmp_path_factory.mktemp("release-fixture"))


@pytest.fixture(scope="module")
def server(fixture: SourceFixture) -> Iterator[ReleaseServer]:
    with ReleaseServer(fixture) as server:
        yield server


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """An environment of a build host's own: HOME with a git identity, no proxies, no system git configuration."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = Release Builder\n\temail = builder@example.org\n")
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower() and not key.startswith("GIT_")}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", LANG="C.UTF-8")
    return env


def sh(command: str, cwd: Path, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["sh", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, f"`{command}` exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def apply_pr(server: ReleaseServer, number: int) -> str:
    """The seed's `git pr` alias (curl instead of wget): the patch, `git am -s`, "This closes #n" amended."""
    return (f"set -e; rm -f githubpr.patch; curl -fsSL {server.patch_url(number)} -o githubpr.patch; "
            "git am -s githubpr.patch; rm -f githubpr.patch; git log -1 --pretty=%B > prmsg.txt; "
            f'echo "This closes #{number}" >> prmsg.txt; git commit --amend -m "$(cat prmsg.txt)"; rm prmsg.txt')


def clone(server: ReleaseServer, tmp_path: Path, env: dict[str, str], ref: str = "4.8") -> Path:
    sh(f"git clone -q {server.repository_url} tree && cd tree && git checkout -q {ref}", tmp_path, env)
    return tmp_path / "tree"


def test_the_repository_is_made_quickly_and_the_same_every_time(tmp_path: Path, fixture: SourceFixture,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Quickly: with git plumbing, a process per file and a few per commit (109 git processes); the work is
    # counted rather than timed, so a busy machine cannot fail it.
    commands: list[str] = []
    real_run = subprocess.run

    def counting_run(args, *rest, **options):
        if args and args[0] == "git":
            commands.append(args[1])
        return real_run(args, *rest, **options)

    monkeypatch.setattr(subprocess, "run", counting_run)
    again = make_source_repository(tmp_path / "again")
    monkeypatch.undo()
    assert len(commands) <= 120, collections.Counter(commands)
    assert again.heads == fixture.heads and again.patches == fixture.patches
    assert set(fixture.heads) == {"4.8", "main", "upstream-conflict"}
    assert fixture.git("describe", "--tags", "--exact-match", f"{fixture.tag}^{{commit}}") == "4.8.0"
    assert fixture.git("rev-parse", "refs/pull/101/head") != fixture.heads["4.8"]
    assert fixture.applying == [101, 102, 104, 105] and fixture.conflicting == [103]
    assert fixture.pull_requests[101].commits == 2 and fixture.patches[101].count(b"\nSubject: [PATCH ") == 2
    assert fixture.pull_requests[104].conflicts_with == (101,)
    assert all(WORD.match(word) for word in fixture.maven_command), fixture.maven_command
    root_pom = fixture.git("show", "4.8:pom.xml")
    assert "<artifactId>apache</artifactId>\n    <version>17</version>" in root_pom
    assert "<version>4.8.0</version>" in fixture.git("show", "4.8:plugins/hypervisors/kvm/pom.xml")


def test_a_release_is_built_from_the_base_branch_and_pull_requests(
        tmp_path: Path, server: ReleaseServer, fixture: SourceFixture, home: dict[str, str]) -> None:
    tree = clone(server, tmp_path, home)
    for number in (101, 102):
        sh(apply_pr(server, number), tree, home)
        assert sh("git log -1 --pretty=%B", tree, home).stdout.rstrip().endswith(
            f"Signed-off-by: Release Builder <builder@example.org>\n\nThis closes #{number}")
    assert sh("git rev-list --count 4.8.0..HEAD", tree, home).stdout.strip() == "4"  # 1 on 4.8, 2 + 1 applied

    # setnextversion.sh: every reactor POM, not the Apache parent; one signed-off commit
    output = sh("tools/build/setnextversion.sh -v 4.8.0.16 -b 4.8 -s .", tree, home).stdout
    assert "found 4.8.0" in output
    head = sh("git rev-parse HEAD", tree, home).stdout.strip()
    assert f"committed as {head}" in output
    assert sh("git log -1 --pretty=%s", tree, home).stdout.strip() == \
        "Updating pom.xml version numbers for release 4.8.0.16"
    assert sh("git status --porcelain", tree, home).stdout == ""
    assert "<version>17</version>" in (tree / "pom.xml").read_text()
    assert "<version>4.8.0.16</version>" in (tree / "pom.xml").read_text()
    for pom in ("api", "server", "plugins", "plugins/hypervisors/kvm", "client"):
        assert "<version>4.8.0.16</version>" in (tree / pom / "pom.xml").read_text(), pom
    assert (tree / "debian/changelog").read_text().startswith("cloudstack (4.8.0.16) unstable")

    build = sh(shlex.join(fixture.maven_command), tree, home).stdout
    assert "[INFO] Building Apache CloudStack Plugin - Hypervisor KVM 4.8.0.16" in build
    assert "[INFO] BUILD SUCCESS" in build
    assert all((tree / jar).is_file() for jar in fixture.jars("4.8.0.16"))
    assert (Path(home["HOME"]) / ".m2/repository/org/apache/cloudstack/cloud-api/4.8.0.16").is_dir()

    packaged = sh("cd packaging && ./package.sh -d centos7", tree, home)
    assert "RPM Build Done" in packaged.stdout, packaged.stdout[-3000:] + packaged.stderr[-3000:]
    rpms = tree / fixture.rpm_dir
    assert sorted(path.name for path in rpms.glob("*.rpm")) == fixture.rpm_names("4.8.0.16")
    for rpm in rpms.glob("*.rpm"):
        assert sh(f"rpm -qp --queryformat '%{{VERSION}}\\n' {rpm}", tree, home).stdout == "4.8.0.16\n"
    files = sh(f"rpm -qlp {rpms}/cloudstack-agent-*.rpm", tree, home).stdout.split()
    assert "/usr/share/cloudstack-agent/lib/cloud-plugin-hypervisor-kvm-4.8.0.16.jar" in files

    repository = tmp_path / "repo"
    repository.mkdir()
    sh(f"cp {rpms}/*.rpm {repository}/ && createrepo_c -q {repository}", tree, home)
    assert (repository / "repodata/repomd.xml").is_file()
    primary = next((repository / "repodata").glob("*primary.xml.gz"))
    names = re.findall(r"<name>([^<]+)</name>", gzip.decompress(primary.read_bytes()).decode())
    assert sorted(names) == sorted(fixture.packages)
    assert '<version epoch="0" ver="4.8.0.16" rel="1.el7.centos"/>' in gzip.decompress(primary.read_bytes()).decode()


def test_a_snapshot_version_is_packaged_like_cloudstack_does(
        tmp_path: Path, server: ReleaseServer, home: dict[str, str]) -> None:
    tree = clone(server, tmp_path, home)
    sh("tools/build/setnextversion.sh -v 4.8.1-SNAPSHOT -b 4.8 -s . -n && "
       "sh tools/lab/mvn-standin.sh clean install -DskipTests", tree, home)
    assert sh("git log -1 --pretty=%s", tree, home).stdout.strip().startswith("CLOUDSTACK-9230"), "-n: no commit"
    sh("cd packaging && ./package.sh -d el8", tree, home)
    query = "rpm -qp --queryformat '%{VERSION} %{RELEASE}\\n' dist/rpmbuild/RPMS/x86_64/cloudstack-common-*.rpm"
    assert sh(query, tree, home).stdout == "4.8.1 SNAPSHOT.el8\n"


def test_conflicting_pull_requests_and_upstream_refs_fail_and_abort_cleanly(
        tmp_path: Path, server: ReleaseServer, home: dict[str, str]) -> None:
    tree = clone(server, tmp_path, home)
    base = sh("git rev-parse HEAD", tree, home).stdout.strip()
    failed = sh(apply_pr(server, 103), tree, home, check=False)
    assert failed.returncode != 0 and "patch does not apply" in failed.stderr + failed.stdout
    sh("git am --abort", tree, home)
    assert sh("git rev-parse HEAD", tree, home).stdout.strip() == base
    assert sh("git status --porcelain --untracked-files=no", tree, home).stdout == ""

    sh(apply_pr(server, 104), tree, home)  # alone, 104 applies; after 101 it does not
    sh(f"git reset -q --hard {base}", tree, home)
    sh(apply_pr(server, 101), tree, home)
    assert sh(apply_pr(server, 104), tree, home, check=False).returncode != 0
    sh(f"git am --abort && git reset -q --hard {base} && git clean -fq", tree, home)

    rebased = sh("git rebase origin/main", tree, home)
    assert rebased.returncode == 0 and sh("git merge-base --is-ancestor origin/main HEAD", tree, home).returncode == 0
    for number in (101, 102):  # the pull requests apply on the rebased branch too
        sh(apply_pr(server, number), tree, home)
    sh(f"git reset -q --hard {base}", tree, home)
    conflict = sh("git rebase origin/upstream-conflict", tree, home, check=False)
    assert conflict.returncode != 0 and "CONFLICT" in conflict.stdout + conflict.stderr
    sh("git rebase --abort", tree, home)
    assert sh("git rev-parse HEAD", tree, home).stdout.strip() == base


def test_a_broken_module_fails_the_maven_build_and_packaging(
        tmp_path: Path, server: ReleaseServer, fixture: SourceFixture, home: dict[str, str]) -> None:
    tree = clone(server, tmp_path, home)
    sh(apply_pr(server, 105), tree, home)
    build = sh(shlex.join(fixture.maven_command), tree, home, check=False)
    assert build.returncode == 1 and "[INFO] BUILD FAILURE" in build.stdout
    assert "on project cloud-server: Compilation failure" in build.stdout
    packaged = sh("cd packaging && ./package.sh -d centos7", tree, home, check=False)
    assert packaged.returncode == 1 and "RPM Build Failed" in packaged.stdout


def test_scripts_refuse_what_cloudstacks_refuse(tmp_path: Path, server: ReleaseServer, home: dict[str, str]) -> None:
    tree = clone(server, tmp_path, home)
    missing = sh("tools/build/setnextversion.sh -s .", tree, home, check=False)
    assert missing.returncode == 1 and "A version must be specified" in missing.stderr
    master = sh("tools/build/setnextversion.sh -v 4.8.0.16 -s .", tree, home, check=False)
    assert master.returncode != 0 and "'master'" in master.stderr, "no -b: the real script checks out master"
    assert sh("cd packaging && ./package.sh", tree, home, check=False).returncode == 1
    assert sh("sh tools/lab/mvn-standin.sh", tree, home, check=False).returncode == 1
    (tree / "pom.xml").write_text((tree / "pom.xml").read_text().replace("<version>4.8.0<", "<version>4.8.9<"))
    stale = sh("sh tools/lab/mvn-standin.sh install", tree, home, check=False)
    assert stale.returncode == 1 and "Non-resolvable parent POM" in stale.stdout


def test_the_server_answers_like_github(tmp_path: Path, server: ReleaseServer, fixture: SourceFixture,
                                        home: dict[str, str]) -> None:
    patch = sh(f"curl -fsSL {server.patch_url(102)}", tmp_path, home).stdout.encode()
    assert patch == fixture.patches[102] and patch.startswith(b"From ")
    assert sh(f"curl -fsSL {server.patch_url(999)}", tmp_path, home, check=False).returncode == 22
    assert ("GET", "/apache/cloudstack/pull/102.patch", 302) in [
        (request.method, request.path, request.status) for request in server.requests]
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for path in ("/apache/cloudstack.git/../../../etc/passwd", "/apache/cloudstack.git/objects", "/elsewhere"):
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        assert response.status == 404, path
    connection.close()

    # a branch made after the clone (on 4.8) reaches it with `git fetch` (update-server-info after every change)
    tree = clone(server, tmp_path, home)
    sha = fixture.commit("4.8-next", {"README.md": "moved on\n"}, "CLOUDSTACK-9999: README: moved on\n")
    sh("git fetch -q origin && git merge -q --ff-only origin/4.8-next", tree, home)
    assert sh("git rev-parse HEAD", tree, home).stdout.strip() == sha
    assert (tree / "README.md").read_text() == "moved on\n"
