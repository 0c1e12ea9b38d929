"""The lab CloudStack simulator at the protocol level, driven through the official `cs` client (and a few raw
requests): envelopes, signing, error codes, paging, async job envelopes, faults, the audit log, lab images and
the CLI. Needs no Kubernetes.

What real CloudStack does, and the simulator must do too, is cited from its Java source in the simulator's
modules (stackops_lab/cloudstack/*.py).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from cs import CloudStack, CloudStackApiException
from support.cloudstack_sim import FAST, client, simulator

from stackops_lab.cloudstack import CloudStackSimulator, Faults, Fleet

UNAUTHORIZED = "unable to verify user credentials and/or request signature"
REPO = Path(__file__).resolve().parents[2]


def api_error(call: Callable[..., Any], **params: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(CloudStackApiException) as caught:
        call(**params)
    return caught.value.response.status_code, caught.value.error


def own_signature(params: dict[str, str], secret: str) -> str:
    """The reference's signing rule, written independently of the simulator and of `cs`."""
    text = "&".join(f"{name}={quote(params[name], safe='*').replace('~', '%7E')}" for name in sorted(params))
    return base64.b64encode(hmac.new(secret.encode(), text.lower().encode(), hashlib.sha1).digest()).decode()


def raw_get(sim: CloudStackSimulator, params: dict[str, str]) -> tuple[int, str, bytes]:
    url = f"{sim.endpoint}?{urlencode(params, quote_via=quote)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


@pytest.fixture(scope="module")
def sim() -> Iterator[CloudStackSimulator]:
    """A shared simulator for tests that change nothing."""
    with simulator(routers=40, redundant_pairs=10) as lab:
        yield lab


@pytest.fixture
def fresh() -> Iterator[CloudStackSimulator]:
    """A simulator of the test's own."""
    with simulator() as lab:
        yield lab


@pytest.fixture
def manual() -> Iterator[CloudStackSimulator]:
    """A simulator of the test's own whose time moves only when the test calls `manual.scheduler.advance`."""
    with simulator(manual=True) as lab:
        yield lab


# ---------------------------------------------------------------------------------------------- structure


