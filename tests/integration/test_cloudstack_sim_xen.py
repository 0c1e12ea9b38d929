"""The lab CloudStack simulator discovers XenServer pools for real, through the XenAPI SDK, against a lab XenLab:
addCluster (an ExternalManaged cluster is discovered through its URL; a CloudManaged one ignores it), addHost
for XenServer (the whole pool, the pool's new members, a cloned host skipped, a host of another pool refused),
updateCluster managedstate (hosts Disconnected, then reconnected through XenAPI: Up, or Alert), deleteCluster.
The CloudStack simulator is driven through the `cs` client only; the XenLab through the SDK and its knobs."""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cs import CloudStack, CloudStackApiException

from support.xenapi import FAST, XENAPI_DOWN, login
from support.wait import wait_for

from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.xenapi import XenHostSpec, XenLab

MASTER = "127.0.1.10"
TIMINGS = Timings(host_connect=0.2, host_maintenance=0.2, job=0.05, cluster_reconnect=0.2, xenapi_timeout=10.0)
PATIENCE = 30.0  # seconds: CI machines are loaded


@pytest.fixture
def sim() -> Iterator[CloudStackSimulator]:
    with CloudStackSimulator(fleet=Fleet(routers=2, redundant_pairs=0), timings=TIMINGS) as simulator:
        yield simulator


@pytest.fixture
def make_lab() -> Iterator[Callable[..., XenLab]]:
    """A started XenLab: xen1 … xen<count>, `pool` pooled (the first is master), the others standalone without
    guest VMs (so they can join)."""
    labs: list[XenLab] = []

    def make(count: int = 4, pool: tuple[str, ...] = ("xen1", "xen2", "xen3")) -> XenLab:
        hosts = [XenHostSpec(f"xen{i}", vms=None if f"xen{i}" in pool else 0) for i in range(1, count + 1)]
        lab = XenLab(hosts=hosts, pools=[list(pool)], timings=FAST).start()
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.stop()


def client(sim: CloudStackSimulator) -> CloudStack:
    return CloudStack(sim.endpoint, sim.api_key, sim.secret_key, poll_interval=0.05, job_timeout=60,
                      fetch_result=True)


def place(api: CloudStack) -> dict[str, str]:
    zone = api.listZones(name="lab-zone-1")["zone"][0]
    return {"zoneid": zone["id"], "podid": api.listPods(zoneid=zone["id"])["pod"][0]["id"]}


def refused(call: Callable[..., Any], **params: Any) -> dict[str, Any]:
    """The error body of a call that must fail."""
    with pytest.raises(CloudStackApiException) as caught:
        call(**params)
    assert caught.value.response.status_code == caught.value.error["errorcode"]
    return caught.value.error


def hosts_of(api: CloudStack, cluster_id: str) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in api.listHosts(clusterid=cluster_id).get("host", [])}


def wait_states(api: CloudStack, cluster_id: str, expected: dict[str, str]) -> None:
    wait_for(lambda: {n: h["state"] for n, h in hosts_of(api, cluster_id).items()} == expected,
             timeout=PATIENCE, what=f"hosts {expected}", ignoring=XENAPI_DOWN)


def logged(sim: CloudStackSimulator, message: str) -> list[dict[str, Any]]:
    return [e for e in sim.audit() if e["event"] == "cloudstack.log" and e["message"] == message]


def new_cluster(api: CloudStack, name: str) -> str:
    return api.addCluster(clustername=name, clustertype="CloudManaged", hypervisor="XenServer",
                          **place(api))["cluster"][0]["id"]


def add_pool(api: CloudStack, lab: XenLab, cluster_name: str = "xen-pool", member: str = "xen1") -> str:
    """A CloudManaged cluster whose hosts addHost discovers through one member; returns the cluster id."""
    cluster = new_cluster(api, cluster_name)
    api.addHost(clusterid=cluster, hypervisor="XenServer", url=lab.url(member), username=lab.username,
                password=lab.password, **place(api))
    return cluster


