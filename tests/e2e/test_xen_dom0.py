"""XenServer dom0 stand-ins: the lab XenAPI simulator served at KVM lab hosts' addresses (inside their network
namespaces), with /etc/xensource-inventory, /var/lib/xcp/state.db and `service xapi stop|start|status` in the lab
hosts, driven over real SSH sessions (paramiko, pinned host keys) and the official XenAPI SDK: a cloned host made
unique the way the operator does it joins the pool; a stopped xapi refuses connections; a malformed inventory
fails `service xapi start`; a removed xapi-ssl.pem comes back from `service xapi restart` as a fresh self-signed
certificate."""
from __future__ import annotations

import base64
import io
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import paramiko
import pytest

from support.xenapi import FAST, XENAPI_DOWN, endpoint, events, failure, login, master_of
from support.wait import wait_for

from stackops.drivers.xenapi import XenTLSError
from stackops_lab.hosts import LabHost, LabHosts
from stackops_lab.xenapi import XenHostSpec, XenLab
from stackops_lab.xenapi.tls import CERTIFICATE_PATH


def pinned(host: LabHost) -> paramiko.SSHClient:
    """root@host over SSH, trusting exactly the host's own key."""
    client = paramiko.SSHClient()
    key_type, blob = host.host_key.split()[:2]
    client.get_host_keys().add(host.address, key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(blob)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(host.client_key_path.read_text()))
    client.connect(host.address, port=22, username="root", pkey=key, look_for_keys=False, allow_agent=False,
                   timeout=15, banner_timeout=15, auth_timeout=15)
    return client


def run(client: paramiko.SSHClient, command: str) -> tuple[int, str, str]:
    _, stdout, stderr = client.exec_command(command, timeout=120)
    status = stdout.channel.recv_exit_status()
    return status, stdout.read().decode(), stderr.read().decode()


def ok(client: paramiko.SSHClient, command: str) -> str:
    status, out, err = run(client, command)
    assert status == 0, f"`{command}` exited {status}\nstdout: {out}\nstderr: {err}"
    return out


def inventory_of(client: paramiko.SSHClient) -> dict[str, str]:
    lines = ok(client, "cat /etc/xensource-inventory").splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip()]
    assert all(value.startswith("'") and value.endswith("'") for _, value in pairs), lines
    return {key: value.strip("'") for key, value in pairs}


def dom0_lab(hosts: list[LabHost], pools: list[list[str]], standalone: tuple[str, ...]) -> XenLab:
    """xen1, xen2, … on the lab hosts; standalone hosts run no VMs (a host that joins must not)."""
    names = [f"xen{i + 1}" for i in range(len(hosts))]
    return XenLab(hosts=[XenHostSpec(n, vms=0 if n in standalone else None) for n in names], pools=pools,
                  timings=FAST, vms_per_host=1, dom0s=dict(zip(names, hosts)))


def listening_on(host: LabHost, port: int) -> bool:
    return f":{port} " in host.run("ss -Hltn", check=True).stdout


