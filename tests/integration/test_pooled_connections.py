"""Pooled SSH connections and CloudStack clients are closed once no object uses them, through the operator's own
handlers (`reconcile_object`, the kopf delete handler) with the real pools: an OpenSSH server (support.sshd) and the
lab CloudStack. Closed on deletion (every deletionPolicy, under Observe, with an invalid spec), on a changed
address, on a rotated SSH key or CloudStack keys; a connection another live object uses stays open."""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import pwd
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from pydantic import SecretStr
from support.sshd import SSHServer

from stackops import status as st
from stackops.api.kinds import KVMHOST, SYSTEMVMTEMPLATE, Kind
from stackops.drivers.cloudstack import CloudStackPool
from stackops.drivers.ssh import SSHPool, SSHTarget
from stackops.handlers import resources
from stackops.reconcile.base import Context, Outcome, Reconciler
from stackops.reconcile.ssh import target_for
from stackops.reconcile.systemvmtemplate import SystemVMTemplateReconciler
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.rollout import SECRET, spec_for


LOG = logging.getLogger("test")
KEY_SECRET = "kvm-ssh"
FLEET = Fleet(zones=1, hypervisors=("KVM",), routers=2, redundant_pairs=0)
TIMINGS = Timings(template_download=0.2, job=0.02)


@pytest.fixture
def sim() -> Iterator[CloudStackSimulator]:
    with CloudStackSimulator(fleet=FLEET, timings=TIMINGS) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def no_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kopf, "event", lambda *_, **__: None)
    monkeypatch.setattr(kopf, "warn", lambda *_, **__: None)


class SSHUser(Reconciler):
    """Uses the SSH pool as the SSH kinds do (a KvmHost's address and `ssh` block, the key from its Secret) and
    nothing else: `true` on the host, when reconciling and when deleting with deletionPolicy Delete."""

    kind = "KvmHost"

    def __init__(self, pool: SSHPool) -> None:
        self.pool = pool
        self.finalized = 0

    def connection(self, ctx: Context) -> Any:
        spec: Any = ctx.spec
        ref = spec.ssh.private_key_secret_ref
        return self.pool.connection(target_for(spec.address, spec.ssh, ctx.secret(ref.name, ref.key)))

    async def reconcile(self, ctx: Context) -> Outcome:
        await self.connection(ctx).run(["true"])
        return Outcome(conditions=st.ready("Reached"))

    async def finalize(self, ctx: Context) -> None:
        await self.connection(ctx).run(["true"])
        self.finalized += 1


class Operator:
    """The handlers of one kind over one reconciler, with Secrets the test can change (a rotation)."""

    def __init__(self, kind: Kind, reconciler: Reconciler, secrets: dict[str, dict[str, str]]) -> None:
        self.kind = kind
        self.secrets = secrets
        self.deps = resources.Deps(reconcilers={kind.kind: reconciler}, secrets=self)  # type: ignore[arg-type]
        registry = kopf.OperatorRegistry()
        resources.register_kind(registry, kind, self.deps)
        [self.on_delete] = [h.fn for h in registry._changing.get_all_handlers() if h.id == "finalize"]

    async def read(self, namespace: str, needed: list) -> dict[str, dict[str, SecretStr]]:
        return {name: {k: SecretStr(v) for k, v in values.items()} for name, values in self.secrets.items()}

    async def reconcile(self, body: dict[str, Any]) -> None:
        try:
            await resources.reconcile_object(self.kind, self.deps, body, kopf.Patch(), LOG)
        except kopf.TemporaryError:
            pass

    async def delete(self, body: dict[str, Any]) -> None:
        await self.on_delete(body=body, logger=LOG)


def user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def kvm_body(sshd: SSHServer, uid: str, *, address: str = "127.0.0.1", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "stackops.io/v1alpha1", "kind": "KvmHost",
            "metadata": {"name": uid, "namespace": "lab", "uid": uid, "generation": 1},
            "spec": {"address": address, "ssh": {"privateKeySecretRef": {"name": KEY_SECRET},
                                                 "hostKey": sshd.host_keys["ed25519"], "port": sshd.port,
                                                 "user": user()}, **spec},
            "status": {}}


