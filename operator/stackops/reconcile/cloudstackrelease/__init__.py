"""The CloudStackRelease reconciler: observe (one script on the build host resolves the inputs and reads the
state of their build), plan purely, and start the pipeline detached when the inputs have not been built.

The build runs on the build host on its own (see scripts.py): the operator only starts it and reads its state
files, so an operator restart neither loses a build nor starts a second one, and a pass never waits for Maven.
"""
from __future__ import annotations

import contextlib
import datetime
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from ... import status as st
from ...api.cloudstackrelease import CloudStackReleaseSpec
from ...drivers.ssh import SSHPool
from ..base import Action, Context, Outcome, ReconcileError
from ..engine import Engine, Plan, Stage
from . import inputs, scripts
from .isolation import LocalBuilds
from .observed import BuildFacts, BuildOutputInvalid, parse, plain_name
from . import plan as planner
from .plan import Decision, StartBuild
from .reasons import Reason
from .runner import Runner, not_observable_here, runner_for

OBSERVE_TIMEOUT = 900.0  # ls-remote and every patch's download
START_TIMEOUT = 120.0


def _rfc3339(epoch: int) -> str | None:
    if not epoch:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class BuildPlan(Plan):
    """The decision of a pass; a build to start is its one stage (the build then runs on by itself)."""

    decision: Decision = field(default_factory=lambda: Decision("Problem"))


