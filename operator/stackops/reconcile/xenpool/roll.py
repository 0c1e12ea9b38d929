"""Rolling maintenance of a pool, host by host, crash-safe.

A roll starts only when the updates it applies pass their precheck on every host that lacks them and nothing
blocks it (every member live and enabled; in CloudStack every pool host Up and Enabled and none in maintenance).
Then, each written to `status.maintenance` before it is taken:

1. the roll, with HA's state and configuration as found; HA disabled (xapi refuses evacuations of unprotected VMs
   while it is on, and the dance is the seeds' rule for patching);
2. each host's turn, the master first: `Draining` (CloudStack `prepareHostForMaintenance` when the pool is
   registered; for the master, the cluster `Unmanaged` afterwards, only for its turn), `Evacuating`
   (`host.disable`, `host.assert_can_evacuate`, `host.evacuate`), `Updating` (`pool_update.apply` /
   `pool_patch.apply` of what it lacks), `Rebooting` (its `boot_time` recorded first: a different one means it
   rebooted, so a restarted operator never reboots it twice), `Returning` (xapi answers, the host enabled, the
   cluster `Managed` again, the host Up in CloudStack, `cancelHostMaintenance`), `Done`. A host with no reboot to
   do is not emptied: its updates are applied in place;
3. HA enabled again with the recorded configuration — only if it was on — and the roll `Completed`.

An operator killed anywhere finds the roll `Rolling` and goes on from the recorded step. A failed step stops the
roll: the host is given back when it can be (enabled, maintenance cancelled), the cluster Managed, HA restored as
recorded, and the roll `Failed` with the host and the reason (`Stalled`) until the spec changes. A window that
closes between two turns pauses the roll the same way (`Paused`), to go on in the next window.
"""
from __future__ import annotations

import asyncio
import datetime
import re
import time
from typing import TYPE_CHECKING, Any

from ... import status as st
from ...api.xenpool import HostTurn, RollStatus, XenPoolSpec
from ...drivers.download import ChecksumMismatch, DownloadError, download
from ...drivers.xenapi import XenAPIError, XenNoMaster, XenUnreachable
from ..base import Action, Context, ReconcileError
from ..notify import NotificationError, Notifier
from ..window import window_state
from . import drain, ha
from .actions import EndRoll, HostTurnAction, StartRoll, UploadUpdate
from .observed import Host, PoolFacts, Update, observe_hosts
from .reasons import Reason
from .turns import Roll

if TYPE_CHECKING:
    from . import PoolConnection, XenPoolReconciler

ROLL = "maintenance"
PROGRESS = "maintenanceProgress"


def progress(record: RollStatus) -> str:
    if record.phase != "Rolling":
        return record.phase
    done = sum(1 for h in record.hosts if h.step == "Done")
    current = next((h for h in record.hosts if h.step != "Done"), None)
    if current is None:
        return f"{done}/{len(record.hosts)} restoring HA"
    return f"{done}/{len(record.hosts)} {current.name} {current.step}"


def recorded(ctx: Context) -> RollStatus | None:
    found = ctx.status.get(ROLL)
    return RollStatus.model_validate(found) if isinstance(found, dict) else None


