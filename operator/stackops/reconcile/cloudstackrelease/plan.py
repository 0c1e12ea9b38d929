"""The pure part of a CloudStackRelease pass: (spec, facts, now) → what to do and what to report."""
from __future__ import annotations

from dataclasses import dataclass

from ...api.cloudstackrelease import CloudStackReleaseSpec
from ..base import Action
from .observed import BuildFacts
from .reasons import Reason

# Failures that the same inputs may not meet again: the build is started again after RETRY_SECONDS.
TRANSIENT = {Reason.FETCH_FAILED, Reason.PATCH_DOWNLOAD_FAILED, Reason.PATCH_CHANGED, Reason.INTERRUPTED,
             Reason.SUPERSEDED, Reason.SOURCE_UNREACHABLE}
# Failures a person must resolve (the spec or the source must change): Stalled.
STALLING = {Reason.SCHEMA_UPGRADE_REQUIRED, Reason.PATCH_DOES_NOT_APPLY, Reason.REBASE_CONFLICT,
            Reason.VERSION_FAILED, Reason.BUILD_FAILED, Reason.PACKAGING_FAILED, Reason.PUBLISH_FAILED,
            Reason.REF_NOT_FOUND, Reason.TOOL_MISSING, Reason.ARTIFACT_NAME_INVALID}
RETRY_SECONDS = 60
TERMINAL = ("Succeeded", "Failed")


@dataclass(frozen=True)
class StartBuild(Action):
    inputs_hash: str
    version: str
    pull_requests: tuple[int, ...]
    superseding: str = ""  # hash of a running build of older inputs that this one stops
    retry_of: str = ""  # why the same inputs build again

    disruptive = False
    operation = "add"
    event_reason = Reason.BUILD_STARTED

    def describe(self) -> str:
        prs = ", ".join(f"#{n}" for n in self.pull_requests) or "no pull requests"
        why = f" (again: {self.retry_of})" if self.retry_of else ""
        stops = f", stopping the build of superseded inputs {self.superseding[:12]}" if self.superseding else ""
        return f"build CloudStack {self.version} with {prs}, inputs {self.inputs_hash[:12]}{why}{stops}"


@dataclass
class Decision:
    state: str  # Problem, Start, Running, Succeeded, Failed, Waiting
    action: StartBuild | None = None
    reason: str = ""
    message: str = ""
    stalled: bool = False
    requeue_after: float | None = None


def plan(spec: CloudStackReleaseSpec, facts: BuildFacts, now: float, *, built_before: bool = False) -> Decision:
    """`built_before`: status records a success for these very inputs (its build directory may be gone since)."""
    if facts.missing_tools:
        return Decision("Problem", reason=Reason.TOOL_MISSING, stalled=True,
                        message=f"the build host lacks {', '.join(facts.missing_tools)}")
    if facts.problem is not None:
        reason, message = facts.problem
        stalled = reason in STALLING
        return Decision("Problem", reason=reason, message=message, stalled=stalled,
                        requeue_after=None if stalled else float(RETRY_SECONDS))
    start = StartBuild(facts.inputs_hash, spec.version, tuple(pr.number for pr in spec.pull_requests),
                       superseding=facts.current if facts.current_running and facts.current != facts.inputs_hash else "")
    if facts.running and facts.phase not in TERMINAL:  # the pipeline's last act is writing a terminal phase
        return Decision("Running", reason=facts.phase or Reason.PENDING, message=facts.progress, requeue_after=5.0)
    if not facts.exists:
        if built_before:
            return Decision("Succeeded", reason=Reason.SUCCEEDED, message="built before (its build directory is gone)")
        return Decision("Start", action=start)
    if facts.phase == "Succeeded":
        return Decision("Succeeded", reason=Reason.SUCCEEDED)
    if facts.phase == "Failed" and facts.failure is not None:
        reason, message = facts.failure
        if reason in TRANSIENT:
            wait = facts.finished + RETRY_SECONDS - now
            if wait > 0:
                return Decision("Waiting", reason=reason, message=f"{message}; trying again in {wait:.0f}s",
                                requeue_after=max(wait, 1.0))
            return Decision("Start", action=StartBuild(**{**start.__dict__, "retry_of": reason}))
        return Decision("Failed", reason=reason, message=message, stalled=True)
    # the directory exists but nothing runs and no result was written: the build host rebooted, or the pipeline
    # was killed before it could record why
    return Decision("Start", action=StartBuild(**{**start.__dict__, "retry_of": f"interrupted in {facts.phase}"}))
