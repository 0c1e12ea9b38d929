"""KvmHost package installation against real lab hosts that lack cloudstack-agent: apt-get inside the host installs
it from the lab's repository (stand-in .debs, `stackops_lab.aptrepo`, signed) or from the spec's repositoryURL served
over HTTP and verified with the repository's key from a Secret; a pinned version is installed exactly and upgraded without overwriting the agent.properties the operator
edited; a version the repository does not have fails with a clear reason and changes nothing else."""
from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from support.kvmhost_lab import SECRET, converge, ready, reconcile
from support.kvmhost_lab import context as lab_context

from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.ssh import SSHPool
from stackops.reconcile.base import Context, Outcome, PartialApply
from stackops.reconcile.kvmhost import KvmHostReconciler
from stackops_lab import aptrepo
from stackops_lab.hosts import LabHosts
from stackops_lab.manifests import PACKAGE_KEY, PACKAGE_KEY_SECRET, lab_packages

AGENT_PROPERTIES = "/etc/cloudstack/agent/agent.properties"
SOURCE = "/etc/apt/sources.list.d/stackops-cloudstack.list"
KEYRING = "/etc/apt/keyrings/stackops-cloudstack.asc"


def spec_for(host: Any, **packages: Any) -> KvmHostSpec:
    return KvmHostSpec.model_validate({
        "address": host.address,
        "ssh": {"privateKeySecretRef": {"name": SECRET}, "hostKey": host.host_key},
        "packages": packages,
        "openvswitch": {"bridges": [{"name": "cloudbr0", "datapathType": "netdev"}]},
        "cloudstackAgent": {"properties": {"network.bridge.type": "openvswitch"}},
    })


def context(host: Any, spec: KvmHostSpec, events: list, repository_key: str = "") -> Context:
    """support.kvmhost_lab's, with the repository's key in the lab's Secret when there is one."""
    secrets = {PACKAGE_KEY_SECRET: {PACKAGE_KEY: SecretStr(repository_key)}} if repository_key else {}
    return lab_context(host, spec, events, secrets=secrets)


def installed_version(host: Any) -> str | None:
    result = host.run("dpkg-query -W -f='${db:Status-Status} ${Version}' cloudstack-agent")
    status, _, version = result.stdout.partition(" ")
    return version if result.returncode == 0 and status == "installed" else None


def quiet(outcome: Outcome, pool: SSHPool, host: Any, reconciler: KvmHostReconciler, ctx: Context) -> None:
    """One more pass plans nothing: no mutation, one round trip (the probe)."""
    pool.reset_counters(host.address)
    again = reconcile(reconciler, ctx)
    counters = pool.counters(host.address)
    assert ready(again) and again.applied == [], again.drift
    assert counters.mutations == 0 and counters.round_trips == 1, counters


