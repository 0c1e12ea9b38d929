"""Asking live supporters, from their dom0 over SSH, whether they reach the pool master (quorum.py decides).

Each supporter's dom0 runs PROBE (scripts/reach.sh; one SSH round trip, read-only, all supporters at once): a TCP
connect to its master's management address on the XenAPI port, with bash's `/dev/tcp` under coreutils' `timeout` —
both in every XenServer / XCP-ng dom0 (CentOS-based), unlike `nc`. The answer is only believed when the same probe first
connects to the supporter's own XenAPI (it answered the operator there): a bash without `/dev/tcp`, a missing
`timeout` or anything else that would make every connect fail gives "unknown", never "cannot reach". Nothing
secret is sent; the dom0 SSH settings are `uniqueness.ssh` and `members[].sshHostKey` (as for MakeUnique).
"""
from __future__ import annotations

import asyncio
from typing import Any

from ...api.xenpool import XenPoolSpec
from ...drivers.ssh import SSHError
from ..base import Context
from ..shell import load
from . import unique
from .quorum import SupporterView

CONNECT_SECONDS = 5  # per TCP connect in dom0
COMMAND_SECONDS = 30.0  # the whole probe, SSH included
REACHED, UNREACHABLE = 0, 10  # PROBE's exit statuses; anything else: unknown
PROBE = load(__package__, "reach.sh")  # $1 the master's address, $2 the port, $3 seconds per connect, $4 its own


def _line(text: str) -> str:
    """The last non-empty line of `text`, printable, at most 200 characters (for a status message)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return "".join(c if c.isprintable() else "?" for c in last)[:200]


async def supporters_view(ssh: Any, ctx: Context, spec: XenPoolSpec, port: int,
                          supporters: dict[str, str]) -> list[SupporterView]:
    """The view of each live supporter (address → the master address it points at), in spec order."""
    order = [m.address for m in spec.members if m.address in supporters]
    return list(await asyncio.gather(*(_ask(ssh, ctx, spec, port, a, supporters[a]) for a in order)))


async def _ask(ssh: Any, ctx: Context, spec: XenPoolSpec, port: int, address: str, master: str) -> SupporterView:
    member = next(m for m in spec.members if m.address == address)
    if spec.uniqueness.ssh is None:
        return SupporterView(address, master, None, "dom0 SSH is not configured (uniqueness.ssh)")
    if member.ssh_host_key is None:
        return SupporterView(address, master, None, "members[].sshHostKey is not set")
    if ssh is None:
        return SupporterView(address, master, None, "this operator runs without SSH")
    connection = ssh.connection(unique.target(spec, ctx, address))
    try:
        result = await connection.run_script(PROBE, args=[master, str(port), str(CONNECT_SECONDS), address],
                                             check=False, timeout=COMMAND_SECONDS, label="does dom0 reach the master")
    except SSHError as error:
        return SupporterView(address, master, None, f"dom0 SSH: {_line(str(error))}")
    said = _line(result.stdout) or _line(result.stderr)
    if result.exit_status == REACHED:
        return SupporterView(address, master, True, f"reaches {master}:{port}")
    if result.exit_status == UNREACHABLE:
        return SupporterView(address, master, False, said or f"cannot reach {master}:{port}")
    return SupporterView(address, master, None, f"the probe exited {result.exit_status}" + (f": {said}" if said else ""))
