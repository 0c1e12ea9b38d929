"""The router reboot jobs in flight, followed with one `listAsyncJobs` request a poll, whatever their number.

CloudStack has no way to ask for several jobs by id. `listAsyncJobs` (ListAsyncJobsCmd,
QueryManagerImpl.searchForAsyncJobsInternal) lists the jobs of the accounts the caller may see — `listall=true`: every
account, which the jobs of upgradeRouterTemplate need, as they belong to the routers' accounts — with `keyword`
matched in the command's class name, `startdate` read as a day (`yyyy-MM-dd`, the server's time zone), ordered by
job id, `count` the total of the whole listing, each entry an AsyncJobResponse (jobstatus, jobresultcode, jobresult)
as `queryAsyncJobResult` answers it.

A rollout's jobs in flight are the newest of that listing, so a poll asks for the one page that holds them
(`window`): from where the oldest of them stood in the last listing to its end, plus the jobs submitted since and a
few more (`SLACK`) that others may have added. Positions only grow while the listing's start date stays (job ids
increase); an expunged old job moves them back, and then a job is missing from the page: that poll reads the whole
listing and learns the positions again. A job the whole listing lacks (expunged, or listed under a start date that
misses it) is asked about alone with `queryAsyncJobResult`.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

from ...drivers.cloudstack import CloudStackError, Job
from .resume import REBOOT_COMMAND

MAX_PAGE_SIZE = 500  # default.page.size: CloudStack refuses a larger pagesize
SLACK = 10  # jobs others may have added after ours between two polls, beyond which the poll reads everything


class JobClient(Protocol):
    async def page(self, command: str, page: int, pagesize: int,
                   **params: Any) -> tuple[list[dict[str, Any]], int]: ...

    async def list(self, command: str, **params: Any) -> list[dict[str, Any]]: ...

    async def job(self, jobid: str) -> Job: ...


def window(first: int, end: int, largest: int = MAX_PAGE_SIZE) -> tuple[int, int] | None:
    """The smallest page (page, pagesize) that holds the positions `first` … `end - 1` of a listing (pages are
    numbered from 1 and cut every `pagesize` entries), or None when no page of at most `largest` entries does."""
    first = max(0, first)
    end = max(end, first + 1)
    for size in range(end - first, largest + 1):
        if first // size == (end - 1) // size:
            return first // size + 1, size
    return None


@dataclass
class Listing:
    """What the last listing showed: its start date, its total count and where each job stood in it. Kept between
    polls and passes; an operator that starts afresh reads the whole listing once."""

    startdate: str = ""
    count: int = 0
    position: dict[str, int] = field(default_factory=dict)  # job id → index in the listing

    def learn(self, entries: list[dict[str, Any]], offset: int, count: int) -> None:
        self.count = count
        for index, entry in enumerate(entries):
            self.position[str(entry.get("jobid", ""))] = offset + index

    def forget(self, keep: set[str]) -> None:
        """Drop the positions of jobs no longer followed."""
        self.position = {job: index for job, index in self.position.items() if job in keep}


async def poll(client: JobClient, jobs: list[str], startdate: str, listing: Listing) -> dict[str, Job]:
    """The state of each of `jobs` (reboot job ids): one request when the page that holds them can be told, the
    whole listing when not, `queryAsyncJobResult` for a job neither shows. A job whose state could not be read is
    missing from the answer (polled again next time). Raises CloudStackError when the listing fails."""
    if listing.startdate != startdate:
        listing.startdate, listing.count, listing.position = startdate, 0, {}
    params = {"listall": True, "keyword": REBOOT_COMMAND, "startdate": startdate}
    wanted = set(jobs)
    found: dict[str, Job] = {}

    def take(entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            jobid = str(entry.get("jobid", ""))
            if jobid in wanted:
                found[jobid] = Job.parse(jobid, entry)

    known = [listing.position[j] for j in jobs if j in listing.position]
    fresh = len(wanted) - len(known)
    spot = None
    if listing.count:
        first = min(known) if known else listing.count
        spot = window(first, max([listing.count, *(i + 1 for i in known)]) + fresh + SLACK)
    if spot is not None:
        page, size = spot
        entries, count = await client.page("listAsyncJobs", page, size, **params)
        listing.learn(entries, (page - 1) * size, count)
        take(entries)
    if wanted - set(found):
        entries = await client.list("listAsyncJobs", **params)
        listing.position = {}
        listing.learn(entries, 0, len(entries))
        take(entries)
    alone = [j for j in jobs if j not in found]
    answers = await asyncio.gather(*(client.job(j) for j in alone), return_exceptions=True)
    for jobid, answer in zip(alone, answers):
        if isinstance(answer, Job):
            found[jobid] = answer
        elif not isinstance(answer, CloudStackError):
            raise answer
    listing.forget(wanted)
    return found