@pytest.mark.parametrize("member", ["xen1", "xen2"])
def test_an_external_cluster_is_discovered_through_any_member(
        sim: CloudStackSimulator, make_lab: Callable[..., XenLab], member: str) -> None:
    lab = make_lab()
    api = client(sim)
    credentials = {"username": lab.username, "password": lab.password}
    external = dict(clustertype="ExternalManaged", hypervisor="XenServer", **place(api), **credentials)
    error = refused(api.addCluster, clustername="xen-pool", url=lab.url(member), **external)  # no path
    assert (error["errorcode"], error["errortext"]) == (
        431, "Your host and/or path is wrong.  Make sure it's of the format http://hostname/path")

    cluster = api.addCluster(clustername="xen-pool", url=lab.url(member) + "/", **external)["cluster"][0]
    assert (cluster["hypervisortype"], cluster["clustertype"], cluster["managedstate"]) == (
        "XenServer", "ExternalManaged", "Managed")
    hosts = hosts_of(api, cluster["id"])
    assert sorted(hosts) == ["xen1", "xen2", "xen3"]  # xen4 is not in the pool
    for name, host in hosts.items():
        assert (host["ipaddress"], host["hypervisor"], host["type"], host["clustername"]) == (
            lab.address(name), "XenServer", "Routing", "xen-pool")
        assert (host["version"], host["hypervisorversion"], host["resourcestate"]) == ("4.19.1.0", "8.2.1", "Enabled")
    wait_states(api, cluster["id"], {"xen1": "Up", "xen2": "Up", "xen3": "Up"})
    added = [e for e in sim.audit() if e["event"] == "host.added"]
    assert sorted(e["guid"] for e in added) == sorted(lab.pool_of("xen1")["uuids"].values())

    # the same pool again, through another member: its uuid is the first cluster's guid
    error = refused(api.addCluster, clustername="xen-pool-again", url=lab.url("xen3") + "/", **external)
    assert (error["errorcode"], error["errortext"]) == (530, "Unable to add the external cluster")
    assert "cluster" not in api.listClusters(name="xen-pool-again")  # removed again
    assert logged(sim, f"Unable to find the server resources at {lab.url('xen3')}/")


def test_a_cloud_managed_cluster_ignores_its_url_and_add_host_discovers_the_pool(
        sim: CloudStackSimulator, make_lab: Callable[..., XenLab]) -> None:
    lab = make_lab()
    api = client(sim)
    cluster = api.addCluster(clustername="xen-pool", clustertype="CloudManaged", hypervisor="XenServer",
                             url=lab.url("xen1"), username=lab.username, password=lab.password,
                             **place(api))["cluster"][0]
    assert hosts_of(api, cluster["id"]) == {}  # discoverCluster returns before it looks at the URL
    (event,) = [e for e in sim.audit() if e["event"] == "cluster.added"]
    assert event["url_ignored"] is True

    added = api.addHost(clusterid=cluster["id"], hypervisor="XenServer", url=lab.url("xen3"),
                        username=lab.username, password=lab.password, hosttags="xen", **place(api))
    assert added["count"] == 3  # a supporter's URL: the master is found through HOST_IS_SLAVE
    assert {h["name"]: (h["state"], h["hosttags"]) for h in added["host"]} == {
        name: ("Connecting", "xen") for name in ("xen1", "xen2", "xen3")}
    wait_states(api, cluster["id"], {"xen1": "Up", "xen2": "Up", "xen3": "Up"})

    error = refused(api.addHost, clusterid=cluster["id"], hypervisor="XenServer", url=lab.url("xen1"),
                    username=lab.username, password=lab.password, **place(api))
    assert (error["errorcode"], error["errortext"]) == (530, "Failed to add host")  # nothing new in the pool


def test_wrong_credentials_dead_hosts_and_bad_requests_are_refused(
        sim: CloudStackSimulator, make_lab: Callable[..., XenLab]) -> None:
    lab = make_lab()
    api = client(sim)
    cluster = new_cluster(api, "xen-pool")
    request = dict(clusterid=cluster, hypervisor="XenServer", **place(api))
    url = lab.url("xen1")

    error = refused(api.addHost, url=url, username="root", password="wrong", **request)
    assert (error["errorcode"], error["errortext"]) == (
        530, f"Unable to add the host: Cannot find the server resources at {url}")
    (line,) = [e for e in sim.audit() if e["event"] == "cloudstack.log"
               and e["message"].startswith(f"Unable to create master connection to host({MASTER}) , due to ")]
    assert "SESSION_AUTHENTICATION_FAILED" in line["message"]
    error = refused(api.addCluster, clustername="xen-external", clustertype="ExternalManaged",
                    hypervisor="XenServer", url=url + "/", username="root", password="wrong", **place(api))
    assert error["errortext"] == "Unable to add the external cluster"
    assert "cluster" not in api.listClusters(name="xen-external")

    lab.kill("xen4")
    error = refused(api.addHost, url=lab.url("xen4"), username="root", password=lab.password, **request)
    assert error["errortext"] == f"Unable to add the host: Cannot find the server resources at {lab.url('xen4')}"

    error = refused(api.addHost, url=url, username="root", **request)
    assert (error["errorcode"], error["errortext"]) == (431, "Username and Password need to be provided.")
    error = refused(api.addHost, url=url, username="root", password=lab.password, clustername="other", **request)
    assert error["errortext"] == "Can't specify cluster by both id and name"
    kvm = api.addCluster(clustername="kvm-empty", clustertype="CloudManaged", hypervisor="KVM",
                         **place(api))["cluster"][0]["id"]
    error = refused(api.addHost, url=url, username="root", password=lab.password,
                    **dict(request, clusterid=kvm))
    assert error["errortext"] == f"Unable to add the host: Cannot find the server resources at {url}"
    assert logged(sim, "invalid cluster id or cluster is not for XenServer hypervisors")
    assert hosts_of(api, cluster) == {}


