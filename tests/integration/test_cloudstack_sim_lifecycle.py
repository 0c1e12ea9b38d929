"""The lab CloudStack simulator's infrastructure over time, through the `cs` client: template registration and
download, zone-scoped configuration, rolling a new system VM template out to routers (redundant pairs
included) and system VMs, template deletion, host maintenance and removal. Needs no Kubernetes.

A test that looks at a state lasting only until the simulator's next transition (a download's progress, a
router stopped, a replacement system VM still Starting) runs the simulator on a `ManualClock` (the `manual`
fixture): the simulator's time moves only when the test calls `scheduler.advance`, so what it looks at cannot
change under it however busy the machine is. Such a test never waits for a job through the client (nothing
would complete it); it advances the clock and then asks queryAsyncJobResult."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cs import CloudStack, CloudStackApiException

from stackops_lab.cloudstack import CloudStackSimulator
from stackops_lab.cloudstack.downloads import STEPS
from support.cloudstack_sim import FAST, client, simulator
from support.wait import wait_for

NEW = "4.19.1"


@pytest.fixture
def sim() -> Iterator[CloudStackSimulator]:
    with simulator() as lab:
        yield lab


@pytest.fixture
def manual() -> Iterator[CloudStackSimulator]:
    """Like `sim`, but its time moves only when the test calls `manual.scheduler.advance`."""
    with simulator(manual=True) as lab:
        yield lab


def zone_named(api: CloudStack, name: str) -> dict[str, Any]:
    return api.listZones(name=name)["zone"][0]


def register(sim: CloudStackSimulator, api: CloudStack, zone_id: str, hypervisor: str = "KVM",
             version: str = NEW, checksum: str | None = None, **extra: Any) -> dict[str, Any]:
    debian = api.listOsTypes(description="Debian GNU/Linux 12 (64-bit)")["ostype"][0]["id"]
    answer = api.registerTemplate(
        name=f"systemvm-{hypervisor.lower()}-{version}", displaytext=f"System VM {version}",
        format="QCOW2" if hypervisor == "KVM" else "VHD", hypervisor=hypervisor,
        url=sim.image_url(hypervisor, version), zoneid=zone_id, ostypeid=debian, templatetype="SYSTEM",
        checksum=checksum or sim.image_checksum(hypervisor, version), **extra)
    assert answer["count"] == 1
    return answer["template"][0]


def wait_ready(api: CloudStack, template_id: str) -> list[str]:
    seen: list[str] = []

    def ready() -> bool:
        rows = api.listTemplates(templatefilter="all", id=template_id)["template"]
        if not seen or seen[-1] != rows[0]["status"]:
            seen.append(rows[0]["status"])
        return all(row["isready"] for row in rows)

    wait_for(ready, what="the template to be ready", timeout=30)
    return seen


def download(sim: CloudStackSimulator, api: CloudStack, template_id: str) -> None:
    """On a manual clock: move the simulator through a whole download, then wait for the real fetch of the image
    (a thread of its own, not on the simulator's clock) to have made the template ready."""
    sim.scheduler.advance(sim.timings.template_download * 1.5)
    wait_ready(api, template_id)


# ---------------------------------------------------------------------------------------------- templates


def test_register_template_downloads_with_progress_until_ready(manual: CloudStackSimulator) -> None:
    sim = manual
    api = client(sim)
    zone = zone_named(api, "lab-zone-1")
    template = register(sim, api, zone["id"])
    assert (template["isready"], template["templatetype"], template["zoneid"]) == (False, "SYSTEM", zone["id"])

    def status() -> str:
        (row,) = api.listTemplates(templatefilter="all", id=template["id"])["template"]
        assert row["isready"] is False or row["status"] == "Download Complete"
        return row["status"]

    # the progress steps fall template_download / STEPS apart; the test looks halfway between two steps
    step = FAST.template_download / STEPS
    statuses = [status()]
    sim.scheduler.advance(0)
    statuses.append(status())
    sim.scheduler.advance(step / 2)
    for _ in range(1, STEPS):
        sim.scheduler.advance(step)
        statuses.append(status())
    assert statuses == ["Allocated"] + [f"{percent}% Downloaded" for percent in range(0, 100, 100 // STEPS)]
    sim.scheduler.advance(step)  # the last step: complete as soon as the image's bytes are in
    assert wait_ready(api, template["id"])[-1] == "Download Complete"
    row = api.listTemplates(templatefilter="self", id=template["id"])["template"][0]
    # the checksum is shown without its {ALGO} prefix, as TemplateJoinDaoImpl shows it
    assert row["checksum"] == sim.image_checksum("KVM", NEW).split("}", 1)[1]
    assert row["size"] > 200_000 and row["hypervisor"] == "KVM" and row["format"] == "QCOW2"
    events = [e for e in sim.audit() if e.get("template") == template["id"]]
    assert [e["event"] for e in events] == ["template.registered", "template.ready"]
    assert events[0]["version"] == NEW


def test_register_template_in_all_zones_and_plain_md5_checksum(sim: CloudStackSimulator) -> None:
    api = client(sim)
    md5 = sim.image_checksum("KVM", "4.20.0", "MD5").split("}", 1)[1]  # plain hex means MD5
    answer = api.registerTemplate(
        name="router-4.20.0", format="QCOW2", hypervisor="KVM", url=sim.image_url("KVM", "4.20.0"),
        zoneid="-1", ostypeid=api.listOsTypes()["ostype"][0]["id"], checksum=md5)
    assert answer["count"] == 2 and {row["crossZones"] for row in answer["template"]} == {True}
    wait_ready(api, answer["template"][0]["id"])
    assert api.listTemplates(templatefilter="self", id=answer["template"][0]["id"])["count"] == 2


def test_a_checksum_mismatch_or_a_missing_url_leaves_the_template_failed(sim: CloudStackSimulator) -> None:
    api = client(sim)
    zone = zone_named(api, "lab-zone-1")
    wrong = "{SHA-512}" + "0" * 128
    bad = register(sim, api, zone["id"], version="4.19.2", checksum=wrong)
    missing = api.registerTemplate(
        name="gone-4.19.3", format="QCOW2", hypervisor="KVM", url=sim.base_url + "/images/nothing-here.qcow2",
        zoneid=zone["id"], ostypeid=api.listOsTypes()["ostype"][0]["id"])["template"][0]

    def failed(template_id: str) -> dict[str, Any] | None:
        """The row once the download has ended. "Installing Template" is still under way: the progress reaches
        100 % after template_download, but the verdict waits for the image's bytes, which a busy machine may
        fetch later than that."""
        row = api.listTemplates(templatefilter="all", id=template_id)["template"][0]
        status = row["status"]
        under_way = status in ("Allocated", "Installing Template") or status.endswith("% Downloaded")
        return None if under_way else row

    row = wait_for(lambda: failed(bad["id"]), what="the checksum failure", timeout=30)
    actual = sim.image_checksum("KVM", "4.19.2")
    assert row["isready"] is False
    assert row["status"] == f'checksum "{actual}" didn\'t match the given value, "{wrong}"'
    row = wait_for(lambda: failed(missing["id"]), what="the download failure", timeout=30)
    assert row["isready"] is False and row["status"] == "HTTP Server returned 404 (expected 200 OK) "
    assert {e["event"] for e in sim.audit() if e.get("template") in (bad["id"], missing["id"])} == {
        "template.registered", "template.failed"}


def test_register_template_is_validated_like_cloudstack(sim: CloudStackSimulator) -> None:
    api = client(sim)
    zones = [z["id"] for z in api.listZones()["zone"]]
    base = dict(name="t-4.19.1", format="QCOW2", hypervisor="KVM", url=sim.image_url("KVM", NEW),
                ostypeid=api.listOsTypes()["ostype"][0]["id"])
    cases = [
        (dict(base, zoneid=zones[0], zoneids=zones[1]),
         "Both zoneid and zoneids cannot be specified at the same time"),
        (dict(base), "Either zoneid or zoneids is required. Both cannot be null."),
        (dict(base, zoneids=f"-1,{zones[0]}"),
         "Parameter zoneids cannot combine all zones (-1) option with other zones"),
        (dict(base, zoneid=zones[0], format="QED"), "Image format: QED is incorrect."),
        (dict(base, zoneid=zones[0], url="ftp://example.org/t.qcow2"), "Unsupported scheme for url"),
        ({k: v for k, v in base.items() if k != "ostypeid"} | {"zoneid": zones[0]},
         "Please provide a guest OS type"),
    ]
    for params, text in cases:
        with pytest.raises(CloudStackApiException) as caught:
            api.registerTemplate(**params)
        assert caught.value.response.status_code == 431 and caught.value.error["errortext"].startswith(text), params


def test_deleting_a_template_in_use_fails_in_its_job(sim: CloudStackSimulator) -> None:
    api = client(sim, fetch_result=True)
    in_use = api.listTemplates(templatefilter="system", name="systemvm-kvm-4.18.0")["template"][0]["id"]
    with pytest.raises(CloudStackApiException) as caught:
        api.deleteTemplate(id=in_use)
    assert caught.value.error["errorcode"] == 431
    assert "VM instances using it" in caught.value.error["errortext"]
    unused = register(sim, api, zone_named(api, "lab-zone-2")["id"], version="4.17.0")
    wait_ready(api, unused["id"])
    assert api.deleteTemplate(id=unused["id"]) == {"success": True}
    # a removed template's uuid still resolves (lookups include removed rows): an empty list, not an error
    assert api.listTemplates(templatefilter="all", id=unused["id"]) == {}


def test_configuration_values_are_zone_scoped(sim: CloudStackSimulator) -> None:
    api = client(sim)
    first, second = (zone_named(api, name)["id"] for name in ("lab-zone-1", "lab-zone-2"))
    updated = api.updateConfiguration(name="minreq.sysvmtemplate.version", value=NEW, zoneid=first)
    assert updated["configuration"]["value"] == NEW and updated["configuration"]["scope"] == "zone"
    def minreq(zone: str) -> str:
        return api.listConfigurations(name="minreq.sysvmtemplate.version", zoneid=zone)["configuration"][0]["value"]

    assert (minreq(first), minreq(second)) == (NEW, "4.18.0")
    global_row = api.listConfigurations(name="minreq.sysvmtemplate.version")["configuration"][0]
    assert global_row["value"] == "4.10.0" and "scope" not in global_row
    # name matches as a substring (LIKE %name%), as CloudStack's searchForConfigurations does
    assert api.listConfigurations(name="router.template", zoneid=first)["count"] >= 2
    with pytest.raises(CloudStackApiException) as caught:
        api.updateConfiguration(name="router.version.check", value="false", zoneid=first)
    assert caught.value.error["errortext"] == "Invalid scope id provided for the parameter router.version.check"
    assert {e["name"] for e in sim.audit() if e["event"] == "config.updated"} == {"minreq.sysvmtemplate.version"}


# ------------------------------------------------------------------------------------------------ rollout


def activate(sim: CloudStackSimulator, api: CloudStack, zone_id: str) -> dict[str, Any]:
    template = register(sim, api, zone_id)
    wait_ready(api, template["id"])
    api.updateConfiguration(name="router.template.kvm", value=template["name"], zoneid=zone_id)
    api.updateConfiguration(name="minreq.sysvmtemplate.version", value=NEW, zoneid=zone_id)
    return template


def test_a_new_template_and_minreq_make_routers_require_upgrade_until_rebooted(sim: CloudStackSimulator) -> None:
    api = client(sim, fetch_result=True)
    zone = zone_named(api, "lab-zone-1")
    template = activate(sim, api, zone["id"])
    routers = api.listRouters(listall=True, zoneid=zone["id"], fetch_list=True)
    assert routers and all(r["requiresupgrade"] and r["version"] == "4.18.0" for r in routers)
    other = api.listRouters(listall=True, zoneid=zone_named(api, "lab-zone-2")["id"], fetch_list=True)
    assert not any(r["requiresupgrade"] for r in other)

    kvm = [r for r in routers if r["hypervisor"] == "KVM" and not r["isredundantrouter"]][0]
    rebooted = api.rebootRouter(id=kvm["id"])["router"]
    assert (rebooted["version"], rebooted["templateid"], rebooted["requiresupgrade"]) == (NEW, template["id"], False)
    assert api.listRouters(id=kvm["id"])["router"][0]["version"] == NEW
    assert api.upgradeRouterTemplate(id=kvm["id"]) == {}  # current: no job

    # XenServer routers in the zone require the upgrade too, but router.template.xenserver still names the
    # 4.18.0 template: a reboot brings them back on it, still requiring the upgrade
    xen = [r for r in routers if r["hypervisor"] == "XenServer" and not r["isredundantrouter"]][0]
    assert api.rebootRouter(id=xen["id"])["router"]["version"] == "4.18.0"

    # pointing router.template.kvm at a template that is not ready in the zone fails the reboot
    api.updateConfiguration(name="router.template.kvm", value="no-such-template", zoneid=zone["id"])
    other_kvm = [r for r in routers if r["hypervisor"] == "KVM" and not r["isredundantrouter"]][1]
    with pytest.raises(CloudStackApiException) as caught:
        api.rebootRouter(id=other_kvm["id"])
    assert caught.value.error["errorcode"] == 530
    after = api.listRouters(id=other_kvm["id"])["router"][0]
    assert (after["state"], after["version"]) == ("Running", "4.18.0")


def test_upgrade_router_template_answers_reboot_jobs_for_the_routers_needing_it(sim: CloudStackSimulator) -> None:
    api = client(sim)
    zone = zone_named(api, "lab-zone-2")
    activate(sim, api, zone["id"])
    cluster = api.listClusters(zoneid=zone["id"], hypervisor="KVM")["cluster"][0]
    routers = api.listRouters(listall=True, clusterid=cluster["id"], fetch_list=True)
    answer = api.upgradeRouterTemplate(clusterid=cluster["id"])
    assert answer["count"] == len(routers) and len(answer["asyncjobs"]) == len(routers)
    jobs = [job["jobid"] for job in answer["asyncjobs"]]
    results = wait_for(lambda: (lambda rs: rs if all(r["jobstatus"] != 0 for r in rs) else None)(
        [api.queryAsyncJobResult(jobid=job) for job in jobs]), what="the upgrade jobs", timeout=30)
    assert {r["cmd"] for r in results} == {"org.apache.cloudstack.api.command.admin.router.RebootRouterCmd"}
    assert {r["jobstatus"] for r in results} == {1}
    assert {r["version"] for r in api.listRouters(listall=True, clusterid=cluster["id"], fetch_list=True)} == {NEW}
    assert api.upgradeRouterTemplate(clusterid=cluster["id"]) == {}


def test_redundant_pairs_fail_over_and_a_both_down_pair_is_recorded(manual: CloudStackSimulator) -> None:
    sim = manual
    api = client(sim)
    routers = api.listRouters(listall=True, fetch_list=True)
    pairs: dict[str, list[dict[str, Any]]] = {}
    for router in routers:
        if router["isredundantrouter"]:
            pairs.setdefault(router.get("guestnetworkid") or router["vpcid"], []).append(router)
    (first_key, first), (_, second) = list(pairs.items())[:2]
    assert {r["redundantstate"] for r in first} == {"PRIMARY", "BACKUP"}
    primary = next(r for r in first if r["redundantstate"] == "PRIMARY")
    backup = next(r for r in first if r["redundantstate"] == "BACKUP")

    def router(router_id: str) -> dict[str, Any]:
        return api.listRouters(id=router_id)["router"][0]

    job = api.rebootRouter(id=primary["id"])["jobid"]
    sim.scheduler.advance(0)  # the job starts: the primary stops, and the backup takes over at once
    assert (router(primary["id"])["state"], router(primary["id"])["redundantstate"]) == ("Stopping", "UNKNOWN")
    assert router(backup["id"])["redundantstate"] == "PRIMARY"
    assert api.queryAsyncJobResult(jobid=job)["jobstatus"] == 0
    sim.scheduler.advance(FAST.router_reboot * 1.5)  # the whole reboot, and then some
    assert api.queryAsyncJobResult(jobid=job)["jobstatus"] == 1
    now = {r["id"]: r for r in api.listRouters(listall=True, fetch_list=True)}
    assert (now[primary["id"]]["redundantstate"], now[backup["id"]]["redundantstate"]) == ("BACKUP", "PRIMARY")
    assert now[primary["id"]]["state"] == "Running"
    assert not [e for e in sim.audit() if e["event"] == "pair.both_down"]

    # rebooting both members at once cuts the tenant off: the audit log says so
    jobs = [api.rebootRouter(id=r["id"])["jobid"] for r in second]
    sim.scheduler.advance(0)  # both jobs start together
    assert {router(r["id"])["state"] for r in second} == {"Stopping"}
    sim.scheduler.advance(FAST.router_reboot * 1.5)
    assert [api.queryAsyncJobResult(jobid=j)["jobstatus"] for j in jobs] == [1, 1]
    down = [e for e in sim.audit() if e["event"] == "pair.both_down"]
    assert len(down) == 1 and set(down[0]["routers"]) == {r["id"] for r in second}
    states = {api.listRouters(id=r["id"])["router"][0]["redundantstate"] for r in second}
    assert states == {"PRIMARY", "BACKUP"}
    assert first_key


# ---------------------------------------------------------------------------------------------- system VMs


def test_a_destroyed_system_vm_is_replaced_from_the_newest_ready_system_template(
        manual: CloudStackSimulator) -> None:
    sim = manual
    api = client(sim)
    zone = zone_named(api, "lab-zone-1")  # its system VMs run on KVM
    template = register(sim, api, zone["id"])
    download(sim, api, template["id"])
    ssvm = api.listSystemVms(zoneid=zone["id"], systemvmtype="secondarystoragevm")["systemvm"][0]
    assert ssvm["templatename"] == "systemvm-kvm-4.18.0"

    def ssvms() -> list[dict[str, Any]]:
        return api.listSystemVms(zoneid=zone["id"], systemvmtype="secondarystoragevm").get("systemvm", [])

    job = api.destroySystemVm(id=ssvm["id"])["jobid"]
    sim.scheduler.advance(0)  # the job starts: the VM stops
    assert [(vm["id"], vm["state"]) for vm in ssvms()] == [(ssvm["id"], "Stopping")]
    sim.scheduler.advance(FAST.job * 1.5)  # destroyed after the minimum job time; no replacement yet
    result = api.queryAsyncJobResult(jobid=job)
    assert result["jobstatus"] == 1
    destroyed = result["jobresult"]["systemvm"]
    assert (destroyed["id"], destroyed["state"]) == (ssvm["id"], "Destroyed")
    assert api.listSystemVms(id=ssvm["id"]) == {} and ssvms() == []
    sim.scheduler.advance(FAST.systemvm_recreate / 2)  # the replacement is created, Starting
    (starting,) = ssvms()
    assert starting["state"] == "Starting"
    sim.scheduler.advance(FAST.systemvm_recreate / 2)  # and Running after the rest of systemvm_recreate
    (running,) = ssvms()
    assert running["state"] == "Running"
    assert starting["id"] == running["id"] != ssvm["id"] and running["name"] != ssvm["name"]
    assert running["name"].startswith("s-") and running["templateid"] == template["id"]
    events = [e["event"] for e in sim.audit() if e["event"].startswith("systemvm.") and e["event"] != "systemvm.state"]
    assert events == ["systemvm.destroyed", "systemvm.created", "systemvm.running"]
    # the console proxy was not touched: a reboot is not enough, only a recreate moves a system VM
    cpvm = api.listSystemVms(zoneid=zone["id"], systemvmtype="consoleproxy")["systemvm"][0]
    assert cpvm["templatename"] == "systemvm-kvm-4.18.0"


# ---------------------------------------------------------------------------------------------------- hosts


def test_host_maintenance_and_removal(sim: CloudStackSimulator) -> None:
    api = client(sim, fetch_result=True)
    cluster = api.listClusters(name="lab-zone-1-kvm")["cluster"][0]
    host, other = api.listHosts(clusterid=cluster["id"], type="Routing")["host"]
    on_host = [r["id"] for r in api.listRouters(listall=True, hostid=host["id"], fetch_list=True)]
    assert on_host

    with pytest.raises(CloudStackApiException) as caught:
        api.deleteHost(id=host["id"])
    assert (caught.value.response.status_code, caught.value.error["cserrorcode"], caught.value.error["errortext"]) == (
        530, 4250, f"Host {host['id']} cannot be deleted as it is not in maintenance mode. Either put the host "
                   "into maintenance or perform a forced deletion.")

    assert api.prepareHostForMaintenance(id=host["id"])["host"]["resourcestate"] == "PrepareForMaintenance"
    wait_for(lambda: api.listHosts(id=host["id"])["host"][0]["resourcestate"] == "Maintenance", what="Maintenance",
             timeout=30)
    assert api.listRouters(listall=True, hostid=host["id"]) == {}
    assert {api.listRouters(id=r)["router"][0]["hostid"] for r in on_host} == {other["id"]}
    assert api.cancelHostMaintenance(id=host["id"])["host"]["resourcestate"] == "Enabled"
    with pytest.raises(CloudStackApiException) as caught:
        api.cancelHostMaintenance(id=host["id"])
    assert caught.value.error["errorcode"] == 530

    api.prepareHostForMaintenance(id=host["id"])  # no VMs left: straight to Maintenance
    assert api.listHosts(id=host["id"])["host"][0]["resourcestate"] == "Maintenance"
    assert api.deleteHost(id=host["id"]) == {"success": True}
    assert api.listHosts(id=host["id"]) == {}
    sim.set_host_state(other["id"], "Disconnected")
    assert api.listHosts(id=other["id"])["host"][0]["state"] == "Disconnected"
    assert [e["event"] for e in sim.audit() if e.get("host") == host["id"]][-1] == "host.deleted"


def test_add_host_without_libvirtd_is_refused_like_cloudstack(sim: CloudStackSimulator) -> None:
    api = client(sim)
    zone = zone_named(api, "lab-zone-1")
    pod = api.listPods(zoneid=zone["id"])["pod"][0]
    cluster = api.listClusters(name="lab-zone-1-kvm")["cluster"][0]
    with pytest.raises(CloudStackApiException) as caught:
        api.addHost(zoneid=zone["id"], podid=pod["id"], clusterid=cluster["id"], hypervisor="KVM",
                    url="http://127.0.0.1", username="root", password="secret", hosttags="lab,kvm")
    assert caught.value.response.status_code == 530
    assert caught.value.error == {"uuidList": [], "errorcode": 530, "cserrorcode": 9999,
                                  "errortext": "Unable to add the host: Cannot find the server resources at "
                                               "http://127.0.0.1"}
    failure = [e for e in sim.audit() if e["event"] == "host.add.failed"][-1]
    assert "16509" in failure["reason"]
    with pytest.raises(CloudStackApiException) as caught:
        api.addHost(zoneid=zone["id"], podid=pod["id"], hypervisor="KVM", url="http://127.0.0.1")
    assert caught.value.error["errortext"].startswith("Unable to add the host")


def test_clusters_are_added_and_updated(sim: CloudStackSimulator) -> None:
    api = client(sim)
    zone = zone_named(api, "lab-zone-2")
    pod = api.listPods(zoneid=zone["id"])["pod"][0]
    added = api.addCluster(clustername="lab-zone-2-kvm-b", clustertype="CloudManaged", hypervisor="KVM",
                           zoneid=zone["id"], podid=pod["id"])
    assert added["count"] == 1 and added["cluster"][0]["hypervisortype"] == "KVM"
    cluster = added["cluster"][0]["id"]
    with pytest.raises(CloudStackApiException) as caught:  # names are unique in a pod
        api.addCluster(clustername="lab-zone-2-kvm-b", clustertype="CloudManaged", hypervisor="KVM",
                       zoneid=zone["id"], podid=pod["id"])
    assert caught.value.response.status_code == 530
    updated = api.updateCluster(id=cluster, managedstate="Unmanaged", allocationstate="Disabled")["cluster"]
    assert (updated["managedstate"], updated["allocationstate"]) == ("Unmanaged", "Disabled")
    assert api.listClusters(managedstate="Unmanaged")["cluster"][0]["id"] == cluster