class Roller:
    """One pass's work on the roll."""

    def __init__(self, reconciler: XenPoolReconciler, ctx: Context, conn: PoolConnection):
        self.reconciler, self.ctx, self.conn = reconciler, ctx, conn
        self.spec: XenPoolSpec = ctx.spec
        self.session, self.link = conn.session, conn.link
        self.poll = reconciler.poll
        self.timeout = float(self.spec.maintenance.host_timeout_seconds)
        self.applied: list[Action] = []
        notices = self.spec.maintenance.notifications
        url = ctx.secret(notices.webhook_url_secret_ref.name, notices.webhook_url_secret_ref.key) if notices else None
        self.notifier = Notifier(url, allow_local=bool(notices and notices.allow_local_addresses))

    async def save(self, record: RollStatus) -> None:
        await self.ctx.checkpoint({ROLL: record.model_dump(by_alias=True), PROGRESS: progress(record)})

    async def read(self) -> PoolFacts:
        return await self.reconciler.read(self.session, self.spec)

    def done(self, action: Action) -> None:
        self.applied.append(action)
        self.ctx.event("Normal", action.event_reason, action.describe())

    # ------------------------------------------------------------------ uploads

    async def upload(self, action: UploadUpdate, facts: PoolFacts) -> None:
        update = next(u for u in self.spec.maintenance.updates if u.name == action.name)
        try:
            body = await download(update.url, update.sha256, f"update {update.name}")
        except ChecksumMismatch as error:
            raise ReconcileError(Reason.UPDATE_CHECKSUM_MISMATCH, str(error), retry=False) from None
        except DownloadError as error:
            raise ReconcileError(Reason.DOWNLOAD_FAILED, str(error), delay=60.0) from None
        with body:
            size = body.seek(0, 2)
            body.seek(0)
            if facts.legacy:
                ref = await self.session.upload("/pool_patch_upload", {}, body, size, timeout=self.timeout)
                name = await self.session.call("pool_patch.get_name_label", ref)
            else:
                sr = self.spec.maintenance.update_sr_uuid
                sr_ref = await self.session.call("SR.get_by_uuid", sr) if sr else facts.default_sr
                vdi = await self.session.upload("/import_raw_vdi", {"sr_id": sr_ref, "format": "raw"}, body, size,
                                                timeout=self.timeout)
                try:
                    ref = await self.session.call("pool_update.introduce", vdi)
                except XenAPIError as error:
                    if error.code != "UPDATE_ALREADY_EXISTS":
                        await self.session.call("VDI.destroy", vdi)
                        raise
                    ref = await self.session.call("pool_update.get_by_uuid", error.params[0])
                name = await self.session.call("pool_update.get_name_label", ref)
        if name != update.name:
            raise ReconcileError(Reason.UPDATE_NAME_MISMATCH, f"the file of update {update.name} holds update {name}; "
                                 "fix maintenance.updates", retry=False)

    # ------------------------------------------------------------------ start

    async def start(self, roll: Roll, facts: PoolFacts) -> None:
        """Prechecks, then the roll recorded and HA disabled; then the turns."""
        names = {m.address: m.name for m in self.spec.members}
        await self.precheck(roll, facts)
        if self.link is not None:
            blocking = await drain.blockers(self.link, names)
            if blocking:
                raise ReconcileError(Reason.ROLL_BLOCKED, "the roll does not start: " + "; ".join(blocking), delay=60.0)
        turns = [t for t in roll.turns if t.work]
        record = RollStatus(
            request=roll.request, phase="Rolling", generation=self.ctx.generation,
            hosts=[HostTurn(name=t.name, address=t.address, updates=list(t.updates), reboot=bool(t.reboot))
                   for t in turns],
            ha_was_enabled=facts.ha_enabled, ha_configuration=dict(facts.ha_configuration) if facts.ha_enabled else {},
            heartbeat_srs=self.reconciler.heartbeat(self.spec, facts) if facts.ha_enabled else [],
            started_at=st.now())
        await self.save(record)
        self.done(StartRoll(roll.request, len(turns), facts.ha_enabled))
        await self.proceed(record)  # HA disabled before the first turn

    async def precheck(self, roll: Roll, facts: PoolFacts) -> None:
        """Every update on every host that lacks it, before any host is touched."""
        known = facts.updates or {}
        cls = "pool_patch" if facts.legacy else "pool_update"
        for turn in roll.turns:
            host = facts.host_by_address(turn.address)
            assert host is not None
            for index, name in enumerate(turn.updates):
                try:
                    await self.session.call(f"{cls}.precheck", known[name].ref, host.ref)
                except XenAPIError as error:
                    if not error.code.startswith(("UPDATE_PRECHECK_FAILED_", "PATCH_PRECHECK_FAILED_")):
                        raise  # e.g. HOST_OFFLINE: asked again on the next pass
                    if comes_first(error, [known[n] for n in turn.updates[:index]]):
                        continue  # what it requires is applied before it in this turn: its apply prechecks it again
                    message = (f"update {name} fails its precheck on host {turn.name}: {error.code} "
                               f"{' '.join(error.params[1:])}".rstrip() + "; no host was touched")
                    record = RollStatus(request=roll.request, phase="Failed", generation=self.ctx.generation,
                                        reason=error.code, message=message, finished_at=st.now())
                    await self.save(record)
                    self.ctx.event("Warning", error.code, message)
                    raise ReconcileError(error.code, message, retry=False) from None

    # ------------------------------------------------------------------ the turns

    async def proceed(self, record: RollStatus) -> None:
        """The turns from where the record stands, then the end."""
        for turn in record.hosts:
            if turn.step == "Done":
                continue
            if turn.step == "Pending" and not window_state(self.spec.maintenance.window, _utc_now()).open:
                await self.stop(record, "Paused", Reason.WAITING_FOR_MAINTENANCE_WINDOW,
                                "the maintenance window closed; the roll goes on in the next one", turn=None)
                return
            try:
                await self.ha_off(record)
                await self.turn(record, turn)
            except (XenUnreachable, XenNoMaster):
                raise  # the pool did not answer: the roll stays Rolling and the next pass goes on from this step
            except (ReconcileError, XenAPIError, NotificationError) as error:
                reason = getattr(error, "code", None) if isinstance(error, XenAPIError) else error.reason
                message = f"host {turn.name}, step {turn.step}: {error}"
                await self.stop(record, "Failed", str(reason or Reason.ROLL_FAILED), message, turn=turn)
                raise ReconcileError(str(reason or Reason.ROLL_FAILED), message, retry=False) from None
        await self.finish(record)

    async def ha_off(self, record: RollStatus) -> None:
        """HA disabled before the first turn when it was on — also when the roll is resumed by an operator that died
        after recording it and before disabling HA (with HA on, xapi refuses to evacuate unprotected VMs). Once a
        turn has begun, HA is off: nothing to read."""
        if not record.ha_was_enabled or any(t.step != "Pending" for t in record.hosts):
            return
        if (await self.read()).ha_enabled:
            await ha.disable(self.session, timeout=self.reconciler.change_timeout, poll=self.poll)
            await self.ha_seen(False)
            self.ctx.event("Normal", "Applied", "disabled pool HA for the roll; it is enabled again at its end")

    async def step(self, record: RollStatus, turn: HostTurn, step: str, **more: Any) -> None:
        turn.step = step  # type: ignore[assignment]
        for key, value in more.items():
            setattr(turn, key, value)
        await self.save(record)

    async def turn(self, record: RollStatus, turn: HostTurn) -> None:
        if turn.step == "Pending":
            await self.notify(turn, "before")
        if turn.reboot and turn.step in ("Pending", "Draining"):
            facts = await self.read()
            master = self.host(facts, turn).ref == facts.master_ref
            await self.step(record, turn, "Draining")
            if self.link is not None:
                await drain.drain(self.link, turn.address, turn.name, self.timeout, self.poll)
                if master:
                    record.cluster_unmanaged = True
                    await self.save(record)
                    if (done := await self.link.set_managed(False)) is not None:
                        self.applied.append(done)
        if turn.reboot and turn.step in ("Pending", "Draining", "Evacuating"):
            await self.step(record, turn, "Evacuating")
            await self.evacuate(turn, self.host(await self.read(), turn))
        if turn.step in ("Pending", "Draining", "Evacuating", "Updating"):
            await self.step(record, turn, "Updating")
            await self.apply(turn)
        if turn.reboot and turn.step in ("Updating", "Rebooting"):
            await self.reboot(record, turn)
        if turn.step in ("Updating", "Rebooting", "Returning"):
            await self.step(record, turn, "Returning")
            await self.give_back(record, turn)
        await self.step(record, turn, "Done")
        await self.notify(turn, "after")

    def host(self, facts: PoolFacts, turn: HostTurn) -> Host:
        host = facts.host_by_address(turn.address)
        if host is None:
            raise ReconcileError(Reason.HOST_LEFT_POOL, f"host {turn.name} ({turn.address}) left the pool", retry=False)
        return host

    async def evacuate(self, turn: HostTurn, host: Host) -> None:
        """Disabled and emptied. Resumed while the host.evacuate of an operator that died is still under way, that
        evacuation is waited for first: xapi refuses to plan or start another while its VMs migrate
        (CANNOT_EVACUATE_HOST, OTHER_OPERATION_IN_PROGRESS pool_migrate), which would fail the roll."""
        if host.enabled:
            await self.session.call("host.disable", host.ref)
        if host.evacuating:
            await self.until(lambda f: (h := f.host_by_address(turn.address)) is not None and not h.evacuating,
                             f"the evacuation of host {turn.name} under way to end")
        await self.session.call("host.assert_can_evacuate", host.ref)
        await self.session.task("host.evacuate", host.ref, timeout=self.timeout, poll=self.poll)
        self.ctx.event("Normal", "Applied", f"disabled and evacuated host {turn.name}")

    async def apply(self, turn: HostTurn) -> None:
        """What the host lacks of its updates, applied. Resumed at this step, an update the host got meanwhile is
        not applied again (nor one whose apply answers ..._ALREADY_APPLIED), and an apply an operator that died left
        under way is waited for: xapi refuses another of the same update on the host while it runs
        (OTHER_OPERATION_IN_PROGRESS: the extension's lock; 6.x: its host_patch not yet applied), so the call is
        asked again until that one has ended — ..._ALREADY_APPLIED if it succeeded, run again if it failed."""
        facts = await self.read()
        host = self.host(facts, turn)
        known = facts.updates or {}
        cls = "pool_patch" if facts.legacy else "pool_update"
        for name in turn.updates:
            if name in host.updates:
                continue
            started = time.monotonic()
            while True:
                try:
                    await self.session.task(f"{cls}.apply", known[name].ref, host.ref, timeout=self.timeout,
                                            poll=self.poll)
                except XenAPIError as error:
                    waited = time.monotonic() - started
                    if error.code == "OTHER_OPERATION_IN_PROGRESS" and waited < self.timeout:
                        await asyncio.sleep(min(max(self.poll, waited / 10), 10 * self.poll))
                        continue
                    if error.code not in ("UPDATE_ALREADY_APPLIED", "PATCH_ALREADY_APPLIED"):
                        raise
                break
            self.ctx.event("Normal", "Applied", f"applied update {name} on host {turn.name}")

    async def reboot(self, record: RollStatus, turn: HostTurn) -> None:
        """The host rebooted once: its boot_time recorded, then host.reboot. Resumed at this step, the call is made
        again only when the host still runs the recorded boot with no shutdown under way (the call never reached
        it); a pool without an answering master is the master rebooting."""
        if turn.step != "Rebooting":
            host = self.host(await self.read(), turn)
            await self.step(record, turn, "Rebooting", boot_time=host.boot_time)
            await self.session.call("host.reboot", host.ref)
            self.ctx.event("Normal", "Applied", f"rebooting host {turn.name}")
        else:
            try:
                host = self.host(await self.read(), turn)
            except XenAPIError:
                host = None
            if host is not None and host.boot_time == turn.boot_time and host.live and not host.shutting_down:
                await self.session.call("host.reboot", host.ref)  # recorded, but the call never reached the host
                self.ctx.event("Normal", "Applied", f"rebooting host {turn.name}")
        await self.until(lambda f: (h := f.host_by_address(turn.address)) is not None and h.live
                         and h.boot_time != turn.boot_time, f"host {turn.name} to come back from its reboot",
                         enable=turn.address)

    async def give_back(self, record: RollStatus, turn: HostTurn) -> None:
        await self.until(lambda f: (h := f.host_by_address(turn.address)) is not None and h.live and h.enabled,
                         f"host {turn.name} to be enabled", enable=turn.address)
        if record.cluster_unmanaged and self.link is not None:
            if (done := await self.link.set_managed(True)) is not None:
                self.applied.append(done)
            record.cluster_unmanaged = False
            await self.save(record)
        if self.link is not None and turn.reboot:
            await drain.give_back(self.link, turn.address, turn.name, self.timeout, self.poll)
            await drain.all_up(self.link, {m.address: m.name for m in self.spec.members}, self.timeout, self.poll)

    async def until(self, done: Any, what: str, *, enable: str = "") -> None:
        """Until `done(facts)` on the pool's hosts (three calls a look; the wait between looks grows with the
        wait, a tenth of it, from `poll` up to ten times `poll`: a five-minute reboot is looked at ~60 times);
        a host at `enable` that is back but disabled gets `host.enable` (HOST_STILL_BOOTING while its xapi
        starts: asked again)."""
        started = time.monotonic()
        deadline = started + self.timeout
        while True:
            try:
                facts = await observe_hosts(self.session)
                if done(facts):
                    return
                host = facts.host_by_address(enable) if enable else None
                if host is not None and host.live and not host.enabled and not host.shutting_down:
                    await self.session.call("host.enable", host.ref)
            except XenAPIError:
                pass  # the master rebooting, or xapi starting: ask again
            if time.monotonic() > deadline:
                raise ReconcileError(Reason.HOST_DID_NOT_RETURN, f"waited {self.timeout:.0f}s for {what}", retry=False)
            await asyncio.sleep(min(max(self.poll, (time.monotonic() - started) / 10), 10 * self.poll))

    async def notify(self, turn: HostTurn, phase: str) -> None:
        if not self.notifier.enabled:
            return
        payload = {"pool": self.ctx.name, "namespace": self.ctx.namespace, "host": turn.name, "phase": phase,
                   "updates": list(turn.updates), "reboot": turn.reboot}
        await self.notifier.post(payload, f"the {phase} notice of host {turn.name}")

    # ------------------------------------------------------------------ the end

    async def finish(self, record: RollStatus) -> None:
        if record.cluster_unmanaged and self.link is not None:
            await self.link.set_managed(True)
            record.cluster_unmanaged = False
            await self.save(record)
        await self.restore_ha(record)
        record.phase, record.finished_at = "Completed", st.now()
        await self.save(record)
        self.done(EndRoll(record.ha_was_enabled))

    async def restore_ha(self, record: RollStatus) -> None:
        if not record.ha_was_enabled:
            return
        facts = await self.read()
        if facts.ha_enabled:
            return
        sr = record.heartbeat_srs[0] if record.heartbeat_srs else ""
        configuration = dict(record.ha_configuration) or {"timeout": str(self.spec.ha.timeout_seconds)}
        await ha.enable(self.session, sr, configuration, timeout=self.reconciler.change_timeout, poll=self.poll)
        await self.ha_seen(True)
        self.ctx.event("Normal", "Applied", f"enabled pool HA again as it was before the roll ({configuration})")

    async def ha_seen(self, enabled: bool) -> None:
        """status.ha.enabled as the pool has it now, not at the end of the pass the roll runs in: the HA column,
        and what failover reads as last seen when the master is lost (HA off: xapi elects no new master)."""
        await self.ctx.checkpoint({"ha": {**(self.ctx.status.get("ha") or {}), "enabled": enabled}})

    async def stop(self, record: RollStatus, phase: str, reason: str, message: str, turn: HostTurn | None) -> None:
        """The roll stops with the pool serving: the host given back when it can be, the cluster Managed, HA as
        recorded; then the record says why."""
        problems = []
        if turn is not None:
            problems += await self.release(turn)
        if record.cluster_unmanaged and self.link is not None:
            try:
                await self.link.set_managed(True)
                record.cluster_unmanaged = False
            except ReconcileError as error:
                problems.append(f"the CloudStack cluster stays Unmanaged: {error}")
        try:
            await self.restore_ha(record)
        except (ReconcileError, XenAPIError) as error:
            problems.append(f"HA could not be enabled again: {error}")
        record.phase, record.reason = phase, reason  # type: ignore[assignment]
        record.message = message + ("; " + "; ".join(problems) if problems else "")
        record.generation, record.finished_at = self.ctx.generation, st.now()
        await self.save(record)
        self.ctx.event("Warning" if phase == "Failed" else "Normal", reason, record.message)

    async def abandon(self, record: RollStatus) -> None:
        """The XenPool is deleted mid-roll: the roll stops as a failed one would, the pool left serving."""
        turn = next((h for h in record.hosts if h.step not in ("Pending", "Done")), None)
        if turn is not None and turn.step in ("Rebooting", "Returning"):
            try:
                host: Host | None = self.host(await self.read(), turn)
            except (ReconcileError, XenAPIError):
                host = None  # the master rebooting
            if host is None or not host.live or host.shutting_down:  # never leave a host half-way through its reboot
                await self.until(lambda f: (h := f.host_by_address(turn.address)) is not None and h.live
                                 and not h.shutting_down, f"host {turn.name} to come back", enable=turn.address)
        await self.stop(record, "Failed", Reason.ROLL_FAILED, "the XenPool was deleted during the roll", turn=turn)

    async def release(self, turn: HostTurn) -> list[str]:
        """A host whose turn failed, back in service when it is up: enabled, out of CloudStack maintenance."""
        problems = []
        try:
            host = self.host(await self.read(), turn)
            if host.live and not host.enabled and not host.shutting_down:
                await self.session.call("host.enable", host.ref)
            elif not host.live:
                problems.append(f"host {turn.name} is not live")
        except (ReconcileError, XenAPIError) as error:
            problems.append(f"host {turn.name} could not be enabled: {error}")
        if self.link is not None:
            failed = await drain.cancel_quietly(self.link, turn.address)
            if failed:
                problems.append(f"host {turn.name} stays in CloudStack maintenance: {failed}")
        return problems


