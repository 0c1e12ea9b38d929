"""Shared by the tests of the lab CloudStack simulator through the `cs` client (test_cloudstack_simulator.py,
test_cloudstack_sim_lifecycle.py): fast timings, a simulator of 24 routers (6 redundant pairs) on the machine's clock
or a ManualClock, and a client for it."""
from __future__ import annotations

from typing import Any

from cs import CloudStack

from stackops_lab.clock import ManualClock
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings

FAST = Timings(template_download=0.4, router_reboot=0.3, systemvm_recreate=0.4, host_connect=0.2,
               host_maintenance=0.2, job=0.05)


def simulator(*, routers: int = 24, redundant_pairs: int = 6, manual: bool = False) -> CloudStackSimulator:
    """A simulator with FAST timings (not started: use it as a context manager); `manual`: its time moves only when
    the test calls `scheduler.advance`."""
    return CloudStackSimulator(fleet=Fleet(routers=routers, redundant_pairs=redundant_pairs), timings=FAST,
                               clock=ManualClock() if manual else None)


def client(sim: CloudStackSimulator, **options: Any) -> CloudStack:
    # timeout (per HTTP request) and job_timeout only stop a hang: thirty clients listing 500 routers at once on a
    # loaded 2-core machine wait seconds for an answer, and cs's default of 10 s is too close to that
    return CloudStack(sim.endpoint, sim.api_key, sim.secret_key, timeout=60, poll_interval=0.05, job_timeout=60,
                      **options)
