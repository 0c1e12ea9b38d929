"""CloudStack versions against the lab CloudStack presenting one (`CloudStackSimulator(version=…)`): the version is
read into status (`cloudstackVersion`), and what that version lacks is refused before it is sent — a system VM
template registered on a CloudStack older than 4.19.0, which would ignore `templatetype` and make a user template."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from cs import CloudStack
from pydantic import SecretStr

from stackops.drivers.cloudstack import CloudStackPool
from stackops.reconcile.base import Context, Outcome, ReconcileError
from stackops.reconcile.systemvmtemplate import SystemVMTemplateReconciler
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.rollout import SECRET, spec_for

def cloudstack_secret_data(sim: CloudStackSimulator) -> dict[str, str]:
    """The lab's CloudStack Secret: plain HTTP, with the Secret's consent."""
    return {"url": sim.endpoint, "apiKey": sim.api_key, "secretKey": sim.secret_key, "allowPlainHTTP": "true"}


FLEET = Fleet(zones=1, hypervisors=("KVM",), routers=2, redundant_pairs=0)
TIMINGS = Timings(template_download=0.2, job=0.02)


def api(sim: CloudStackSimulator) -> CloudStack:
    return CloudStack(sim.endpoint, sim.api_key, sim.secret_key)


@pytest.mark.parametrize("version,registered_as", [("4.18.1.0", "USER"), ("4.19.0.0", "SYSTEM")])
def test_the_simulator_presents_its_version_and_ignores_newer_parameters(version: str, registered_as: str) -> None:
    """As CloudStack does: an older version reports itself and ignores a parameter it does not have."""
    with CloudStackSimulator(fleet=FLEET, timings=TIMINGS, version=version) as sim:
        client = api(sim)
        assert client.listCapabilities()["capability"]["cloudstackversion"] == version
        zone = client.listZones()["zone"][0]["id"]
        ostype = client.listOsTypes()["ostype"][0]["id"]
        client.registerTemplate(name="t", format="QCOW2", hypervisor="KVM", url=sim.image_url("KVM", "4.19.1"),
                                zoneid=zone, ostypeid=ostype, templatetype="SYSTEM")
        [event] = [e for e in sim.audit() if e["event"] == "template.registered"]
        assert event["templatetype"] == registered_as


def one_pass(sim: CloudStackSimulator, status: dict[str, Any]) -> Outcome:
    async def checkpoint(fields: dict[str, Any]) -> None:
        status.update(fields)

    async def go() -> Outcome:
        pool = CloudStackPool(poll_interval=0.05)
        ctx = Context(namespace="lab", name="rollout", generation=1, spec=spec_for(sim), status=dict(status),
                      secrets={SECRET: {k: SecretStr(v) for k, v in cloudstack_secret_data(sim).items()}},
                      event=lambda *_: None, logger=logging.getLogger("test"), checkpoint=checkpoint)
        try:
            return await SystemVMTemplateReconciler(pool, poll_seconds=0.05).reconcile(ctx)
        finally:
            await pool.close()

    return asyncio.run(go())


def test_a_system_template_is_not_registered_on_a_cloudstack_older_than_4_19() -> None:
    with CloudStackSimulator(fleet=FLEET, timings=TIMINGS, version="4.18.1.0") as sim:
        status: dict[str, Any] = {}
        with pytest.raises(ReconcileError) as refused:
            one_pass(sim, status)
        error = refused.value
        assert (error.reason, error.retry) == ("UnsupportedCloudStackVersion", False)  # Stalled
        assert "4.19.0" in str(error) and "4.18.1.0" in str(error)
        assert status["cloudstackVersion"] == "4.18.1.0"
        assert not [e for e in sim.audit() if e["event"] == "template.registered"], "nothing was sent"


def test_the_version_is_in_status_and_follows_an_upgrade() -> None:
    with CloudStackSimulator(fleet=FLEET, timings=TIMINGS, version="4.19.0.0") as sim:
        status: dict[str, Any] = {}
        outcome = one_pass(sim, status)
        assert status["cloudstackVersion"] == "4.19.0.0"
        assert [e["templatetype"] for e in sim.audit() if e["event"] == "template.registered"] == ["SYSTEM"]
        assert outcome.applied
        sim.version = "4.20.1.0"  # upgraded; every pass opens its own client, so it reads the version again
        one_pass(sim, status)
        assert status["cloudstackVersion"] == "4.20.1.0"
