"""The lab's CloudStackRelease fixtures from a lab host, the build host of a CloudStackRelease: the tools are there
over SSH (git, curl, rpmbuild, createrepo_c, python3, perl: the machine's /usr), the repository clones over HTTP
from the server bound on the lab's bridge (`LabHost.gateway`), pull requests apply the way the `git pr` alias
does, and setnextversion.sh, the Maven stand-in, package.sh and createrepo_c give a yum repository of
4.8.0.16 RPMs; PR 103 and the upstream-conflict ref fail and abort cleanly. (test_release_fixture.py does the
same with local processes, in more detail.)
"""
from __future__ import annotations

import base64
import io
import shlex
import tempfile
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from stackops_lab.hosts import LabHost
from stackops_lab.release import ReleaseServer, SourceFixture, make_source_repository

TREE = "/root/build/cloudstack"
REPO = "/root/build/repo"


@pytest.fixture
def fixture() -> Iterator[SourceFixture]:
    with tempfile.TemporaryDirectory(prefix="stackops-release-") as directory:
        yield make_source_repository(Path(directory))


def ssh(host: LabHost, command: str) -> tuple[int, str]:
    """`command` over SSH as root (the host key pinned); exit status and output (stdout and stderr)."""
    client = paramiko.SSHClient()
    key_type, blob = host.host_key.split()[:2]
    client.get_host_keys().add(host.address, key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(blob)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(host.client_key_pem))
    with client:
        client.connect(host.address, username="root", pkey=key, look_for_keys=False, allow_agent=False, timeout=15)
        _, stdout, stderr = client.exec_command(command, timeout=120)
        status = stdout.channel.recv_exit_status()
        return status, stdout.read().decode() + stderr.read().decode()


def run(host: LabHost, command: str, check: bool = True) -> tuple[int, str]:
    result = host.run(command, timeout=180)
    if check:
        assert result.returncode == 0, f"`{command}` exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.returncode, result.stdout + result.stderr


def apply_pr(server: ReleaseServer, number: int) -> str:
    """The seed's `git pr` alias (curl instead of wget) in the tree: `git am -s`, "This closes #n" amended."""
    return (f"cd {TREE} && set -e; rm -f githubpr.patch; curl -fsSL {server.patch_url(number)} -o githubpr.patch; "
            "git am -s githubpr.patch; rm -f githubpr.patch; git log -1 --pretty=%B > prmsg.txt; "
            f'echo "This closes #{number}" >> prmsg.txt; git commit --amend -m "$(cat prmsg.txt)"; rm prmsg.txt')


def test_a_lab_host_builds_a_release_from_the_served_repository(make_lab_hosts, fixture: SourceFixture) -> None:
    (host,) = make_lab_hosts(1)
    status, output = ssh(host, "git --version && curl --version && rpmbuild --version && createrepo_c --version "
                               "&& python3 --version && perl -e 'print qq(perl ok\\n)' && echo HOME=$HOME")
    assert status == 0, output
    assert "RPM version" in output and "perl ok" in output and "HOME=/root" in output

    with ReleaseServer(fixture, bind=host.gateway) as server:
        assert server.repository_url.startswith(f"http://{host.gateway}:")
        run(host, "git config --global user.name 'Release Builder' && "
                  "git config --global user.email builder@example.org")
        run(host, f"mkdir -p /root/build && git clone -q {server.repository_url} {TREE} && "
                  f"cd {TREE} && git checkout -q 4.8")
        assert any(request.path == "/apache/cloudstack.git/info/refs" for request in server.requests)

        # PR 103 conflicts with 4.8: git am fails and --abort leaves the tree as it was
        base = run(host, f"cd {TREE} && git rev-parse HEAD")[1].strip()
        status, output = run(host, apply_pr(server, 103), check=False)
        assert status != 0 and "patch does not apply" in output, output
        run(host, f"cd {TREE} && git am --abort")
        assert run(host, f"cd {TREE} && git rev-parse HEAD")[1].strip() == base
        assert run(host, f"cd {TREE} && git status --porcelain --untracked-files=no")[1] == ""
        run(host, f"cd {TREE} && rm -f githubpr.patch")

        # rebasing onto the upstream-conflict ref stops on a conflict; onto main it does not
        status, output = run(host, f"cd {TREE} && git rebase origin/upstream-conflict", check=False)
        assert status != 0 and "CONFLICT" in output, output
        run(host, f"cd {TREE} && git rebase --abort && git rebase origin/main && git reset -q --hard {base}")

        for number in (101, 102):
            run(host, apply_pr(server, number))
            assert run(host, f"cd {TREE} && git log -1 --pretty=%B")[1].rstrip().endswith(f"This closes #{number}")
        status, output = ssh(host, f"{TREE}/tools/build/setnextversion.sh -v 4.8.0.16 -b 4.8 -s {TREE}")
        assert status == 0 and "found 4.8.0" in output, output
        assert run(host, f"cd {TREE} && git log -1 --pretty=%s")[1].strip() == \
            "Updating pom.xml version numbers for release 4.8.0.16"

        status, output = ssh(host, f"cd {TREE} && {shlex.join(fixture.maven_command)}")
        assert status == 0 and "[INFO] BUILD SUCCESS" in output, output
        status, output = ssh(host, f"cd {TREE}/packaging && ./package.sh -d centos7")
        assert status == 0 and "RPM Build Done" in output, output[-3000:]
        rpms = f"{TREE}/{fixture.rpm_dir}"
        assert run(host, f"ls {rpms}")[1].split() == fixture.rpm_names("4.8.0.16")
        versions = run(host, f"for rpm in {rpms}/*.rpm; do rpm -qp --queryformat '%{{VERSION}}\\n' $rpm; done")[1]
        assert versions.split() == ["4.8.0.16"] * 3

        run(host, f"mkdir -p {REPO} && cp {rpms}/*.rpm {REPO}/ && createrepo_c -q {REPO}")
        assert "primary" in run(host, f"cat {REPO}/repodata/repomd.xml")[1]
        primary = run(host, f"zcat {REPO}/repodata/*-primary.xml.gz")[1]
        for package in fixture.packages:
            assert f"<name>{package}</name>" in primary
        assert primary.count('<version epoch="0" ver="4.8.0.16" rel="1.el7.centos"/>') == 3
