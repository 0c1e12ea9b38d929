"""The CloudStack driver (on `cs`) against the lab CloudStack: typed errors, paging, async jobs, backoff on 429 and
transient errors for reads only, the per-endpoint concurrency limit, and no secret in error messages."""
from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from stackops.drivers.cloudstack import (
    CloudStackAuthError,
    CloudStackJobFailed,
    CloudStackParameterError,
    CloudStackPool,
    CloudStackRateLimited,
    CloudStackServerError,
    CloudStackUnavailable,
)
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings

FLEET = Fleet(zones=1, hypervisors=("KVM",), routers=620, redundant_pairs=10)
TIMINGS = Timings(router_reboot=0.2, job=0.02)


@pytest.fixture(scope="module")
def sim():  # noqa: ANN201
    with CloudStackSimulator(fleet=FLEET, timings=TIMINGS) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def no_faults(sim: CloudStackSimulator) -> None:
    sim.faults.rate_limit_rate = sim.faults.error_530_rate = sim.faults.job_failure_rate = 0.0


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


def pool(**options) -> CloudStackPool:
    return CloudStackPool(poll_interval=0.05, backoff=0.01, max_backoff=0.05, **options)


def test_lists_every_page(sim: CloudStackSimulator) -> None:
    async def go() -> tuple[int, int]:
        p = pool()
        client = p.get(sim.endpoint, sim.api_key, SecretStr(sim.secret_key))
        routers = await client.list("listRouters", listall=True)
        requests = client.counters.by_command["listRouters"]
        await p.close()
        return len(routers), requests

    count, requests = run(go())
    assert count == 620 and requests == 1  # one call of the driver; cs fetched both pages


def test_wrong_secret_is_an_auth_error_without_the_secret_in_it(sim: CloudStackSimulator) -> None:
    async def go() -> None:
        p = pool()
        try:
            await p.get(sim.endpoint, sim.api_key, SecretStr("not-the-secret")).list("listZones")
        finally:
            await p.close()

    with pytest.raises(CloudStackAuthError) as error:
        run(go())
    assert error.value.errorcode == 401 and "not-the-secret" not in str(error.value)
    assert sim.api_key not in str(error.value) and "signature=" not in str(error.value)


def test_parameter_error_is_typed_and_not_retried(sim: CloudStackSimulator) -> None:
    async def go() -> int:
        p = pool()
        client = p.get(sim.endpoint, sim.api_key, SecretStr(sim.secret_key))
        try:
            await client.call("upgradeRouterTemplate", zoneid="x", podid="y")
        finally:
            await p.close()
        return 0

    with pytest.raises(CloudStackParameterError) as error:
        run(go())
    assert error.value.errorcode == 431


def test_rate_limits_are_retried_for_every_command(sim: CloudStackSimulator) -> None:
    sim.faults.rate_limit_rate = 0.5

    async def go() -> tuple[int, int]:
        p = pool()
        client = p.get(sim.endpoint, sim.api_key, SecretStr(sim.secret_key))
        client.attempts = 30
        for _ in range(10):
            await client.list("listZones")
        router = (await client.list("listRouters", listall=True))[0]
        await client.run("rebootRouter", id=router["id"])
        counters = client.counters
        await p.close()
        return counters.rate_limited, counters.failures

    limited, failures = run(go())
    assert limited > 0 and failures == 0


def test_rate_limit_that_never_ends_is_reported(sim: CloudStackSimulator) -> None:
    sim.faults.rate_limit_rate = 1.0

    async def go() -> None:
        p = pool()
        try:
            await p.get(sim.endpoint, sim.api_key, SecretStr(sim.secret_key)).list("listZones")
        finally:
            await p.close()

    with pytest.raises(CloudStackRateLimited):
        run(go())


def test_internal_errors_retried_for_reads_but_not_for_mutations(sim: CloudStackSimulator) -> None:
    sim.faults.error_530_rate = 1.0

    async def go() -> tuple[int, int]:
        p = pool()
        client = p.get(sim.endpoint, sim.api_key, SecretStr(sim.secret_key))
        with pytest.raises(CloudStackServerError):
            await client.list("listZones")
        reads = client.counters.requests
        with pytest.raises(CloudStackServerError):
            await client.call("updateConfiguration", name="router.template.kvm", value="x")
        mutations = client.counters.requests - reads
        await p.close()
        return reads, mutations

    reads, mutations = run(go())
    assert reads == 6 and mutations == 1


def test_failed_job_is_typed(sim: CloudStackSimulator) -> None:
    sim.faults.job_failure_rate = 1.0

    async def go() -> None:
        p = pool()
        client = p.get(sim.endpoint, sim.api_key, SecretStr(sim.secret_key))
        try:
            router = (await client.list("listRouters", listall=True))[0]
            await client.run("rebootRouter", id=router["id"])
        finally:
            await p.close()

    with pytest.raises(CloudStackJobFailed) as error:
        run(go())
    assert error.value.errorcode == 530 and error.value.jobid


def test_unreachable_endpoint() -> None:
    async def go() -> None:
        p = pool()
        try:
            await p.get("http://127.0.0.1:9/client/api", "k", SecretStr("s")).call("listZones")
        finally:
            await p.close()

    with pytest.raises(CloudStackUnavailable):
        run(go())


class CountingSemaphore(asyncio.Semaphore):
    def __init__(self, value: int):
        super().__init__(value)
        self.inside = self.peak = 0

    async def __aenter__(self) -> None:
        await super().__aenter__()
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        await asyncio.sleep(0.01)

    async def __aexit__(self, *exc) -> None:
        self.inside -= 1
        await super().__aexit__(*exc)


def test_concurrency_is_limited_per_endpoint(sim: CloudStackSimulator) -> None:
    async def go() -> int:
        p = pool(per_endpoint=3)
        limit = CountingSemaphore(3)
        p._limits[sim.endpoint] = limit
        a = p.get(sim.endpoint, sim.api_key, SecretStr(sim.secret_key))
        b = p.get(sim.endpoint, "another-account", SecretStr("its-secret"))  # another client, the same endpoint
        assert a is not b and a._limit is b._limit is limit
        await asyncio.gather(*(a.list("listRouters", listall=True) for _ in range(20)))
        await p.close()
        return limit.peak

    assert run(go()) == 3
