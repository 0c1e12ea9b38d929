"""The lab CloudStack simulator's host, system VM and router lifecycle commands next to maintenance (issue 17),
through the `cs` client: migrateSystemVm, declareHostAsDegraded / cancelHostAsDegraded, updateHostPassword,
listHostTags, getRouterHealthCheckResults, listHypervisorCapabilities / updateHypervisorCapabilities, with
CloudStack's answers and errors (cited in the simulator's modules)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cs import CloudStack, CloudStackApiException
from support.cloudstack_sim import client, simulator

from stackops_lab.cloudstack import CloudStackSimulator, apitable


@pytest.fixture
def sim() -> Iterator[CloudStackSimulator]:
    with simulator(routers=4, redundant_pairs=1) as running:
        yield running


@pytest.fixture
def api(sim: CloudStackSimulator) -> CloudStack:
    return client(sim, fetch_result=True)


def refused(call: Callable[..., Any], **params: Any) -> tuple[int, dict[str, Any]]:
    """The error code and body of a refused call (an async job's failure comes with the job's result)."""
    with pytest.raises(CloudStackApiException) as caught:
        call(**params)
    return caught.value.error["errorcode"], caught.value.error


def kvm_system_vm(api: CloudStack) -> dict[str, Any]:
    return next(vm for vm in api.listSystemVms()["systemvm"] if vm["hypervisor"] == "KVM")


def test_migrate_system_vm_within_its_cluster(api: CloudStack) -> None:
    vm = kvm_system_vm(api)
    source = api.listHosts(id=vm["hostid"])["host"][0]
    others = [h for h in api.listHosts(clusterid=source["clusterid"], type="Routing")["host"]
              if h["id"] != vm["hostid"]]
    other_hypervisor = next(h for h in api.listHosts(type="Routing")["host"] if h["hypervisor"] != "KVM")
    assert refused(api.migrateSystemVm, virtualmachineid=vm["id"], hostid=vm["hostid"])[1]["errortext"].startswith(
        "Cannot migrate VM as it is already present on host")
    code, error = refused(api.migrateSystemVm, virtualmachineid=vm["id"], hostid=other_hypervisor["id"])
    assert (code, error["errortext"].split(".")[0]) == (
        530, "The source and destination hosts are not of the same type and version")
    assert refused(api.migrateSystemVm, virtualmachineid=vm["id"], autoselect=False)[1]["errortext"].startswith(
        "Please specify a host or storage as destination")
    moved = api.migrateSystemVm(virtualmachineid=vm["id"], hostid=others[0]["id"])["systemvm"]
    assert (moved["hostid"], moved["state"]) == (others[0]["id"], "Running")
    back = api.migrateSystemVm(virtualmachineid=vm["id"])["systemvm"]  # autoselect: another host of the cluster
    assert back["hostid"] != others[0]["id"] and back["state"] == "Running"


def test_xenserver_migration_needs_storage_motion_in_its_capabilities(api: CloudStack) -> None:
    vm = next(vm for vm in api.listSystemVms()["systemvm"] if vm["hypervisor"] == "XenServer")
    source = api.listHosts(id=vm["hostid"])["host"][0]
    target = next(h for h in api.listHosts(clusterid=source["clusterid"], type="Routing")["host"]
                  if h["id"] != source["id"])
    code, error = refused(api.migrateSystemVm, virtualmachineid=vm["id"], hostid=target["id"])
    assert (code, error["errortext"]) == (530, f"Migration with storage isn't supported for source host "
                                               f"{source['name']} (ID: {source['id']}) on hypervisor XenServer with "
                                               "version None")
    rows = api.listHypervisorCapabilities(hypervisor="XenServer")["hypervisorCapabilities"]
    assert [(r["hypervisorversion"], r["storagemotionenabled"]) for r in rows] == [("default", False)]
    assert set(rows[0]) <= apitable.response_fields("HypervisorCapabilitiesResponse")
    updated = api.updateHypervisorCapabilities(id=rows[0]["id"], storagemotionenabled=True)["hypervisorcapabilities"]
    assert updated["storagemotionenabled"] is True
    assert api.migrateSystemVm(virtualmachineid=vm["id"], hostid=target["id"])["systemvm"]["hostid"] == target["id"]


def test_hypervisor_capabilities(api: CloudStack) -> None:
    listed = api.listHypervisorCapabilities()
    assert listed["count"] == 2 and {r["hypervisor"] for r in listed["hypervisorCapabilities"]} == {"KVM", "XenServer"}
    kvm = api.listHypervisorCapabilities(hypervisor="kvm")["hypervisorCapabilities"][0]
    assert (kvm["maxguestslimit"], kvm["securitygroupenabled"], kvm["storagemotionenabled"]) == (50, True, True)
    assert api.listHypervisorCapabilities(hypervisor="NoSuch") == {}
    assert refused(api.updateHypervisorCapabilities, maxguestslimit=10)[1]["errortext"] == \
        "Either ID or hypervisor and hypervisor version must be specified"
    assert refused(api.updateHypervisorCapabilities, id=kvm["id"], hypervisor="KVM", hypervisorversion="x")[1][
        "errortext"] == "ID can not be specified together with hypervisor and hypervisor version"
    assert refused(api.updateHypervisorCapabilities, hypervisor="KVM")[1]["errortext"] == \
        "Hypervisor and hypervisor version must be specified together"
    copy = api.updateHypervisorCapabilities(hypervisor="KVM", hypervisorversion="8.0", maxguestslimit=100)[
        "hypervisorcapabilities"]
    assert (copy["hypervisorversion"], copy["maxguestslimit"], copy["id"] != kvm["id"]) == ("8.0", 100, True)
    assert api.listHypervisorCapabilities(id=kvm["id"])["hypervisorCapabilities"][0]["maxguestslimit"] == 50


def test_declare_and_cancel_host_degraded(sim: CloudStackSimulator, api: CloudStack) -> None:
    host = api.listHosts(type="Routing")["host"][0]
    code, error = refused(api.declareHostAsDegraded, id=host["id"])
    assert code == 431 and error["errortext"].endswith(f"name={host['name']}] as 'Degraded' when host is in Up status")
    code, error = refused(api.cancelHostAsDegraded, id=host["id"])
    assert code == 530 and error["errortext"].endswith("when host is in Enabled state")
    live = sim.state.hosts[host["id"]]
    with sim.state.lock:
        sim.hostops.set_state(live, state="Disconnected")
    assert api.declareHostAsDegraded(id=host["id"])["host"]["resourcestate"] == "Degraded"
    code, error = refused(api.declareHostAsDegraded, id=host["id"])
    assert code == 530 and error["errortext"].endswith("was already marked as Degraded.")
    assert api.cancelHostAsDegraded(id=host["id"])["host"]["resourcestate"] == "Enabled"


def test_update_host_password_and_host_tags(sim: CloudStackSimulator, api: CloudStack) -> None:
    kvm = next(h for h in api.listHosts(type="Routing")["host"] if h["hypervisor"] == "KVM")
    xen = next(h for h in api.listHosts(type="Routing")["host"] if h["hypervisor"] == "XenServer")
    assert api.updateHostPassword(hostid=kvm["id"], username="root", password="s3cret") == {"success": True}
    assert refused(api.updateHostPassword, hostid=kvm["id"], username="admin", password="x")[1]["errortext"] == \
        "The username is not same for the hosts.."
    assert refused(api.updateHostPassword, hostid=xen["id"], username="root", password="x")[1]["errortext"] == (
        "Single host update is not supported by XenServer hypervisors. Please try again informing the Cluster ID.")
    assert api.updateHostPassword(clusterid=xen["clusterid"], username="root", password="x") == {"success": True}
    assert refused(api.updateHostPassword, username="root", password="x")[1]["errortext"] == \
        "You should provide an host id."
    assert not any("s3cret" in str(event) for event in sim.audit())
    assert api.listHostTags() == {}
    api.updateHost(id=kvm["id"], hosttags="ssd,gpu")
    tags = api.listHostTags()
    assert tags["count"] == 2 and {t["name"] for t in tags["hosttag"]} == {"ssd", "gpu"}
    assert {t["hostid"] for t in tags["hosttag"]} == {sim.state.hosts[kvm["id"]].db_id}
    assert api.listHostTags(keyword="gp")["hosttag"] == [{"name": "gpu", "hostid": sim.state.hosts[kvm["id"]].db_id}]


def test_router_health_check_results(sim: CloudStackSimulator, api: CloudStack) -> None:
    router = api.listRouters(listall=True)["router"][0]
    answer = api.getRouterHealthCheckResults(routerid=router["id"])["routerhealthchecks"]
    assert answer["routerid"] == router["id"] and answer["healthchecks"]
    assert all(check["success"] is True and check["checktype"] == "basic" for check in answer["healthchecks"])
    api.stopRouter(id=router["id"])
    code, error = refused(api.getRouterHealthCheckResults, routerid=router["id"])
    assert code == 530 and error["errortext"].startswith(
        "Failed to get health check results due to: No health check results found for the router.")
