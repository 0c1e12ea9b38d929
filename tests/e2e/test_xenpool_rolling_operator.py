"""Rolling maintenance of a XenPool through the operator (real API server, deploy/ RBAC), with the operator killed by
SIGKILL 20 times during the rolls: a 4-host lab pool registered in the lab CloudStack (which pings the XenServer
hosts, so a reboot shows there), a VM on every Xen host and a user VM on every CloudStack host, rolled through five
successive requests — rolling restarts (`restartAfter` moved to now: every host rebooted once after it) and update
additions (one asking for a host restart, two not). Most kills land at a chosen step of a roll (killed from inside
the lab as its audit log records the step, so that they land there however busy the machine is), the others at a
random moment; some just before a call is sent (the lab drops it), some while a long call is under way
(host.evacuate, pool.disable_ha, pool.enable_ha: held until the restarted operator has seen it). After each request: the pool at the update level, every host rebooted exactly once for a restart
(none for updates that need no reboot), no VM ever stopped in either simulator, HA back as recorded (enabled,
timeout 180) and off whenever a host was touched, the CloudStack cluster Managed, no host disabled or in CloudStack
maintenance."""
from __future__ import annotations

import datetime
import json
import os
import random
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import XenAPI
import yaml

from stackops_lab.audit import AuditLog
from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings
from stackops_lab.manifests import XEN_CLUSTER, xenpool_manifests
from stackops_lab.xenapi import XenHostSpec, XenLab, XenTimings
from stackops_lab.xenapi.dispatch import Dropped
from stackops_lab.xenapi.faults import faults_of
from stackops_lab.xenapi.state import HostRec
from stackops_lab.xenapi.update_file import UpdateFile, UpdateServer
from support.kills import kill_series
from support.wait import wait_for

NAMES = ["xen1", "xen2", "xen3", "xen4"]
# A turn of a few tenths of a second per step: a host's reboot keeps it down ~1 s (long enough for CloudStack's
# ping to see it: ping_timeout 0.4 s), a roll of four hosts takes a few seconds.
XEN_TIMINGS = XenTimings(ha_enable=0.3, ha_disable=0.2, join=0.5, eject_reboot=0.5, master_transition=0.3,
                         host_boot=0.3, xapi_restart=0.2, vm_migrate=0.05, shutdown_delay=0.2, reboot_down=0.6)
CS_TIMINGS = Timings(host_connect=0.3, host_maintenance=0.2, job=0.05, vm_migrate=0.1, ping_timeout=0.4,
                     xen_ping=0.1)
# An operator killed as a long call starts (host.evacuate, pool.disable_ha, pool.enable_ha: "sent" with `held`): the
# call lasts until the restarted operator has read the pool or its hosts HELD_READS times (so it finds the call under
# way however long it takes to start; HELD bounds it).
HELD, HELD_READS = 120.0, 8
LOOKS = ("host.get_all_records", "pool.get_all_records")  # a wait for HA's switch reads only the pool record
RANDOM_WINDOW = 4.0  # seconds after the operator (re)starts within which a random kill lands


@dataclass(frozen=True)
class At:
    """A kill at a step: the first event of simulator `log` ("xen" or "cs") named `event` whose fields include
    `fields`, recorded after the kill is armed; `nth`: the nth such event instead. `log` "call": the operator dies
    just before XenAPI call `event` (its first argument the host named `host`, if given) reaches the lab, which never
    runs it (as if killed after the checkpoint that precedes the call, before the call was sent); `log` "sent": the
    operator dies as the call reaches the lab, which runs it (killed while the call is under way); with `held`, the
    lab timing of that name (the call's duration) is held until the restarted operator has seen the call under way."""

    log: str
    event: str
    fields: tuple[tuple[str, str], ...] = ()
    nth: int = 1
    held: str = ""

    def __str__(self) -> str:
        more = " ".join(f"{k}={v}" for k, v in self.fields)
        return f"{self.log}:{self.event}" + (f" {more}" if more else "") + (f" #{self.nth}" if self.nth > 1 else "")


def at(log: str, event: str, nth: int = 1, held: str = "", **fields: str) -> At:
    return At(log, event, tuple(sorted(fields.items())), nth, held)


RANDOM = None
UPDATES = [UpdateFile("XS82E031", after_apply_guidance=["restartHost"]),
           UpdateFile("XS82E032", after_apply_guidance=[]),
           UpdateFile("XS82E033", after_apply_guidance=["restartXAPI"])]
