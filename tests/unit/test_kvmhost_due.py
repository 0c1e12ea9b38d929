"""What maintenance a KvmHost is due (issue 15, pure): a rolling restart (`restartAfter`) reboots a host that booted
before it, once; `rebootWhenRequired` reboots a host that asks; an agent version change on a registered host is made
under maintenance (and left out of the host's own plan); nothing is due on a host that needs nothing. The probe's
boot section gives the boot id and the boot time (btime + PID 1's start)."""
from __future__ import annotations

import dataclasses
import datetime
import subprocess

from support.kvmhost_probe import probe_output
from support.specs import HOST_KEY

from stackops.api.kvmhost import HostMaintenanceStatus, KvmHostSpec
from stackops.reconcile.kvmhost.actions import InstallPackages
from stackops.reconcile.kvmhost.due import Maintain, due, group_of
from stackops.reconcile.kvmhost.plan import agent_install, plan
from stackops.reconcile.kvmhost.probe import SCRIPT, parse

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.timezone.utc)
BOOTED = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc).timestamp()
REGISTERED = {"id": "h1", "state": "Up", "resourcestate": "Enabled"}


def spec(maintenance: dict | None = None, agent: str | None = None, cloudstack: bool = True) -> KvmHostSpec:
    body: dict = {"address": "10.0.0.1", "ssh": {"privateKeySecretRef": {"name": "k"}, "hostKey": HOST_KEY},
                  "maintenance": maintenance or {}}
    if agent:
        body["packages"] = {"cloudstackAgentVersion": agent}
    if cloudstack:
        body["cloudstack"] = {"connection": {"secretRef": {"name": "cs"}}, "zone": "z", "pod": "p", "cluster": "c1"}
    return KvmHostSpec.model_validate(body)


def host(**changes):
    return dataclasses.replace(parse(probe_output(), 16509), **{"boot_time": BOOTED, **changes})


def test_a_host_that_needs_nothing_is_due_nothing() -> None:
    assert due(spec(), host(), REGISTERED, None, NOW) is None
    assert due(spec({"rebootWhenRequired": True}), host(reboot_required=False), REGISTERED, None, NOW) is None


def test_restart_after_reboots_a_host_booted_before_it_once() -> None:
    wanted = spec({"restartAfter": "2026-12-07T10:00:00Z"})
    found = due(wanted, host(), REGISTERED, None, NOW)
    assert found is not None and found.reboot and found.request == "restartAfter 2026-12-07T10:00:00Z"
    after = NOW.timestamp() - 60
    assert due(wanted, host(boot_time=after), REGISTERED, None, NOW) is None, "booted since: done"


def test_restart_after_in_the_future_waits() -> None:
    assert due(spec({"restartAfter": "2026-12-08T00:00:00Z"}), host(), REGISTERED, None, NOW) is None


def test_a_completed_restart_is_not_done_twice_whatever_the_boot_time_says() -> None:
    wanted = spec({"restartAfter": "2026-12-07T10:00:00Z"})
    unknown = host(boot_time=None)
    assert due(wanted, unknown, REGISTERED, None, NOW) is not None
    done = HostMaintenanceStatus(request="restartAfter 2026-12-07T10:00:00Z", phase="Completed", step="Done")
    assert due(wanted, unknown, REGISTERED, done, NOW) is None
    assert due(wanted, host(), REGISTERED, done, NOW) is None, "a boot time rounded down before the request"
    other = HostMaintenanceStatus(request="restartAfter 2026-12-06T10:00:00Z", phase="Completed", step="Done")
    assert due(wanted, host(), REGISTERED, other, NOW) is not None


def test_reboot_when_required_names_the_packages() -> None:
    found = due(spec({"rebootWhenRequired": True}), host(reboot_required=True, reboot_required_by=("linux-image",)),
                REGISTERED, None, NOW)
    assert found is not None and found.reboot and found.request == "reboot required by linux-image"
    assert due(spec(), host(reboot_required=True), REGISTERED, None, NOW) is None, "off by default"


def test_an_agent_change_on_a_registered_host_is_made_under_maintenance() -> None:
    probed = host()
    have = probed.packages["cloudstack-agent"]
    wanted = spec(agent="9.9.9")
    found = due(wanted, probed, REGISTERED, None, NOW)
    assert found is not None and not found.reboot and found.changes == (f"cloudstack-agent {have} → 9.9.9",)
    assert not any(isinstance(a, InstallPackages) for a in plan(wanted, probed, "ns/h", defer_agent=True))
    assert any(isinstance(a, InstallPackages) for a in plan(wanted, probed, "ns/h"))
    installs = [a for a in agent_install(wanted, probed, "ns/h") if isinstance(a, InstallPackages)]
    assert [a.packages for a in installs] == [("cloudstack-agent=9.9.9",)]


def test_an_agent_change_in_place_or_unregistered_is_not_maintenance() -> None:
    probed = host()
    assert due(spec({"packageChanges": "InPlace"}, agent="9.9.9"), probed, REGISTERED, None, NOW) is None
    assert due(spec(agent="9.9.9"), probed, None, None, NOW) is None, "not registered: installed in place"


def test_the_group_is_the_cloudstack_cluster_by_default() -> None:
    assert group_of(spec()) == "c1"
    assert group_of(spec(cloudstack=False)) == "default"
    assert group_of(spec({"group": "rack 7"})) == "rack 7"


def test_the_maintenance_is_listed_with_its_steps() -> None:
    text = Maintain("restartAfter x", "c1", True, ("cloudstack-agent 1 → 2",), True).describe()
    assert text.index("slot") < text.index("CloudStack maintenance") < text.index("install") < \
        text.index("reboot") < text.index("cancel") < text.index("release")


def test_the_probe_reads_the_boot_id_and_time_without_a_process() -> None:
    result = subprocess.run(["sh", "-c", SCRIPT.split("section boot -", 1)[1].split("section listening", 1)[0]],
                            capture_output=True, text=True, check=True)
    facts = parse(probe_output() + "@@boot -\n" + result.stdout, 16509)
    with open("/proc/sys/kernel/random/boot_id") as handle:
        assert facts.boot_id == handle.read().strip()
    with open("/proc/stat") as handle:
        btime = next(int(line.split()[1]) for line in handle if line.startswith("btime "))
    assert facts.boot_time is not None and btime <= facts.boot_time <= datetime.datetime.now().timestamp()
