"""addHost against a real KVM lab host (sshd, libvirtd in namespaces; see stackops_lab.hosts): the simulator
checks the host for real — libvirtd on TCP 16509, an SSH login with its management key (or a password), the
agent's agent.properties — and names the host by its hostname. Needs root (the lab hosts)."""
from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cs import CloudStack, CloudStackApiException

from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.hosts import LabHost, LabHosts

LIBVIRT_TCP = 'listen_tls = 0\nlisten_tcp = 1\ntcp_port = "16509"\nauth_tcp = "none"\nmdns_adv = 0\n'


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def lab_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHost]:
    manager = LabHosts(Path(tmp_path_factory.mktemp("cloudstack-sim-hosts")))
    try:
        (host,) = manager.create(1, progress)
        host.run(f"printf '{LIBVIRT_TCP}' >> /etc/libvirt/libvirtd.conf"
                 " && sed -i 's/^#LIBVIRTD_ARGS=\"--listen\"/LIBVIRTD_ARGS=\"--listen\"/' /etc/default/libvirtd"
                 " && systemctl restart libvirtd", check=True)
        yield host
    finally:
        manager.destroy(progress)


def test_add_host_checks_a_real_kvm_host(lab_host: LabHost, tmp_path: Path) -> None:
    timings = Timings(host_connect=0.2, host_maintenance=0.2, job=0.05)
    wrong_key = tmp_path / "wrong_key"  # a valid key the host does not authorize
    wrong_key.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    with CloudStackSimulator(fleet=Fleet(routers=4, redundant_pairs=1), timings=timings,
                             ssh_key_path=str(lab_host.client_key_path)) as sim:
        api = CloudStack(sim.endpoint, sim.api_key, sim.secret_key, poll_interval=0.05, fetch_result=True)
        zone = api.listZones(name="lab-zone-1")["zone"][0]
        pod = api.listPods(zoneid=zone["id"])["pod"][0]
        place = dict(zoneid=zone["id"], podid=pod["id"], hypervisor="KVM", url=f"http://{lab_host.address}")

        with pytest.raises(CloudStackApiException) as caught:  # a wrong password
            api.addHost(clustername="lab-kvm-new", username="root", password="not-the-password", **place)
        assert caught.value.response.status_code == 530
        assert caught.value.error["errortext"].startswith(f"Could not add host at [http://{lab_host.address}]")
        assert caught.value.error["errortext"].endswith("due to: [Authentication error].")

        added = api.addHost(clustername="lab-kvm-new", username="root", hosttags="lab,kvm", **place)
        assert added["count"] == 1
        host = added["host"][0]
        assert (host["name"], host["ipaddress"], host["type"], host["hypervisor"]) == (
            lab_host.name, lab_host.address, "Routing", "KVM")
        assert (host["state"], host["resourcestate"], host["hosttags"], host["version"]) == (
            "Connecting", "Enabled", "lab,kvm", "4.19.1.0")
        assert host["clustername"] == "lab-kvm-new"
        # Up after Timings.host_connect; the deadline only stops a hang (a loaded machine needs far less)
        deadline = time.monotonic() + 60
        while api.listHosts(id=host["id"])["host"][0]["state"] != "Up":
            assert time.monotonic() < deadline, "the host did not come Up"
            time.sleep(0.05)
        connected = [(e["from"]["state"], e["state"]) for e in sim.audit()
                     if e["event"] == "host.state" and e["host"] == host["id"]]
        assert connected == [("Connecting", "Up")]

        with pytest.raises(CloudStackApiException) as caught:  # the same host twice
            api.addHost(clustername="lab-kvm-new", username="root", **place)
        assert caught.value.error["errortext"] == (
            f"Unable to add the host: Cannot find the server resources at http://{lab_host.address}")

        with pytest.raises(CloudStackApiException):  # not in maintenance
            api.deleteHost(id=host["id"])
        assert api.prepareHostForMaintenance(id=host["id"])["host"]["resourcestate"] == "Maintenance"
        assert api.deleteHost(id=host["id"]) == {"success": True}
        events = [e["event"] for e in sim.audit() if e.get("host") == host["id"]]
        assert events[0] == "host.added" and events[-1] == "host.deleted"

        # without libvirtd on TCP the host is not a usable KVM host
        lab_host.run("sed -i 's/^LIBVIRTD_ARGS=\"--listen\"/#LIBVIRTD_ARGS=\"--listen\"/' /etc/default/libvirtd"
                     " && systemctl restart libvirtd", check=True)
        with pytest.raises(CloudStackApiException) as caught:
            api.addHost(clustername="lab-kvm-new", username="root", **place)
        assert caught.value.error["errortext"].startswith("Unable to add the host: Cannot find the server resources")

    with CloudStackSimulator(fleet=Fleet(routers=2, redundant_pairs=0), ssh_key_path=str(wrong_key)) as sim:
        lab_host.run("sed -i 's/^#LIBVIRTD_ARGS=\"--listen\"/LIBVIRTD_ARGS=\"--listen\"/' /etc/default/libvirtd"
                     " && systemctl restart libvirtd", check=True)
        api = CloudStack(sim.endpoint, sim.api_key, sim.secret_key)
        zone = api.listZones(name="lab-zone-1")["zone"][0]
        with pytest.raises(CloudStackApiException) as caught:  # the management key is not authorized
            api.addHost(zoneid=zone["id"], podid=api.listPods(zoneid=zone["id"])["pod"][0]["id"],
                        clusterid=api.listClusters(name="lab-zone-1-kvm")["cluster"][0]["id"],
                        hypervisor="KVM", url=f"http://{lab_host.address}", username="root")
        assert "Authentication error" in caught.value.error["errortext"]
