"""The SystemVMTemplate tenant webhook reaches no loopback, link-local, unspecified or cloud metadata address
unless `notifications.allowLocalAddresses` says so: a literal address in the URL and every address its host name
resolves to when the notice is sent are checked, the connection goes to the checked addresses, redirects are not
followed; a refused "before" notice starts no reboot and stalls the rollout (`WebhookAddressNotAllowed`)."""
from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pydantic import SecretStr

from stackops.api.systemvmtemplate import RouterProgress, SystemVMTemplateSpec
from stackops.reconcile.systemvmtemplate import SystemVMTemplateReconciler
from stackops.reconcile.notify import CheckedResolver, NotificationError, WebhookAddressNotAllowed, local_kind
from stackops.reconcile.systemvmtemplate.notify import RouterNotifier as Notifier
from stackops.reconcile.systemvmtemplate.observed import CloudState, Router, Template, older
from stackops.reconcile.systemvmtemplate import plan as planner
from stackops.reconcile.systemvmtemplate.rollout import RouterWave

ROUTER = Router(id="r1", name="r-1-VM", state="Running", zone_id="z1", hypervisor="KVM", version="4.18.0",
                requires_upgrade=older("4.18.0", "4.19.1"), redundant=False, redundant_state="", pair="net1",
                network="net-1", account="acct", domain="ROOT")
TOKEN = "token=s3cr3t-t0ken"


class Recorder(http.server.ThreadingHTTPServer):
    """An HTTP endpoint on 127.0.0.1 recording the paths it is asked for; `redirect` answers 307 to it instead."""

    def __init__(self, redirect: str = "") -> None:
        self.paths: list[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                recorder.paths.append(self.path)
                if redirect:
                    self.send_response(307)
                    self.send_header("Location", redirect)
                else:
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]


@contextmanager
def serving(redirect: str = "") -> Iterator[Recorder]:
    server = Recorder(redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def send(url: str, **options: Any) -> None:
    asyncio.run(Notifier(SecretStr(url), **options).send(ROUTER, "zone-1", "before"))


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("169.254.169.254", "link-local"), ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"), ("::ffff:169.254.169.254", "link-local"), ("64:ff9b::a9fe:a9fe", "link-local"),
    ("0.0.0.0", "this host"), ("0.1.2.3", "this host"), ("::", "this host"),
    ("fd00:ec2::254", "cloud metadata"), ("100.100.100.200", "cloud metadata"),
    ("10.0.0.5", None), ("192.0.2.10", None), ("2001:db8::1", None), ("100.100.100.201", None), ("fd00::1", None),
])
def test_which_addresses_are_local(address: str, kind: str | None) -> None:
    found = local_kind(address)
    assert (found is None) if kind is None else (found is not None and kind in found), found


def test_a_host_name_is_checked_on_what_it_resolves_to_when_the_notice_is_sent() -> None:
    with serving() as hook:
        with pytest.raises(WebhookAddressNotAllowed) as refused:
            send(f"http://localhost:{hook.port}/notices?{TOKEN}")
        assert "loopback" in str(refused.value) and "before notice of router r-1-VM was not sent" in str(refused.value)
        assert TOKEN not in str(refused.value) and "localhost" not in str(refused.value), "no part of the URL"
        assert hook.paths == []
        send(f"http://localhost:{hook.port}/notices?{TOKEN}", allow_local=True)
        assert hook.paths == [f"/notices?{TOKEN}"], "with the opt-in it is sent"


@pytest.mark.parametrize(("host", "refusal"), [("127.0.0.1", WebhookAddressNotAllowed),
                                               ("[::ffff:127.0.0.1]", WebhookAddressNotAllowed),
                                               ("2130706433", NotificationError), ("127.1", NotificationError)])
def test_literal_and_numeric_forms_of_a_local_address_are_refused(host: str, refusal: type) -> None:
    """Numeric shorthands of 127.0.0.1 that a resolver would accept: aiohttp takes them for invalid URLs."""
    with serving() as hook:
        with pytest.raises(refusal):
            send(f"http://{host}:{hook.port}/notices")
        assert hook.paths == []


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://[fe80::1%25eth0]/hook",
                                 "http://[fd00:ec2::254]/latest/", "http://0.0.0.0:9100/metrics"])
