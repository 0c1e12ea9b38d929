"""A XenPool registered as a CloudStack cluster in the lab CloudStack, which discovers the pool for real through
the lab XenAPI: three hosts → pool with HA (timeout 180) and the vswitch controller, then `addCluster`; a fourth
host joins inside the HA dance and is added with `addHost`; removed from the spec it goes into CloudStack
maintenance, is ejected and deleted from CloudStack; a master change runs with the cluster Unmanaged;
deletionPolicy Delete removes the cluster."""
from __future__ import annotations

from typing import Any

from support.xenpool import CLOUDSTACK, Driver, condition, lab, ready, spec_for

from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.xenapi import XenLab

CLUSTER = "lab-xen-pool"
TIMINGS = Timings(host_connect=0.5, host_maintenance=0.3, job=0.05)


def cloudstack_spec(xen: XenLab, names: list[str], **changes: Any) -> Any:
    return spec_for(xen, names, cloudstack={"connection": {"secretRef": {"name": CLOUDSTACK}}, "zone": "lab-zone-1",
                                            "pod": "lab-zone-1-pod-1", "cluster": CLUSTER},
                    vswitchController={"address": "192.0.2.50"}, **changes)


def cluster_hosts(sim: CloudStackSimulator) -> dict[str, str]:
    """name → state of the hosts in the pool's cluster, from the simulator's own tables."""
    with sim.state.lock:
        return {h.name: h.state for h in sim.state.values("host") if h.cluster is not None
                and h.cluster.name == CLUSTER}


def audit(sim: CloudStackSimulator, *names: str) -> list[dict[str, Any]]:
    return [e for e in sim.audit() if e.get("event") in names]


def test_pool_registered_hosts_joined_and_ejected_through_cloudstack() -> None:
    names = ["xen1", "xen2", "xen3", "xen4"]
    with lab(names, [names[:3], ["xen4"]]) as xen, \
            CloudStackSimulator(fleet=Fleet(zones=1, routers=2, redundant_pairs=0), timings=TIMINGS) as sim:
        driver = Driver(xen, cloudstack_spec(xen, names[:3]), cloudstack=sim)
        outcome = driver.converge(passes=20, pause=0.5)
        assert ready(outcome), outcome.conditions
        pool = xen.pool_of("xen1")
        assert pool["ha_enabled"] and pool["ha_configuration"]["timeout"] == "180"
        assert pool["vswitch_controller"] == "192.0.2.50"
        assert cluster_hosts(sim) == {"xen1": "Up", "xen2": "Up", "xen3": "Up"}
        registered = condition(outcome, "Registered")
        assert registered.status == "True" and registered.reason == "ClusterUp"
        cluster_id = driver.status["cloudstackClusterId"]
        assert [e["name"] for e in audit(sim, "cluster.added")] == [CLUSTER]
        again = driver.run()
        assert ready(again) and again.applied == [], "converged: nothing added twice"

        # a fourth host: joined inside the HA dance, then added to the cluster
        driver.spec = cloudstack_spec(xen, names)
        outcome = driver.converge(passes=20, pause=0.5)
        assert ready(outcome), outcome.conditions
        assert sorted(xen.pool_of("xen1")["members"]) == names
        assert cluster_hosts(sim) == {"xen1": "Up", "xen2": "Up", "xen3": "Up", "xen4": "Up"}
        assert xen.pool_of("xen1")["ha_configuration"]["timeout"] == "180"
        assert driver.status["cloudstackClusterId"] == cluster_id

        # removed from the spec: CloudStack maintenance, eject, deleted from CloudStack; HA back on
        driver.spec = cloudstack_spec(xen, names[:3], allowedDestructiveActions=["Eject"])
        outcome = driver.converge(passes=20, pause=0.5)
        assert ready(outcome), outcome.conditions
        assert sorted(xen.pool_of("xen1")["members"]) == names[:3]
        assert cluster_hosts(sim) == {"xen1": "Up", "xen2": "Up", "xen3": "Up"}
        pool = xen.pool_of("xen1")
        assert pool["ha_enabled"] and pool["ha_configuration"]["timeout"] == "180"
        order = [e["event"] for e in [*sim.audit(), *xen.audit()]
                 if e["event"] in ("host.deleted", "pool.eject")]
        assert "pool.eject" in order and "host.deleted" in order
        maintained = [e for e in audit(sim, "host.state") if e.get("resourcestate") == "Maintenance"]
        assert [e["name"] for e in maintained] == ["xen4"], "maintenance before the eject"


def test_master_change_runs_with_the_cluster_unmanaged_and_delete_removes_the_cluster() -> None:
    names = ["xen1", "xen2", "xen3"]
    with lab(names, [names]) as xen, \
            CloudStackSimulator(fleet=Fleet(zones=1, routers=2, redundant_pairs=0), timings=TIMINGS) as sim:
        driver = Driver(xen, cloudstack_spec(xen, names, deletionPolicy="Delete"), cloudstack=sim)
        assert ready(driver.converge(passes=20, pause=0.5))
        driver.spec = cloudstack_spec(xen, names, deletionPolicy="Delete", master="xen2")
        outcome = driver.converge(passes=20, pause=0.5)
        assert ready(outcome), outcome.conditions
        assert xen.pool_of("xen1")["master"] == "xen2" and outcome.fields["master"] == "xen2"
        states = [e["managedstate"] for e in audit(sim, "cluster.updated")]
        assert states == ["Unmanaged", "Managed"], states
        assert cluster_hosts(sim) == {"xen1": "Up", "xen2": "Up", "xen3": "Up"}
        assert driver.status.get("pendingOperation") is None
        assert xen.pool_of("xen1")["ha_enabled"]

        driver.finalize()
        assert cluster_hosts(sim) == {} and not [c for c in sim.state.values("cluster") if c.name == CLUSTER]
        assert xen.pool_of("xen1")["ha_enabled"], "the pool itself is left as it is"