def target(sshd: SSHServer, key_type: str = "ed25519", address: str = "127.0.0.1") -> SSHTarget:
    return SSHTarget(address=address, port=sshd.port, user=user(), host_key=sshd.host_keys["ed25519"],
                     private_key=SecretStr(sshd.client_keys[key_type]))


def transport(pool: SSHPool, of: SSHTarget) -> Any:
    """The pooled paramiko transport of a target, None when the pool keeps no connection for it."""
    host = pool._hosts.get(pool._key(of))
    return host.client.get_transport() if host is not None and host.client is not None else None


def digest(private_key: str) -> str:
    return hashlib.sha256(private_key.strip().encode()).hexdigest()


@pytest.mark.parametrize("case", ["Delete", "Orphan", "Observe", "InvalidSpec"])
def test_deleting_an_object_closes_its_connection(sshd: SSHServer, case: str) -> None:
    pool = SSHPool()
    reconciler = SSHUser(pool)
    operator = Operator(KVMHOST, reconciler, {KEY_SECRET: {"ssh-privatekey": sshd.client_keys["ed25519"]}})
    policies = {"Delete": {"deletionPolicy": "Delete"}, "Orphan": {"deletionPolicy": "Orphan"},
                "Observe": {"deletionPolicy": "Delete", "managementPolicy": "Observe"}, "InvalidSpec": {}}

    async def scenario() -> None:
        body = kvm_body(sshd, "kvm1", **policies[case])
        await operator.reconcile(body)
        live = transport(pool, target(sshd))
        assert live is not None and live.is_active()
        if case == "InvalidSpec":
            del body["spec"]["ssh"]  # the spec was made invalid, then the object deleted
        await operator.delete(body)
        assert reconciler.finalized == (1 if case == "Delete" else 0)
        assert not live.is_active()
        assert pool._hosts == {}

    try:
        asyncio.run(scenario())
    finally:
        pool.shutdown()


def test_an_address_change_closes_the_old_connection(sshd: SSHServer) -> None:
    pool = SSHPool()
    operator = Operator(KVMHOST, SSHUser(pool), {KEY_SECRET: {"ssh-privatekey": sshd.client_keys["ed25519"]}})

    async def scenario() -> None:
        await operator.reconcile(kvm_body(sshd, "kvm1", address="127.0.0.1"))
        old = transport(pool, target(sshd))
        await operator.reconcile(kvm_body(sshd, "kvm1", address="localhost"))
        new = transport(pool, target(sshd, address="localhost"))
        assert new is not None and new.is_active()
        assert not old.is_active()
        assert list(pool._hosts) == [pool._key(target(sshd, address="localhost"))]

    try:
        asyncio.run(scenario())
    finally:
        pool.shutdown()


def test_a_rotated_private_key_closes_the_connection_made_with_the_old_one(sshd: SSHServer) -> None:
    pool = SSHPool()
    secrets = {KEY_SECRET: {"ssh-privatekey": sshd.client_keys["ed25519"]}}
    operator = Operator(KVMHOST, SSHUser(pool), secrets)

    async def scenario() -> None:
        body = kvm_body(sshd, "kvm1")
        await operator.reconcile(body)
        old = transport(pool, target(sshd, "ed25519"))
        secrets[KEY_SECRET]["ssh-privatekey"] = sshd.client_keys["rsa"]  # the Secret's key was rotated
        await operator.reconcile(body)
        assert transport(pool, target(sshd, "rsa")).is_active()
        assert not old.is_active()
        assert [host.credential for host in pool._hosts.values()] == [digest(sshd.client_keys["rsa"])]

    try:
        asyncio.run(scenario())
    finally:
        pool.shutdown()


