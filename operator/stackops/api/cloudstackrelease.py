"""CloudStackRelease: a custom CloudStack build from Git with pull requests applied (first seed document).

Clone the source, check out the base ref, optionally rebase on upstream, apply each pull request's patch with
`git am -s` and `This closes #<n>`, set the version (`tools/build/setnextversion.sh`), build with Maven, package
with `packaging/package.sh -d <distribution>`, and publish the RPMs as a yum repository.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .common import (
    DeletionPolicy,
    Host,
    Model,
    ResourceCommon,
    SSHSettings,
    Status,
    StatusModel,
    Version,
)

GitUrl = Annotated[
    str,
    Field(pattern=r"^(https?|ssh|git|file)://[a-zA-Z0-9._~%!*()+,=:@/-]+$", max_length=2048),
]
GitRef = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._/-]{0,254}$")]
PatchUrl = Annotated[str, Field(pattern=r"^(https?|file)://[a-zA-Z0-9._~%!*()+,=:@/-]+$", max_length=2048)]
AbsolutePath = Annotated[str, Field(pattern=r"^/[a-zA-Z0-9._/-]*$", max_length=1024)]
# A command line split on white space; each word limited to characters that need no shell quoting.
CommandWord = Annotated[str, Field(pattern=r"^[a-zA-Z0-9._/:=+,@%-]+$", max_length=512)]


class Upstream(Model):
    """The upstream repository a fork is synchronised with (fetch, rebase) before patches are applied."""

    repository: GitUrl
    """Git URL of the upstream repository, e.g. `https://github.com/apache/cloudstack.git`, fetched for every build.
    Changing it starts a new build."""
    ref: GitRef
    """Branch or tag of the upstream repository that `baseRef` is rebased onto before the patches; a conflict fails
    the build (`RebaseConflict`, `Stalled`). New commits on it are new inputs: the next resync builds them."""


class Source(Model):
    """Where the source comes from."""

    repository: GitUrl
    """Repository URL, e.g. `https://github.com/apache/cloudstack.git` or your fork."""
    base_ref: GitRef
    """Branch, tag or commit to build from, e.g. `4.8`."""
    upstream: Upstream | None = None
    """Optional upstream to rebase onto first; a conflict fails the release cleanly."""


class PullRequest(Model):
    """A pull request applied as a patch (`git am -s`), its last commit message gaining `This closes #<number>`."""

    number: Annotated[int, Field(ge=1)]
    """Number of the pull request, e.g. `1234`: its patch is `patchURL` or `<repository>/pull/<number>.patch`, and
    its last commit message gains `This closes #<number>`."""
    patch_url: PatchUrl | None = None
    """Patch URL; default `<repository without .git>/pull/<number>.patch`."""


class SSHBuilder(Model):
    """A build host reached over SSH."""

    address: Host
    """Address of the build host, reached over SSH, where the source is checked out in `workDir`, built and
    published. Changing it moves later builds to the new host; inputs already built are not built again there."""
    ssh: SSHSettings
    """SSH access with a pinned host key."""


class Builder(Model):
    """Where the build runs. There is no default: the spec says where spec-chosen commands run."""

    type: Literal["Local", "SSH"]
    """`SSH`: on `ssh.address`. `Local`: in the operator's own container, isolated from the operator's credentials,
    and only when the operator runs with `--allow-local-builds` (else `Stalled`, `LocalBuildsDisabled`; see the
    README's CloudStackRelease part)."""
    ssh: SSHBuilder | None = None
    """Build host for `type: SSH`."""
    work_dir: AbsolutePath = "/var/lib/stackops/build"
    """Directory the source is checked out and built in."""


class Build(Model):
    """The Maven build."""

    maven_profiles: Annotated[list[Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")]], Field(max_length=16)] = ["systemvm"]
    """Maven profiles (`-P`) of the default Maven command; `systemvm` also builds the system VM ISO the packages
    ship. Ignored with `mavenCommand`; changing them starts a new build."""
    skip_tests: bool = True
    """Add `-DskipTests` to the default Maven command: the tests are compiled but not run. Ignored with
    `mavenCommand`; changing it starts a new build."""
    maven_command: Annotated[list[CommandWord], Field(min_length=1, max_length=32)] | None = None
    """Full Maven command as words, run in the tree; default `mvn clean install -P <profiles> [-DskipTests]`."""
    version_command: Annotated[list[CommandWord], Field(min_length=1, max_length=32)] | None = None
    """Command that sets the version, run in the tree; `%VERSION%` and `%TREE%` in a word are replaced. Default
    `tools/build/setnextversion.sh -v %VERSION% -b stackops-build -s %TREE%` (the pipeline builds on a local
    branch `stackops-build`; the script checks out the branch it is given)."""
    timeout_minutes: Annotated[int, Field(ge=1, le=1440)] = 180
    """Minutes the Maven command may run before it is stopped and the build fails (`BuildFailed`); fetching,
    patching and packaging do not count. Changing it starts no build: the next one uses it."""


class Packaging(Model):
    """RPM packaging (`packaging/package.sh -d <distribution>`)."""

    enabled: bool = True
    """Run `packaging/package.sh` after Maven and publish the RPMs it makes; `false` stops after the Maven build,
    with no packages. Changing it starts a new build."""
    distribution: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{1,15}$")] = "centos7"
    """Distribution argument, e.g. `centos7`, `el8`."""


class Publish(Model):
    """Where the packages go: a directory turned into a yum repository (`createrepo_c`)."""

    directory: AbsolutePath
    """Destination directory on the build host."""
    base_url: Annotated[str, Field(pattern=r"^https?://[a-zA-Z0-9.-]+(:[0-9]{1,5})?(/[a-zA-Z0-9._~%/-]*)?$")] | None = None
    """URL under which the directory is served, for status and KvmHost package repositories."""


class CloudStackReleaseSpec(ResourceCommon):
    """Desired custom CloudStack release."""

    source: Source
    """Source repository and base ref."""
    version: Version
    """Version the build gets, e.g. `4.8.0.16`: `versionCommand` writes it into the POMs, and the RPMs carry it
    (`versionRule` says whether it needs a database upgrade path). Changing it starts a new build."""
    version_rule: Literal["Legacy", "FourPart"] = "Legacy"
    """`Legacy`: CloudStack up to 4.8 compares only three version parts, so `4.8.0.16` needs no database upgrade
    when its first three parts equal the base version. `FourPart`: current CloudStack compares four parts, so a
    new version needs an upgrade path (status says so)."""
    allow_schema_upgrade: bool = False
    """Build even when the version needs a database upgrade path (otherwise `Stalled`, `SchemaUpgradeRequired`)."""
    pull_requests: Annotated[list[PullRequest], Field(max_length=200)] = []
    """Pull requests applied on top of `baseRef` in this order, each as its patch (`git am -s`); one that does not
    apply fails the build (`PatchDoesNotApply`, `Stalled`). Changing the list, or a patch's content, starts a new
    build."""
    builder: Builder
    """Where to build: a build host over SSH, or the operator's own container."""
    build: Build = Build()
    """The Maven build: profiles, tests, commands and time limit. Changing anything but `timeoutMinutes` starts a
    new build."""
    packaging: Packaging = Packaging()
    """Turning the build into RPMs with `packaging/package.sh`; changing it starts a new build."""
    publish: Publish | None = None
    """Where the RPMs go: a directory on the build host made a yum repository. Unset: each build's own
    `<workDir>/builds/<inputs hash>/rpms`. Changing `directory` starts a new build."""
    deletion_policy: DeletionPolicy = "Orphan"
    """What deleting the release does: `Orphan` keeps the published packages; `Delete` removes them and the work
    tree."""
    resync_interval_seconds: Annotated[int, Field(ge=60, le=86400)] = 3600
    """How often the inputs are resolved again (the head of `baseRef`, each pull request's patch): inputs that
    changed are built; unchanged ones never are twice."""
    allow_file_urls: bool = Field(False, alias="allowFileURLs")
    """Allow `file://` URLs in `source.repository`, `source.upstream.repository` and `pullRequests[].patchURL`.
    They read files of the build host (with `builder.type: Local`, of the operator's container), so a spec that
    uses one without this is refused (`InvalidSpec`)."""

    @model_validator(mode="after")
    def _cross_field(self) -> "CloudStackReleaseSpec":
        if self.builder.type == "SSH" and self.builder.ssh is None:
            raise ValueError("builder.ssh is required when builder.type is SSH")
        if not self.allow_file_urls:
            for where, url in self.urls():
                if url.lower().startswith("file:"):
                    raise ValueError(f"{where}: a file:// URL reads files of the build host; set allowFileURLs: "
                                     "true to allow it")
        numbers = [pr.number for pr in self.pull_requests]
        if len(set(numbers)) != len(numbers):
            raise ValueError("pullRequests: each number at most once")
        return self

    def urls(self) -> list[tuple[str, str]]:
        """(field, URL) of every repository and patch URL the spec gives."""
        found = [("source.repository", self.source.repository)]
        if self.source.upstream is not None:
            found.append(("source.upstream.repository", self.source.upstream.repository))
        found += [(f"pullRequests[{i}].patchURL", pr.patch_url) for i, pr in enumerate(self.pull_requests)
                  if pr.patch_url]
        return found


class AppliedPullRequest(StatusModel):
    """A pull request applied to the built tree."""

    number: int
    """Number of a pull request from `spec.pullRequests` that was applied to the built tree."""
    commits: list[str] = []
    """IDs of the commits `git am` made from its patch, oldest first; the last carries `This closes #<number>`."""


class Artifact(StatusModel):
    """A built package."""

    name: str
    """File name of the RPM as `package.sh` made it: a plain name of letters, digits and `._+~^-`."""
    sha256: str
    """SHA-256 of the file."""
    size: int
    """Size of the published file, in bytes."""
    location: str
    """Path on the build host, or URL when `publish.baseUrl` is set."""


class BuildLog(StatusModel):
    """Where the build log is."""

    path: str = ""
    """Path of the pipeline's full output on the build host: `<workDir>/builds/<inputs hash>/log`."""
    tail: list[str] = []
    """Last lines, on failure."""


class CloudStackReleaseStatus(Status):
    """Observed state of the release build."""

    phase: Literal["Pending", "Fetching", "Syncing", "Patching", "Versioning", "Building", "Packaging", "Publishing",
                   "Succeeded", "Failed"] | None = None
    """Step of the pipeline for the current inputs: `Fetching`, `Syncing` (rebase on upstream), `Patching`,
    `Versioning`, `Building`, `Packaging`, `Publishing`, then `Succeeded` or `Failed`; `Pending` before the build
    starts. Shown in the `PHASE` column."""
    inputs_hash: str | None = None
    """Hash of the inputs (base commit, patches, version, build settings); the same inputs never build twice."""
    commit: str | None = None
    """`HEAD` of the work tree after patching and setting the version, once the build succeeded: the commit the
    packages were built from. Shown in the `COMMIT` column."""
    applied_pull_requests: list[AppliedPullRequest] = []
    """The pull requests applied to the built tree, with the commits each added."""
    artifacts: list[Artifact] = []
    """The RPMs the build published, with their checksum, size and where to get them; empty without packaging."""
    build_log: BuildLog | None = None
    """Where the build's log is on the build host, with its last 20 lines when the build failed."""
    progress: str | None = None
    """The step the pipeline is at now, e.g. `applying pull request 2 of 5 (#1234)`; empty once the build has
    ended."""
    started_at: str | None = None
    """When the build started (RFC 3339)."""
    duration_seconds: int | None = None
    """How long the last build took."""
    schema_upgrade_required: bool | None = None
    """Whether the version needs a database upgrade path under its version rule."""