def test_the_fleet_is_named_predictably(sim: CloudStackSimulator) -> None:
    api = client(sim)
    assert [z["name"] for z in api.listZones()["zone"]] == ["lab-zone-1", "lab-zone-2"]
    assert [p["name"] for p in api.listPods()["pod"]] == ["lab-zone-1-pod-1", "lab-zone-2-pod-1"]
    clusters = api.listClusters()["cluster"]
    assert [(c["name"], c["hypervisortype"]) for c in clusters] == [
        ("lab-zone-1-kvm", "KVM"), ("lab-zone-1-xenserver", "XenServer"),
        ("lab-zone-2-kvm", "KVM"), ("lab-zone-2-xenserver", "XenServer")]
    hosts = api.listHosts(type="Routing")["host"]
    assert len(hosts) == 8 and {(h["state"], h["resourcestate"]) for h in hosts} == {("Up", "Enabled")}
    assert all(h["type"] == "Routing" and h["hypervisor"] in ("KVM", "XenServer") for h in hosts)
    # the system VMs' agents are hosts too, listed without a type filter
    assert {h["type"] for h in api.listHosts()["host"]} == {"Routing", "SecondaryStorageVM", "ConsoleProxy"}

    zones = {z["name"]: z["id"] for z in api.listZones()["zone"]}
    for index, (zone_name, zone_id) in enumerate(zones.items()):
        vms = api.listSystemVms(zoneid=zone_id)["systemvm"]
        assert sorted(vm["systemvmtype"] for vm in vms) == ["consoleproxy", "secondarystoragevm"]
        assert {vm["hypervisor"] for vm in vms} == {("KVM", "XenServer")[index]}, zone_name
        assert all(vm["name"].startswith("s-" if vm["systemvmtype"] == "secondarystoragevm" else "v-")
                   and vm["name"].endswith("-VM") and vm["state"] == "Running" for vm in vms)
        for hv in ("kvm", "xenserver"):
            config = api.listConfigurations(name=f"router.template.{hv}", zoneid=zone_id)["configuration"]
            assert [(c["value"], c["scope"]) for c in config] == [(f"systemvm-{hv}-4.18.0", "zone")]
        minreq = api.listConfigurations(name="minreq.sysvmtemplate.version", zoneid=zone_id)["configuration"]
        assert [c["value"] for c in minreq] == ["4.18.0"]

    system = api.listTemplates(templatefilter="system")["template"]
    assert sorted({(t["name"], t["templatetype"], t["isready"]) for t in system}) == [
        ("systemvm-kvm-4.18.0", "SYSTEM", True), ("systemvm-xenserver-4.18.0", "SYSTEM", True)]
    assert len(system) == 4  # one entry per template and zone

    routers = api.listRouters(listall=True, fetch_list=True)
    assert len(routers) == 40
    assert all(r["name"].startswith("r-") and r["name"].endswith("-VM") for r in routers)
    assert {r["version"] for r in routers} == {"4.18.0"} and not any(r["requiresupgrade"] for r in routers)
    assert sum(r["isredundantrouter"] for r in routers) == 20
    spread = {(r["zonename"], r["hypervisor"]) for r in routers}
    assert len(spread) == 4 and all(
        sum(1 for r in routers if (r["zonename"], r["hypervisor"]) == combo) == 10 for combo in spread)
    assert {r["role"] for r in routers} == {"VIRTUAL_ROUTER"}
    assert any("vpcid" in r for r in routers) and any("guestnetworkid" in r for r in routers)
    assert api.listCapabilities()["capability"]["cloudstackversion"] == "4.19.1.0"
    assert {o["description"] for o in api.listOsTypes()["ostype"]} >= {
        "Debian GNU/Linux 12 (64-bit)", "Debian GNU/Linux 11 (64-bit)", "Other Linux (64-bit)"}


def test_tenant_objects_need_listall_like_for_a_root_admin(sim: CloudStackSimulator) -> None:
    api = client(sim)
    assert api.listRouters() == {}  # a root admin's own routers: none
    assert api.listNetworks() == {} and api.listVPCs() == {}
    one = api.listRouters(listall=True, page=1, pagesize=1)["router"][0]
    assert api.listRouters(id=one["id"])["router"][0]["id"] == one["id"]  # by id, no listall needed
    domain = api.listRouters(domainid=one["domainid"], account=one["account"])["router"]
    assert domain and {r["account"] for r in domain} == {one["account"]}
    assert len(api.listDomains(listall=True)["domain"]) == 4 and api.listDomains()["domain"][0]["name"] == "ROOT"
    assert len(api.listAccounts(listall=True)["account"]) == 13


