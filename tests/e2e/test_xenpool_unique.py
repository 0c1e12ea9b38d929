"""A cloned XenServer host made unique by the XenPool reconciler over dom0 SSH (lab hosts standing in for dom0s:
real sshd with pinned host keys, /etc/xensource-inventory, the xapi state DB, `service xapi stop|start`), then
joined inside the HA dance; under `Detect` the same clone stalls the pool and nothing is touched."""
from __future__ import annotations

from typing import Any

from pydantic import SecretStr
from support.xenpool import FAST, Driver, condition, ready
from support.credentials import secret

from stackops.api.xenpool import XenPoolSpec
from stackops.drivers.ssh import SSHPool
from stackops_lab.hosts import LabHost
from stackops_lab.xenapi import XenHostSpec, XenLab

KEY_SECRET = "dom0-ssh"


def spec(xen: XenLab, hosts: list[LabHost], policy: str) -> XenPoolSpec:
    names = [f"xen{i + 1}" for i in range(len(hosts))]
    data: dict[str, Any] = {
        "members": [{"name": n, "address": xen.address(n), "sshHostKey": h.host_key} for n, h in zip(names, hosts)],
        "credentialsSecretRef": {"name": "xen-root"}, "tls": {"plainHTTP": True}, "xenapiPort": xen.port,
        "ha": {"timeoutSeconds": 180}, "uniqueness": {"policy": policy},
    }
    if policy == "MakeUnique":
        data["uniqueness"]["ssh"] = {"privateKeySecretRef": {"name": KEY_SECRET}}
    return XenPoolSpec.model_validate(data)


def test_a_clone_is_made_unique_over_ssh_and_joined(make_lab_hosts) -> None:
    hosts = make_lab_hosts(4)
    names = ["xen1", "xen2", "xen3", "xen4"]
    with XenLab(hosts=[XenHostSpec(n, vms=0 if n == "xen4" else None) for n in names],
                pools=[["xen1", "xen2", "xen3"]], timings=FAST, vms_per_host=1,
                dom0s=dict(zip(names, hosts))) as xen:
        xen.clone("xen4", from_host="xen1")
        cloned_uuid = xen.inventory("xen4")["INSTALLATION_UUID"]
        assert cloned_uuid == xen.inventory("xen1")["INSTALLATION_UUID"]

        detect = Driver(xen, spec(xen, hosts, "Detect"))
        stalled = condition(detect.run(), "Stalled")
        assert stalled.status == "True" and stalled.reason == "DuplicateHostUUID"
        assert xen.inventory("xen4")["INSTALLATION_UUID"] == cloned_uuid, "Detect changes nothing"

        ssh = SSHPool()
        try:
            driver = Driver(xen, spec(xen, hosts, "MakeUnique"), ssh=ssh)
            driver.secrets[KEY_SECRET] = secret({"ssh-privatekey": hosts[3].client_key_pem},
                                                *(xen.address(n) for n in xen.hosts))
            outcome = driver.converge(passes=8)
        finally:
            ssh.shutdown()
        assert ready(outcome), outcome.conditions
        new_uuid = xen.inventory("xen4")["INSTALLATION_UUID"]
        assert new_uuid != cloned_uuid
        assert xen.inventory("xen4")["CONTROL_DOMAIN_UUID"] != xen.inventory("xen1")["CONTROL_DOMAIN_UUID"]
        pool = xen.pool_of("xen1")
        assert sorted(pool["members"]) == names and pool["ha_enabled"]
        assert pool["ha_configuration"]["timeout"] == "180"
        hosts_status = {h["name"]: h for h in outcome.fields["hosts"]}
        assert hosts_status["xen4"]["uuid"] == new_uuid and hosts_status["xen4"]["role"] == "supporter"
        labels = [e for e in xen.audit() if e["event"] in ("xapi.stop", "xapi.start", "pool.join")]
        assert [(e["event"], e["host"]) for e in labels][:3] == [("xapi.stop", "xen4"), ("xapi.start", "xen4"),
                                                                  ("pool.join", "xen4")], labels
        made = [m for _, reason, m in driver.events if reason == "MadeUnique"]
        assert len(made) == 1 and cloned_uuid in made[0] and new_uuid in made[0]
        assert hosts[3].client_key_pem not in str(driver.events)
