"""A CloudStack-like source repository for CloudStackRelease builds: a bare Git repository and pull-request patches.

`make_source_repository(directory)` writes, with real `git` plumbing (fixed authors, committers and dates, so
every commit hash is the same on every run), `<directory>/cloudstack.git`, a bare repository whose tree is laid
out like CloudStack's (tree.py: a Maven reactor at version 4.8.0, debian/changelog, and the build scripts of
scripts.py: tools/build/setnextversion.sh, packaging/package.sh, the Maven stand-in tools/lab/mvn-standin.sh).

History (HEAD is `main`, as on GitHub):

    4.8.0 (tag) ── CLOUDSTACK-9230 (7200 s job timeout) ← 4.8 (the base branch)
           ├────── two commits elsewhere (README, a new file) ← main: 4.8 rebases onto it cleanly
           └────── CLOUDSTACK-9231 (900 s job timeout) ← upstream-conflict: rebasing 4.8 onto it conflicts

Pull requests, as GitHub's `/pull/<n>.patch` (`git format-patch --stdout`; their heads also in the repository as
`refs/pull/<n>/head`): 101 (2 commits) and 102 (1 commit, made on the 4.8.0 tag) apply on 4.8 in either order;
103 (made on the tag) changes the job timeout line 4.8 changed, so `git am` fails on 4.8; 104 applies on 4.8
alone but changes the agent.properties lines 101 changes (either applied first makes the other fail); 105
applies but breaks the Maven build (a `server/BROKEN` file). `SourceFixture.commit` adds commits later (a branch
that moved, a build that breaks); it runs `git update-server-info` so the dumb HTTP server (server.py) sees them.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stackops_lab.controlplane import LabError
from stackops_lab.release import tree

BASE_REF = "4.8"
TAG = "4.8.0"
UPSTREAM_REF = "main"
UPSTREAM_CONFLICT_REF = "upstream-conflict"
MAVEN_COMMAND = ("sh", "tools/lab/mvn-standin.sh", "clean", "install", "-P", "systemvm", "-DskipTests")
PACKAGES = ("cloudstack-common", "cloudstack-management", "cloudstack-agent")
RPM_DIR = "dist/rpmbuild/RPMS/x86_64"  # relative to the tree, where `cd packaging && ./package.sh -d centos7` puts RPMs
FIRST_DATE = 1454324400  # 2016-02-01 12:00 +0100
RELEASE_MANAGER = ("Ada Release", "ada.release@example.org")  # fictional people, example.org addresses
AUTHORS = {101: ("Bram Kvm", "bram@example.org"), 102: ("Chandra Server", "chandra@example.org"),
           103: ("Dirk Api", "dirk@example.org"), 104: ("Esther Agent", "esther@example.org"),
           105: ("Floris Quota", "floris@example.org")}
JOB_TIMEOUT = "    public static final int DEFAULT_ASYNC_JOB_TIMEOUT = {};\n"
API_CONSTANTS = "api/src/org/apache/cloudstack/api/ApiConstants.java"
AGENT_PROPERTIES = "agent/conf/agent.properties"
SPEED_DOC = ("# set the vm migrate speed, by default, it will try to guess the speed of the guest network\n"
             "# In MegaBytes per second\n#vm.migrate.speed=0\n")
KVM = "plugins/hypervisors/kvm/src/com/cloud/hypervisor/kvm/resource/LibvirtComputingResource.java"
SERVER = "server/src/com/cloud/server/ManagementServerImpl.java"
Change = tuple[str, str]  # (old text, new text) replaced once in a file; old "" creates the file with new
UPSTREAM_REFS: dict[str, bool] = {UPSTREAM_REF: True, UPSTREAM_CONFLICT_REF: False}  # ref → rebases cleanly


@dataclass(frozen=True)
class PullRequest:
    """A pull request of the fixture: what `git am` of its patch does on the base branch."""

    number: int
    title: str
    commits: int
    forked_from: str  # the ref its branch was made on
    applies: bool  # `git am` of the patch alone on 4.8 succeeds
    conflicts_with: tuple[int, ...] = ()  # pull requests that, applied before it, make its `git am` fail
    breaks_build: bool = False  # applies, but the Maven build then fails (BUILD FAILURE)


@dataclass
class SourceFixture:
    """The repository and patches of `make_source_repository` (see the module's docstring)."""

    directory: Path
    bare: Path
    patches: dict[int, bytes]
    pull_requests: dict[int, PullRequest]
    heads: dict[str, str]  # branch → commit, kept current by `commit`
    base_ref: str = BASE_REF
    base_version: str = tree.VERSION
    tag: str = TAG
    upstream_ref: str = UPSTREAM_REF  # 4.8 rebases onto it cleanly
    upstream_conflict_ref: str = UPSTREAM_CONFLICT_REF  # rebasing 4.8 onto it stops on a conflict
    upstream_refs: dict[str, bool] = field(default_factory=lambda: dict(UPSTREAM_REFS))
    maven_command: list[str] = field(default_factory=lambda: list(MAVEN_COMMAND))
    packages: tuple[str, ...] = PACKAGES
    rpm_dir: str = RPM_DIR
    clock: int = FIRST_DATE

    @property
    def applying(self) -> list[int]:
        """Pull requests whose patch applies on the base branch (each alone)."""
        return sorted(number for number, pr in self.pull_requests.items() if pr.applies)

    @property
    def conflicting(self) -> list[int]:
        """Pull requests whose patch does not apply on the base branch."""
        return sorted(number for number, pr in self.pull_requests.items() if not pr.applies)

    def jars(self, version: str) -> list[str]:
        """The jars the Maven stand-in builds at `version` (paths relative to the tree)."""
        return tree.jars(version)

    def rpm_names(self, version: str, release: str = "1.el7.centos") -> list[str]:
        """The RPM file names `package.sh -d centos7` writes into `rpm_dir` for a tree at `version`."""
        return sorted(f"{package}-{version}-{release}.x86_64.rpm" for package in self.packages)

    def git(self, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None) -> str:
        """`git` in the bare repository, its output (stripped); a LabError when it fails."""
        return git(self.bare, *args, input=input, env=env)

    def commit(self, branch: str, changes: Mapping[str, str | None], message: str,
               author: tuple[str, str] = RELEASE_MANAGER, executable: tuple[str, ...] = ()) -> str:
        """A commit on `branch` (created from 4.8 when missing) setting files to new contents (None removes
        one); the new commit's hash. The dumb HTTP server sees it at once."""
        start = self.heads.get(branch) or self.heads[BASE_REF]
        sha = self.write_commit(start, {path: ("", content) if content is not None else None
                                        for path, content in changes.items()}, message, author, executable)
        self.set_ref(f"refs/heads/{branch}", sha)
        self.heads[branch] = sha
        self.git("update-server-info")
        return sha

    # ------------------------------------------------------------------ plumbing

    def identity(self, author: tuple[str, str]) -> dict[str, str]:
        """Author and committer `author`, at the fixture's next date (an hour after the previous commit's)."""
        self.clock += 3600
        date = f"{self.clock} +0100"
        return {"GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1], "GIT_AUTHOR_DATE": date,
                "GIT_COMMITTER_NAME": author[0], "GIT_COMMITTER_EMAIL": author[1], "GIT_COMMITTER_DATE": date}

    def write_commit(self, parent: str | None, changes: Mapping[str, Change | None], message: str,
                     author: tuple[str, str], executable: tuple[str, ...] = ()) -> str:
        """A commit object: `parent`'s tree with `changes` (per path: (old, new) replaces the one copy of old in
        the file, ("", new) makes new the file's content, None removes it)."""
        with tempfile.TemporaryDirectory(prefix="stackops-release-index-") as temporary:
            index = {"GIT_INDEX_FILE": str(Path(temporary) / "index")}
            if parent:
                self.git("read-tree", parent, env=index)
            lines = []
            for path, change in changes.items():
                if change is None:
                    self.git("update-index", "--force-remove", "--", path, env=index)
                    continue
                old, new = change
                if old:
                    current = self.git_raw("show", f"{parent}:{path}")
                    if current.count(old) != 1:
                        raise LabError(f"fixture: {path} at {parent} has {current.count(old)} copies of {old!r}")
                    new = current.replace(old, new)
                blob = self.git("hash-object", "-w", "--stdin", input=new.encode())
                mode = "100755" if path in executable or path in tree.EXECUTABLE else "100644"
                lines.append(f"{mode} {blob}\t{path}\n")
            if lines:
                self.git("update-index", "--add", "--index-info", input="".join(lines).encode(), env=index)
            tree_sha = self.git("write-tree", env=index)
        parents = ["-p", parent] if parent else []
        return self.git("commit-tree", tree_sha, *parents, input=message.encode(), env=self.identity(author))

    def git_raw(self, *args: str) -> str:
        result = subprocess.run(["git", *args], cwd=self.bare, env=git_env(), capture_output=True, check=False)
        if result.returncode != 0:
            raise LabError(f"git {' '.join(args)} failed: {result.stderr.decode(errors='replace').strip()}")
        return result.stdout.decode()

    def set_ref(self, ref: str, sha: str) -> None:
        self.git("update-ref", ref, sha)

    def branch(self, name: str, parent: str, commits: list[tuple[str, dict[str, Change | None]]],
               author: tuple[str, str]) -> str:
        """`commits` (message, changes) one after the other on `parent`, the last one's hash at `name`."""
        sha = parent
        for message, changes in commits:
            sha = self.write_commit(sha, changes, message, author)
        self.set_ref(name, sha)
        return sha


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A git environment without the machine's or the user's configuration (deterministic, never signing)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C", "LC_ALL": "C", "HOME": "/nonexistent",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "TZ": "UTC"}
    env.update(extra or {})
    return env


def git(directory: Path, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=directory, env=git_env(env), input=input, capture_output=True,
                            check=False, timeout=60)
    if result.returncode != 0:
        raise LabError(f"git {' '.join(args)} failed in {directory}: "
                       f"{result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode(errors="replace").strip()


def make_source_repository(directory: Path) -> SourceFixture:
    """The bare repository `<directory>/cloudstack.git` and the pull-request patches (see the module's docstring)."""
    directory = Path(directory).absolute()
    bare = directory / "cloudstack.git"
    if bare.exists():
        raise LabError(f"{bare} exists already")
    directory.mkdir(parents=True, exist_ok=True)
    git(directory, "init", "-q", "--bare", "-b", UPSTREAM_REF, str(bare))
    git(bare, "config", "gc.auto", "0")
    fixture = SourceFixture(directory=directory, bare=bare, patches={}, pull_requests={}, heads={})
    initial = fixture.write_commit(None, {path: ("", content) for path, content in tree.files().items()},
                                   f"Apache CloudStack {TAG}\n\nThe source tree of the {TAG} release.\n",
                                   RELEASE_MANAGER)
    fixture.git("tag", "-a", TAG, "-m", f"Apache CloudStack {TAG}", initial, env=fixture.identity(RELEASE_MANAGER))
    timeout = {API_CONSTANTS: (JOB_TIMEOUT.format(3600), JOB_TIMEOUT.format(7200))}
    base = fixture.branch(f"refs/heads/{BASE_REF}", initial, [
        ("CLOUDSTACK-9230: api: raise the default async job timeout to two hours\n", timeout)], RELEASE_MANAGER)
    fixture.branch(f"refs/heads/{UPSTREAM_REF}", initial, [
        ("CLOUDSTACK-9301: README: point to the documentation\n",
         {"README.md": ("platform.\n", "platform.\n\nDocumentation: http://docs.cloudstack.apache.org/\n")}),
        ("CLOUDSTACK-9302: server: collect host statistics\n",
         {"server/src/com/cloud/server/StatsCollector.java": (
             "", "package com.cloud.server;\n\npublic class StatsCollector {\n}\n")})], RELEASE_MANAGER)
    fixture.branch(f"refs/heads/{UPSTREAM_CONFLICT_REF}", initial, [
        ("CLOUDSTACK-9231: api: shorten the default async job timeout to 15 minutes\n",
         {API_CONSTANTS: (JOB_TIMEOUT.format(3600), JOB_TIMEOUT.format(900))})], RELEASE_MANAGER)
    add_pull_requests(fixture, initial, base)
    for name in (BASE_REF, UPSTREAM_REF, UPSTREAM_CONFLICT_REF):
        fixture.heads[name] = fixture.git("rev-parse", f"refs/heads/{name}")
    fixture.git("repack", "-a", "-d", "-q")  # packed, as GitHub serves it (later commits come loose)
    fixture.git("update-server-info")
    return fixture


def add_pull_requests(fixture: SourceFixture, initial: str, base: str) -> None:
    """Pull requests 101-105 (see the module's docstring): refs/pull/<n>/head and their patches."""
    downtime = "    private int _migrateDowntime;\n"
    kvm_speed = (downtime, downtime + "    private int _migrateSpeed;\n")
    kvm_config = ("        value = (String)params.get(\"cmds.timeout\");\n",
                  "        value = (String)params.get(\"vm.migrate.speed\");\n"
                  "        _migrateSpeed = value == null ? -1 : Integer.parseInt(value);\n"
                  "        value = (String)params.get(\"cmds.timeout\");\n")
    speed_doc = (SPEED_DOC, "# set the vm migrate speed in MegaBytes per second; 0 (the default) guesses it from\n"
                            "# the speed of the guest network\n#vm.migrate.speed=0\n")
    speed_100 = (SPEED_DOC, SPEED_DOC.replace("#vm.migrate.speed=0", "vm.migrate.speed=100"))
    log = ('        s_logger.debug("executing a command");\n',
           '        s_logger.debug("executing command " + command);\n')
    specs: list[tuple[PullRequest, str, list[tuple[str, dict[str, Change | None]]]]] = [
        (PullRequest(101, "CLOUDSTACK-9101: KVM: configurable migration speed", 2, BASE_REF, True, (104,)), base, [
            ("CLOUDSTACK-9101: kvm: read vm.migrate.speed from agent.properties\n", {KVM: kvm_speed}),
            ("CLOUDSTACK-9101: kvm: honour vm.migrate.speed\n\nDocument it in agent.properties.\n",
             {KVM: kvm_config, AGENT_PROPERTIES: speed_doc})]),
        (PullRequest(102, "CLOUDSTACK-9102: server: log the command being executed", 1, TAG, True), initial, [
            ("CLOUDSTACK-9102: server: log the command being executed\n", {SERVER: log})]),
        (PullRequest(103, "CLOUDSTACK-9103: api: async job timeout of 30 minutes", 1, TAG, False), initial, [
            ("CLOUDSTACK-9103: api: async job timeout of 30 minutes\n",
             {API_CONSTANTS: (JOB_TIMEOUT.format(3600), JOB_TIMEOUT.format(1800))})]),
        (PullRequest(104, "CLOUDSTACK-9104: agent: migrate at 100 MB/s by default", 1, BASE_REF, True, (101,)), base, [
            ("CLOUDSTACK-9104: agent: migrate at 100 MB/s by default\n", {AGENT_PROPERTIES: speed_100})]),
        (PullRequest(105, "CLOUDSTACK-9105: server: quota service (work in progress)", 1, BASE_REF, True,
                     breaks_build=True), base, [
            ("CLOUDSTACK-9105: server: quota service (work in progress)\n",
             {"server/BROKEN": ("", "ManagementServerImpl.java:[42,17] cannot find symbol: class QuotaService\n")})]),
    ]
    for pr, parent, commits in specs:
        head = fixture.branch(f"refs/pull/{pr.number}/head", parent, commits, AUTHORS[pr.number])
        fixture.pull_requests[pr.number] = pr
        patch = subprocess.run(["git", "format-patch", "--stdout", "--no-signature", f"{parent}..{head}"],
                               cwd=fixture.bare, env=git_env(), capture_output=True, check=True, timeout=60)
        fixture.patches[pr.number] = patch.stdout
