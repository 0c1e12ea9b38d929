"""Where a release's scripts run: the build host over SSH (pinned host key), or the operator's own container
(only with `--allow-local-builds`, isolated from the operator's credentials)."""
from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence
from typing import Protocol

from ... import status as st
from ...api.cloudstackrelease import CloudStackReleaseSpec
from ...drivers.ssh import CommandResult, SSHError, SSHPool, SSHTarget
from ..base import Context, ReconcileError
from ..ssh import target_for
from . import isolation
from .isolation import LocalBuilds
from .reasons import Reason


class Runner(Protocol):
    where: str

    async def script(self, text: str, args: Sequence[str], *, timeout: float, mutation: bool = False,
                     label: str = "script") -> CommandResult: ...


class SSHRunner:
    def __init__(self, ssh: SSHPool, target: SSHTarget):
        self.connection = ssh.connection(target)
        self.where = target.display

    async def script(self, text: str, args: Sequence[str], *, timeout: float, mutation: bool = False,
                     label: str = "script") -> CommandResult:
        try:
            return await self.connection.run_script(text, args=list(args), timeout=timeout, check=False,
                                                    mutation=mutation, label=label)
        except SSHError as error:
            raise ReconcileError(error.reason, f"build host: {error}", retry=error.retry, delay=error.delay,
                                 conditions=[st.ConditionState(st.ConditionType.REACHABLE, "False", error.reason,
                                                             str(error))]) \
                from None


class LocalRunner:
    """`sh -s` in the operator's container, in user and mount namespaces without its credentials (builder.type
    Local; see isolation.py)."""

    where = "the operator's container"

    def __init__(self, local: LocalBuilds):
        self.local = local

    async def script(self, text: str, args: Sequence[str], *, timeout: float, mutation: bool = False,
                     label: str = "script") -> CommandResult:
        try:
            process = await isolation.spawn(self.local, list(args))
        except isolation.IsolationUnavailable as error:
            raise ReconcileError(Reason.LOCAL_BUILD_ISOLATION_UNAVAILABLE, f"a local build cannot be isolated from the "
                                 f"operator's credentials here, so none runs: {error}", retry=False) from None
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(isolation.GO + text.encode()), timeout)
        except asyncio.TimeoutError:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise ReconcileError(Reason.BUILD_HOST_TIMEOUT, f"{label} did not finish within {timeout:.0f}s",
                                 delay=30.0) from None
        return CommandResult(process.returncode if process.returncode is not None else -1,
                             stdout.decode(errors="replace"), stderr.decode(errors="replace"))


def not_observable_here(spec: CloudStackReleaseSpec) -> tuple[str, str] | None:
    """Why (reason, message) a tool outside the operator (`stackops plan`) cannot observe this release: a Local
    builder builds in the operator's container, whose state is not here. None: it can. Never a status reason."""
    if spec.builder.type == "Local":
        return Reason.LOCAL_BUILDER, "builder.type Local builds in the operator's container: its state cannot be " \
            "observed from here"
    return None


def runner_for(ssh: SSHPool | None, ctx: Context, spec: CloudStackReleaseSpec, local: LocalBuilds | None) -> Runner:
    builder = spec.builder
    if builder.type == "Local":
        if local is None:
            raise ReconcileError(Reason.LOCAL_BUILDS_DISABLED, "builder.type is Local, but this operator runs without "
                                 "--allow-local-builds: spec-chosen commands do not run in its container (use "
                                 "builder.type SSH)", retry=False)
        return LocalRunner(local)
    assert builder.ssh is not None  # the schema requires it for type SSH
    if ssh is None:
        raise ReconcileError(Reason.SSH_UNAVAILABLE, "builder.type is SSH but this operator runs without SSH",
                             retry=False)
    ref = builder.ssh.ssh.private_key_secret_ref
    key = ctx.credential(ref.name, ref.key, to=[builder.ssh.address], what="SSH to the build host")
    return SSHRunner(ssh, target_for(builder.ssh.address, builder.ssh.ssh, key))