def test_a_cloned_host_is_skipped_until_made_unique(
        sim: CloudStackSimulator, make_lab: Callable[..., XenLab]) -> None:
    lab = make_lab()
    api = client(sim)
    add_pool(api, lab)
    lab.clone("xen4", from_host="xen1")  # a copy of xen1's disk: same INSTALLATION_UUID, same name label
    xen1_uuid = lab.inventory("xen1")["INSTALLATION_UUID"]
    request = dict(clustername="xen-clone", hypervisor="XenServer", url=lab.url("xen4"), username=lab.username,
                   password=lab.password, **place(api))
    error = refused(api.addHost, **request)
    assert (error["errorcode"], error["errortext"]) == (530, "Failed to add host")
    assert logged(sim, f"Skipping {lab.address('xen4')} because {xen1_uuid} is already in the database.")
    (skipped,) = [e for e in sim.audit() if e["event"] == "host.discovery.skipped"]
    assert (skipped["name"], skipped["uuid"]) == ("xen1", xen1_uuid)

    # the seed's procedure: new UUIDs in the inventory, state DB removed, xapi restarted, name label set
    inventory = lab.inventory("xen4")
    inventory.update(INSTALLATION_UUID=str(uuid.uuid4()), CONTROL_DOMAIN_UUID=str(uuid.uuid4()))
    lab.write_inventory("xen4", inventory)
    lab.remove_state_db("xen4")
    lab.restart_xapi("xen4")
    session = wait_for(lambda: login(lab, "xen4"), timeout=PATIENCE, what="xapi on xen4", ignoring=XENAPI_DOWN)
    (me,) = session.xenapi.host.get_all()
    session.xenapi.host.set_name_label(me, "xen4")
    added = api.addHost(**request)["host"]
    assert [(h["name"], h["ipaddress"], h["clustername"]) for h in added] == [
        ("xen4", lab.address("xen4"), "xen-clone")]


def test_a_host_of_another_pool_is_refused_until_it_joins(
        sim: CloudStackSimulator, make_lab: Callable[..., XenLab]) -> None:
    lab = make_lab(count=4, pool=("xen1", "xen2"))
    api = client(sim)
    cluster = add_pool(api, lab)
    assert sorted(hosts_of(api, cluster)) == ["xen1", "xen2"]
    request = dict(clusterid=cluster, hypervisor="XenServer", url=lab.url("xen4"), username=lab.username,
                   password=lab.password, **place(api))
    error = refused(api.addHost, **request)
    assert error["errortext"] == f"Unable to add the host: Cannot find the server resources at {lab.url('xen4')}"
    pool_uuid = lab.pool_of("xen1")["uuid"]
    assert logged(sim, f"Please join the host {lab.address('xen4')} to XS pool  {pool_uuid} through XC/XS before "
                       "adding it through CS UI")

    for joiner in ("xen3", "xen4"):  # both join the pool in XenServer first
        login(lab, joiner).xenapi.pool.join(MASTER, lab.username, lab.password)
    wait_for(lambda: all(lab.pool_of("xen1")["live"].get(name) for name in ("xen3", "xen4")), timeout=PATIENCE,
             what="xen3 and xen4 live in the pool", ignoring=XENAPI_DOWN)
    wait_for(lambda: lab.status("xen4")["serving"], timeout=PATIENCE, what="xapi on xen4", ignoring=XENAPI_DOWN)
    added = api.addHost(**request)  # one new member's URL: every new member is added
    assert sorted(h["name"] for h in added["host"]) == ["xen3", "xen4"]
    wait_states(api, cluster, {"xen1": "Up", "xen2": "Up", "xen3": "Up", "xen4": "Up"})


