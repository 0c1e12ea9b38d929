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
