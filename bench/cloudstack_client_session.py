#!/usr/bin/env python3
"""Drive the lab CloudStack simulator through a third-party client the project does not control: Apache
Libcloud's CloudStack compute driver (libcloud.compute.drivers.cloudstack.CloudStackNodeDriver; the project itself
uses the `cs` package). A realistic admin session against a simulator with two zones: list zones (list_locations),
hosts, routers, system VMs, templates (list_images and listTemplates), projects (ex_list_projects) and hypervisors;
inspect a host and a router; change things and undo them — disable a host and tag it (updateHost), enable it and
clear the tags; stop a router and start it again (async jobs, polled by libcloud's own queryAsyncJobResult loop);
create a project and delete it. The driver's own methods are used where it has one, its `_sync_request` /
`_async_request` (what its methods call) for the admin commands it has no method for. Prints one line per step,
PASS or FAIL, and exits 1 if a step failed.

Needs apache-libcloud, which the project does not depend on: a throwaway venv with the lab on the path,

    python3 -m venv /tmp/csbench && /tmp/csbench/bin/pip install apache-libcloud
    PYTHONPATH=lab /tmp/csbench/bin/python bench/cloudstack_client_session.py

(or `pip install '.[cloudstack-bench]'`, which names the same package, into the project's venv).
"""
from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

try:
    from libcloud.compute.drivers.cloudstack import CloudStackNodeDriver
except ImportError:
    sys.exit("libcloud is not importable: install `apache-libcloud` (see this script's docstring)")

from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings

RESULTS: list[tuple[str, bool, str]] = []


def step(name: str, run: Callable[[], str]) -> None:
    try:
        detail = run()
        RESULTS.append((name, True, detail))
        print(f"PASS  {name}: {detail}")
    except Exception as error:  # a client error (KeyError on a missing field …) is what this looks for
        RESULTS.append((name, False, repr(error)))
        print(f"FAIL  {name}: {error!r}")
        traceback.print_exc(limit=3)


def session(driver: CloudStackNodeDriver) -> None:
    sync: Callable[..., dict[str, Any]] = lambda command, **params: driver._sync_request(  # noqa: E731
        command=command, params=params, method="GET")
    run_job: Callable[..., dict[str, Any]] = lambda command, **params: driver._async_request(  # noqa: E731
        command=command, params=params, method="GET")
    seen: dict[str, Any] = {}

    def zones() -> str:
        locations = driver.list_locations()
        assert locations, "no zones"
        seen["zone"] = locations[0]
        return ", ".join(f"{loc.name} ({loc.id[:8]})" for loc in locations)

    def hosts() -> str:
        found = sync("listHosts", type="Routing")["host"]
        seen["host"] = found[0]
        return f"{len(found)} hosts: " + ", ".join(f"{h['name']} {h['state']}/{h['resourcestate']}" for h in found[:3])

    def inspect_host() -> str:
        host = sync("listHosts", id=seen["host"]["id"])["host"][0]
        return (f"{host['name']} {host['hypervisor']} cluster {host['clustername']} pod {host['podname']} zone "
                f"{host['zonename']}, {host['cpunumber']} CPUs, version {host['version']}")

    def routers_as_libcloud_lists_them() -> str:
        mine = driver.ex_list_routers()  # no listall: a root admin's own routers, none (as CloudStack answers)
        assert mine == [], mine
        every = sync("listRouters", listall="true")["router"]
        seen["router"] = next(r for r in every if not r.get("isredundantrouter"))
        return f"ex_list_routers() {len(mine)} (root admin's own); listall=true {len(every)}"

    def inspect_router() -> str:
        router = sync("listRouters", id=seen["router"]["id"])["router"][0]
        return (f"{router['name']} {router['state']} version {router['version']} requiresupgrade "
                f"{router['requiresupgrade']} on {router.get('hostname')} account {router['account']}")

    def system_vms() -> str:
        found = sync("listSystemVms")["systemvm"]
        return ", ".join(f"{vm['name']} {vm['systemvmtype']} {vm['state']}" for vm in found)

    def images() -> str:
        executable = driver.list_images()
        every = sync("listTemplates", templatefilter="all")["template"]
        return f"list_images() {len(executable)}; templatefilter=all {len(every)}: " + ", ".join(
            sorted({t["name"] for t in every}))

    def hypervisors() -> str:
        return ", ".join(h["name"] for h in sync("listHypervisors", zoneid=seen["zone"].id)["hypervisor"])

    def disable_host() -> str:
        host = sync("updateHost", id=seen["host"]["id"], allocationstate="Disable", hosttags="bench,drain")["host"]
        assert (host["resourcestate"], host["hosttags"]) == ("Disabled", "bench,drain"), host
        return f"{host['name']} {host['resourcestate']} tags {host['hosttags']}"

    def enable_host() -> str:
        host = sync("updateHost", id=seen["host"]["id"], allocationstate="Enable", hosttags="")["host"]
        assert host["resourcestate"] == "Enabled" and "hosttags" not in host, host
        return f"{host['name']} {host['resourcestate']}, no tags"

    def stop_router() -> str:
        router = run_job("stopRouter", id=seen["router"]["id"])["router"]
        assert router["state"] == "Stopped", router
        return f"{router['name']} {router['state']}"

    def start_router() -> str:
        router = run_job("startRouter", id=seen["router"]["id"])["router"]
        assert router["state"] == "Running", router
        return f"{router['name']} {router['state']} version {router['version']}"

    def projects() -> str:
        created = run_job("createProject", name="bench", displaytext="libcloud bench")["project"]
        listed = [p.name for p in driver.ex_list_projects()]
        assert "bench" in listed, listed
        run_job("deleteProject", id=created["id"])
        left = [p.name for p in driver.ex_list_projects()]
        assert "bench" not in left, left
        return f"created {created['name']} ({created['state']}), listed {listed}, deleted"

    step("list zones (list_locations)", zones)
    step("list hosts", hosts)
    step("inspect a host", inspect_host)
    step("list routers (ex_list_routers, listall)", routers_as_libcloud_lists_them)
    step("inspect a router", inspect_router)
    step("list system VMs", system_vms)
    step("list templates (list_images, listTemplates)", images)
    step("list hypervisors of a zone", hypervisors)
    step("disable and tag a host (updateHost)", disable_host)
    step("undo: enable the host, clear its tags", enable_host)
    step("stop a router (async job)", stop_router)
    step("undo: start the router (async job)", start_router)
    step("create, list and delete a project", projects)


def main() -> int:
    timings = Timings(template_download=0.4, router_reboot=0.6, systemvm_recreate=0.4, host_connect=0.2,
                      host_maintenance=0.2, job=0.1)
    with CloudStackSimulator(fleet=Fleet(zones=2, routers=6, redundant_pairs=1), timings=timings) as sim:
        parts = urlsplit(sim.endpoint)
        driver = CloudStackNodeDriver(sim.api_key, sim.secret_key, secure=False, host=parts.hostname,
                                      port=parts.port, path=parts.path)
        driver.connection.poll_interval = 0.2  # libcloud polls queryAsyncJobResult; a second is slow for a lab
        session(driver)
    passed = sum(ok for _, ok, _ in RESULTS)
    print(f"{passed}/{len(RESULTS)} steps passed")
    return 0 if passed == len(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
