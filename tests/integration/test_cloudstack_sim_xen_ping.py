"""The lab CloudStack simulator's link to a XenAPI lab (Timings.xen_ping > 0): it pings its registered XenServer
hosts' XenAPI as CloudStack's XenServer resource does, so a host the XenLab powers off or reboots stops answering
in CloudStack too: an Enabled host goes Alert (then Down), a host in Maintenance is only Disconnected, and both are
Up again once their XenAPI answers. The CloudStack simulator is driven through the `cs` client; the XenLab through
its knobs. The simulators run on the machine's clock (the probes are real TCP connections): the waits below only
stop a hang."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cs import CloudStack

from support.wait import wait_for
from support.xenapi import FAST, XENAPI_DOWN

from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.xenapi import XenHostSpec, XenLab

TIMINGS = Timings(host_connect=0.2, host_maintenance=0.2, job=0.05, cluster_reconnect=0.2, xenapi_timeout=5.0,
                  xen_ping=0.2, ping_timeout=0.4, host_investigate=0.2)
PATIENCE = 30.0  # seconds: CI machines are loaded


@pytest.fixture
def sim() -> Iterator[CloudStackSimulator]:
    with CloudStackSimulator(fleet=Fleet(routers=2, redundant_pairs=0), timings=TIMINGS) as simulator:
        yield simulator


@pytest.fixture
def lab() -> Iterator[XenLab]:
    xen = XenLab(hosts=[XenHostSpec("xen1"), XenHostSpec("xen2")], pools=[["xen1", "xen2"]], timings=FAST).start()
    yield xen
    xen.stop()


def hosts(api: CloudStack, cluster: str) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in api.listHosts(clusterid=cluster).get("host", [])}


def states(api: CloudStack, cluster: str) -> dict[str, tuple[str, str]]:
    return {name: (h["state"], h["resourcestate"]) for name, h in hosts(api, cluster).items()}


def test_hosts_the_xen_lab_powers_off_stop_answering_in_cloudstack(sim: CloudStackSimulator, lab: XenLab) -> None:
    api = CloudStack(sim.endpoint, sim.api_key, sim.secret_key, poll_interval=0.05, job_timeout=60,
                     fetch_result=True)
    zone = api.listZones(name="lab-zone-1")["zone"][0]
    where = {"zoneid": zone["id"], "podid": api.listPods(zoneid=zone["id"])["pod"][0]["id"]}
    cluster = api.addCluster(clustername="xen-pool", clustertype="CloudManaged", hypervisor="XenServer",
                             **where)["cluster"][0]["id"]
    api.addHost(clusterid=cluster, hypervisor="XenServer", url=lab.url("xen1"), username=lab.username,
                password=lab.password, **where)
    up = {"xen1": ("Up", "Enabled"), "xen2": ("Up", "Enabled")}
    wait_for(lambda: states(api, cluster) == up, timeout=PATIENCE, what="both hosts Up")

    xen2 = hosts(api, cluster)["xen2"]["id"]
    assert api.prepareHostForMaintenance(id=xen2)["host"]["resourcestate"] == "Maintenance"
    lab.kill("xen2")  # the host in maintenance goes away: Disconnected, no investigation
    wait_for(lambda: states(api, cluster)["xen2"] == ("Disconnected", "Maintenance"), timeout=PATIENCE,
             what="xen2 Disconnected")
    lab.revive("xen2")
    wait_for(lambda: states(api, cluster)["xen2"] == ("Up", "Maintenance"), timeout=PATIENCE, what="xen2 Up again",
             ignoring=XENAPI_DOWN)
    assert api.cancelHostMaintenance(id=xen2)["host"]["resourcestate"] == "Enabled"

    lab.kill("xen1")  # an Enabled host goes away: Alert, then Down after the investigation
    wait_for(lambda: states(api, cluster)["xen1"] == ("Down", "Enabled"), timeout=PATIENCE, what="xen1 Down")
    lab.revive("xen1")
    wait_for(lambda: states(api, cluster) == up, timeout=PATIENCE, what="xen1 Up again", ignoring=XENAPI_DOWN)

    seen = [(e["name"], e["state"]) for e in sim.audit() if e["event"] == "host.state"]
    assert ("xen2", "Alert") not in seen and ("xen1", "Alert") in seen