def lines_to_build(routers: int) -> int:
    """How many lines of Python building a simulator of `routers` routers runs: its work, counted the same on an
    idle machine and on a busy one (a stopwatch is not)."""
    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    previous = sys.gettrace()  # a coverage tool's tracer, if any, is put back
    sys.settrace(tracer)
    try:
        simulator = CloudStackSimulator(fleet=Fleet(routers=routers, redundant_pairs=routers // 5))
    finally:
        sys.settrace(previous)
    try:
        assert len(simulator.state.tables["router"]) == routers
    finally:
        simulator.stop()
    return count


def test_a_fleet_of_500_routers_is_built_fast() -> None:
    # Not timed (a loaded machine makes any wall-clock bound flaky): the build's work is counted instead. It must
    # grow linearly with the routers (twice the routers, twice the extra work: a quadratic step gives 4x) and
    # stay small per router (about 180 lines today; the bound is ten times that).
    lines_to_build(20)  # first-time work (caches, lazy imports) out of the way
    quarter, half, full = (lines_to_build(n) for n in (250, 500, 1000))
    assert full - half <= 2.2 * (half - quarter), (quarter, half, full)
    assert (full - half) / 500 < 2000, (quarter, half, full)


# ------------------------------------------------------------------------------------------------ paging


def test_paging_over_more_than_one_page() -> None:
    with CloudStackSimulator(fleet=Fleet(routers=600, redundant_pairs=100), timings=FAST) as big:
        api = client(big)
        routers = api.listRouters(listall=True, fetch_list=True)
        assert len(routers) == 600 and len({r["id"] for r in routers}) == 600
        unpaged = api.listRouters(listall=True)  # default page size 500 (default.page.size), count = total
        assert unpaged["count"] == 600 and len(unpaged["router"]) == 500
        second = api.listRouters(listall=True, page=2, pagesize=500)
        assert second["count"] == 600 and len(second["router"]) == 100
        assert api.listRouters(listall=True, page=3, pagesize=500) == {"count": 600}
        assert len(api.listRouters(listall=True, pagesize=-1)["router"]) == 600
        status, error = api_error(api.listRouters, listall=True, page=1, pagesize=501)
        assert (status, error["errorcode"], error["errortext"]) == (
            431, 431, "Page size can't exceed max allowed page size value: 500")


# --------------------------------------------------------------------------------------------- signing


def test_signature_version_3_is_what_cs_sends_and_is_accepted(sim: CloudStackSimulator) -> None:
    api = client(sim)
    assert api.listZones()["count"] == 2
    assert client(sim, method="post").listZones()["count"] == 2  # POST with a form body
    # a value with spaces and reserved characters is signed URL-encoded with %20
    assert api.listZones(keyword="lab zone/*+&=") == {}


def test_a_wrong_secret_an_unknown_key_and_an_expired_request_get_401(sim: CloudStackSimulator) -> None:
    wrong_secret = CloudStack(sim.endpoint, sim.api_key, "not-the-secret")
    status, error = api_error(wrong_secret.listZones)
    assert (status, error) == (401, {"uuidList": [], "errorcode": 401, "errortext": UNAUTHORIZED})

    unknown_key = CloudStack(sim.endpoint, "no-such-key", sim.secret_key)
    assert api_error(unknown_key.listZones)[0] == 401

    api = client(sim)
    status, error = api_error(api.listZones, signatureVersion="3", expires="2020-01-01T00:00:00+0000")
    assert (status, error["errorcode"], error["errortext"]) == (401, 401, UNAUTHORIZED)
    status, _ = api_error(api.listZones, signatureVersion="3", expires="tomorrow")
    assert status == 401
    # the other format CloudStack's DateUtil.parseTZDateString accepts: UTC with milliseconds and 'Z'
    future = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 600))
    assert api.listZones(signatureVersion="3", expires=future)["count"] == 2


def test_a_raw_request_with_a_tampered_signature_gets_the_exact_401_envelope(sim: CloudStackSimulator) -> None:
    expires = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(time.time() + 600))
    params = {"command": "listZones", "response": "json", "apiKey": sim.api_key, "signatureVersion": "3",
              "expires": expires}
    good = own_signature(params, sim.secret_key)
    status, content_type, body = raw_get(sim, {**params, "signature": good})
    assert status == 200 and content_type == "application/json; charset=UTF-8"
    assert list(json.loads(body)) == ["listzonesresponse"]

    tampered = ("A" if good[0] != "A" else "B") + good[1:]
    status, content_type, body = raw_get(sim, {**params, "signature": tampered})
    assert status == 401 and content_type == "application/json; charset=UTF-8"
    assert json.loads(body) == {"listzonesresponse": {"uuidList": [], "errorcode": 401, "errortext": UNAUTHORIZED}}

    # a parameter changed after signing is refused too
    status, _, _ = raw_get(sim, {**params, "signature": good, "name": "lab-zone-1"})
    assert status == 401
    # without signatureVersion=3 the old scheme (no expires) is still accepted, as by CloudStack
    legacy = {"command": "listZones", "response": "json", "apiKey": sim.api_key}
    status, _, body = raw_get(sim, {**legacy, "signature": own_signature(legacy, sim.secret_key)})
    assert status == 200 and json.loads(body)["listzonesresponse"]["count"] == 2