def test_a_connection_another_object_uses_survives_a_deletion(sshd: SSHServer) -> None:
    """Two objects reach one host as one user with one key: one connection, closed with the last of them."""
    pool = SSHPool()
    operator = Operator(KVMHOST, SSHUser(pool), {KEY_SECRET: {"ssh-privatekey": sshd.client_keys["ed25519"]}})

    async def scenario() -> None:
        first, second = kvm_body(sshd, "kvm1"), kvm_body(sshd, "kvm2")
        await operator.reconcile(first)
        await operator.reconcile(second)
        shared = transport(pool, target(sshd))
        await operator.delete(first)
        assert shared.is_active()
        await operator.reconcile(second)
        assert transport(pool, target(sshd)) is shared
        assert pool.counters("127.0.0.1").connects == 1
        await operator.delete(second)
        assert not shared.is_active()
        assert pool._hosts == {}

    try:
        asyncio.run(scenario())
    finally:
        pool.shutdown()


# -- CloudStack clients, through the SystemVMTemplate reconciler ---------------------------------------------------


def cloudstack_secret(sim: CloudStackSimulator) -> dict[str, dict[str, str]]:
    return {SECRET: {"url": sim.endpoint, "apiKey": sim.api_key, "secretKey": sim.secret_key,
                     "allowPlainHTTP": "true"}}


def svt_body(sim: CloudStackSimulator, uid: str) -> dict[str, Any]:
    spec = spec_for(sim).model_dump(by_alias=True, mode="json")
    spec["managementPolicy"] = "Observe"  # reads only: no rollout starts
    spec["deletionPolicy"] = "Delete"
    return {"apiVersion": "stackops.io/v1alpha1", "kind": "SystemVMTemplate",
            "metadata": {"name": uid, "namespace": "lab", "uid": uid, "generation": 1}, "spec": spec, "status": {}}


def sessions(client: Any) -> list[Any]:
    """The aiohttp sessions a CloudStack client has open."""
    return [cs.session for cs in client._cs.values()]


def test_deleting_systemvmtemplates_closes_their_cloudstack_client_with_the_last(sim: CloudStackSimulator) -> None:
    pool = CloudStackPool(poll_interval=0.05)
    operator = Operator(SYSTEMVMTEMPLATE, SystemVMTemplateReconciler(pool, poll_seconds=0.05), cloudstack_secret(sim))

    async def scenario() -> None:
        first, second = svt_body(sim, "svt1"), svt_body(sim, "svt2")
        await operator.reconcile(first)
        await operator.reconcile(second)
        [client] = pool._clients.values()
        [session] = sessions(client)
        await operator.delete(first)
        assert not session.closed and list(pool._clients.values()) == [client]
        await operator.delete(second)
        assert session.closed and client._cs == {}
        assert pool._clients == {}

    try:
        asyncio.run(scenario())
    finally:
        asyncio.run(pool.close())


def test_rotated_cloudstack_keys_close_the_old_client_and_drop_the_old_key(sim: CloudStackSimulator) -> None:
    pool = CloudStackPool(poll_interval=0.05)
    secrets = cloudstack_secret(sim)
    operator = Operator(SYSTEMVMTEMPLATE, SystemVMTemplateReconciler(pool, poll_seconds=0.05), secrets)
    old_secret = sim.secret_key

    async def scenario() -> None:
        body = svt_body(sim, "svt1")
        await operator.reconcile(body)
        [old] = pool._clients.values()
        [session] = sessions(old)
        with sim.state.lock:  # registerUserKeys: the account gets new keys, the old ones stop working
            [account] = [a for a in sim.state.values("account") if a.api_key == sim.api_key]
            account.api_key, account.secret_key = "ROTATED-API-KEY", "ROTATED-SECRET-KEY"
        secrets[SECRET].update(apiKey="ROTATED-API-KEY", secretKey="ROTATED-SECRET-KEY")
        await operator.reconcile(body)
        [new] = pool._clients.values()
        assert new is not old and new.counters.failures == 0  # the new keys were used, and worked
        assert session.closed and old._cs == {}
        assert old_secret not in repr(list(pool._clients))
        assert all(client._secret.get_secret_value() != old_secret for client in pool._clients.values())

    try:
        asyncio.run(scenario())
    finally:
        asyncio.run(pool.close())
