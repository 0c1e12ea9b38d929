"""listAsyncJobs in the lab CloudStack, as QueryManagerImpl.searchForAsyncJobsInternal answers a root admin: its
own jobs, or everyone's with listall=true (upgradeRouterTemplate's reboot jobs belong to the routers' accounts),
`keyword` matched in `cmd`, `startdate` read as a day, pending and finished jobs alike. Needs no Kubernetes; the
simulator's clock stands still, so every job listed here is still pending unless the test moves it."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from cs import CloudStack, CloudStackApiException

from stackops_lab.clock import ManualClock
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings


@pytest.fixture
def sim() -> Iterator[CloudStackSimulator]:
    with CloudStackSimulator(fleet=Fleet(zones=1, hypervisors=("KVM",), routers=4, redundant_pairs=0),
                             timings=Timings(router_reboot=0.3, job=0.05), clock=ManualClock()) as simulator:
        yield simulator


def test_list_async_jobs_finds_the_reboot_jobs_of_a_router(sim: CloudStackSimulator) -> None:
    api = CloudStack(sim.endpoint, sim.api_key, sim.secret_key)
    routers = api.listRouters(listall=True)["router"]
    mine = api.rebootRouter(id=routers[0]["id"])["jobid"]
    api.updateConfiguration(name="minreq.sysvmtemplate.version", value="4.19.1", zoneid=routers[1]["zoneid"])
    upgrade = api.upgradeRouterTemplate(id=routers[1]["id"])["asyncjobs"][0]["jobid"]  # the tenant's account

    own = api.listAsyncJobs().get("asyncjobs", [])
    assert [j["jobid"] for j in own] == [mine]
    every = api.listAsyncJobs(listall=True, keyword="RebootRouterCmd")["asyncjobs"]
    assert [(j["jobid"], j["jobinstancetype"], j["jobinstanceid"]) for j in every] == [
        (mine, "DomainRouter", routers[0]["id"]), (upgrade, "DomainRouter", routers[1]["id"])]
    assert {j["jobstatus"] for j in every} == {0} and all(j["cmd"].endswith(".RebootRouterCmd") for j in every)
    assert api.listAsyncJobs(listall=True, keyword="DestroySystemVm") == {}

    today = time.strftime("%Y-%m-%d", time.gmtime(sim.clock.time()))
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(sim.clock.time() + 86400))
    assert len(api.listAsyncJobs(listall=True, startdate=today)["asyncjobs"]) == 2
    assert len(api.listAsyncJobs(listall=True, startdate=f"{today}T23:59:59+0000")["asyncjobs"]) == 2  # a day
    assert api.listAsyncJobs(listall=True, startdate=tomorrow) == {}

    sim.scheduler.advance(1.0)
    done = api.listAsyncJobs(listall=True, keyword="RebootRouterCmd")["asyncjobs"]
    assert {j["jobstatus"] for j in done} == {1} and all("completed" in j for j in done)


def test_list_async_jobs_refuses_a_start_date_it_cannot_parse(sim: CloudStackSimulator) -> None:
    api = CloudStack(sim.endpoint, sim.api_key, sim.secret_key)
    for value in ("yesterday", "2024-13-01", "2024-02-30"):
        with pytest.raises(CloudStackApiException) as raised:
            api.listAsyncJobs(startdate=value)
        assert raised.value.error["errorcode"] == 431
        assert raised.value.error["errortext"] == (f"Unable to parse date {value} for command listasyncjobs, please "
                                                   "pass dates in the format mentioned in the api documentation")


def test_list_async_jobs_pages_in_job_order_with_the_whole_count(sim: CloudStackSimulator) -> None:
    """BaseListCmd paging over the listing ordered by job id: `count` is the whole listing's on every page, a page
    past the end has only the count, a page size over 500 is refused; each entry is what queryAsyncJobResult
    answers for that job (both are AsyncJobJoinDaoImpl.newAsyncJobResponse)."""
    api = CloudStack(sim.endpoint, sim.api_key, sim.secret_key)
    routers = api.listRouters(listall=True)["router"]
    jobs = [api.rebootRouter(id=r["id"])["jobid"] for r in routers]  # in submission order: increasing job ids
    sim.scheduler.advance(1.0)
    jobs += [api.rebootRouter(id=routers[0]["id"])["jobid"]]  # one still pending

    every = api.listAsyncJobs(listall=True, keyword="RebootRouterCmd")
    assert every["count"] == 5 and [j["jobid"] for j in every["asyncjobs"]] == jobs
    second = api.listAsyncJobs(listall=True, keyword="RebootRouterCmd", page=2, pagesize=3)
    assert second["count"] == 5 and [j["jobid"] for j in second["asyncjobs"]] == jobs[3:]
    assert api.listAsyncJobs(listall=True, keyword="RebootRouterCmd", page=3, pagesize=3) == {"count": 5}
    for entry in every["asyncjobs"]:
        assert entry == api.queryAsyncJobResult(jobid=entry["jobid"])
    assert [j["jobstatus"] for j in every["asyncjobs"]] == [1, 1, 1, 1, 0]
    assert every["asyncjobs"][0]["jobresult"]["router"]["id"] == routers[0]["id"]
    with pytest.raises(CloudStackApiException) as raised:
        api.listAsyncJobs(listall=True, page=1, pagesize=501)
    assert raised.value.error["errortext"] == "Page size can't exceed max allowed page size value: 500"


def test_a_job_is_created_at_the_simulators_time(sim: CloudStackSimulator) -> None:
    """`created` (and so `startdate`) follows the simulator's clock, not the machine's: a job submitted two days
    into a simulated rollout is listed from that day on."""
    api = CloudStack(sim.endpoint, sim.api_key, sim.secret_key)
    sim.scheduler.advance(2 * 86400.0)
    job = api.rebootRouter(id=api.listRouters(listall=True)["router"][0]["id"])["jobid"]
    today = time.strftime("%Y-%m-%d", time.gmtime(sim.clock.time()))
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(sim.clock.time() + 86400))
    assert [j["jobid"] for j in api.listAsyncJobs(startdate=today)["asyncjobs"]] == [job]
    assert api.listAsyncJobs(startdate=tomorrow) == {}
    assert api.queryAsyncJobResult(jobid=job)["created"] == time.strftime("%Y-%m-%dT%H:%M:%S+0000",
                                                                          time.gmtime(sim.clock.time()))