def test_without_response_json_the_simulator_refuses_in_xml(sim: CloudStackSimulator) -> None:
    params = {"command": "listZones", "apiKey": sim.api_key}
    status, content_type, body = raw_get(sim, {**params, "signature": own_signature(params, sim.secret_key)})
    assert status == 430 and content_type.startswith("text/xml")
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?><listzonesresponse')
    assert b"<errorcode>430</errorcode>" in body


# ---------------------------------------------------------------------------------------------- errors


def test_an_unknown_command_is_refused_like_cloudstack_refuses_it(sim: CloudStackSimulator) -> None:
    # ApiServer.verifyRequest returns false for a command it does not know: HTTP 401, "errorresponse".
    status, error = api_error(client(sim).listSpaceships)
    assert (status, error) == (401, {"uuidList": [], "errorcode": 401, "errortext": UNAUTHORIZED})
    params = {"command": "listSpaceships", "response": "json", "apiKey": sim.api_key}
    status, _, body = raw_get(sim, {**params, "signature": own_signature(params, sim.secret_key)})
    assert status == 401 and list(json.loads(body)) == ["errorresponse"]
    assert any(e["event"] == "api.refused" and e["command"] == "listSpaceships" for e in sim.audit())


def test_missing_and_invalid_parameters_get_431_with_cloudstacks_texts(sim: CloudStackSimulator) -> None:
    api = client(sim)
    status, error = api_error(api.listTemplates)
    assert (status, error) == (431, {"uuidList": [], "errorcode": 431, "cserrorcode": 9999,
                                     "errortext": "Unable to execute API command listtemplates due to missing "
                                                  "parameter templatefilter"})
    unknown = "0b7f0c36-5f5c-4f8e-9a51-000000000000"
    status, error = api_error(api.rebootRouter, id=unknown)
    assert status == 431 and error["errortext"] == (
        f"Unable to execute API command rebootrouter due to invalid value. Invalid parameter id value={unknown} "
        "due to incorrect long value format, or entity does not exist or due to incorrect parameter annotation "
        "for the field in api cmd class.")
    status, error = api_error(api.listTemplates, templatefilter="everything")
    assert status == 431 and "TemplateFilter.everything" in error["errortext"]
    a_zone = api.listZones()["zone"][0]["id"]
    status, error = api_error(api.listRouters, zoneid=api.listClusters()["cluster"][0]["id"])
    assert status == 431  # a cluster's uuid is no zone
    status, error = api_error(api.listZones, name="lab\x01zone")  # ApiServer.checkCharacterInkParams
    assert (status, error["errortext"]) == (
        431, "Received value containing illegal ASCII non-printable characters for parameter name")
    status, error = api_error(api.updateConfiguration, name="no.such.setting", value="1", zoneid=a_zone)
    assert (status, error["cserrorcode"], error["errortext"]) == (
        431, 4350, "Config parameter with name no.such.setting doesn't exist")


def test_upgrade_router_template_takes_exactly_one_scope(sim: CloudStackSimulator) -> None:
    api = client(sim)
    zone = api.listZones()["zone"][0]["id"]
    pod = api.listPods(zoneid=zone)["pod"][0]["id"]
    status, error = api_error(api.upgradeRouterTemplate, zoneid=zone, podid=pod)
    assert (status, error) == (431, {
        "uuidList": [], "errorcode": 431, "cserrorcode": 4350,
        "errortext": "Multiple parameters not supported. Specify only one among "
                     "routerId/zoneId/podId/clusterId/accountId/domainId"})
    # every router is at the required version: no jobs, an empty list (CloudStack only logs it)
    assert api.upgradeRouterTemplate(zoneid=zone) == {}
    router = api.listRouters(listall=True, zoneid=zone, page=1, pagesize=1)["router"][0]
    assert api.upgradeRouterTemplate(id=router["id"]) == {}


