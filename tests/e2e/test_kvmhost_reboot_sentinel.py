"""Whether a KVM lab host needs a reboot, as the KvmHost probe finds it (issue 15, the observation half): the
sentinel Debian's packages leave (/run/reboot-required and .pkgs, seen through the /var/run link) is written on the
host over SSH, in its own /run; a reconcile shows rebootRequired true with the packages, and false once it is gone.
Nothing is rebooted, and the sentinel costs the probe no process (tests/e2e/test_kvmhost_probe_processes.py)."""
from __future__ import annotations

import asyncio

from pydantic import SecretStr
from support.kvmhost_lab import context, converge, ready, reconcile, spec_for

from stackops.api.kvmhost import KvmHostStatus
from stackops.drivers.ssh import SSHPool, SSHTarget
from stackops.reconcile.kvmhost import KvmHostReconciler
from stackops.reconcile.kvmhost.plan import probe_arguments
from stackops.reconcile.kvmhost.probe import SCRIPT
from stackops_lab.spawns import spawned_by


def over_ssh(host, command: str) -> None:
    """`command` on the host over SSH (a pool of its own), as an admin or a package's postinst would run it."""
    pool = SSHPool()
    target = SSHTarget(address=host.address, port=22, user="root", host_key=host.host_key,
                       private_key=SecretStr(host.client_key_pem))
    try:
        asyncio.run(pool.connection(target).run(["sh", "-c", command], mutation=True))
    finally:
        pool.close_all()


def test_the_sentinel_on_the_host_shows_in_status(lab_hosts: list) -> None:
    host, peer = lab_hosts[0], lab_hosts[1]
    pool = SSHPool()
    try:
        reconciler = KvmHostReconciler(pool)
        spec = spec_for(host, peer)
        outcome = converge(reconciler, context(host, spec, []))
        assert ready(outcome), outcome.conditions
        assert outcome.fields["rebootRequired"] is False and outcome.fields["rebootRequiredBy"] == []
        without = spawned_by(host, SCRIPT, ["", *probe_arguments(spec)])

        over_ssh(host, "printf '*** System restart required ***\\n' > /run/reboot-required && "
                       "printf 'linux-image-6.1.0-21-amd64\\nlibc6\\nlinux-image-6.1.0-21-amd64\\n' "
                       "> /run/reboot-required.pkgs")
        needs = reconcile(reconciler, context(host, spec, []))
        status = KvmHostStatus.model_validate(needs.fields)
        assert status.reboot_required is True
        assert status.reboot_required_by == ["linux-image-6.1.0-21-amd64", "libc6"]
        assert ready(needs), "a reboot the host asks for is no drift"
        with_sentinel = spawned_by(host, SCRIPT, ["", *probe_arguments(spec)])
        assert with_sentinel.exit_status == 0
        assert sorted(with_sentinel.commands) == sorted(without.commands), "the sentinel costs no process"

        over_ssh(host, "rm -f /run/reboot-required.pkgs")
        alone = reconcile(reconciler, context(host, spec, []))
        assert (alone.fields["rebootRequired"], alone.fields["rebootRequiredBy"]) == (True, [])

        over_ssh(host, "rm -f /run/reboot-required")
        done = reconcile(reconciler, context(host, spec, []))
        assert (done.fields["rebootRequired"], done.fields["rebootRequiredBy"]) == (False, [])
        assert host.run("test -e /run/reboot-required; echo $?").stdout.strip() == "1"
    finally:
        host.run("rm -f /run/reboot-required /run/reboot-required.pkgs")
        pool.close_all()
