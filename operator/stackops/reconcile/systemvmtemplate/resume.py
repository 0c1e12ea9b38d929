"""Router reboots an earlier pass left undecided: pure, from status and what CloudStack lists.

Each reboot is written to status (`routers.inFlight`) twice: before it is submitted, without a job id (an
*intent*), and right after, with the job id CloudStack answered. An operator that died between the two leaves an
intent, and only CloudStack knows whether the request reached it. It does: the job's row exists once the request
was answered (ApiServer.queueCommand for rebootRouter, and the jobs upgradeRouterTemplate answers), and
`listAsyncJobs` lists it with its command (`…RebootRouterCmd`), the router as `jobinstanceid` and its `created`
time. So an intent is resolved by the newest reboot job of its router created since the intent was written
(`CLOCK_SKEW_SECONDS` earlier: `created` is the management server's clock), never by one a failed attempt of this
rollout already reported (`RouterRetry.jobId`). No such job: the request never arrived, and the router is rebooted
as if no intent were there — but only once the intent is older than `settle` seconds, for a request still on its
way to the server; until then the router counts as rebooting.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from ...api.systemvmtemplate import RouterInFlight

REBOOT_COMMAND = "RebootRouterCmd"  # the end of `cmd` of rebootRouter's jobs and of upgradeRouterTemplate's
CLOCK_SKEW_SECONDS = 60.0


def epoch(text: str) -> float | None:
    """RFC 3339 (status) or CloudStack's `yyyy-MM-dd'T'HH:mm:ssZ` (`2024-05-01T12:00:00+0000`) as seconds."""
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        pass
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return None


def start_date(intents: list[RouterInFlight], now: float) -> str:
    """`listAsyncJobs`' startdate for these intents: the day before the oldest one. CloudStack reads the parameter
    as `yyyy-MM-dd` in its own time zone (ParamProcessWorker, DATE), so a day's margin covers any zone."""
    oldest = min((epoch(i.started) or now for i in intents), default=now)
    day = datetime.datetime.fromtimestamp(oldest, datetime.timezone.utc).date() - datetime.timedelta(days=1)
    return day.isoformat()


@dataclass
class Resolution:
    """What became of each intent."""

    submitted: dict[str, str] = field(default_factory=dict)  # router id → the job found
    unsent: list[str] = field(default_factory=list)  # router ids: no job, the request never arrived
    unsure: list[str] = field(default_factory=list)  # router ids: no job yet, too soon to tell


def resolve(intents: list[RouterInFlight], jobs: list[dict[str, Any]], *, now: float, settle: float,
            reported: set[str] = frozenset()) -> Resolution:  # type: ignore[assignment]
    """Match intents to `listAsyncJobs` entries. `reported`: job ids of failed attempts already counted."""
    found: dict[str, tuple[float, str]] = {}
    for job in jobs:
        if not str(job.get("cmd", "")).endswith(REBOOT_COMMAND) or job.get("jobinstancetype") != "DomainRouter":
            continue
        jobid, router, created = str(job.get("jobid", "")), str(job.get("jobinstanceid", "")), \
            epoch(str(job.get("created", "")))
        if not jobid or not router or created is None or jobid in reported:
            continue
        if router not in found or created >= found[router][0]:
            found[router] = (created, jobid)
    result = Resolution()
    for intent in intents:
        started = epoch(intent.started)
        job = found.get(intent.id)
        if job is not None and (started is None or job[0] >= started - CLOCK_SKEW_SECONDS):
            result.submitted[intent.id] = job[1]
        elif started is not None and now - started < settle:
            result.unsure.append(intent.id)
        else:
            result.unsent.append(intent.id)
    return result