def test_a_cloned_dom0_made_unique_over_ssh_joins_the_pool(make_lab_hosts: Callable[..., list[LabHost]]) -> None:
    kvm1, kvm2, kvm3 = make_lab_hosts(3)
    with dom0_lab([kvm1, kvm2, kvm3], pools=[["xen1", "xen2"]], standalone=("xen3",)) as lab:
        # each XenServer host is served at its lab host's address, port 80, from inside the lab host
        assert lab.port == 80
        assert [lab.url(n) for n in ("xen1", "xen2", "xen3")] == [f"http://{h.address}:80" for h in (kvm1, kvm2, kvm3)]
        master = login(lab, "xen1")
        assert sorted(r["address"] for r in master.xenapi.host.get_all_records().values()) == sorted(
            [kvm1.address, kvm2.address])
        assert failure(login, lab, "xen2") == ["HOST_IS_SLAVE", kvm1.address]
        assert listening_on(kvm1, 80)
        controls = [int(h.run("cat /etc/stackops-lab/xapi-control", check=True).stdout.split(":")[1])
                    for h in (kvm1, kvm2, kvm3)]
        assert all(listening_on(h, port) for h, port in zip((kvm1, kvm2, kvm3), controls))

        with pinned(kvm1) as ssh1, pinned(kvm3) as ssh3:
            # the dom0 files, one per lab host, as the API sees them
            xen1_inventory = inventory_of(ssh1)
            assert xen1_inventory == lab.inventory("xen1")
            xen1_ref = master.xenapi.host.get_by_uuid(xen1_inventory["INSTALLATION_UUID"])
            assert master.xenapi.host.get_address(xen1_ref) == kvm1.address
            assert inventory_of(ssh3)["INSTALLATION_UUID"] != xen1_inventory["INSTALLATION_UUID"]
            ok(ssh3, "test -f /var/lib/xcp/state.db")
            assert ok(ssh3, "service xapi status; echo rc=$?").strip().endswith("rc=0")

            # a clone of xen1 (a copied VM template): xen1's UUIDs in its file and through the API
            lab.clone("xen3", from_host="xen1")
            clone_inventory = inventory_of(ssh3)
            for key in ("INSTALLATION_UUID", "CONTROL_DOMAIN_UUID"):
                assert clone_inventory[key] == xen1_inventory[key]
            clone = login(lab, "xen3")
            (clone_host,) = clone.xenapi.host.get_all()
            assert clone.xenapi.host.get_uuid(clone_host) == xen1_inventory["INSTALLATION_UUID"]
            old_pool = clone.xenapi.pool.get_uuid(clone.xenapi.pool.get_all()[0])
            assert failure(clone.xenapi.pool.join, kvm1.address, lab.username, lab.password) == [
                "OPERATION_NOT_ALLOWED", "Host cannot become slave of itself"]

            # what the operator does over SSH: stop xapi, new UUIDs, no state DB, start xapi
            host_uuid, dom0_uuid = str(uuid.uuid4()), str(uuid.uuid4())
            ok(ssh3, "service xapi stop")
            with pytest.raises(OSError):
                clone.xenapi.host.get_uuid(clone_host)  # connection refused
            ok(ssh3, f"sed -i -e \"s/^INSTALLATION_UUID=.*/INSTALLATION_UUID='{host_uuid}'/\" "
                     f"-e \"s/^CONTROL_DOMAIN_UUID=.*/CONTROL_DOMAIN_UUID='{dom0_uuid}'/\" /etc/xensource-inventory")
            ok(ssh3, "rm -f /var/lib/xcp/state.db")
            ok(ssh1, "test -f /var/lib/xcp/state.db")  # each host has its own /var/lib/xcp
            assert not Path("/var/lib/xcp/state.db").exists()  # the machine's is not touched
            ok(ssh3, "service xapi start")
            ok(ssh3, "test -f /var/lib/xcp/state.db")  # xapi made a new one
            assert inventory_of(ssh1)["INSTALLATION_UUID"] == xen1_inventory["INSTALLATION_UUID"]  # xen1's untouched

        # xen3 answers at its address with the new UUIDs: a fresh standalone pool
        unique = login(lab, "xen3")
        (host_ref,) = unique.xenapi.host.get_all()
        record = unique.xenapi.host.get_record(host_ref)
        assert record["uuid"] == host_uuid and record["address"] == kvm3.address
        assert unique.xenapi.VM.get_uuid(record["control_domain"]) == dom0_uuid
        (pool,) = unique.xenapi.pool.get_all()
        assert unique.xenapi.pool.get_uuid(pool) != old_pool and unique.xenapi.pool.get_master(pool) == host_ref
        assert lab.inventory("xen3")["INSTALLATION_UUID"] == host_uuid
        unique.xenapi.host.set_name_label(host_ref, "xen3")

        # … and joins xen1's pool at xen1's lab host address
        unique.xenapi.pool.join(kvm1.address, lab.username, lab.password)
        wait_for(lambda: lab.pool_of("xen1")["live"].get("xen3"), what="xen3 live in xen1's pool", timeout=10,
                 ignoring=XENAPI_DOWN)
        master = login(lab, "xen1")
        joined = master.xenapi.host.get_by_uuid(host_uuid)
        assert master.xenapi.host.get_name_label(joined) == "xen3"
        assert master.xenapi.host.get_address(joined) == kvm3.address
        assert failure(login, lab, "xen3") == ["HOST_IS_SLAVE", kvm1.address]
        started = events(lab, "xapi.start")
        assert [(e["host"], e["uuid"], e["state_db"]) for e in started] == [("xen3", host_uuid, False)]
        assert [e["host"] for e in events(lab, "xapi.stop")] == ["xen3"]

    # the lab stopped: nothing listens in the lab hosts any more, `service xapi` is gone with it
    for host, port in zip((kvm1, kvm2, kvm3), controls):
        assert not listening_on(host, 80) and not listening_on(host, port)
        assert host.run("test -e /etc/stackops-lab/xapi-control").returncode == 1
        assert host.run("service xapi status").returncode == 4  # no such unit