# The requests, in order: (what, updates in the spec, restartAfter moved to now, whether every host reboots, the
# kills in roll order — a step's kill must come after the previous kill's point; random kills last). The master
# (xen1) goes first.
REQUESTS: list[tuple[str, list[str], bool, bool, list[At | None]]] = [
    ("restart", [], True, True, [at("call", "pool.disable_ha"), at("cs", "cluster.updated", managedstate="Unmanaged"),
                           at("xen", "host.rebooting", host="xen1"), RANDOM]),
    ("update XS82E031 (restartHost)", ["XS82E031"], False, True,
     [at("xen", "pool_update.apply"), at("xen", "host.reboot", host="xen2"),
      at("cs", "host.state", name="xen3", resourcestate="PrepareForMaintenance"), RANDOM]),
    ("restart", ["XS82E031"], True, True,
     [at("cs", "host.state", name="xen1", resourcestate="Maintenance"),
      at("cs", "cluster.updated", managedstate="Managed"), at("sent", "host.evacuate", held="vm_migrate", host="xen3"),
      at("cs", "host.state", name="xen3", state="Up", resourcestate="Maintenance"), at("xen", "ha.enabled")]),
    ("update XS82E032, XS82E033 (no reboot)", ["XS82E031", "XS82E032", "XS82E033"], False, False,
     [at("sent", "pool.disable_ha", held="ha_disable"), at("xen", "pool_update.apply", nth=3), RANDOM]),
    ("restart", ["XS82E031", "XS82E032", "XS82E033"], True, True,
     [at("xen", "host.reboot", host="xen1"), at("xen", "host.rebooting", host="xen2"),
      at("cs", "host.state", name="xen4", resourcestate="PrepareForMaintenance"),
      at("sent", "pool.enable_ha", held="ha_enable")]),
]
KILLS = 20