@contextmanager
def http_server(directory: Path, address: str) -> Iterator[int]:
    """`directory` served over HTTP on `address` (the lab's bridge, which only the lab's hosts reach); its port."""
    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, 0), functools.partial(Handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_agent_is_installed_pinned_and_upgraded_and_a_missing_version_changes_nothing(make_lab_hosts,
                                                                                      pool: SSHPool) -> None:
    (host,) = make_lab_hosts(1, missing_packages=("cloudstack-agent",))
    assert installed_version(host) is None and host.run("test -e /etc/cloudstack").returncode == 1
    reconciler = KvmHostReconciler(pool)
    events: list = []

    # a version the repository does not have: a clear reason, the package state and the rest of the host untouched
    with pytest.raises(PartialApply) as failed:
        reconcile(reconciler, context(host, spec_for(host, cloudstackAgentVersion="9.9.9.9"), events))
    error = failed.value
    assert error.reason == "PackageInstallFailed" and error.retry
    assert "cloudstack-agent 9.9.9.9" in str(error) and "E: Version '9.9.9.9' for 'cloudstack-agent' was not found" \
        in str(error), str(error)
    assert "Traceback" not in str(error)
    assert [a.describe() for a in error.applied] == [
        "refresh the package index (apt-get update): the host has no package index yet"]
    assert installed_version(host) is None and host.run("test -e /etc/cloudstack").returncode == 1
    assert host.run("ovs-vsctl list-br").stdout.strip() == "", "nothing is changed while packages are missing"
    assert host.run("ls /var/cache/apt/archives/*.deb 2>/dev/null; ls /var/lib/dpkg/updates").stdout.strip() == ""

    # a version it has: installed exactly (the index is fresh and lists it: no refresh), then the rest converges
    ctx = context(host, spec_for(host, cloudstackAgentVersion="4.19.1.0"), events)
    first = reconcile(reconciler, ctx)
    assert [a.describe() for a in first.applied] == ["install cloudstack-agent 4.19.1.0 with apt"]
    assert first.fields["versions"]["cloudstackAgent"] == "4.19.1.0"
    outcome = converge(reconciler, ctx)
    assert ready(outcome), outcome.drift
    assert installed_version(host) == "4.19.1.0"
    assert outcome.fields["versions"]["cloudstackAgent"] == "4.19.1.0"
    assert host.run(f"grep -c '^network.bridge.type=openvswitch$' {AGENT_PROPERTIES}").stdout.strip() == "1"
    assert host.run("systemctl is-active cloudstack-agent").stdout.strip() == "active"
    assert "cloudbr0" in host.run("ovs-vsctl list-br").stdout
    quiet(outcome, pool, host, reconciler, ctx)

    # an upgrade to a pinned version whose agent.properties differs: dpkg keeps the one the operator edited
    ctx = context(host, spec_for(host, cloudstackAgentVersion="4.19.2.0"), events)
    upgraded = reconcile(reconciler, ctx)
    assert [a.describe() for a in upgraded.applied] == ["install cloudstack-agent 4.19.1.0 → 4.19.2.0 with apt"]
    assert ready(upgraded), upgraded.drift
    assert installed_version(host) == "4.19.2.0"
    assert upgraded.fields["versions"]["cloudstackAgent"] == "4.19.2.0"
    assert host.run(f"grep -c '^network.bridge.type=openvswitch$' {AGENT_PROPERTIES}").stdout.strip() == "1"
    assert "#host.reserved.mem.mb" in host.run(f"cat {AGENT_PROPERTIES}.dpkg-dist").stdout, \
        "the package's new file is set aside, not installed over the edited one"
    quiet(upgraded, pool, host, reconciler, ctx)


def test_agent_is_installed_from_the_spec_repository_over_http(make_lab_hosts, pool: SSHPool) -> None:
    (host,) = make_lab_hosts(1, missing_packages=("cloudstack-agent",))
    lab = LabHosts(host.directory.parent.parent)
    state = lab.read_state()
    assert state is not None
    host.run("rm -f /etc/apt/sources.list", check=True)  # a host without the CloudStack repository configured
    reconciler = KvmHostReconciler(pool)
    events: list = []
    key = aptrepo.public_key(lab.repository)
    with http_server(lab.repository.parent, state.gateway) as port:
        url = f"http://{state.gateway}:{port}/{lab.repository.name}/"
        ctx = context(host, spec_for(host, **lab_packages(url)), events, repository_key=key)
        first = reconcile(reconciler, ctx)
        assert [a.describe() for a in first.applied] == [
            f"add the signing key of the package repository {url} ({KEYRING})",
            f"add the package repository {url} ({SOURCE})",
            "refresh the package index (apt-get update): the repository source changed",
            "install cloudstack-agent with apt"]
        assert first.fields["versions"]["cloudstackAgent"] == "4.19.2.0", "unpinned: the repository's newest"
        outcome = converge(reconciler, ctx)
        assert ready(outcome), outcome.drift
        assert installed_version(host) == "4.19.2.0"
        source = host.run(f"cat {SOURCE}").stdout
        assert source.splitlines()[-1] == f"deb [signed-by={KEYRING}] {url.rstrip('/')} /", source
        assert host.run(f"cat {KEYRING}").stdout == key and host.run(f"stat -c %a {KEYRING}").stdout.strip() == "644"
        assert host.run(f"ls {SOURCE}.stackops-backup {SOURCE}.stackops-new 2>/dev/null").stdout == ""
        quiet(outcome, pool, host, reconciler, ctx)

    # the spec drops the repository: the source stackops wrote goes, the package stays
    ctx = context(host, spec_for(host), events)
    dropped = reconcile(reconciler, ctx)
    assert [a.describe() for a in dropped.applied] == [
        f"remove the package repository source {SOURCE} (no longer in the spec)",
        f"remove the package repository key {KEYRING} (no longer in the spec)"]
    assert ready(dropped) and host.run(f"test -e {SOURCE} || test -e {KEYRING}").returncode == 1
    assert installed_version(host) == "4.19.2.0"
