"""A KvmHost's maintenance, crash-safe, one host of its group at a time (what is due: due.py).

Before anything is touched: the maintenance window open; with CloudStack, every other host of the group's cluster
Up and none in (or preparing for) maintenance unless it holds one of the group's lock slots (a Disabled peer is
fine: it keeps its VMs), none of this host's VMs starting, stopping or migrating (CloudStack refuses meanwhile),
and room for them (each whole on one peer) in the memory the Up and Enabled peers have free; then a slot of the
group's lock (drivers/maintenance_lock.py: a Lease, with the host's state before as its record), waited for in the
pass for a while when another host holds it.
Then, each written to `status.maintenance` before it is taken:

1. `Draining`: the webhook's `before` notice; a Disabled host enabled (CloudStack refuses `prepareHostForMaintenance`
   on it; its state before is recorded); `prepareHostForMaintenance` once no other host of the cluster is preparing
   for maintenance (CloudStack refuses a second one meanwhile: with `maxUnavailable` above 1 the drains take turns,
   the reboots overlap), then waiting for `Maintenance` (CloudStack migrates the VMs away). `ErrorInMaintenance`
   stops with the VMs left named, the maintenance cancelled and the state restored. Without CloudStack, a host
   with running domains (`virsh list`) is not touched.
2. `Updating`: the package changes (the agent's version) on the empty host.
3. `Rebooting`: the boot id recorded first; `systemctl reboot` (a marker in /run says it was asked: /run does not
   survive the boot), so a restarted operator never reboots the host twice.
4. `Returning`: SSH answers with a new boot id and a clean probe (nothing to plan: networking back from the
   distribution's configuration, libvirt and the agent up); CloudStack sees it Up; `cancelHostMaintenance`; Up
   and Enabled.
5. `Restoring`: a host that was Disabled is disabled again. 6. `Releasing`: the slot freed, the `after` notice.

The slot is renewed at every step and while waiting; an operator restarted mid-way takes it back (same holder)
and goes on from the recorded step. A failure before the host was emptied, or while draining, gives the host back
(maintenance cancelled, state restored) and releases the slot; a failure once it is empty (an update that fails,
a host that does not come back clean) leaves it in CloudStack maintenance, where no VM is placed, and releases
the slot: the other hosts of the group wait, since a peer in maintenance that holds no slot blocks them. Either
way the maintenance is `Failed` (Stalled) until the spec changes; the next generation's maintenance takes a host
that the failed one left in `Maintenance` from there (with the state recorded before it).
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
from typing import TYPE_CHECKING, Any

from ... import status as st
from ...api.kvmhost import HostMaintenanceStatus, KvmHostSpec
from ...drivers import kube
from ...drivers.cloudstack import CloudStackClient, CloudStackError
from ...drivers.maintenance_lock import MaintenanceLockError, MaintenanceLocks, Slot
from ...drivers.ssh import CommandFailed, ConnectionLost, SSHConnection, SSHError, SSHTimeout, Unreachable
from ..base import Context, ReconcileError
from ..notify import NotificationError, Notifier
from . import registration
from .due import Due, group_of
from .plan import agent_install

if TYPE_CHECKING:
    from . import KvmHostReconciler

KEY = "maintenance"
PROGRESS = "maintenanceProgress"
IN_MAINTENANCE = ("PrepareForMaintenance", "ErrorInPrepareForMaintenance", "Maintenance", "ErrorInMaintenance")
PREPARING = ("PrepareForMaintenance", "ErrorInPrepareForMaintenance")  # one host of a cluster at a time
REBOOT_MARKER = "/run/stackops/maintenance-reboot"
REBOOT = ("sh", "-c", f"mkdir -p /run/stackops && : >{REBOOT_MARKER} && "
          "{ systemctl reboot || reboot; } >/dev/null 2>&1 </dev/null &")
MARKER = ("sh", "-c", f"cat /proc/sys/kernel/random/boot_id; test -e {REBOOT_MARKER} && echo asked || true")
DOMAINS = ("virsh", "-c", "qemu:///system", "list", "--name")
WAIT_CONNECT_SECONDS = 3.0
LOCK_POLLS = 2  # a host waiting for the lock lists its group's Leases every this many polls (one list call each)


class Waiting(Exception):
    """Maintenance cannot start now (the lock is held, a peer is not Up, no room): why."""


def recorded(ctx: Context) -> HostMaintenanceStatus | None:
    found = ctx.status.get(KEY)
    return HostMaintenanceStatus.model_validate(found) if isinstance(found, dict) else None


def progress(record: HostMaintenanceStatus) -> str:
    return record.step if record.phase == "InProgress" else record.phase


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Maintainer:
    """One pass's work on the host's maintenance."""

    def __init__(self, reconciler: KvmHostReconciler, ctx: Context, conn: SSHConnection):
        self.reconciler, self.ctx, self.conn = reconciler, ctx, conn
        self.spec: KvmHostSpec = ctx.spec
        self.holder = f"{ctx.namespace}/{ctx.name}"
        self.group = group_of(self.spec)
        self.timeout = float(self.spec.maintenance.host_timeout_seconds)
        self.poll = reconciler.maintenance_poll
        self.locks: MaintenanceLocks | None = reconciler.locks(ctx.namespace) if reconciler.locks else None
        self.api: CloudStackClient | None = None
        if self.spec.cloudstack is not None and reconciler.cloudstack is not None:
            self.api = registration.client(reconciler.cloudstack, ctx, self.spec)
        self.slot: Slot | None = None
        self.renewed = 0.0
        notices = self.spec.maintenance.notifications
        url = ctx.secret(notices.webhook_url_secret_ref.name, notices.webhook_url_secret_ref.key) if notices else None
        self.notifier = Notifier(url, allow_local=bool(notices and notices.allow_local_addresses))

    async def save(self, record: HostMaintenanceStatus) -> None:
        await self.ctx.checkpoint({KEY: record.model_dump(by_alias=True), PROGRESS: progress(record)})

    # ------------------------------------------------------------------ CloudStack

    async def cloudstack_host(self) -> dict[str, Any] | None:
        assert self.api is not None
        return await registration.find_host(self.api, self.spec.address)

    async def peers(self, host: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.api is not None
        return [h for h in await self.api.list("listHosts", type="Routing", clusterid=host.get("clusterid"))
                if h.get("id") != host.get("id")]

    async def blockers(self, host: dict[str, Any], held: set[str]) -> list[str]:
        """Why the host may not go into maintenance now: a peer down or in maintenance that holds no slot of the
        group (`held`: the addresses of the slots' holders), a VM of the host neither Running nor Stopped
        (CloudStack refuses `prepareHostForMaintenance` while one starts, stops or migrates), or too little free
        memory on the Up and Enabled peers for this host's VMs: in all, or for one VM on any one peer (CloudStack
        moves a VM whole; placed here the largest first, each on the freest peer, as a stand-in for its planner)."""
        assert self.api is not None
        found: list[str] = []
        free: list[int] = []  # of each Up and Enabled peer, bytes
        for peer in await self.peers(host):
            name, address = peer.get("name"), str(peer.get("ipaddress"))
            resource, state = peer.get("resourcestate", "Enabled"), peer.get("state")
            if address in held:
                continue
            if resource in IN_MAINTENANCE:
                found.append(f"CloudStack host {name} is in {resource}")
            elif state != "Up":
                found.append(f"CloudStack host {name} is {state}")
            elif resource == "Enabled":
                free.append(int(peer.get("memorytotal") or 0) - int(peer.get("memoryallocated") or 0))
        vms = await self.api.list("listVirtualMachines", listall=True, hostid=host["id"])
        busy = [f"{vm.get('name')} ({vm.get('state')})" for vm in vms if vm.get("state") not in ("Running", "Stopped")]
        if busy:  # CloudStack refuses prepareHostForMaintenance meanwhile
            found.append(f"VMs of this host are not Running: {', '.join(busy)}")
        need, room = sum(int(vm.get("memory") or 0) for vm in vms) * 1024 * 1024, sum(free)
        if need > room:
            found.append(f"the Up and Enabled peers have {room // 2**20} MiB free for the {len(vms)} VM(s) of "
                         f"this host, which need {need // 2**20} MiB")
            return found
        for vm in sorted(vms, key=lambda vm: -int(vm.get("memory") or 0)):  # CloudStack moves each VM whole
            memory = int(vm.get("memory") or 0) * 1024 * 1024
            freest = max(range(len(free)), key=free.__getitem__, default=None)
            if memory and (freest is None or free[freest] < memory):
                most = free[freest] // 2**20 if freest is not None else 0
                found.append(f"no Up and Enabled peer has {memory // 2**20} MiB free for VM {vm.get('name')} (the "
                             f"freest has {most} MiB)")
                break
            if freest is not None:
                free[freest] -= memory
        return found

    async def peers_preparing(self, host: dict[str, Any]) -> list[str]:
        """The peers in PrepareForMaintenance (or ErrorInPrepareForMaintenance): CloudStack refuses
        `prepareHostForMaintenance` while one host of the cluster is there ("There are other servers attempting
        migrations for maintenance"), so with `maxUnavailable` above 1 the drains of a group take turns."""
        return [str(p.get("name")) for p in await self.peers(host) if p.get("resourcestate") in PREPARING]

    async def vms_left(self, host_id: str) -> str:
        assert self.api is not None
        vms = await self.api.list("listVirtualMachines", listall=True, hostid=host_id)
        return ", ".join(f"{vm.get('name')} ({vm.get('state')})" for vm in vms) or "none listed"

    # ------------------------------------------------------------------ the lock

    async def acquire(self, record: dict[str, Any]) -> Slot | None:
        if self.locks is None:
            raise ReconcileError(st.Reason.MAINTENANCE_FAILED, "this process has no Kubernetes API for the "
                                 "maintenance lock; maintenance waits for the operator", delay=60.0)
        ttl, slots = self.spec.maintenance.lock_ttl_seconds, self.spec.maintenance.max_unavailable
        try:
            slot = await kube.call(self.locks.acquire, self.group, self.holder, ttl, slots, record)
        except MaintenanceLockError as error:
            raise ReconcileError(st.Reason.MAINTENANCE_FAILED, f"the maintenance lock of group {self.group}: "
                                 f"{error}", delay=30.0) from None
        self.renewed = time.monotonic()
        return slot

    async def held(self) -> set[str]:
        """The addresses of the live slots' holders of the group (their records name them)."""
        if self.locks is None:
            return set()
        try:
            holdings = await kube.call(self.locks.held, self.group)
        except MaintenanceLockError as error:
            raise ReconcileError(st.Reason.MAINTENANCE_FAILED, f"the maintenance lock of group {self.group}: "
                                 f"{error}", delay=30.0) from None
        return {str(h.record.get("address")) for h in holdings if not h.expired and h.holder != self.holder}

    async def renew(self, force: bool = False) -> None:
        """The slot renewed when a third of its TTL has passed (or `force`); a slot lost meanwhile (it expired and
        another host took it) is said in an Event: the host is already in maintenance, so the work goes on."""
        if self.slot is None or self.locks is None:
            return
        if not force and time.monotonic() - self.renewed < self.slot.ttl_seconds / 3:
            return
        try:
            renewed = await kube.call(self.locks.renew, self.slot)
        except MaintenanceLockError as error:
            self.ctx.logger.warning("renewing the maintenance lock failed: %s", error)
            return
        self.renewed = time.monotonic()
        if renewed is None:
            self.ctx.event("Warning", "MaintenanceLockLost", f"the slot {self.slot.name} of group {self.group} "
                           "expired and was taken by another host; this host's maintenance goes on")
            self.slot = None
        else:
            self.slot = renewed

    async def release(self) -> None:
        if self.slot is not None and self.locks is not None:
            try:
                await kube.call(self.locks.release, self.slot)
            except MaintenanceLockError as error:  # it expires after its TTL
                self.ctx.logger.warning("releasing the maintenance lock failed: %s", error)
            self.slot = None

    async def sleep(self) -> None:
        await self.renew()
        await asyncio.sleep(self.poll)

    async def again(self, deadline: float, timeout_message: str) -> None:
        """The end of one turn of a wait: MaintenanceTimeout (`timeout_message`, not retried) once past `deadline`,
        else a poll's sleep."""
        if time.monotonic() > deadline:
            raise ReconcileError(st.Reason.MAINTENANCE_TIMEOUT, timeout_message, retry=False)
        await self.sleep()

    # ------------------------------------------------------------------ start

    async def start(self, due: Due) -> None:
        """The preconditions, the lock, the record; then the steps. Raises Waiting when it cannot start now. A
        host whose group's lock is held waits for it in its pass, asking the Leases again every LOCK_POLLS polls for
        up to the reconciler's `maintenance_lock_wait` (a pass that ended would come back only after its requeue
        and a new probe); once it has a slot, the preconditions are checked again (the host before it may have
        left a peer down)."""
        state = await self.preconditions()
        deadline = time.monotonic() + self.reconciler.maintenance_lock_wait
        while True:
            self.slot = await self.acquire({"address": self.spec.address, "stateBefore": state,
                                            "request": due.request})
            if self.slot is not None:
                break
            if time.monotonic() >= deadline:
                holders = [h.holder for h in await kube.call(self.locks.held, self.group) if not h.expired] \
                    if self.locks is not None else []
                raise Waiting(f"the maintenance lock of group {self.group} is held by "
                              f"{', '.join(holders) or 'another host'}")
            await asyncio.sleep(self.poll * LOCK_POLLS)
        try:
            state = await self.preconditions()
        except Waiting:
            await self.release()
            raise
        before = str(self.slot.record.get("stateBefore", state))
        record = HostMaintenanceStatus(
            request=due.request, phase="InProgress", step="Draining", generation=self.ctx.generation,
            group=self.group, lock=self.slot.name, state_before=before if before in ("Enabled", "Disabled") else "",
            reboot=due.reboot, packages=list(due.changes), started_at=st.now())
        try:
            await self.notify(record, "before")
        except NotificationError as error:  # nothing touched yet: the slot goes back
            await self.release()
            raise ReconcileError(getattr(error, "reason", st.Reason.NOTIFICATION_FAILED), f"the before notice: "
                                 f"{error}; the host was not touched", delay=60.0) from None
        await self.save(record)
        self.ctx.event("Normal", "MaintenanceStarted", f"took slot {self.slot.name} of group {self.group}: "
                       f"{due.request}")
        await self.proceed(record)

    async def preconditions(self) -> str:
        """The host's CloudStack resource state before maintenance ("" without CloudStack), once nothing blocks it
        (else Waiting): every peer Up, none in maintenance without a slot, room for its VMs."""
        host = await self.cloudstack_host() if self.api is not None else None
        if self.api is not None and host is None:
            raise Waiting("the host is not in CloudStack yet")
        if host is not None:
            blocking = await self.blockers(host, await self.held())
            if blocking:
                raise Waiting("; ".join(blocking))
        state = str(host.get("resourcestate", "Enabled")) if host is not None else ""
        last = recorded(self.ctx)
        if state == "Maintenance" and last is not None and last.phase == "Failed" and last.step != "Draining":
            return last.state_before  # left there, emptied, by this KvmHost's failed maintenance: go on from it
        if state in IN_MAINTENANCE:
            raise Waiting(f"the host is in {state} in CloudStack, not put there by this KvmHost")
        return state

    # ------------------------------------------------------------------ the steps

    async def proceed(self, record: HostMaintenanceStatus) -> None:
        """The steps from where the record stands."""
        if self.slot is None:
            self.slot = await self.acquire({"address": self.spec.address, "stateBefore": record.state_before,
                                            "request": record.request})
            if self.slot is None:
                self.ctx.event("Warning", "MaintenanceLockLost", f"the slot of group {self.group} expired while "
                               "no operator renewed it and was taken; this host's maintenance goes on")
        try:
            if record.step == "Draining":
                await self.drain(record)
                record.step = "Updating" if record.packages else "Rebooting" if record.reboot else "Returning"
                await self.save(record)
            if record.step == "Updating":
                await self.update(record)
                record.step = "Rebooting" if record.reboot else "Returning"
                await self.save(record)
            if record.step == "Rebooting":
                await self.reboot(record)
                record.step = "Returning"
                await self.save(record)
            if record.step == "Returning":
                await self.back(record)
                record.step = "Restoring"
                await self.save(record)
            if record.step == "Restoring":
                await self.restore(record)
                record.step = "Releasing"
                await self.save(record)
        except (ReconcileError, CloudStackError, NotificationError, SSHError) as error:
            reason = getattr(error, "reason", None) or st.Reason.MAINTENANCE_FAILED
            message = f"step {record.step}: {error}"
            await self.fail(record, str(reason), message, give_back=record.step == "Draining")
            raise ReconcileError(str(reason), message, retry=False) from None
        await self.release()
        record.step, record.phase, record.finished_at = "Done", "Completed", st.now()
        await self.save(record)
        self.ctx.event("Normal", "MaintenanceCompleted", f"{record.request}: done, slot released")
        try:
            await self.notify(record, "after")
        except NotificationError as error:
            self.ctx.event("Warning", st.Reason.NOTIFICATION_FAILED, f"the after notice: {error}")

    async def drain(self, record: HostMaintenanceStatus) -> None:
        if self.api is None:
            domains = (await self.conn.run(DOMAINS, timeout=60.0, label="virsh list")).stdout.split()
            if domains and record.reboot:
                raise ReconcileError(st.Reason.MAINTENANCE_FAILED, f"domains run on the host ({', '.join(domains)}) "
                                     "and it is not in CloudStack (spec.cloudstack), which would move them: not "
                                     "rebooted", retry=False)
            return
        deadline = time.monotonic() + self.timeout
        while True:
            host = await self.cloudstack_host()
            if host is None:
                raise ReconcileError(st.Reason.MAINTENANCE_FAILED, "the host is no longer in CloudStack", retry=False)
            resource = host.get("resourcestate")
            if resource == "Maintenance":
                return
            if resource == "ErrorInMaintenance":
                raise ReconcileError(st.Reason.MAINTENANCE_FAILED, "CloudStack could not move every VM away "
                                     f"(ErrorInMaintenance); VMs left: {await self.vms_left(str(host['id']))}",
                                     retry=False)
            if resource == "Disabled":
                await self.api.call("updateHost", id=host["id"], allocationstate="Enable")
                self.ctx.event("Normal", "Applied", f"enabled CloudStack host {host.get('name')} for "
                               "prepareHostForMaintenance (it is disabled again at the end)")
                continue
            if resource == "Enabled" and not await self.peers_preparing(host):
                try:
                    await self.api.run("prepareHostForMaintenance", id=host["id"], timeout=self.timeout)
                except CloudStackError:
                    if not await self.peers_preparing(host):  # else a peer began first: wait for its drain
                        raise
                else:
                    self.ctx.event("Normal", "Applied", f"put CloudStack host {host.get('name')} into maintenance")
                    continue
            await self.again(deadline, f"CloudStack host {host.get('name')} did not reach Maintenance in "
                                       f"{self.timeout:.0f}s (it is {resource})")

    async def update(self, record: HostMaintenanceStatus) -> None:
        facts = await self.reconciler.observe(self.ctx, self.conn)
        for action in agent_install(self.spec, facts.host, facts.owner, facts.signing_key):
            await self.renew()
            await self.reconciler.execute(self.ctx, self.conn, action, facts)
            self.ctx.event("Normal", action.event_reason, action.describe())

    async def reboot(self, record: HostMaintenanceStatus) -> None:
        """The boot id recorded, then the reboot asked for once; done when the host answers with another boot
        id."""
        if not record.boot_id:
            boot_id, _ = await self.boot()
            record.boot_id = boot_id or ""
            await self.save(record)
        try:
            boot_id, asked = await self.boot()
        except (Unreachable, ConnectionLost, SSHTimeout):  # going down (a restarted operator asked already)
            boot_id, asked = None, True
        if boot_id == record.boot_id and not asked:
            try:
                await self.conn.run(REBOOT, timeout=30.0, mutation=True, label="systemctl reboot")
            except (ConnectionLost, SSHTimeout):
                pass  # the reboot took the connection with it
            self.ctx.event("Normal", "Rebooting", f"rebooting the host (boot {record.boot_id})")
        await self.wait_boot(record.boot_id)

    async def boot(self) -> tuple[str | None, bool]:
        """(this boot's id, whether the reboot was asked for in it)."""
        out = (await self.conn.run(MARKER, timeout=30.0, label="boot id")).stdout.split()
        return (out[0] if out else None), "asked" in out

    async def wait_boot(self, old: str) -> None:
        deadline = time.monotonic() + self.timeout
        target = dataclasses.replace(self.conn.target, connect_timeout=WAIT_CONNECT_SECONDS)
        while True:
            connection = self.reconciler.pool.connection(target)
            try:
                out = (await connection.run(MARKER, timeout=10.0, label="boot id")).stdout.split()
                if out and out[0] != old:
                    return
            except (Unreachable, ConnectionLost, SSHTimeout, CommandFailed):
                pass
            finally:
                connection.close()
            await self.again(deadline, f"the host did not come back from its reboot in {self.timeout:.0f}s")

    async def back(self, record: HostMaintenanceStatus) -> None:
        """A clean probe (nothing to plan), then CloudStack: Up, maintenance cancelled, Up and Enabled."""
        deadline = time.monotonic() + self.timeout
        left: list[str] = []
        while True:
            try:
                facts = await self.reconciler.observe(self.ctx, self.conn)
                left = [a.describe() for a in self.reconciler.host_actions(self.ctx, facts)]
                if not left:
                    break
            except ReconcileError as error:
                left = [str(error)]
            await self.again(deadline, f"the host is back but does not match its spec after {self.timeout:.0f}s: "
                                       + "; ".join(left[:5]))
        if self.api is None:
            return
        while True:
            host = await self.cloudstack_host()
            if host is None:
                raise ReconcileError(st.Reason.MAINTENANCE_FAILED, "the host is no longer in CloudStack", retry=False)
            state, resource = host.get("state"), host.get("resourcestate")
            if state == "Up" and resource in ("Enabled", "Disabled"):
                return
            if state == "Up" and resource in IN_MAINTENANCE:
                await self.api.run("cancelHostMaintenance", id=host["id"], timeout=self.timeout)
                self.ctx.event("Normal", "Applied", f"cancelled the maintenance of CloudStack host {host.get('name')}")
                continue
            await self.again(deadline, f"CloudStack host {host.get('name')} is {state} and {resource} "
                                       f"{self.timeout:.0f}s after the host came back")

    async def restore(self, record: HostMaintenanceStatus) -> None:
        if self.api is None or record.state_before != "Disabled":
            return
        host = await self.cloudstack_host()
        if host is not None and host.get("resourcestate") == "Enabled":
            await self.api.call("updateHost", id=host["id"], allocationstate="Disable")
            self.ctx.event("Normal", "Applied", f"disabled CloudStack host {host.get('name')} again, as it was "
                           "before maintenance")

    async def stop(self, record: HostMaintenanceStatus) -> None:
        """The KvmHost is being deleted: a host still being drained is given back (maintenance cancelled, its state
        restored, the slot released, the record Failed); one already emptied is taken through its remaining steps
        (a reboot under way is not left half-done)."""
        if record.step != "Draining":
            self.ctx.event("Normal", "MaintenanceFinishing", f"the KvmHost is being deleted: finishing the "
                           f"maintenance from {record.step}")
            await self.proceed(record)
            return
        self.slot = await self.acquire({"address": self.spec.address, "stateBefore": record.state_before,
                                        "request": record.request})
        await self.fail(record, st.Reason.MAINTENANCE_FAILED, "stopped while draining: the KvmHost is being "
                        "deleted", give_back=True)

    # ------------------------------------------------------------------ failure

    async def fail(self, record: HostMaintenanceStatus, reason: str, message: str, give_back: bool) -> None:
        """The host given back (maintenance cancelled, state restored) when it was not emptied yet or draining
        failed; else left in CloudStack maintenance. The slot released, the record Failed."""
        if give_back and self.api is not None:
            try:
                host = await self.cloudstack_host()
                if host is not None and host.get("resourcestate") in IN_MAINTENANCE:
                    await self.api.run("cancelHostMaintenance", id=host["id"], timeout=120.0)
                await self.restore(record)
            except CloudStackError as error:
                message += f"; giving the host back failed too: {error}"
        elif self.api is not None:
            message += "; the host is left in CloudStack maintenance (no VM is placed on it)"
        await self.release()
        record.phase, record.reason, record.message, record.finished_at = "Failed", reason, message, st.now()
        await self.save(record)
        self.ctx.event("Warning", reason, message)

    async def notify(self, record: HostMaintenanceStatus, phase: str) -> None:
        payload = {"kind": "KvmHost", "host": self.ctx.name, "namespace": self.ctx.namespace,
                   "address": self.spec.address, "group": self.group, "phase": phase, "request": record.request,
                   "reboot": record.reboot, "packages": record.packages}
        await self.notifier.post(payload, f"the {phase} notice of host {self.ctx.name}")