class CloudStackReleaseReconciler(Engine[Runner, BuildFacts, BuildPlan]):
    kind = "CloudStackRelease"

    def __init__(self, ssh: SSHPool | None = None, local_builds: LocalBuilds | None = None):
        """`local_builds`: how `builder.type: Local` builds are isolated; None (the default) refuses them."""
        self.ssh = ssh
        self.local_builds = local_builds

    def not_observable_here(self, spec: CloudStackReleaseSpec) -> tuple[str, str] | None:
        return not_observable_here(spec)

    @contextlib.asynccontextmanager
    async def connect(self, ctx: Context) -> AsyncIterator[Runner]:
        yield runner_for(self.ssh, ctx, ctx.spec, self.local_builds)

    async def observe(self, ctx: Context, runner: Runner) -> BuildFacts:
        """The inputs status recorded: while that build runs with the same settings, its inputs are taken as they
        are instead of being resolved again (no patch is downloaded on every pass)."""
        spec: CloudStackReleaseSpec = ctx.spec
        known = str(ctx.status.get("inputsHash") or "")
        up = spec.source.upstream
        args = [spec.builder.work_dir, inputs.settings(spec), known or "-", inputs.files(spec), spec.source.repository,
                spec.source.base_ref, up.repository if up else "-", up.ref if up else "-"]
        for pr in spec.pull_requests:
            args += [str(pr.number), inputs.patch_url(spec, pr.number, pr.patch_url)]
        result = await runner.script(scripts.OBSERVE, args, timeout=OBSERVE_TIMEOUT, label="resolve the inputs")
        if result.exit_status != 0:
            raise ReconcileError(Reason.BUILD_HOST_ERROR, f"looking at the build on {runner.where} failed: "
                                 f"{(result.stderr or result.stdout).strip()[-500:]}", delay=60.0)
        try:
            facts = parse(result.stdout)
        except BuildOutputInvalid as error:
            raise ReconcileError(error.reason, f"the answer of {runner.where} is refused: {error}", retry=False) \
                from None
        if facts.problem is None and not facts.missing_tools:
            expected = inputs.inputs_hash(inputs.settings(spec), facts.base, facts.upstream,
                                          [(pr.number, facts.patches[pr.number]) for pr in spec.pull_requests])
            if expected != facts.inputs_hash:
                raise ReconcileError(Reason.INPUTS_HASH_MISMATCH, f"the build host computed inputs "
                                     f"{facts.inputs_hash} but the operator {expected}", retry=False)
        return facts

    def plan(self, ctx: Context, facts: BuildFacts) -> BuildPlan:
        before = ctx.status
        built_before = before.get("phase") == "Succeeded" and before.get("inputsHash") == facts.inputs_hash
        decision = planner.plan(ctx.spec, facts, time.time(), built_before=built_before)
        stages = [Stage("build", (decision.action,), then="stop")] if decision.action is not None else []
        return BuildPlan(stages, decision)

    async def execute(self, ctx: Context, runner: Runner, action: Action, facts: BuildFacts) -> None:
        assert isinstance(action, StartBuild)
        spec: CloudStackReleaseSpec = ctx.spec
        lines = inputs.inputs_file(spec, facts.base, facts.upstream, facts.patches, action.inputs_hash)
        result = await runner.script(scripts.start_script(),
                                     [spec.builder.work_dir, action.inputs_hash, inputs.settings(spec), *lines],
                                     timeout=START_TIMEOUT, mutation=True, label="start the build")
        if result.exit_status != 0:
            raise ReconcileError(Reason.BUILD_START_FAILED, f"starting the build on {runner.where} failed: "
                                 f"{(result.stderr or result.stdout).strip()[-500:]}", delay=60.0)
        if action.superseding and "superseded" in result.stdout:
            ctx.event("Normal", "BuildSuperseded", f"stopped the build of inputs {action.superseding[:12]}: the "
                      "spec changed")

    async def finalize(self, ctx: Context) -> None:
        """deletionPolicy Delete: the published packages (and the repository metadata) and the work tree go."""
        spec: CloudStackReleaseSpec = ctx.spec
        if spec.deletion_policy != "Delete":
            return
        if spec.builder.type == "Local" and self.local_builds is None:
            ctx.event("Warning", Reason.LOCAL_BUILDS_DISABLED, "deletionPolicy Delete: nothing removed, this "
                      "operator runs without --allow-local-builds")
            return
        runner = runner_for(self.ssh, ctx, spec, self.local_builds)
        # names status recorded; only plain file names are joined to the publish directory
        names = [a.get("name", "") for a in ctx.status.get("artifacts") or [] if plain_name(str(a.get("name", "")))]
        publish = inputs.publish_dir(spec, str(ctx.status.get("inputsHash") or "none"))
        result = await runner.script(scripts.REMOVE, [spec.builder.work_dir, publish, *names], timeout=300,
                                     mutation=True, label="remove the release")
        if result.exit_status != 0:
            raise ReconcileError(Reason.REMOVE_FAILED, f"removing the release on {runner.where} failed: "
                                 f"{(result.stderr or result.stdout).strip()[-500:]}", delay=60.0)
        ctx.event("Normal", "Applied", f"removed {len(names)} package(s) from {publish} and the work tree")

    # ------------------------------------------------------------------ status

    def report(self, ctx: Context, facts: BuildFacts, plan: BuildPlan, applied: list[Action]) -> Outcome:
        spec: CloudStackReleaseSpec = ctx.spec
        decision = plan.decision
        fields: dict[str, Any] = {"inputsHash": facts.inputs_hash or None}
        previous = ctx.status
        if facts.exists or applied:
            fields.update(self.build_fields(spec, facts, decision, applied))
        elif decision.state == "Succeeded":  # built before; the directory is gone: keep what status recorded
            fields["phase"] = "Succeeded"
        else:
            fields["phase"] = "Pending"
        if facts.base_version:
            verdict = inputs.version_verdict(spec.version_rule, spec.version, facts.base_version)
            fields["schemaUpgradeRequired"] = verdict.schema_upgrade_required
        observe_only = spec.management_policy == "Observe"
        drift = [decision.action] if decision.action is not None and observe_only else []
        conditions = self.conditions(spec, facts, decision, applied, observe_only)
        phase = fields.get("phase")
        if phase in ("Succeeded", "Failed") and (previous.get("phase") != phase
                                                 or previous.get("inputsHash") != facts.inputs_hash):
            kind = "Normal" if phase == "Succeeded" else "Warning"
            ctx.event(kind, f"Build{phase}", conditions[0].message)
        requeue = 3.0 if applied else decision.requeue_after
        reachable = st.ConditionState(st.ConditionType.REACHABLE, "True", st.Reason.CONNECTED,
                                      "the build host answers")
        return Outcome(conditions=[*conditions, reachable], fields=fields, drift=drift, applied=applied,
                       requeue_after=requeue)

    def build_fields(self, spec: CloudStackReleaseSpec, facts: BuildFacts, decision: Decision,
                     applied: list[Action]) -> dict[str, Any]:
        log = f"{inputs.build_dir(spec, facts.inputs_hash)}/log"
        base_url = spec.publish.base_url.rstrip("/") if spec.publish and spec.publish.base_url else None
        phase = "Pending" if applied else facts.phase or "Pending"
        finished = facts.finished if phase in ("Succeeded", "Failed") else 0
        return {
            "phase": phase,
            "progress": facts.progress or None if phase not in ("Succeeded", "Failed") and not applied else None,
            "commit": facts.commit or None,
            "appliedPullRequests": [{"number": n, "commits": c} for n, c in sorted(facts.applied.items())],
            "artifacts": [{"name": a.name, "sha256": a.sha256, "size": a.size,
                           "location": f"{base_url}/{a.name}" if base_url else a.path} for a in facts.artifacts],
            "buildLog": {"path": log, "tail": facts.log_tail if phase == "Failed" else []},
            "startedAt": None if applied else _rfc3339(facts.started),
            "durationSeconds": (finished - facts.started) if finished and facts.started else None,
        }

    def conditions(self, spec: CloudStackReleaseSpec, facts: BuildFacts, decision: Decision, applied: list[Action],
                   observe_only: bool) -> list[st.ConditionState]:
        if decision.state == "Succeeded":
            what = f"CloudStack {spec.version} built at {facts.commit[:12] or 'an earlier pass'}: " \
                   f"{len(facts.artifacts)} package(s)"
            if facts.base_version:
                what += "; " + inputs.version_verdict(spec.version_rule, spec.version, facts.base_version).message
            return st.ready(Reason.SUCCEEDED, decision.message or what)
        if decision.state == "Start":
            action = decision.action
            assert action is not None
            if observe_only:
                return st.not_ready(Reason.BUILD_NEEDED, f"not started under Observe: {action.describe()}")
            return st.progressing(Reason.BUILD_STARTED, action.describe())
        if decision.state == "Running":
            return st.progressing(decision.reason, decision.message or f"{decision.reason} on the build host")
        if decision.state == "Waiting":
            return st.progressing(decision.reason, decision.message)
        if decision.stalled:
            return st.stalled(decision.reason, decision.message)
        return st.progressing(decision.reason, decision.message)


__all__ = ["CloudStackReleaseReconciler"]
