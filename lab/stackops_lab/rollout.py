"""A SystemVMTemplate rollout run in process against the lab CloudStack (`stackops_lab.cloudstack`), for
bench/router_rollout.py and the tests: a spec and Secrets for the simulator, a status loop that drives the
reconciler as the kopf handlers do, and the router reboots read from the simulator's audit log."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from stackops import status as st
from stackops.api.systemvmtemplate import SystemVMTemplateSpec, SystemVMTemplateStatus
from stackops.reconcile.base import Context, Outcome, ReconcileError

VERSION = "4.19.1"
SECRET = "lab-cloudstack"
WEBHOOK_SECRET = "tenant-notices"


def spec_for(sim: Any, *, max_unavailable: int | str = 10, webhook: bool = False,
             **routers: Any) -> SystemVMTemplateSpec:
    templates = []
    for hypervisor, fmt in (("KVM", "QCOW2"), ("XenServer", "VHD")):
        if hypervisor in sim.fleet.hypervisors:
            templates.append({"hypervisor": hypervisor, "url": sim.image_url(hypervisor, VERSION),
                              "checksum": sim.image_checksum(hypervisor, VERSION), "format": fmt})
    body: dict[str, Any] = {
        "cloudstack": {"secretRef": {"name": SECRET}},
        "version": VERSION,
        "templates": templates,
        "rollout": {"routers": {"maxUnavailable": max_unavailable, **routers}},
        "resyncIntervalSeconds": 30,
    }
    if webhook:
        # the test's webhook listens on 127.0.0.1: a loopback address, which needs the opt-in
        body["notifications"] = {"webhookURLSecretRef": {"name": WEBHOOK_SECRET, "key": "url"},
                                 "allowLocalAddresses": True}
    return SystemVMTemplateSpec.model_validate(body)


def secrets_for(sim: Any, webhook_url: str = "") -> dict[str, dict[str, SecretStr]]:
    secrets = {SECRET: {"url": SecretStr(sim.endpoint), "apiKey": SecretStr(sim.api_key),
                        "secretKey": SecretStr(sim.secret_key), "allowPlainHTTP": SecretStr("true")}}
    if webhook_url:
        secrets[WEBHOOK_SECRET] = {"url": SecretStr(webhook_url)}
    return secrets


@dataclass
class Driver:
    """Runs reconcile passes the way the kopf handlers do: status carried over between passes, requeue honoured,
    retryable errors retried after a short pause."""

    reconciler: Any
    spec: SystemVMTemplateSpec
    secrets: dict[str, dict[str, SecretStr]]
    generation: int = 1
    status: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    passes: int = 0

    def context(self) -> Context:
        return Context(namespace="lab", name="rollout", generation=self.generation, spec=self.spec,
                       status=dict(self.status), secrets=self.secrets,
                       event=lambda t, r, m: self.events.append((t, r, m)), logger=logging.getLogger("rollout"),
                       checkpoint=self.checkpoint)

    async def checkpoint(self, fields: dict[str, Any]) -> None:
        """As the handlers' checkpoint: status fields validated and written at once, in the middle of a pass."""
        checked = SystemVMTemplateStatus.model_validate(fields)
        self.status.update(checked.model_dump(by_alias=True, exclude_unset=True, mode="json"))

    def write(self, outcome: Outcome) -> None:
        self.status["observedGeneration"] = self.generation
        self.status["conditions"] = st.merge_conditions(self.status.get("conditions"), outcome.conditions,
                                                        self.generation)
        checked = SystemVMTemplateStatus.model_validate(outcome.fields)
        self.status.update(checked.model_dump(by_alias=True, exclude_unset=True, mode="json"))

    async def one(self) -> float | None:
        self.passes += 1
        try:
            outcome = await self.reconciler.reconcile(self.context())
        except ReconcileError as error:
            self.errors.append(f"{error.reason}: {error}")
            self.status["conditions"] = st.merge_conditions(self.status.get("conditions"),
                                                            st.progressing(error.reason, str(error)), self.generation)
            if not error.retry:
                return None
            return min(error.delay, 0.5)
        self.write(outcome)
        return outcome.requeue_after

    async def until_settled(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            delay = await self.one()
            if delay is None:
                return self.status
            await asyncio.sleep(min(delay, 0.5))
        raise AssertionError(f"not settled after {timeout:.0f}s: {json.dumps(self.status)[:2000]}")

    def condition(self, type_: str) -> dict[str, Any]:
        return next((c for c in self.status.get("conditions", []) if c["type"] == type_), {})


# ---------------------------------------------------------------------------------------------------- audit


@dataclass
class AuditReport:
    max_rebooting: int
    both_down: int
    reboots: Counter
    rebooted_after_success: list[str]
    first_start: float | None
    last_end: float | None


def analyse(audit: list[dict[str, Any]]) -> AuditReport:
    """Concurrency, pairs and repeats of router reboots, from the simulator's audit log."""
    rebooting: set[str] = set()
    peak = 0
    reboots: Counter = Counter()
    succeeded: set[str] = set()
    again: list[str] = []
    first = last = None
    for entry in sorted(audit, key=lambda e: e["t"]):
        event = entry.get("event")
        if event == "router.reboot.start":
            router = entry["router"]
            reboots[router] += 1
            if router in succeeded:
                again.append(entry.get("name", router))
            rebooting.add(router)
            peak = max(peak, len(rebooting))
            first = entry["t"] if first is None else first
        elif event == "router.reboot.end":
            rebooting.discard(entry["router"])
            if entry.get("ok"):
                succeeded.add(entry["router"])
            last = entry["t"]
    both = sum(1 for e in audit if e.get("event") == "pair.both_down")
    return AuditReport(peak, both, reboots, again, first, last)
