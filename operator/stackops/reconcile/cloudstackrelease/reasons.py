"""CloudStackRelease's condition reasons (those every kind shares: status.Reason; the SSH driver's: its error
classes). The build pipeline (scripts/pipeline.sh, start.sh) writes its failures by the same names in its state
files; plan.py sorts them into TRANSIENT and STALLING. While a build runs, Ready's reason is its phase
(observed.PHASES)."""
from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    SUCCEEDED = "Succeeded"  # Ready=True
    PENDING = "Pending"  # a build running before its first phase is recorded
    BUILD_STARTED = "BuildStarted"
    BUILD_NEEDED = "BuildNeeded"  # Observe: the build is not started
    BUILD_HOST_ERROR = "BuildHostError"
    BUILD_HOST_TIMEOUT = "BuildHostTimeout"
    BUILD_START_FAILED = "BuildStartFailed"
    BUILD_OUTPUT_INVALID = "BuildOutputInvalid"
    INPUTS_HASH_MISMATCH = "InputsHashMismatch"
    LOCAL_BUILDS_DISABLED = "LocalBuildsDisabled"
    LOCAL_BUILD_ISOLATION_UNAVAILABLE = "LocalBuildIsolationUnavailable"
    SSH_UNAVAILABLE = "SSHUnavailable"
    TOOL_MISSING = "ToolMissing"
    SOURCE_UNREACHABLE = "SourceUnreachable"
    REF_NOT_FOUND = "RefNotFound"
    REMOVE_FAILED = "RemoveFailed"  # deletion only: the finalizer retries, no condition is written
    # the pipeline's failures (and the observation's, for the same causes)
    INTERRUPTED = "Interrupted"
    SUPERSEDED = "Superseded"
    FETCH_FAILED = "FetchFailed"
    SCHEMA_UPGRADE_REQUIRED = "SchemaUpgradeRequired"
    REBASE_CONFLICT = "RebaseConflict"
    PATCH_DOWNLOAD_FAILED = "PatchDownloadFailed"
    PATCH_CHANGED = "PatchChanged"
    PATCH_DOES_NOT_APPLY = "PatchDoesNotApply"
    VERSION_FAILED = "VersionFailed"
    BUILD_FAILED = "BuildFailed"
    PACKAGING_FAILED = "PackagingFailed"
    ARTIFACT_NAME_INVALID = "ArtifactNameInvalid"
    PUBLISH_FAILED = "PublishFailed"
    # `stackops plan` only (never in status): a Local builder cannot be observed from outside the operator
    LOCAL_BUILDER = "LocalBuilder"