def test_service_xapi_stop_start_and_a_malformed_inventory(make_lab_hosts: Callable[..., list[LabHost]]) -> None:
    (kvm1,) = make_lab_hosts(1)
    with dom0_lab([kvm1], pools=[], standalone=("xen1",)) as lab, pinned(kvm1) as ssh:
        session = login(lab, "xen1")
        old_ref = session._session
        uuid_before = inventory_of(ssh)["INSTALLATION_UUID"]

        ok(ssh, "service xapi stop")
        status, out, _ = run(ssh, "service xapi status")
        assert status == 3 and "inactive (dead)" in out
        with pytest.raises(OSError):  # connection refused, as with a stopped xapi
            login(lab, "xen1")
        assert lab.status("xen1")["xapi"] == "stopped" and lab.status("xen1")["power"] == "up"

        # a malformed inventory: start fails (exit 1, the reason on stderr), xapi stays stopped
        ok(ssh, "cp /etc/xensource-inventory /root/inventory.good")
        ok(ssh, "sed -i \"s/^INSTALLATION_UUID=.*/INSTALLATION_UUID='not-a-uuid'/\" /etc/xensource-inventory")
        status, _, err = run(ssh, "service xapi start")
        assert status == 1 and "INSTALLATION_UUID 'not-a-uuid' is not a UUID" in err, err
        ok(ssh, "echo 'this line is no inventory entry' >> /root/inventory.bad; cat /root/inventory.good "
                "/root/inventory.bad > /etc/xensource-inventory")
        status, _, err = run(ssh, "service xapi start")
        assert status == 1 and "is not KEY='value'" in err, err
        with pytest.raises(ValueError, match="not KEY='value'"):
            lab.restart_xapi("xen1")  # the lab's own restart reads the same file
        assert run(ssh, "service xapi status")[0] == 3
        with pytest.raises(OSError):
            login(lab, "xen1")
        assert [e["host"] for e in events(lab, "xapi.start_failed")] == ["xen1", "xen1"]

        # fixed: it starts with the state DB kept (same host, same pool), sessions from before are gone
        ok(ssh, "cp /root/inventory.good /etc/xensource-inventory && service xapi start")
        assert run(ssh, "service xapi status")[0] == 0
        session.xenapi.host.get_all()  # SESSION_INVALID: the SDK logged in again
        assert session._session != old_ref
        again = login(lab, "xen1")
        (host,) = again.xenapi.host.get_all()
        assert again.xenapi.host.get_uuid(host) == uuid_before

        # the lab's Python knobs and the dom0's files agree: remove_state_db removes the file
        lab.remove_state_db("xen1")
        assert run(ssh, "test -e /var/lib/xcp/state.db")[0] == 1
        fresh = str(uuid.uuid4())
        lab.set_inventory_uuid("xen1", fresh)
        assert inventory_of(ssh)["INSTALLATION_UUID"] == fresh
        ok(ssh, "service xapi restart")
        restarted = login(lab, "xen1")
        (host,) = restarted.xenapi.host.get_all()
        assert restarted.xenapi.host.get_uuid(host) == fresh  # a fresh database with the new UUID
        ok(ssh, "test -f /var/lib/xcp/state.db")


@pytest.mark.skipif(os.geteuid() != 0, reason="lab hosts need root")
def test_a_removed_xapi_ssl_pem_is_regenerated_self_signed_when_xapi_starts(tmp_path: Path) -> None:
    """What MakeUnique's `rm /etc/xensource/xapi-ssl.pem; service xapi start` leaves: a new self-signed
    certificate (xapi's gencert), which a client verifying against the lab CA refuses; pinned, it verifies. A
certificate written into the file is served from the next start."""
    manager = LabHosts(tmp_path / "lab")
    try:
        [host] = manager.create(1)
        with XenLab(hosts=[XenHostSpec("xen1")], timings=FAST, dom0s={"xen1": host}, tls=True) as xen:
            assert xen.port == 443 and xen.url("xen1") == f"https://{host.address}:443"
            served = xen.tls.certificate("xen1")  # type: ignore[union-attr]
            assert host.run(f"cat {CERTIFICATE_PATH}", check=True).stdout.strip() == served.pem.strip()
            assert master_of(xen, ["xen1"], endpoint(xen))[0] == host.address
            host.run(f"rm {CERTIFICATE_PATH} && service xapi restart", check=True)
            regenerated = xen.tls.certificate("xen1")  # type: ignore[union-attr]
            assert regenerated.issuer == "self-signed" and regenerated.cert_pem != served.cert_pem
            assert host.run(f"cat {CERTIFICATE_PATH}", check=True).stdout.strip() == regenerated.pem.strip()
            with pytest.raises(XenTLSError, match="self[- ]signed certificate"):
                master_of(xen, ["xen1"], endpoint(xen))
            assert master_of(xen, ["xen1"], endpoint(xen, ca_pem=regenerated.cert_pem))[0] == host.address
            # a certificate installed in the file by hand is what xapi serves once it starts again
            host.run(f"rm -f {CERTIFICATE_PATH} && cat > {CERTIFICATE_PATH} <<'EOF'\n{served.pem}EOF\n"
                     "service xapi restart", check=True)
            assert master_of(xen, ["xen1"], endpoint(xen))[0] == host.address
            assert [e["reason"] for e in events(xen, "host.certificate_installed")] == \
                ["lab CA", "generated", CERTIFICATE_PATH]
    finally:
        manager.destroy()
