"""The lab's XenServer hosts and CloudStack on the lab network (`lab_network=True`, what `stackops lab up --node`
and `make demo` use): they serve on the machine's addresses on the lab hosts' bridge instead of loopback, so what
sits on that network (a lab host here; the node's Pods, whose traffic the machine routes) reaches them as it would
reach real XenServer hosts and a real management server. Without it they stay on loopback."""
from __future__ import annotations

import ipaddress
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import XenAPI

from stackops_lab.cloudstack.component import CloudStackComponent, running as cloudstack_running
from stackops_lab.controlplane import LabError
from stackops_lab.hosts import LabHost
from stackops_lab.xenapi.component import XenComponent


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def reaches(host: LabHost, url: str) -> bool:
    """Whether the lab host opens a TCP connection to the URL's address and port (bash's /dev/tcp)."""
    address, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host.run(f"bash -c 'exec 3<>/dev/tcp/{address}/{port}'", timeout=20).returncode == 0


def answer_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_xen_hosts_and_cloudstack_serve_on_the_lab_bridge(lab_hosts: list[LabHost]) -> None:
    host = lab_hosts[0]
    lab_dir = host.directory.parent.parent  # <lab dir>/hosts/<name>
    xen, cloudstack = XenComponent(lab_network=True), CloudStackComponent(routers=4, lab_network=True)
    try:
        state = xen.start(lab_dir, None, progress)
        cloudstack.start(lab_dir, None, progress)
        subnet = ipaddress.ip_network(f"{host.gateway}/24", strict=False)
        addresses = [h["address"] for _, h in sorted(state["hosts"].items())]
        assert [ipaddress.ip_address(a) in subnet for a in addresses] == [True] * 3, addresses
        assert addresses == [str(ipaddress.ip_address(addresses[0]) + i) for i in range(3)]
        for name, entry in sorted(state["hosts"].items()):
            assert reaches(host, entry["url"]), f"{name} at {entry['url']} is out of the lab network's reach"
        session = XenAPI.Session(state["hosts"]["xen1"]["url"])  # and from the machine, as before
        session.xenapi.login_with_password(state["username"], state["password"])
        session.xenapi.session.logout()
        with pytest.raises(XenAPI.Failure) as refused:  # a pool member names its master by its new address
            XenAPI.Session(state["hosts"]["xen2"]["url"]).xenapi.login_with_password(state["username"],
                                                                                   state["password"])
        assert refused.value.details == ["HOST_IS_SLAVE", addresses[0]]
        endpoint = cloudstack_running(lab_dir)
        assert endpoint is not None and endpoint.endpoint.startswith(f"http://{host.gateway}:"), endpoint
        assert endpoint.base_url.startswith(f"http://{host.gateway}:")
        assert reaches(host, endpoint.endpoint)
        assert answer_status(f"{endpoint.endpoint}?command=listZones&response=json") == 401  # unsigned
    finally:
        cloudstack.stop(lab_dir, progress)
        xen.stop(lab_dir, progress)


def test_loopback_without_the_lab_network(tmp_path: Path) -> None:
    xen = XenComponent(hosts=2)
    try:
        state = xen.start(tmp_path, None, progress)
        assert [h["address"] for _, h in sorted(state["hosts"].items())] == ["127.0.1.10", "127.0.1.11"]
    finally:
        xen.stop(tmp_path, progress)
    assert json.dumps(XenComponent().arguments(tmp_path)).count("--address") == 0


def test_the_lab_network_needs_the_lab_hosts(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="--hosts"):
        XenComponent(lab_network=True).arguments(tmp_path)
    with pytest.raises(LabError, match="--hosts"):
        CloudStackComponent(lab_network=True).arguments(tmp_path)