def test_unmanaged_hosts_disconnect_and_reconnect_through_xenapi(
        sim: CloudStackSimulator, make_lab: Callable[..., XenLab]) -> None:
    lab = make_lab()
    api = client(sim)
    cluster = add_pool(api, lab)
    everyone = ("xen1", "xen2", "xen3")
    wait_states(api, cluster, {name: "Up" for name in everyone})

    sim.set_host_state(hosts_of(api, cluster)["xen2"]["id"], "Connecting")  # an agent connecting meanwhile
    error = refused(api.updateCluster, id=cluster, managedstate="Unmanaged")
    assert (error["errorcode"], error["errortext"]) == (
        530, f"PrepareUnmanaged Failed due to host {lab.address('xen2')} should not be in Connecting status")
    assert api.listClusters(id=cluster)["cluster"][0]["managedstate"] == "PrepareUnmanagedError"
    sim.set_host_state(hosts_of(api, cluster)["xen2"]["id"], "Up")

    def cycle(expected: dict[str, str]) -> None:
        answer = api.updateCluster(id=cluster, managedstate="Unmanaged")["cluster"]
        assert answer["managedstate"] == "Unmanaged"
        assert api.listClusters(id=cluster, managedstate="Unmanaged")["cluster"][0]["id"] == cluster
        assert {h["state"] for h in hosts_of(api, cluster).values()} <= {"Disconnected", "Alert"}
        assert api.updateCluster(id=cluster, managedstate="Managed")["cluster"]["managedstate"] == "Managed"
        wait_states(api, cluster, expected)

    # the master moves while CloudStack does not look: the reconnect finds it through HOST_IS_SLAVE
    api.updateCluster(id=cluster, managedstate="Unmanaged")
    assert {h["state"] for h in hosts_of(api, cluster).values()} == {"Disconnected"}
    master = login(lab, "xen1")
    (xen2,) = master.xenapi.host.get_by_name_label("xen2")
    master.xenapi.pool.designate_new_master(xen2)
    # every host live again too: the reconnect below must find the pool settled, not in the middle of the move
    wait_for(lambda: lab.pool_of("xen2")["master"] == "xen2" and lab.status("xen1")["serving"]
             and all(lab.pool_of("xen2")["live"].values()) and login(lab, "xen2"), timeout=PATIENCE,
             what="xen2 serving as master, xen1 back, every host live", ignoring=XENAPI_DOWN)
    api.updateCluster(id=cluster, managedstate="Managed")
    wait_states(api, cluster, {name: "Up" for name in everyone})
    states = [e for e in sim.audit() if e["event"] == "host.state" and e["name"] == "xen1"]
    assert [e["state"] for e in states][-3:] == ["Disconnected", "Connecting", "Up"]

    # a dead host: host_metrics.live false in the pool → Alert; the others Up
    lab.kill("xen3")
    wait_for(lambda: lab.pool_of("xen2")["live"]["xen3"] is False, timeout=PATIENCE, what="xen3 not live",
             ignoring=XENAPI_DOWN)
    cycle({"xen1": "Up", "xen2": "Up", "xen3": "Alert"})
    (failed,) = [e for e in sim.audit() if e["event"] == "host.reconnect.failed"]
    assert (failed["name"], failed["reason"]) == ("xen3", "host_metrics.live is false")

    # no host answers at all: every host Alert
    lab.kill("xen1")
    lab.kill("xen2")
    cycle({name: "Alert" for name in everyone})


def test_delete_cluster_needs_its_hosts_deleted_first(
        sim: CloudStackSimulator, make_lab: Callable[..., XenLab]) -> None:
    lab = make_lab()
    api = client(sim)
    cluster = add_pool(api, lab)
    error = refused(api.deleteCluster, id=cluster)
    assert error["errorcode"] == 530
    assert re.fullmatch(r"Cluster: \d+ cannot be removed\. Cluster still has hosts", error["errortext"])
    for host in hosts_of(api, cluster).values():
        assert api.prepareHostForMaintenance(id=host["id"])["host"]["resourcestate"] == "Maintenance"
        assert api.deleteHost(id=host["id"]) == {"success": True}
    assert api.deleteCluster(id=cluster) == {"success": True}
    assert "cluster" not in api.listClusters(id=cluster)
    error = refused(api.deleteCluster, id=cluster)
    assert re.fullmatch(r"Cluster: \d+ does not exist", error["errortext"])

    # the pool's uuid left with the hosts: the pool can be added again
    again = add_pool(api, lab, cluster_name="xen-pool-2", member="xen2")
    assert sorted(hosts_of(api, again)) == ["xen1", "xen2", "xen3"]