class Killer:
    """Kills the operator from inside a simulator, as its audit log records the armed event (before the call that
    made it answers): the kill lands exactly there."""

    def __init__(self, logs: dict[str, AuditLog], operator: Any, lab: XenLab) -> None:
        self.logs, self.operator = logs, operator
        self.wanted: At | None = None
        self.seen = 0
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._records = {name: log.record for name, log in logs.items()}
        for name, log in logs.items():
            log.record = self._hook(name)  # type: ignore[method-assign]
        self.held: int | None = None  # reads of the hosts still to come before a held call goes on
        self.timing = ""  # the lab timing held
        self.faults = faults_of(lab)
        self._before_call = self.faults.before_call
        self.faults.before_call = self._call  # type: ignore[method-assign]

    def _call(self, ctx: Any, name: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            wanted = self.wanted
            if name in LOOKS and self.held is not None:
                self.held -= 1
                if self.held <= 0:
                    self.release(ctx.lab)
            if wanted is not None and wanted.log in ("call", "sent") and wanted.event == name and all(
                    k == "host" and args and _host_name(ctx, args[0]) == v for k, v in wanted.fields):
                self.seen += 1
                if self.seen == wanted.nth:
                    self.wanted = None
                    self.operator.kill()
                    self.done.set()
                    if wanted.log == "call":
                        raise Dropped()  # the call never ran: no answer, nothing changed
                    if wanted.held:  # the call lasts until the restarted operator has seen it under way
                        setattr(ctx.lab.timings, wanted.held, HELD)
                        self.held, self.timing = HELD_READS, wanted.held
        self._before_call(ctx, name, args)

    def arm(self, wanted: At) -> None:
        with self._lock:
            self.wanted, self.seen = wanted, 0
            self.done.clear()

    def _hook(self, name: str) -> Callable[..., dict[str, Any]]:
        record = self._records[name]

        def hooked(event: str, **fields: Any) -> dict[str, Any]:
            with self._lock:  # nothing else is recorded until the operator is dead
                entry = record(event, **fields)
                wanted = self.wanted
                if wanted is not None and wanted.log == name and wanted.event == event and all(
                        str(fields.get(k)) == v for k, v in wanted.fields):
                    self.seen += 1
                    if self.seen == wanted.nth:
                        self.wanted = None
                        self.operator.kill()
                        self.done.set()
                return entry

        return hooked

    def release(self, lab: XenLab) -> None:
        """The held call goes on (what it waits for ends now), and later ones take their usual time."""
        setattr(lab.timings, self.timing, getattr(XEN_TIMINGS, self.timing))
        self.held = None
        for woken, when in list(lab.dispatcher.waits.items()):
            if when - lab.clock.monotonic() > HELD / 2:
                woken.set()

    def close(self) -> None:
        for name, log in self.logs.items():
            log.record = self._records[name]  # type: ignore[method-assign]
        self.faults.before_call = self._before_call  # type: ignore[method-assign]


def _host_name(ctx: Any, ref: Any) -> str | None:
    db = ctx.machine.db
    host = db.find(HostRec, ref) if db is not None and isinstance(ref, str) else None
    return host.name_label if host is not None else None


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def xen_session(lab: XenLab) -> XenAPI.Session:
    session = XenAPI.Session(lab.url(lab.pool_of("xen1")["master"]))
    session.xenapi.login_with_password(lab.username, lab.password, "2.21", "e2e")
    return session


def host_view(lab: XenLab) -> dict[str, tuple[bool, list[str]]]:
    """Per host: (enabled, the names of its updates), as the pool master tells it."""
    session = xen_session(lab)
    try:
        x = session.xenapi
        names = {r: u["name_label"] for r, u in x.pool_update.get_all_records().items()}
        return {h["name_label"]: (bool(h["enabled"]), sorted(names[u] for u in h["updates"]))
                for h in x.host.get_all_records().values()}
    finally:
        session.xenapi.session.logout()


def test_rolls_survive_sigkill_at_their_steps_and_at_random_moments(kube: Any, operator: Any) -> None:
    seed = int(os.environ.get("STACKOPS_E2E_SEED", time.time()))
    rng = random.Random(seed)
    print(f"random seed {seed} (STACKOPS_E2E_SEED to repeat)")
    assert sum(len(kills) for *_, kills in REQUESTS) == KILLS
    began = time.monotonic()
    namespace = f"e2e-xenroll-{int(time.time())}"
    kube.kubectl("create", "namespace", namespace)
    fleet = Fleet(zones=1, routers=0, redundant_pairs=0)
    with XenLab(hosts=[XenHostSpec(n) for n in NAMES], pools=[NAMES], timings=replace(XEN_TIMINGS),
                vms_per_host=1) as lab, \
            CloudStackSimulator(fleet=fleet, timings=CS_TIMINGS) as sim, UpdateServer() as server:
        state = {"hosts": {n: {"address": lab.address(n)} for n in NAMES}, "port": lab.port,
                 "username": lab.username, "password": lab.password}
        documents = xenpool_manifests(state, namespace, name="pool", cloudstack=sim)
        served = {u.name_label: server.add(u) for u in UPDATES}

        def apply(maintenance: dict[str, Any] | None) -> None:
            if maintenance is not None:
                documents[1]["spec"]["maintenance"] = maintenance
            kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))

        def status() -> tuple[dict[str, Any], dict[str, Any]]:
            obj = json.loads(kube.kubectl("get", "xenpool", "pool", "-n", namespace, "-o", "json").stdout)
            return obj, obj.get("status") or {}

        def ready() -> bool:
            obj, found = status()
            return found.get("observedGeneration") == obj["metadata"]["generation"] and any(
                c["type"] == "Ready" and c["status"] == "True" for c in found.get("conditions") or [])

        def failed(obj: dict[str, Any], roll: dict[str, Any]) -> None:
            assert not (roll.get("phase") in ("Failed", "Paused") and roll.get("generation") == obj["metadata"][
                "generation"]), f"the roll stopped: {roll.get('phase')} {roll.get('reason')}: {roll.get('message')}"

        def killed() -> bool:
            """The armed kill landed (the roll must not have stopped meanwhile)."""
            if killer.done.is_set():
                return True
            obj, found = status()
            failed(obj, found.get("maintenance") or {})
            return killer.done.is_set()

        def rolled() -> dict[str, Any] | None:
            """The roll of the current generation Completed and the pool Ready."""
            obj, found = status()
            roll = found.get("maintenance") or {}
            failed(obj, roll)
            done = roll.get("phase") == "Completed" and roll.get("generation") == obj["metadata"]["generation"]
            return roll if done and ready() else None

        apply(None)
        wait_for(ready, timeout=300, what="the pool Ready and registered", interval=0.3)
        with sim.state.lock:
            ids = {h.name: h.uuid for h in sim.state.values("host")
                   if h.cluster is not None and h.cluster.name == XEN_CLUSTER}
        assert sorted(ids) == NAMES
        for name, host_id in ids.items():
            sim.add_user_vm(host_id, f"tenant-{name}", memory=512)
        print(f"pool Ready and registered {time.monotonic() - began:.1f}s after the start")

        killer = Killer({"xen": lab.audit_log, "cs": sim.audit_log}, operator, lab)
        landed: dict[str, int] = {}
        kill = 0
        try:
            for what, updates, restart, reboots, kills in REQUESTS:
                start = len(lab.audit())
                started = time.monotonic()
                maintenance: dict[str, Any] = {
                    "updates": [{"name": n, "url": served[n][0], "sha256": served[n][1]} for n in updates],
                    "hostTimeoutSeconds": 120}
                previous = documents[1]["spec"].get("maintenance", {}).get("restartAfter")
                if restart:
                    maintenance["restartAfter"] = utc_now()
                elif previous:
                    maintenance["restartAfter"] = previous
                def note(point: At | None, where: str) -> None:
                    nonlocal kill
                    kill += 1
                    key = "random" if point is None else where
                    landed[key] = landed.get(key, 0) + 1
                    print(f"kill {kill} ({what}): {where}, {time.monotonic() - started:.1f}s after the request")

                kill_series(kills, begin=lambda: apply(maintenance), operator=operator, killer=killer, killed=killed,
                            rng=rng, window=RANDOM_WINDOW, timeout=120, landed=note,
                            where_random=lambda: f"random, at {status()[1].get('maintenanceProgress') or 'no roll yet'}")
                operator.start()
                roll = wait_for(rolled, timeout=300, what=f"the {what} roll Completed", interval=0.3)
                print(f"{what}: converged {time.monotonic() - started:.1f}s after the request ({len(kills)} kills)")
                check(lab, sim, start, updates, rebooted=reboots, roll=roll)
        finally:
            killer.close()
            if operator.process is None or operator.process.poll() is not None:
                operator.start()
            kube.kubectl("delete", "xenpool", "pool", "-n", namespace, "--wait=false", check=False)

    assert kill == KILLS
    print(f"{KILLS} kills: " + ", ".join(f"{n}× {p}" for p, n in sorted(landed.items())))
    print(f"the whole test took {time.monotonic() - began:.1f}s")
    events = kube.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "ResumingRoll" in events