def test_metadata_and_link_local_addresses_are_refused_before_any_connection(url: str) -> None:
    with pytest.raises(WebhookAddressNotAllowed):
        send(url, timeout=60.0)  # a connection attempt would end in a timeout or a refusal, not this


class FakeResolver(CheckedResolver):
    """A name service answering `address` for every name, counting the lookups."""

    def __init__(self, address: str):
        self.address, self.lookups = address, 0

    async def resolve(self, host: str, port: int = 0, family: Any = 0) -> list[Any]:
        self.lookups += 1
        return [{"hostname": host, "host": self.address, "port": port, "family": 2, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


def test_a_name_that_resolves_to_the_metadata_service_is_refused_at_each_notice() -> None:
    names = FakeResolver("169.254.169.254")
    notifier = Notifier(SecretStr("https://hooks.example.com/notices"), resolver=names)
    for _ in range(2):
        with pytest.raises(WebhookAddressNotAllowed) as refused:
            asyncio.run(notifier.send(ROUTER, "zone-1", "before"))
        assert "169.254.169.254" in str(refused.value)
    assert names.lookups == 2, "looked up again for each notice, not cached"


def test_redirects_are_not_followed() -> None:
    with serving() as target:
        with serving(redirect=f"http://127.0.0.1:{target.port}/elsewhere") as hook:
            with pytest.raises(NotificationError) as failed:
                send(f"http://127.0.0.1:{hook.port}/notices", allow_local=True)
            assert "HTTP 307" in str(failed.value) and "redirects are not followed" in str(failed.value)
            assert hook.paths == ["/notices"] and target.paths == []


class Client:
    """A CloudStack client that must not be called."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def call(self, command: str, **_: Any) -> dict:
        self.calls.append(command)
        return {}

    async def start(self, command: str, **_: Any) -> str:
        self.calls.append(command)
        return "job-1"


def test_a_refused_before_notice_reboots_nothing_and_stalls_the_rollout() -> None:
    spec = SystemVMTemplateSpec.model_validate({
        "cloudstack": {"secretRef": {"name": "cs"}}, "version": "4.19.1",
        "templates": [{"hypervisor": "KVM", "url": "http://images.lab/kvm.qcow2.bz2",
                       "checksum": "{SHA-512}" + "ab" * 64, "format": "QCOW2"}],
        "notifications": {"webhookURLSecretRef": {"name": "hook", "key": "url"}},
    })
    template = Template(id="t-z1", name="systemvm-kvm-4.19.1", zone_id="z1", hypervisor="KVM", ready=True,
                        status="Download Complete", checksum="{SHA-512}" + "ab" * 64,
                        url="http://images.lab/kvm.qcow2.bz2")
    observed = CloudState(zones={"zone-1": "z1"}, templates=[template],
                          config={"z1": {"router.template.kvm": "systemvm-kvm-4.19.1",
                                         "minreq.sysvmtemplate.version": "4.19.1"}},
                          system_vms=[], routers=[ROUTER])
    plan = planner.plan(spec, observed)
    assert plan.stage == "UpgradingRouters"
    client, progress, events = Client(), RouterProgress(), []
    wave = RouterWave(client, spec, plan, observed, progress,  # type: ignore[arg-type]
                      Notifier(SecretStr("http://169.254.169.254/latest/meta-data/")),
                      lambda *e: events.append(e), deadline=time.time() + 3600, poll_seconds=0.01,
                      retry_backoff=1.0)
    asyncio.run(wave.run())
    wave.write()
    assert client.calls == [], "no router is rebooted without its before notice"
    conditions, phase, requeue = SystemVMTemplateReconciler(None)._router_conditions(  # type: ignore[arg-type]
        spec, progress, wave)
    stalled = next(c for c in conditions if c.type == "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "WebhookAddressNotAllowed")
    assert "169.254.169.254" in stalled.message and "allowLocalAddresses" in stalled.message
    assert requeue is None and phase == "UpgradingRouters"