# ------------------------------------------------------------------------------------------- async jobs


def test_reboot_router_answers_a_job_and_query_async_job_result_reports_it(manual: CloudStackSimulator) -> None:
    api = client(manual)
    router = [r for r in api.listRouters(listall=True, fetch_list=True) if not r["isredundantrouter"]][0]

    def router_state() -> str:
        return api.listRouters(id=router["id"])["router"][0]["state"]

    def job(jobid: str) -> dict[str, Any]:
        return api.queryAsyncJobResult(jobid=jobid)

    started = api.rebootRouter(id=router["id"])
    assert list(started) == ["jobid"]
    pending = job(started["jobid"])
    assert pending["jobstatus"] == 0 and pending["jobresultcode"] == 0
    assert "jobresult" not in pending and "completed" not in pending
    assert pending["cmd"] == "org.apache.cloudstack.api.command.admin.router.RebootRouterCmd"
    assert (pending["jobinstancetype"], pending["jobinstanceid"]) == ("DomainRouter", router["id"])
    # the simulator's time moves only when the test moves it: each state of the reboot is seen, in order. The
    # steps fall a third of router_reboot apart; the test looks halfway between two steps, never at one (a sum
    # of float thirds may land an ulp short of a step, depending on where the clock started)
    third = FAST.router_reboot / 3
    assert router_state() == "Running"  # queued, not started
    manual.scheduler.advance(0)
    assert router_state() == "Stopping"
    manual.scheduler.advance(third * 1.5)
    assert router_state() == "Stopped" and job(started["jobid"])["jobstatus"] == 0
    manual.scheduler.advance(third)
    assert router_state() == "Starting" and job(started["jobid"])["jobstatus"] == 0
    manual.scheduler.advance(third)

    done = job(started["jobid"])
    assert set(done) == {"accountid", "account", "domainid", "domainpath", "userid", "cmd", "jobstatus",
                         "jobprocstatus", "jobresultcode", "jobresulttype", "jobresult", "jobinstancetype",
                         "jobinstanceid", "created", "completed", "jobid"}
    assert (done["jobstatus"], done["jobresultcode"], done["jobresulttype"]) == (1, 0, "object")
    assert done["jobresult"]["router"]["id"] == router["id"] and done["jobresult"]["router"]["state"] == "Running"
    assert done["account"] == "admin" and done["jobid"] == started["jobid"]
    for stamp in (done["created"], done["completed"]):
        time.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z")
    # rebooting a router that is not Running fails inside the job, like CloudStack's rebootRouter
    first = api.rebootRouter(id=router["id"])
    second = api.rebootRouter(id=router["id"])
    manual.scheduler.advance(FAST.job * 1.5)  # both started; the second failed after the minimum job time
    failed = job(second["jobid"])
    assert (failed["jobstatus"], failed["jobresultcode"]) == (2, 530)
    assert "Unable to reboot domR, it is not in right state" in failed["jobresult"]["errortext"]
    assert job(first["jobid"])["jobstatus"] == 0
    manual.scheduler.advance(FAST.router_reboot)
    assert job(first["jobid"])["jobstatus"] == 1 and router_state() == "Running"