def check(lab: XenLab, sim: CloudStackSimulator, start: int, updates: list[str], *, rebooted: bool,
          roll: dict[str, Any]) -> None:
    """The invariants after a request: `start`, where the request began in the Xen lab's audit log."""
    reboots = {n: 0 for n in NAMES}
    for event in lab.audit()[start:]:
        if event["event"] == "host.reboot":
            reboots[event["host"]] += 1
    assert reboots == {n: int(rebooted) for n in NAMES}, f"reboots for this request: {reboots}"
    ha_on, touched_with_ha_on = True, []
    for event in lab.audit()[start:]:
        if event["event"] in ("ha.enabled", "ha.disabled"):
            ha_on = event["event"] == "ha.enabled"
        elif event["event"] in ("host.disabled", "host.evacuated", "host.rebooting", "pool_update.apply") and ha_on:
            touched_with_ha_on.append(f"{event['event']} {event.get('host')}")
    assert not touched_with_ha_on, f"hosts touched while HA was on: {touched_with_ha_on}"
    view = host_view(lab)
    assert view == {n: (True, sorted(updates)) for n in NAMES}, f"enabled and updates per host: {view}"
    assert all(c["stops"] == 0 for c in lab.vm_counts().values()), lab.vm_counts()
    assert all(c.get("stops", 0) == 0 and c.get("restarts", 0) == 0 for c in sim.vm_counts().values()), \
        sim.vm_counts()
    pool = lab.pool_of("xen1")
    assert pool["ha_enabled"] and pool["ha_configuration"] == {"timeout": "180"}, pool
    with sim.state.lock:
        hosts = {h.name: (h.state, h.resource_state) for h in sim.state.values("host")
                 if h.cluster is not None and h.cluster.name == XEN_CLUSTER}
        cluster = next(c for c in sim.state.values("cluster") if c.name == XEN_CLUSTER)
        managed = cluster.managed_state
    assert hosts == {n: ("Up", "Enabled") for n in NAMES}, hosts
    assert managed == "Managed"
    assert roll["haWasEnabled"] and roll["haConfiguration"] == {"timeout": "180"}, roll
