"""The lab CloudStack simulator's admin commands next to the ones stackops uses (issue 17), driven through the `cs`
client: the paging rule of every list command, and each entity's list, create, update, delete and lifecycle
commands with CloudStack's required parameters, answers and errors (cited from CloudStack's command classes and
services in the simulator's modules)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from cs import CloudStack, CloudStackApiException
from support.cloudstack_sim import client, simulator
from support.wait import wait_for

from stackops_lab.cloudstack import CloudStackSimulator, apitable


@pytest.fixture(scope="module")
def sim() -> Iterator[CloudStackSimulator]:
    with simulator(routers=6, redundant_pairs=1) as running:
        yield running


@pytest.fixture
def api(sim: CloudStackSimulator) -> CloudStack:
    return client(sim, fetch_result=True)


def refused(call: Callable[..., Any], **params: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(CloudStackApiException) as caught:
        call(**params)
    return caught.value.response.status_code, caught.value.error


def raw(sim: CloudStackSimulator, **params: str) -> tuple[int, dict[str, Any]]:
    """A signed request sent as it is (`cs` adds a pagesize to a `page` of its own)."""
    signed = {**params, "response": "json", "apiKey": sim.api_key}
    CloudStack(sim.endpoint, sim.api_key, sim.secret_key)._sign(signed)
    try:
        with urllib.request.urlopen(f"{sim.endpoint}?{urlencode(signed, quote_via=quote)}", timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_page_and_pagesize_come_together(sim: CloudStackSimulator, api: CloudStack) -> None:
    """BaseListCmd.validateSpecificParameters: `page` without `pagesize` and `pagesize` (other than -1) without
    `page` are refused with 431 (a ServerApiException: 9999); pagesize -1 alone lists everything."""
    assert raw(sim, command="listZones", page="1") == (431, {"listzonesresponse": {
        "uuidList": [], "errorcode": 431, "cserrorcode": 9999,
        "errortext": '"pagesize" parameter is required when "page" is specified'}})
    assert refused(api.listRouters, listall=True, pagesize=2) == (431, {
        "uuidList": [], "errorcode": 431, "cserrorcode": 9999,
        "errortext": '"page" parameter is required when "pagesize" is specified'})
    assert api.listRouters(listall=True, pagesize=-1)["count"] == 6
    assert len(api.listRouters(listall=True, page=2, pagesize=4)["router"]) == 2


# Fields a newer response class has than the one the index gave the table (apitable.json `responses`).
NEWER_FIELDS = {
    "DomainRouterResponse": {"domainpath"},  # ControlledViewEntityResponse.setDomainPath (4.19)
    "TemplateResponse": {"domainpath", "url", "downloaddetails"},
}


def fields_of(response_class: str) -> set[str]:
    return apitable.response_fields(response_class) | NEWER_FIELDS.get(response_class, set())


def test_listed_fields_are_those_of_cloudstacks_response_classes(api: CloudStack) -> None:
    """Every field an entity's list command shows is a field of CloudStack's response class for it."""
    project = api.createProject(name="fields", displaytext="fields")["project"]
    listings = {
        "ZoneResponse": api.listZones()["zone"], "PodResponse": api.listPods()["pod"],
        "ClusterResponse": api.listClusters()["cluster"], "HostResponse": api.listHosts()["host"],
        "DomainRouterResponse": api.listRouters(listall=True)["router"],
        "SystemVmResponse": api.listSystemVms()["systemvm"],
        "TemplateResponse": api.listTemplates(templatefilter="all")["template"],
        "ConfigurationResponse": api.listConfigurations()["configuration"],
        "DomainResponse": api.listDomains(listall=True)["domain"],
        "AccountResponse": api.listAccounts(listall=True)["account"],
        "ProjectResponse": api.listProjects(listall=True)["project"],
        "HypervisorResponse": api.listHypervisors()["hypervisor"],
    }
    for response_class, items in listings.items():
        assert items, response_class
        unknown = {key for item in items for key in item} - fields_of(response_class)
        assert unknown == set(), response_class
    api.deleteProject(id=project["id"])


def test_routers_stop_start_and_destroy_as_async_jobs(sim: CloudStackSimulator, api: CloudStack) -> None:
    """stopRouter/startRouter/destroyRouter answer a job id; the job's result is the router. Stopping the PRIMARY
    of a redundant pair makes its peer PRIMARY; the router comes back as BACKUP."""
    routers = api.listRouters(listall=True)["router"]
    pair = [r for r in routers if r["isredundantrouter"]]
    primary = next(r for r in pair if r["redundantstate"] == "PRIMARY")
    assert api.stopRouter(id=primary["id"])["router"]["state"] == "Stopped"
    jobs = api.listAsyncJobs(listall=True, keyword="StopRouterCmd")["asyncjobs"]
    assert (jobs[0]["jobstatus"], jobs[0]["jobinstancetype"], jobs[0]["jobinstanceid"]) == (
        1, "DomainRouter", primary["id"])
    backup = next(r for r in pair if r["id"] != primary["id"])
    assert api.listRouters(id=backup["id"])["router"][0]["redundantstate"] == "PRIMARY"
    started = api.startRouter(id=primary["id"])["router"]
    assert (started["state"], started["redundantstate"]) == ("Running", "BACKUP")
    single = next(r for r in routers if not r["isredundantrouter"])
    assert api.destroyRouter(id=single["id"])["router"]["id"] == single["id"]
    assert api.listRouters(id=single["id"]) == {}
    with pytest.raises(CloudStackApiException) as caught:
        api.stopRouter(id=single["id"])
    assert caught.value.error["errortext"] == "Can't find router by id"


def test_update_host_allocation_state_and_tags(api: CloudStack) -> None:
    host = api.listHosts(type="Routing")["host"][0]
    disabled = api.updateHost(id=host["id"], allocationstate="Disable", hosttags="gpu,ssd")["host"]
    assert (disabled["resourcestate"], disabled["hosttags"]) == ("Disabled", "gpu,ssd")
    assert api.listHosts(id=host["id"], resourcestate="Disabled")["count"] == 1
    status, error = refused(api.updateHost, id=host["id"], allocationstate="Maintenance")
    assert (status, error["errorcode"]) == (530, 530)
    assert error["errortext"].startswith("Failed to update host: Host {\"id\":") and error["errortext"].endswith(
        "Invalid allocation state: Maintenance, only Enable/Disable are allowed")
    enabled = api.updateHost(id=host["id"], allocationstate="Enable", hosttags="")["host"]
    assert enabled["resourcestate"] == "Enabled" and "hosttags" not in enabled
    assert api.reconnectHost(id=host["id"])["host"]["state"] == "Up"


def test_system_vms_stop_start_and_reboot(api: CloudStack) -> None:
    vm = api.listSystemVms(systemvmtype="consoleproxy")["systemvm"][0]
    assert api.stopSystemVm(id=vm["id"])["systemvm"]["state"] == "Stopped"
    error = refused(api.rebootSystemVm, id=vm["id"])[1]  # the job failed: queryAsyncJobResult's jobresult
    assert error["errorcode"] == 530 and error["errortext"].endswith("is Stopped, not Running")
    assert api.startSystemVm(id=vm["id"])["systemvm"]["state"] == "Running"
    rebooted = api.rebootSystemVm(id=vm["id"])["systemvm"]
    assert (rebooted["state"], rebooted["templateid"]) == ("Running", vm["templateid"])


def test_zones_and_pods_are_created_updated_and_deleted(api: CloudStack) -> None:
    zone = api.createZone(name="zone-new", dns1="192.0.2.53", internaldns1="192.0.2.54",
                          networktype="Advanced")["zone"]
    assert (zone["allocationstate"], zone["networktype"], zone["dns1"]) == ("Disabled", "Advanced", "192.0.2.53")
    assert refused(api.createZone, name="zone-new", dns1="192.0.2.53", internaldns1="192.0.2.54",
                   networktype="Advanced")[0] == 431
    assert refused(api.createZone, name="zone-odd", dns1="192.0.2.53", internaldns1="192.0.2.54",
                   networktype="Flat")[1]["errortext"] == \
        "Invalid zone type; only Advanced and Basic values are supported"
    assert api.updateZone(id=zone["id"], allocationstate="Enabled")["zone"]["allocationstate"] == "Enabled"
    pod = api.createPod(name="pod-new", zoneid=zone["id"], gateway="198.51.100.1", netmask="255.255.255.0",
                        startip="198.51.100.10", endip="198.51.100.50")["pod"]
    assert (pod["zoneid"], pod["allocationstate"], pod["startip"]) == (zone["id"], "Enabled", ["198.51.100.10"])
    assert api.updatePod(id=pod["id"], allocationstate="Disabled")["pod"]["allocationstate"] == "Disabled"
    assert [p["id"] for p in api.listPods(allocationstate="Disabled")["pod"]] == [pod["id"]]
    assert [z["id"] for z in api.listZones(ids=zone["id"])["zone"]] == [zone["id"]]
    status, error = refused(api.deleteZone, id=zone["id"])
    assert (status, error["cserrorcode"], error["errortext"]) == (
        530, 4250, "The zone cannot be deleted because there are pods in this zone.")
    fleet_zone = api.listZones(name="lab-zone-1")["zone"][0]
    assert refused(api.deleteZone, id=fleet_zone["id"])[1]["errortext"] == \
        "The zone cannot be deleted because there are servers in this zone."
    fleet_pod = api.listPods(zoneid=fleet_zone["id"])["pod"][0]
    assert refused(api.deletePod, id=fleet_pod["id"])[1]["errortext"] == \
        "The pod cannot be deleted because there are servers in this pod."
    assert api.deletePod(id=pod["id"]) == {"success": True}
    assert api.deleteZone(id=zone["id"]) == {"success": True}
    assert api.listZones(id=zone["id"]) == {}


def test_list_hypervisors(api: CloudStack) -> None:
    everything = [h["name"] for h in api.listHypervisors()["hypervisor"]]
    assert "KVM" in everything and "XenServer" in everything
    zone = api.listZones(name="lab-zone-1")["zone"][0]
    clusters = api.listClusters(zoneid=zone["id"])["cluster"]
    in_zone = api.listHypervisors(zoneid=zone["id"])
    assert in_zone["count"] == len(clusters)
    assert sorted(h["name"] for h in in_zone["hypervisor"]) == sorted(c["hypervisortype"] for c in clusters)


def test_domains_accounts_and_projects(sim: CloudStackSimulator, api: CloudStack) -> None:
    raw_client = client(sim)  # answers the async create at once: {"id", "jobid"}
    domain = api.createDomain(name="sales")["domain"]
    assert (domain["level"], domain["parentdomainname"], domain["haschild"]) == (1, "ROOT", False)
    assert refused(api.createDomain, name="sales")[0] == 431
    renamed = api.updateDomain(id=domain["id"], name="sales-eu")["domain"]
    assert renamed["path"] == "ROOT/sales-eu"
    created_account = api.createAccount(username="ops", password="s3cret", email="ops@example.org",
                                        firstname="Op", lastname="Erator", accounttype=0,
                                        domainid=domain["id"])["account"]
    assert (created_account["name"], created_account["domainid"], created_account["user"][0]["username"]) == (
        "ops", domain["id"], "ops")
    assert refused(api.createAccount, username="ops", password="s3cret", email="ops@example.org", firstname="Op",
                   lastname="Erator", accounttype=0, domainid=domain["id"])[1]["errortext"] == \
        "The specified account: ops already exists"
    assert refused(api.createAccount, username="x", password="y", email="x@example.org", firstname="X",
                   lastname="Y")[1]["errortext"] == "Neither account type and role ID are not provided"
    assert refused(api.deleteDomain, id=domain["id"])[1]["errorcode"] == 530  # it has an account
    account = api.listAccounts(listall=True)["account"][-1]
    assert api.disableAccount(id=account["id"], lock=False)["account"]["state"] == "disabled"
    assert api.disableAccount(id=account["id"], lock=True)["account"]["state"] == "locked"
    assert api.enableAccount(account=account["name"], domainid=account["domainid"])["account"]["state"] == "enabled"
    admin = api.listAccounts(name="admin")["account"][0]
    assert refused(api.disableAccount, id=admin["id"], lock=False)[1]["errorcode"] == 431
    created = raw_client.createProject(name="alpha", displaytext="Alpha")
    assert set(created) == {"id", "jobid"}
    job = raw_client.queryAsyncJobResult(jobid=created["jobid"])
    assert refused(api.createProject, name="beta", displaytext="Beta", account="admin")[1]["errortext"] == \
        "Account name and domain id must be specified together"
    listed = api.listProjects(id=created["id"])["project"][0]
    assert (listed["name"], listed["owner"][0]["account"], listed["projectaccountname"]) == (
        "alpha", "admin", listed["projectaccountname"])
    assert (job["jobinstancetype"], job["jobinstanceid"]) == ("Project", created["id"])
    assert not any(a["name"].startswith("PrjAcct-") for a in api.listAccounts(listall=True)["account"])
    assert api.updateProject(id=created["id"], displaytext="Alpha team")["project"]["displaytext"] == "Alpha team"
    assert api.deleteProject(id=created["id"]) == {"success": True}
    assert api.listProjects(listall=True) == {}
    assert api.deleteDomain(id=domain["id"], cleanup=True) == {"success": True}
    assert api.listAccounts(id=created_account["id"]) == {}


def test_reset_configuration(api: CloudStack) -> None:
    zone = api.listZones()["zone"][0]
    name = "router.template.kvm"
    default = api.listConfigurations(name=name)["configuration"][0]["defaultvalue"]
    api.updateConfiguration(name=name, value="custom", zoneid=zone["id"])
    reset = api.resetConfiguration(name=name, zoneid=zone["id"])["configuration"]
    assert (reset["scope"], reset["value"]) == ("Zone", default)
    assert refused(api.resetConfiguration, name="no.such.key")[1]["errortext"] == \
        "Config parameter with name no.such.key doesn't exist"


def test_update_template_and_its_permissions(api: CloudStack) -> None:
    template = api.listTemplates(templatefilter="all")["template"][0]
    updated = api.updateTemplate(id=template["id"], displaytext="renamed text")["template"]
    assert (updated["id"], updated["displaytext"]) == (template["id"], "renamed text")
    assert refused(api.updateTemplate, id=template["id"], format="QED")[0] == 431
    permissions = api.listTemplatePermissions(id=template["id"])["templatepermission"]
    # a private template lists its owner (TemplateManagerImpl.listTemplatePermissions)
    assert (permissions["id"], permissions["account"]) == (template["id"], [template["account"]])


def test_template_launch_permissions(api: CloudStack) -> None:
    template = api.listTemplates(templatefilter="all")["template"][0]
    other = api.listAccounts(listall=True, name="lab-domain-1-account-1")["account"][0]
    root_account = api.createAccount(accounttype=0, email="p@lab", firstname="P", lastname="Q", password="pw",
                                      username="perm-user")["account"]
    assert refused(api.updateTemplatePermissions, id=template["id"], accounts="x")[1]["errortext"] == (
        "Invalid operation on accounts, the operation must be either 'add' or 'remove' in order to modify launch "
        "permissions.  Given operation is: 'null'")
    assert refused(api.updateTemplatePermissions, id=template["id"], op="add")[1]["errortext"] == \
        "Operation add requires accounts or projectIds to be passed in"
    assert refused(api.updateTemplatePermissions, id=template["id"], op="add", accounts=other["name"])[1][
        "errortext"].startswith(f"Unable to grant a launch permission to account {other['name']} in domain id=")
    assert api.updateTemplatePermissions(id=template["id"], op="add", accounts=root_account["name"]) == \
        {"success": True}
    listed = api.listTemplatePermissions(id=template["id"])["templatepermission"]
    assert listed["account"] == [root_account["name"], template["account"]]
    assert api.updateTemplatePermissions(id=template["id"], op="remove", accounts=root_account["name"]) == \
        {"success": True}
    assert api.listTemplatePermissions(id=template["id"])["templatepermission"]["account"] == [template["account"]]
    api.updateTemplatePermissions(id=template["id"], ispublic=True)
    public = api.listTemplatePermissions(id=template["id"])["templatepermission"]
    assert public["ispublic"] is True and "account" not in public
    api.updateTemplatePermissions(id=template["id"], op="reset")
    assert api.listTemplates(templatefilter="all", id=template["id"])["template"][0]["ispublic"] is False
    api.deleteAccount(id=root_account["id"])


def test_update_account(api: CloudStack) -> None:
    account = api.listAccounts(listall=True, name="lab-domain-1-account-2")["account"][0]
    updated = api.updateAccount(id=account["id"], newname="renamed-2", networkdomain="team.example")["account"]
    assert (updated["name"], updated["networkdomain"]) == ("renamed-2", "team.example")
    by_name = api.updateAccount(account="renamed-2", domainid=account["domainid"], newname=account["name"],
                                networkdomain="")["account"]
    assert by_name["name"] == account["name"] and "networkdomain" not in by_name
    assert refused(api.updateAccount, account="nobody", domainid=account["domainid"])[1]["errortext"].startswith(
        "Unable to find account by accountId: null OR by name: nobody in domain ")
    taken = api.listAccounts(listall=True, name="lab-domain-1-account-1")["account"][0]
    code, error = refused(api.updateAccount, account=account["name"], domainid=account["domainid"],
                          newname=taken["name"])
    assert code == 431 and error["errortext"].startswith(f"The account with the proposed name '{taken['name']}' "
                                                         "exists in the domain")
    assert refused(api.updateAccount, id=account["id"], networkdomain="-bad-")[1]["errortext"].startswith(
        "Invalid network domain or format.")


def test_suspend_and_activate_a_project(sim: CloudStackSimulator, api: CloudStack) -> None:
    project = api.createProject(name="gamma", displaytext="Gamma")["project"]
    suspended = api.suspendProject(id=project["id"])["project"]
    assert suspended["state"] == "Suspended"
    account = [a for a in sim.state.values("account") if a.name == project["projectaccountname"]][0]
    assert account.state == "disabled"
    assert api.activateProject(id=project["id"])["project"]["state"] == "Active"
    assert account.state == "enabled"
    assert api.activateProject(id=project["id"])["project"]["state"] == "Active"  # already active: unchanged
    status, body = raw(sim, command="activateProject")
    assert (status, body["activaterojectresponse"]["errortext"]) == (
        431, "Unable to execute API command activateroject due to missing parameter id")
    api.deleteProject(id=project["id"])
    assert refused(api.suspendProject, id=project["id"])[1]["errortext"].startswith("Unable to find project by id")


def test_copy_template_to_another_zone(sim: CloudStackSimulator, api: CloudStack) -> None:
    first, second = api.listZones(name="lab-zone-1")["zone"][0], api.listZones(name="lab-zone-2")["zone"][0]
    ostype = api.listOsTypes()["ostype"][0]["id"]
    template = api.registerTemplate(name="copied-4.19.1", format="QCOW2", hypervisor="KVM", ostypeid=ostype,
                                    url=sim.image_url("KVM", "4.19.1"), zoneid=first["id"])["template"][0]
    assert refused(api.copyTemplate, id=template["id"])[1]["errortext"] == \
        "Either destzoneid or destzoneids parameters have to be specified."
    assert refused(api.copyTemplate, id=template["id"], sourcezoneid=first["id"], destzoneid=first["id"])[1][
        "errortext"] == "Please specify different source and destination zones."

    def ready() -> bool:
        return api.listTemplates(templatefilter="all", id=template["id"])["template"][0]["isready"]

    wait_for(ready, what="the registered template's download", timeout=30)
    copied = api.copyTemplate(id=template["id"], sourcezoneid=first["id"], destzoneid=second["id"])["template"]
    assert (copied["id"], copied["zoneid"], copied["isready"]) == (template["id"], second["id"], True)
    rows = api.listTemplates(templatefilter="all", id=template["id"])
    assert rows["count"] == 2 and {r["zoneid"] for r in rows["template"]} == {first["id"], second["id"]}
    api.deleteTemplate(id=template["id"])