def test_an_injected_job_failure_gives_the_failure_envelope(fresh: CloudStackSimulator) -> None:
    api = client(fresh, fetch_result=True)
    router = [r for r in api.listRouters(listall=True, fetch_list=True) if not r["isredundantrouter"]][0]
    fresh.faults.job_failure_rate = 1.0
    status_before = api.listRouters(id=router["id"])["router"][0]
    with pytest.raises(CloudStackApiException) as caught:
        api.rebootRouter(id=router["id"])
    assert caught.value.args[0] == "Job failure"
    assert caught.value.error == {"uuidList": [], "errorcode": 530,
                                  "errortext": f"Failed to reboot router {router['name']}"}
    job = [e for e in fresh.audit() if e["event"] == "job.created"][-1]["job"]
    result = client(fresh).queryAsyncJobResult(jobid=job)  # queryAsyncJobResult itself is never failed
    assert (result["jobstatus"], result["jobresultcode"], result["jobresulttype"]) == (2, 530, "object")
    after = api.listRouters(id=router["id"])["router"][0]
    assert after["state"] == "Running" and after["templateid"] == status_before["templateid"]
    fresh.faults.job_failure_rate = 0.0
    assert api.rebootRouter(id=router["id"])["router"]["state"] == "Running"


def test_rate_limit_and_internal_error_faults(fresh: CloudStackSimulator) -> None:
    api = client(fresh)
    fresh.faults.rate_limit_rate = 1.0
    status, error = api_error(api.listZones)
    assert (status, error["errorcode"], error["cserrorcode"]) == (429, 429, 9999)
    assert error["errortext"].startswith("The given user has reached his/her account api limit")
    fresh.faults.rate_limit_rate = 0.0
    fresh.faults.error_530_rate = 1.0
    status, error = api_error(api.listZones)
    assert (status, error["errorcode"]) == (530, 530)
    fresh.faults.error_530_rate = 0.0
    assert api.listZones()["count"] == 2

    # the same knobs over HTTP, for a simulator running in another process
    request = urllib.request.Request(fresh.base_url + "/lab/faults", data=json.dumps({"rate_limit_rate": 1}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert json.loads(answer.read())["rate_limit_rate"] == 1.0
    assert api_error(api.listZones)[0] == 429
    with urllib.request.urlopen(fresh.base_url + "/lab/faults", timeout=5) as answer:
        assert json.loads(answer.read())["rate_limit_rate"] == 1.0
    fresh.faults = Faults()
    assert api.listZones()["count"] == 2


def test_partial_fault_rates_are_reproducible() -> None:
    outcomes = []
    for _ in range(2):
        with CloudStackSimulator(fleet=Fleet(routers=2, redundant_pairs=0),
                                 faults=Faults(rate_limit_rate=0.5, seed=7)) as simulator:
            api = client(simulator)
            run = []
            for _ in range(20):
                try:
                    api.listZones()
                    run.append(True)
                except CloudStackApiException:
                    run.append(False)
            outcomes.append(run)
    assert outcomes[0] == outcomes[1] and 0 < sum(outcomes[0]) < 20


# ---------------------------------------------------------------------------------- audit, images, health


def test_the_audit_log_records_state_changes_with_times() -> None:
    # the stamps are bracketed by the test's own readings of the same clocks, not compared with a tolerance
    before, before_epoch = time.monotonic(), time.time()
    with CloudStackSimulator(fleet=Fleet(routers=24, redundant_pairs=6), timings=FAST) as fresh:
        api = client(fresh, fetch_result=True)
        router = api.listRouters(listall=True, page=1, pagesize=1)["router"][0]
        api.rebootRouter(id=router["id"])
        events = fresh.audit()
        after, after_epoch = time.monotonic(), time.time()
        mine = [e for e in events if e.get("router") == router["id"]]
        names = [e["event"] for e in mine]
        assert names[0] == "router.reboot.start" and names[-1] == "router.reboot.end"
        assert [(e["from"], e["to"]) for e in mine if e["event"] == "router.state"] == [
            ("Running", "Stopping"), ("Stopping", "Stopped"), ("Stopped", "Starting"), ("Starting", "Running")]
        assert mine[-1]["ok"] is True and mine[-1]["version"] == "4.18.0"
        assert all(isinstance(e["t"], float) and before <= e["t"] <= after for e in events)
        assert all(before_epoch <= e["time"] <= after_epoch for e in events)
        assert [e["t"] for e in events] == sorted(e["t"] for e in events)
        assert {"job.created", "job.completed"} <= {e["event"] for e in events}
        with urllib.request.urlopen(fresh.base_url + "/lab/audit", timeout=5) as answer:
            served = json.loads(answer.read())
        assert [e["event"] for e in served[: len(events)]] == [e["event"] for e in events]
        with urllib.request.urlopen(fresh.base_url + "/lab/health", timeout=5) as answer:
            assert answer.status == 200


def test_lab_images_are_served_and_match_their_checksum(sim: CloudStackSimulator) -> None:
    url = sim.image_url("KVM", "4.19.1")
    assert url.endswith("/images/systemvmtemplate-4.19.1-kvm.qcow2.bz2")
    with urllib.request.urlopen(url, timeout=5) as answer:
        data = answer.read()
    assert 200_000 < len(data) < 1_000_000
    assert sim.image_checksum("KVM", "4.19.1") == "{SHA-512}" + hashlib.sha512(data).hexdigest()
    assert sim.image_checksum("KVM", "4.19.1", "MD5") == "{MD5}" + hashlib.md5(data).hexdigest()
    with urllib.request.urlopen(sim.image_url("XenServer", "4.20.0"), timeout=5) as answer:
        other = answer.read()
    assert sim.image_url("XenServer", "4.20.0").endswith("systemvmtemplate-4.20.0-xen.vhd.bz2") and other != data
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(sim.base_url + "/images/not-an-image.iso", timeout=5)
    assert missing.value.code == 404


# ------------------------------------------------------------------------------------------ concurrency


def test_thirty_concurrent_clients_on_a_500_router_fleet() -> None:
    with CloudStackSimulator(fleet=Fleet(routers=500, redundant_pairs=100), timings=FAST) as big:
        routers = client(big).listRouters(listall=True, fetch_list=True)
        singles = [r["id"] for r in routers if not r["isredundantrouter"]]
        failures: list[BaseException] = []
        together = threading.Barrier(30, timeout=300)  # a guard against a hang only

        def worker(index: int) -> None:
            api = client(big, fetch_result=True)
            try:
                for _ in range(3):
                    assert len(api.listRouters(listall=True, fetch_list=True)) == 500
                together.wait()  # all thirty clients are in flight at once, however the machine schedules them
                api.rebootRouter(id=singles[index])
                assert api.listHosts(type="Routing")["count"] == 8
            except BaseException as error:  # noqa: BLE001 - reported below
                failures.append(error)
                together.abort()

        threads = [threading.Thread(target=worker, args=(index,)) for index in range(30)]
        for thread in threads:
            thread.start()
        # No bound on the elapsed time (a loaded machine makes it flaky); this deadline only stops a hang.
        deadline = time.monotonic() + 600
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        assert not [thread for thread in threads if thread.is_alive()], "a client hung"
        assert not failures, failures[:3]
        ends = [e for e in big.audit() if e["event"] == "router.reboot.end"]
        assert len(ends) == 30 and all(e["ok"] for e in ends)
        assert sorted(e["router"] for e in ends) == sorted(singles[:30])


# ---------------------------------------------------------------------------------------------------- CLI


def test_the_cli_serves_until_terminated(tmp_path: Path) -> None:
    state_file = tmp_path / "cloudstack.json"
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("stackops")), "lab", "cloudstack", "--port", "0", "--routers", "6",
         "--redundant-pairs", "1", "--state-file", str(state_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("ready http://127.0.0.1:") and line.endswith("/client/api"), line
        keys = json.loads(state_file.read_text())
        assert keys["endpoint"] == line.split(" ", 1)[1] and oct(state_file.stat().st_mode)[-3:] == "600"
        api = CloudStack(keys["endpoint"], keys["apiKey"], keys["secretKey"])
        assert len(api.listRouters(listall=True)["router"]) == 6
        process.terminate()
        assert process.wait(timeout=60) == 0  # a guard against a hang only
        assert not state_file.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