def comes_first(error: XenAPIError, earlier: list[Update]) -> bool:
    """A precheck that failed only for prerequisites the same turn applies first (a hotfix on top of a service pack
    of the same roll): `..._PREREQUISITE_MISSING [update, missing]`, the missing ones by name (7.1+) or uuid (6.x),
    separated by spaces, commas or semicolons."""
    if not error.code.endswith("PRECHECK_FAILED_PREREQUISITE_MISSING") or len(error.params) < 2:
        return False
    missing = [m for m in re.split(r"[\s,;]+", error.params[1]) if m]
    coming = {word for update in earlier for word in (update.name, update.uuid)}
    return bool(missing) and all(m in coming for m in missing)


def actions(spec: XenPoolSpec, facts: PoolFacts, roll: Roll, *, cloudstack: bool) -> list[Action]:
    """The whole roll as actions, for Observe and `stackops plan`: uploads, the start, each host's turn, the end."""
    found: list[Action] = [UploadUpdate(u.name, facts.legacy) for u in roll.uploads]
    turns = [t for t in roll.turns if t.work]
    if turns:
        found.append(StartRoll(roll.request, len(turns), facts.ha_enabled))
        found += [HostTurnAction(t.name, t.master, t.updates, t.reboot, cloudstack) for t in turns]
        found.append(EndRoll(facts.ha_enabled))
    return found


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
