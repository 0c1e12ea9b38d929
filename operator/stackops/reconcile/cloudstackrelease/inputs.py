"""What a release build is made of, as pure functions: the settings line, the inputs hash (the same inputs never
build twice), the inputs file the pipeline reads, and the version rule."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ...api.cloudstackrelease import CloudStackReleaseSpec

# The work directory's layout (builder.workDir), which the scripts get from here (scripts.py): the Git work tree,
# and one directory per set of inputs.
SOURCE_DIR = "src"
BUILDS_DIR = "builds"
BUILD_BRANCH = "stackops-build"
DEFAULT_VERSION_COMMAND = ["tools/build/setnextversion.sh", "-v", "%VERSION%", "-b", BUILD_BRANCH, "-s", "%TREE%"]


def patch_url(spec: CloudStackReleaseSpec, number: int, given: str | None) -> str:
    """`<repository without .git>/pull/<number>.patch`, GitHub's patch URL, unless the spec gives one."""
    if given:
        return given
    base = spec.source.repository.removesuffix("/").removesuffix(".git")
    return f"{base}/pull/{number}.patch"


def tree(spec: CloudStackReleaseSpec) -> str:
    return f"{spec.builder.work_dir.rstrip('/')}/{SOURCE_DIR}"


def build_dir(spec: CloudStackReleaseSpec, inputs_hash: str) -> str:
    return f"{spec.builder.work_dir.rstrip('/')}/{BUILDS_DIR}/{inputs_hash}"


def maven_command(spec: CloudStackReleaseSpec) -> list[str]:
    if spec.build.maven_command:
        return list(spec.build.maven_command)
    words = ["mvn", "clean", "install"]
    for profile in spec.build.maven_profiles:
        words += ["-P", profile]
    return words + (["-DskipTests"] if spec.build.skip_tests else [])


def version_command(spec: CloudStackReleaseSpec) -> list[str]:
    words = spec.build.version_command or DEFAULT_VERSION_COMMAND
    return [w.replace("%VERSION%", spec.version).replace("%TREE%", tree(spec)) for w in words]


def publish_dir(spec: CloudStackReleaseSpec, inputs_hash: str) -> str:
    if spec.publish is not None:
        return spec.publish.directory
    return f"{build_dir(spec, inputs_hash)}/rpms"


def files(spec: CloudStackReleaseSpec) -> str:
    """`true` when Git and curl may read `file://` URLs (the spec's `allowFileURLs`), else `false`."""
    return str(spec.allow_file_urls).lower()


def settings(spec: CloudStackReleaseSpec) -> str:
    """Everything the build depends on besides the commits and patch contents, as one canonical line."""
    upstream = spec.source.upstream
    data = {
        "repository": spec.source.repository,
        "upstream": [upstream.repository, upstream.ref] if upstream else None,
        "version": spec.version, "rule": spec.version_rule, "allowSchemaUpgrade": spec.allow_schema_upgrade,
        "pullRequests": [[pr.number, patch_url(spec, pr.number, pr.patch_url)] for pr in spec.pull_requests],
        "maven": maven_command(spec), "versionCommand": version_command(spec),
        "packaging": [spec.packaging.enabled, spec.packaging.distribution],
        "publish": spec.publish.directory if spec.publish else None, "workDir": spec.builder.work_dir,
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def inputs_hash(settings_line: str, base: str, upstream: str, patches: list[tuple[int, str]]) -> str:
    """SHA-256 of the inputs, exactly as the observe script computes it on the build host."""
    hashes = "".join(f" {number}:{digest}" for number, digest in patches)
    return hashlib.sha256(f"{settings_line}\n{base}\n{upstream}\n{hashes}\n".encode()).hexdigest()


def inputs_file(spec: CloudStackReleaseSpec, base: str, upstream: str, patches: dict[int, str],
                inputs_hash_: str) -> list[str]:
    """`key=value` lines for the pipeline (values come from validated spec fields: no newlines, no quoting)."""
    up = spec.source.upstream
    lines = [f"repo={spec.source.repository}", f"base={base}", f"upstream={upstream}",
             f"upstream_repo={up.repository if up else '-'}", f"version={spec.version}",
             f"rule={spec.version_rule}", f"allow_schema_upgrade={str(spec.allow_schema_upgrade).lower()}",
             f"version_command={' '.join(version_command(spec))}", f"maven={' '.join(maven_command(spec))}",
             f"timeout_seconds={spec.build.timeout_minutes * 60}",
             f"packaging={str(spec.packaging.enabled).lower()}", f"distribution={spec.packaging.distribution}",
             f"publish={publish_dir(spec, inputs_hash_)}", f"files={files(spec)}"]
    lines += [f"pr={pr.number} {patch_url(spec, pr.number, pr.patch_url)} {patches[pr.number]}"
              for pr in spec.pull_requests]
    return lines


def version_parts(version: str) -> list[str]:
    return version.split("-", 1)[0].split(".")


@dataclass(frozen=True)
class VersionVerdict:
    schema_upgrade_required: bool
    message: str


def version_verdict(rule: str, version: str, base_version: str) -> VersionVerdict:
    """Legacy: CloudStack compares three parts, so a version keeping the base's first three needs no database
    upgrade. FourPart: any version other than the base's needs an upgrade path."""
    if rule == "Legacy":
        same = version_parts(version)[:3] == version_parts(base_version)[:3]
        if same:
            return VersionVerdict(False, f"{version} keeps the first three parts of the base version {base_version}: "
                                  "no database upgrade path needed")
        return VersionVerdict(True, f"{version} changes the first three parts of the base version {base_version}: "
                              "CloudStack needs a database upgrade path")
    same = version_parts(version) == version_parts(base_version)
    if same:
        return VersionVerdict(False, f"{version} is the base version: no database upgrade path needed")
    return VersionVerdict(True, f"CloudStack compares four version parts: {version} (base {base_version}) needs a "
                          "database upgrade path to be shipped with it")
