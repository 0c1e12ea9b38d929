"""Shared by the SystemVMTemplate tests, beside `stackops_lab.rollout` (the spec, Secrets, status loop and audit
reading they share with bench/router_rollout.py): which routers of a redundant pair rebooted, and a webhook that
records the tenant notices.

Also a rollout's inputs for unit tests of its waves: one KVM template in one zone, the spec, routers and what
CloudStack has (CloudState) with the template ready and the system VMs replaced."""
from __future__ import annotations

import http.server
import json
import threading
import time
from collections import defaultdict
from typing import Any

from stackops.api.systemvmtemplate import SystemVMTemplateSpec
from stackops.reconcile.systemvmtemplate.observed import CloudState, Router, SystemVM, Template, older

SUM = "{SHA-512}" + "ab" * 64


def spec(max_unavailable: int = 1) -> SystemVMTemplateSpec:
    return SystemVMTemplateSpec.model_validate({
        "cloudstack": {"secretRef": {"name": "cs"}}, "version": "4.19.1",
        "templates": [{"hypervisor": "KVM", "url": "http://images.lab/kvm.qcow2.bz2", "checksum": SUM,
                       "format": "QCOW2"}],
        "rollout": {"routers": {"maxUnavailable": max_unavailable}},
    })


def router(n: int, *, version: str = "4.18.0", state: str = "Running") -> Router:
    return Router(id=f"r{n}", name=f"r-{n}-VM", state=state, zone_id="z1", hypervisor="KVM", version=version,
                  requires_upgrade=older(version, "4.19.1"), redundant=False, redundant_state="", pair=f"net{n}",
                  network=f"net-{n}", account="tenant-1", domain="ROOT")


def observed(*routers: Router) -> CloudState:
    """CloudStack with the new template ready, its settings made and the system VMs on it: only `routers` left."""
    template = Template("t-z1", "systemvm-kvm-4.19.1", "z1", "KVM", True, "Download Complete", SUM,
                        "http://images.lab/kvm.qcow2.bz2")
    return CloudState(zones={"zone-1": "z1"}, templates=[template],
                      config={"z1": {"router.template.kvm": "systemvm-kvm-4.19.1",
                                     "minreq.sysvmtemplate.version": "4.19.1"}},
                      system_vms=[SystemVM("s1", "s-1-VM", "secondarystoragevm", "Running", "z1", "KVM", "t-z1"),
                                  SystemVM("v1", "v-2-VM", "consoleproxy", "Running", "z1", "KVM", "t-z1")],
                      routers=list(routers))


def reboots_by_pair(audit: list[dict[str, Any]]) -> dict[str, list[str]]:
    pairs: dict[str, list[str]] = defaultdict(list)
    for entry in audit:
        if entry.get("event") == "router.reboot.start" and entry.get("pair"):
            pairs[entry["pair"]].append(entry["router"])
    return pairs


# ---------------------------------------------------------------------------------------------------- webhook


class Webhook:
    """A local HTTP endpoint that records the JSON notices it receives, in arrival order."""

    def __init__(self) -> None:
        self.notices: list[dict[str, Any]] = []
        self.times: list[float] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                recorder.notices.append(json.loads(body))
                recorder.times.append(time.monotonic())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 128  # maxUnavailable notices arrive at once; the default backlog of 5 drops some

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/notices?token=abc"

    def __enter__(self) -> "Webhook":
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
