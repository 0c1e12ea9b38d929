"""Where a release's scripts run: the build host over SSH (pinned host key), or the operator's own container."""
from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence
from typing import Protocol

from ... import status as st
from ...api.cloudstackrelease import CloudStackReleaseSpec
from ...drivers.ssh import CommandResult, SSHError, SSHPool, SSHTarget, script_argv
from ..base import Context, ReconcileError


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
                                 conditions=[st.ConditionState("Reachable", "False", error.reason, str(error))]) \
                from None


class LocalRunner:
    """`sh -s` in the operator's container (builder.type Local)."""

    where = "the operator's container"

    async def script(self, text: str, args: Sequence[str], *, timeout: float, mutation: bool = False,
                     label: str = "script") -> CommandResult:
        process = await asyncio.create_subprocess_exec(
            *script_argv(args), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(text.encode()), timeout)
        except asyncio.TimeoutError:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise ReconcileError("BuildHostTimeout", f"{label} did not finish within {timeout:.0f}s", delay=30.0) \
                from None
        return CommandResult(process.returncode if process.returncode is not None else -1,
                             stdout.decode(errors="replace"), stderr.decode(errors="replace"))


def runner_for(ssh: SSHPool | None, ctx: Context, spec: CloudStackReleaseSpec) -> Runner:
    builder = spec.builder
    if builder.type == "Local":
        return LocalRunner()
    assert builder.ssh is not None  # the schema requires it for type SSH
    if ssh is None:
        raise ReconcileError("SSHUnavailable", "builder.type is SSH but this operator runs without SSH", retry=False)
    ref = builder.ssh.ssh.private_key_secret_ref
    return SSHRunner(ssh, SSHTarget.from_settings(builder.ssh.address, builder.ssh.ssh, ctx.secret(ref.name, ref.key)))
