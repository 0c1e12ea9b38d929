#!/usr/bin/env python3
"""Roll a lab XenServer pool of N hosts, registered in the lab CloudStack, through two updates (one asking for a
host restart, one not) with the XenPool reconciler run in process.

The lab CloudStack pings the XenServer hosts (Timings.xen_ping), so a reboot shows there; VMs run on every host in
both simulators (the lab XenAPI's guests, user VMs in CloudStack). Prints, per pool size:

- the roll's wall time (the spec change → Completed, uploads and prechecks included) and its turns' (the first
  host's Draining → the last host's Done, as the roll's checkpoints say);
- the ideal: the sum over hosts of evacuate + reboot done serially with no overhead, from the simulators' own
  records in the same run: per host, CloudStack's drain (resource state PrepareForMaintenance → Maintenance) plus
  xapi's evacuation (the first migration of host.evacuate starting → host.evacuated), plus the reboot (host.reboot
  called → the host enabled again by its xapi); and the ratio. What the ideal leaves out — polling, the host Up in
  CloudStack again (ping, agent connect) and its maintenance cancelled, the updates' apply, HA off and on — is
  the difference, shown by phase;
- VM migrations per VM in each simulator, stops (must be 0: a stop is printed as a missed limit), reboots per host;
- XenAPI calls per host turn (PoolSession counters between the turn's first and last checkpoint), by call.

Exits 1 when a limit is missed (a host not rebooted exactly once, a VM stopped, the roll not Completed); no limit is
set on time. --json prints the figures as one JSON object instead (tests/e2e/test_xen_rolling_bench.py).

    .venv/bin/python bench/xen_rolling.py [--hosts 4 8] [--vms-per-host 2] [--reboot-seconds 1.5]
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from collections import Counter
from typing import Any

from pydantic import SecretStr

from stackops.api.xenpool import XenPoolSpec
from stackops.destinations import Destinations
from stackops.drivers.cloudstack import CloudStackPool
from stackops.drivers.secrets import SecretData
from stackops.drivers.xenapi import PoolSession
from stackops.reconcile.base import Context, Outcome
from stackops.reconcile.xenpool import XenPoolReconciler
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.xenapi import XenHostSpec, XenLab, XenTimings
from stackops_lab.xenapi.update_file import UpdateFile, UpdateServer

from rolling_report import report  # bench/, beside this script

SECRET, CLOUDSTACK, CLUSTER = "xen-root", "lab-cloudstack", "lab-xen-pool"


class Counted(XenPoolReconciler):
    """The reconciler, keeping the XenAPI session of the pass that runs (its counters)."""

    current: PoolSession | None = None

    def session(self, ctx: Context) -> PoolSession:
        self.current = super().session(ctx)
        return self.current


class Run:
    """Passes as the kopf handlers run them: status kept between passes, checkpoints written at once. Each roll
    checkpoint is noted with the time and the XenAPI calls made so far."""

    def __init__(self, xen: XenLab, sim: CloudStackSimulator, spec: XenPoolSpec, poll: float):
        self.reconciler = Counted(change_timeout=120, poll_seconds=poll)
        self.xen, self.sim, self.spec, self.poll = xen, sim, spec, poll
        self.status: dict[str, Any] = {}
        self.marks: list[tuple[float, dict[str, str], Counter]] = []  # (time, host → step, calls by name)
        addresses = [xen.address(n) for n in xen.hosts] + [sim.endpoint]
        self.secrets: dict[str, Any] = {
            SECRET: SecretData({"username": SecretStr(xen.username), "password": SecretStr(xen.password)},
                               Destinations.parse(" ".join(addresses))),
            CLOUDSTACK: {"url": SecretStr(sim.endpoint), "apiKey": SecretStr(sim.api_key),
                         "secretKey": SecretStr(sim.secret_key), "allowPlainHTTP": SecretStr("true")}}

    async def checkpoint(self, fields: dict[str, Any]) -> None:
        self.status.update(fields)
        roll = fields.get("maintenance")
        session = self.reconciler.current
        if roll and session is not None:
            steps = {h["name"]: h["step"] for h in roll.get("hosts") or []}
            self.marks.append((time.monotonic(), steps, Counter(session.counters.by_call)))

    async def once(self) -> Outcome:
        pool = CloudStackPool(poll_interval=self.poll)
        self.reconciler.cloudstack = pool
        ctx = Context(namespace="bench", name="pool", generation=1, spec=self.spec, status=dict(self.status),
                      secrets=self.secrets, event=lambda *_: None, logger=logging.getLogger("bench"),
                      checkpoint=self.checkpoint)
        try:
            outcome = await self.reconciler.reconcile(ctx)
        finally:
            await pool.close()
        self.status.update(outcome.fields)
        return outcome

    async def converge(self, passes: int = 30) -> Outcome:
        for _ in range(passes):
            outcome = await self.once()
            if any(c.type == "Ready" and c.status == "True" for c in outcome.conditions):
                return outcome
            await asyncio.sleep(min(outcome.requeue_after or 0.5, 0.5))
        raise RuntimeError(f"the pool is not Ready after {passes} passes: {outcome.conditions}")


def spec_for(xen: XenLab, names: list[str], **more: Any) -> XenPoolSpec:
    return XenPoolSpec.model_validate({
        "members": [{"name": n, "address": xen.address(n)} for n in names],
        "credentialsSecretRef": {"name": SECRET}, "tls": {"plainHTTP": True}, "xenapiPort": xen.port,
        "ha": {"timeoutSeconds": 180, "heartbeatSR": {"type": "nfs"}},
        "cloudstack": {"connection": {"secretRef": {"name": CLOUDSTACK}}, "zone": "lab-zone-1",
                       "pod": "lab-zone-1-pod-1", "cluster": CLUSTER}, **more})


def spans(xen_audit: list[dict], cs_audit: list[dict], names: list[str], migrate: float) -> dict[str, dict]:
    """Per host, from the simulators' records: drain (CloudStack PrepareForMaintenance → Maintenance), evacuate
    (the first batch of host.evacuate starting, a migration's time before it ends → host.evacuated), reboot
    (host.rebooting, the call → host.enabled, by its xapi at boot), back (host.enabled → Up and Enabled in
    CloudStack again)."""
    found: dict[str, dict] = {n: {} for n in names}
    for e in xen_audit:
        host = found.get(e.get("host") or e.get("source") or "")
        if host is None:
            continue
        if e["event"] == "vm.migrated" and e.get("reason") == "host.evacuate":
            host.setdefault("evacuate_from", e["t"] - migrate)
        elif e["event"] == "host.evacuated" and "evacuate_from" in host:
            host.setdefault("evacuate_to", e["t"])
        elif e["event"] == "host.rebooting":
            host.setdefault("rebooting", e["t"])
        elif e["event"] == "host.enabled" and "rebooting" in host:
            host.setdefault("enabled", e["t"])
    for e in cs_audit:
        if e["event"] != "host.state" or e.get("name") not in found:
            continue
        host = found[e["name"]]
        if e["resourcestate"] == "PrepareForMaintenance":
            host.setdefault("drain_from", e["t"])
        elif e["resourcestate"] == "Maintenance" and "drain_from" in host:
            host.setdefault("drain_to", e["t"])
        elif e["state"] == "Up" and e["resourcestate"] == "Enabled" \
                and e["t"] > host.get("enabled", e["t"]):
            host.setdefault("back", e["t"])
    result = {}
    for name, h in found.items():
        result[name] = {"drain": h.get("drain_to", 0) - h.get("drain_from", 0),
                        "evacuate": h.get("evacuate_to", 0) - h.get("evacuate_from", 0),
                        "reboot": h.get("enabled", 0) - h.get("rebooting", 0),
                        "back": h.get("back", 0) - h.get("enabled", 0) if "back" in h and "enabled" in h else 0.0}
    return result


def turn_calls(marks: list[tuple[float, dict[str, str], Counter]], names: list[str]) -> dict[str, Counter]:
    """XenAPI calls per host turn: between the first checkpoint that shows the host out of Pending and the one
    that shows it Done."""
    found = {}
    for name in names:
        begun = next((m for m in marks if m[1].get(name, "Pending") != "Pending"), None)
        ended = next((m for m in marks if m[1].get(name) == "Done"), None)
        if begun is not None and ended is not None:
            found[name] = ended[2] - begun[2]
    return found


def turns_wall(marks: list[tuple[float, dict[str, str], Counter]]) -> float:
    begun = next((m[0] for m in marks if any(s != "Pending" for s in m[1].values())), None)
    ended = next((m[0] for m in marks if m[1] and all(s == "Done" for s in m[1].values())), None)
    return ended - begun if begun is not None and ended is not None else 0.0


async def roll(size: int, args: argparse.Namespace) -> dict[str, Any]:
    names = [f"xen{i + 1}" for i in range(size)]
    xen_timings = XenTimings(ha_enable=0.3, ha_disable=0.2, vm_migrate=args.migrate_seconds,
                             shutdown_delay=args.shutdown_seconds, reboot_down=args.reboot_seconds,
                             host_boot=args.boot_seconds)
    cs_timings = Timings(host_connect=0.3, host_maintenance=0.2, job=0.05, vm_migrate=args.migrate_seconds,
                         ping_timeout=0.4, xen_ping=0.1)
    with XenLab(hosts=[XenHostSpec(n) for n in names], pools=[names], timings=xen_timings,
                vms_per_host=args.vms_per_host) as xen, UpdateServer() as server, \
            CloudStackSimulator(fleet=Fleet(zones=1, routers=0, redundant_pairs=0), timings=cs_timings) as sim:
        run = Run(xen, sim, spec_for(xen, names), args.poll_seconds)
        await run.converge()
        with sim.state.lock:
            ids = {h.name: h.uuid for h in sim.state.values("host") if h.cluster and h.cluster.name == CLUSTER}
        for name, host_id in ids.items():
            for index in range(args.vms_per_host):
                sim.add_user_vm(host_id, f"tenant-{name}-{index}", memory=512)
        listed = []
        for update in (UpdateFile("XS82E041", after_apply_guidance=["restartHost"]),
                       UpdateFile("XS82E042", after_apply_guidance=[])):
            url, sha256 = server.add(update)
            listed.append({"name": update.name_label, "url": url, "sha256": sha256})
        xen_before, cs_before = len(xen.audit()), len(sim.audit())
        run.spec = spec_for(xen, names, maintenance={"updates": listed, "hostTimeoutSeconds": 300})
        started = time.monotonic()
        await run.converge()
        wall = time.monotonic() - started
        xen_audit, cs_audit = xen.audit()[xen_before:], sim.audit()[cs_before:]
        xen_vms, cs_vms = xen.vm_counts(), sim.vm_counts()
        cs_vm_total = len(ids) * args.vms_per_host  # the user VMs added above (vm_counts lists moved ones)
    per_host = spans(xen_audit, cs_audit, names, args.migrate_seconds)
    ideal = sum(h["drain"] + h["evacuate"] + h["reboot"] for h in per_host.values())
    reboots = Counter(e["host"] for e in xen_audit if e["event"] == "host.reboot")
    calls = turn_calls(run.marks, names)
    by_call: Counter = sum(calls.values(), Counter())
    roll_status = run.status.get("maintenance") or {}
    return {
        "hosts": size, "vmsPerHost": args.vms_per_host, "phase": roll_status.get("phase"),
        "progress": run.status.get("maintenanceProgress"),
        "wallSeconds": wall, "turnsSeconds": turns_wall(run.marks), "idealSeconds": ideal,
        "ratio": wall / ideal if ideal else None, "turnsRatio": turns_wall(run.marks) / ideal if ideal else None,
        "phases": {k: sum(h[k] for h in per_host.values()) for k in ("drain", "evacuate", "reboot", "back")},
        "perHost": per_host,
        "reboots": {n: reboots.get(n, 0) for n in names},
        "xen": {"vms": len(xen_vms), "migrationsPerVM": statistics.mean(c["migrations"] for c in xen_vms.values()),
                "stops": sum(c["stops"] for c in xen_vms.values())},
        "cloudstack": {"vms": cs_vm_total,
                       "migrationsPerVM": sum(c.get("migrations", 0) for c in cs_vms.values()) / max(cs_vm_total, 1),
                       "stops": sum(c.get("stops", 0) for c in cs_vms.values()),
                       "restarts": sum(c.get("restarts", 0) for c in cs_vms.values())},
        "xenapiCallsPerTurn": statistics.mean(sum(c.values()) for c in calls.values()) if calls else None,
        "xenapiCallsPerTurnByCall": {k: v / len(calls) for k, v in by_call.most_common()} if calls else {},
    }


def show(f: dict[str, Any]) -> None:
    phases = f["phases"]
    print(f"pool of {f['hosts']} hosts, {f['vmsPerHost']} VMs per host in each simulator, 2 updates (one restartHost)")
    print(f"  roll                     {f['phase']}  (MAINTENANCE column: {f['progress']})")
    print(f"  wall time, spec->done    {f['wallSeconds']:.1f}s  (uploads, prechecks, HA off/on included)")
    print(f"  wall time, turns         {f['turnsSeconds']:.1f}s  (first Draining -> last Done)")
    print(f"  ideal sum(evac+reboot)   {f['idealSeconds']:.1f}s  = CloudStack drain {phases['drain']:.1f}s + xapi "
          f"evacuate {phases['evacuate']:.1f}s + reboot {phases['reboot']:.1f}s")
    print(f"  ratio                    {f['ratio']:.2f}  (turns alone {f['turnsRatio']:.2f}; the host Up in CloudStack "
          f"again after its reboot: {phases['back']:.1f}s in all)")
    reboots = sorted(set(f["reboots"].values()))
    print(f"  reboots per host         {'/'.join(map(str, reboots))}")
    for side in ("xen", "cloudstack"):
        s = f[side]
        print(f"  {side + ' VMs':<24} {s['vms']}: migrations per VM {s['migrationsPerVM']:.2f}, stops {s['stops']}"
              + (f", HA restarts {s['restarts']}" if "restarts" in s else ""))
    if f["xenapiCallsPerTurn"] is not None:
        calls = f["xenapiCallsPerTurnByCall"]
        reads = sum(v for k, v in calls.items() if k.endswith(".get_all_records"))
        rest = ", ".join(f"{k} {v:.0f}" for k, v in calls.items() if not k.endswith(".get_all_records"))
        print(f"  XenAPI calls per turn    {f['xenapiCallsPerTurn']:.1f}: {reads:.1f} get_all_records (the pool read "
              f"{calls.get('host.get_all_records', 0):.1f} times: the turn's waits poll it), then {rest}")


def missed(f: dict[str, Any]) -> list[str]:
    limits = {"the roll Completed": f["phase"] == "Completed",
              "every host rebooted exactly once": set(f["reboots"].values()) == {1},
              "no VM stopped": f["xen"]["stops"] == 0 and f["cloudstack"]["stops"] == 0
              and f["cloudstack"]["restarts"] == 0}
    return [limit for limit, kept in limits.items() if not kept]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, nargs="+", default=[4, 8], help="pool sizes, one roll each")
    parser.add_argument("--vms-per-host", type=int, default=2)
    parser.add_argument("--migrate-seconds", type=float, default=0.3, help="one live migration, in both simulators")
    parser.add_argument("--shutdown-seconds", type=float, default=0.5, help="host.reboot's delay before it acts")
    parser.add_argument("--reboot-seconds", type=float, default=1.5, help="a rebooted host is down this long")
    parser.add_argument("--boot-seconds", type=float, default=1.0, help="then boots this long before xapi answers")
    parser.add_argument("--poll-seconds", type=float, default=0.1, help="the reconciler's poll interval")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    figures = [asyncio.run(roll(size, args)) for size in args.hosts]
    return report(figures, as_json=args.json, show=show, missed=missed)


if __name__ == "__main__":
    sys.exit(main())
