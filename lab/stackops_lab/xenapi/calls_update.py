"""XenServer updates (7.1+) as xapi does them: the upload over HTTP PUT /import_raw_vdi, pool_update.introduce,
precheck, apply, pool_apply, pool_clean and destroy (ocaml/xapi/xapi_pool_update.ml, import_raw_vdi.ml,
python3/extensions/pool_update.precheck and .apply). The update files are the lab's (update_file.py).

- PUT /import_raw_vdi?session_id=…&sr_id=…[&task_id=…][&format=raw] with a Content-Length: a VDI "Imported VDI" of
  that virtual size on the SR holding the body (or `vdi=` an existing VDI); the task (the client's task_id, else one
  made for the request, its ref in the answer's task-id header) succeeds with the VDI ref as result. `format`
  other than raw without `vdi`: INTERNAL_ERROR ["Importing a VHD directly into an SR not yet supported"] (HTTP 400);
  an unknown format: INTERNAL_ERROR ["Unknown format x"] (HTTP 404); no length or no SR: INTERNAL_ERROR ["Not enough
  info supplied to import"] (HTTP 400); a bad session: HTTP 403. Failures land in the task's error_info. Served by
  the master (a supporter answers HTTP 403: the lab does not forward uploads).
- pool_update.introduce(vdi): the update the VDI holds (INVALID_UPDATE [msg] if none); the same uuid already
  introduced from another VDI: UPDATE_ALREADY_EXISTS [uuid] (if its VDI was cleaned, it takes this one). Creates
  the pool_update and its companion pool_patch (uuid with bytes 4-7 zeroed).
- pool_update.precheck(self, host) → "ok" | "ok_livepatch_complete" | "ok_livepatch_incomplete", or, in the order
  the precheck script meets them: CANNOT_FIND_UPDATE [] (VDI cleaned), UPDATE_PRECHECK_FAILED_OUT_OF_SPACE
  [name, available, required], a failure injected for the host (LabUpdates.fail_precheck), _GPGKEY_NOT_IMPORTED
  [name], _CONFLICT_PRESENT [name, conflicts], _PREREQUISITE_MISSING [name, missing], _WRONG_SERVER_VERSION
  [name, installed, required] (params name the update by name_label, as the script does). A host whose xapi is
  not serving: HOST_OFFLINE [host].
- pool_update.apply(self, host): UPDATE_ALREADY_APPLIED [update ref], then the precheck's errors, then
  UPDATE_APPLY_FAILED [output] if injected (LabUpdates.fail_apply). Success: host.updates and pool_update.hosts gain
  it, a host_patch records it, and when its after_apply_guidance has restartHost, host.updates_requiring_reboot
  gains it (xapi's /run/reboot-required.hfxs) until the host reboots: the reboot calls
  `clear_reboot_required(db, host_ref)`. No disable, no reboot, no VM touched.
  The install takes XenTimings.update_apply (lab time; 0: at once). As in xapi, where apply is the host extension
  python3/extensions/pool_update.apply (datamodel: forward_to HostExtension), nothing in the database shows it
  meanwhile (no current_operations on pool_update, whose class has none, nor on the host: its apply_updates
  operation is host.apply_updates') but the call's task; the extension holds a lock per update on the host
  (/tmp/<update uuid>.lck, taken after the UPDATE_ALREADY_APPLIED check, before the precheck), so a second apply of
  that update on that host meanwhile gets OTHER_OPERATION_IN_PROGRESS ["Applying the update", update ref]. The
  failure (UPDATE_APPLY_FAILED) comes at the end of the install, host.updates changes only on success (resync_host).
- pool_update.pool_apply(self): the hosts lacking it in turn, every one tried; failures → UPDATE_POOL_APPLY_FAILED
  [host refs]; none lacking it → UPDATE_ALREADY_APPLIED_IN_POOL [update ref].
- pool_update.pool_clean(self): destroys the VDI, vdi := NULL (a second time: nothing). pool_update.destroy(self):
  UPDATE_IS_APPLIED [] while any host has it; else the update and its pool_patch go.

Lab knobs (`updates_of(lab)`): `fail_precheck[(host name, update uuid or "*")] = [CODE, params…]` makes that
host's precheck (and apply) fail so; `fail_apply[(host, uuid or "*")] = "output"`; `dom0_free[host]` (bytes,
default 4 GiB); `gpg_keys[host]` (imported keys, default {update_file.LAB_KEY}).
"""

from __future__ import annotations

import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stackops_lab.xenapi.dispatch import Ctx, api, task_result
from stackops_lab.xenapi.errors import (HOST_OFFLINE, INTERNAL_ERROR, MESSAGE_METHOD_UNKNOWN,
                                        OTHER_OPERATION_IN_PROGRESS, XapiError)
from stackops_lab.xenapi.state import (NULL_REF, HostPatchRec, HostRec, PoolDB, PoolPatchRec, PoolUpdateRec, SRRec,
                                       TaskRec, VDIRec, new_ref, new_uuid, now)
from stackops_lab.xenapi.update_file import LAB_KEY, InvalidUpdateFile, UpdateFile, parse

if TYPE_CHECKING:
    from stackops_lab.xenapi.simulator import XenLab

INVALID_UPDATE = "INVALID_UPDATE"
CANNOT_FIND_UPDATE = "CANNOT_FIND_UPDATE"
UPDATE_ALREADY_EXISTS = "UPDATE_ALREADY_EXISTS"
UPDATE_ALREADY_APPLIED = "UPDATE_ALREADY_APPLIED"
UPDATE_ALREADY_APPLIED_IN_POOL = "UPDATE_ALREADY_APPLIED_IN_POOL"
UPDATE_APPLY_FAILED = "UPDATE_APPLY_FAILED"
UPDATE_POOL_APPLY_FAILED = "UPDATE_POOL_APPLY_FAILED"
UPDATE_IS_APPLIED = "UPDATE_IS_APPLIED"
PRECHECK = "UPDATE_PRECHECK_FAILED_"
DEFAULT_DOM0_FREE = 4 * 1024 ** 3


@dataclass
class LabUpdates:
    """What lives outside the pool database: VDI contents, and the knobs."""

    contents: dict[str, bytes] = field(default_factory=dict)  # VDI ref → bytes uploaded into it
    fail_precheck: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    fail_apply: dict[tuple[str, str], str] = field(default_factory=dict)
    dom0_free: dict[str, int] = field(default_factory=dict)
    gpg_keys: dict[str, set[str]] = field(default_factory=dict)
    applying: set[tuple[str, str]] = field(default_factory=set)  # (host ref, update uuid): the extension's lock held
    files: dict[str, UpdateFile] = field(default_factory=dict)  # pool_update ref → its file
    patch_files: dict[str, UpdateFile] = field(default_factory=dict)  # 6.x pool_patch ref → its file, till cleaned


_ATTACH = threading.Lock()


def updates_of(lab: XenLab) -> LabUpdates:
    """The lab's update state, attached on first use."""
    with _ATTACH:
        found = getattr(lab, "updates", None)
        if found is None:
            found = LabUpdates()
            setattr(lab, "updates", found)
        return found


def clear_reboot_required(db: PoolDB, host_ref: str) -> None:
    """A host booted: /run/reboot-required.hfxs is gone, so host.updates_requiring_reboot is empty
    (create_misc.ml). For host.reboot's implementation (and any other boot of the host)."""
    host = db.find(HostRec, host_ref)
    if host is not None:
        host.extra["updates_requiring_reboot"] = []


def legacy(db: PoolDB) -> bool:
    """Whether the pool is XenServer before 7.1 (its master's product_version): no pool_update class, the
    legacy pool_patch API (calls_patch.py)."""
    master = db.find(HostRec, db.pool.master)
    version = master.software_version.get("product_version", "") if master is not None else ""
    numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    return bool(numbers) and numbers < (7, 1)


def _served(ctx: Ctx, call: str) -> None:
    if legacy(ctx.db):
        raise XapiError(MESSAGE_METHOD_UNKNOWN, f"pool_update.{call}")


def _list(record: HostRec, name: str) -> list[str]:
    return record.extra.setdefault(name, [])


# ------------------------------------------------------------------------------------------------ upload (HTTP)
def import_raw_vdi(lab: XenLab, machine: Any, path: str, headers: Any,
                   body: bytes | None) -> tuple[int, dict[str, str]]:
    """PUT /import_raw_vdi: (HTTP status, headers). `body` is None when no Content-Length was sent."""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))
    cookies = dict(item.strip().split("=", 1) for item in (headers.get("Cookie") or "").split(";") if "=" in item)
    query = {**cookies, **query}
    with lab.state.lock:
        if not machine.is_master or machine.db is None:
            return 403, {}
        try:
            lab.dispatcher.check_session(machine, query.get("session_id"))
        except XapiError:
            return 403, {}
        db = machine.db
        task = db.find(TaskRec, query.get("task_id", ""))
        if task is None:
            task = db.add(TaskRec(ref=new_ref(), uuid=new_uuid(), name_label="VDI.import",
                                  resident_on=machine.host_ref))
        answer = {"task-id": task.ref}
        try:
            status, vdi = 200, _import(lab, db, query, body)
        except _HttpError as error:
            task.status, task.error_info = "failure", [INTERNAL_ERROR, error.message]
            task.finished, task.progress = now(), 1.0
            lab.dispatcher.changed()
            return error.status, answer
        task.status, task.result, task.finished, task.progress = "success", task_result(vdi.ref), now(), 1.0
        lab.audit_log.record("import_raw_vdi", on=machine.name, vdi=vdi.uuid, size=len(body or b""))
        lab.dispatcher.changed()
        return status, answer


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _import(lab: XenLab, db: PoolDB, query: dict[str, str], body: bytes | None) -> VDIRec:
    fmt = query.get("format", "raw")
    if fmt not in ("raw", "vhd", "qcow2"):
        raise _HttpError(404, f"Unknown format {fmt}")
    vdi = db.find(VDIRec, query.get("vdi", ""))
    if vdi is None and fmt != "raw":
        raise _HttpError(400, f"Importing a {fmt.upper().rstrip('2')} directly into an SR not yet supported")
    sr = db.find(SRRec, query.get("sr_id", ""))
    if vdi is None:
        if body is None or sr is None:
            raise _HttpError(400, "Not enough info supplied to import")
        vdi = db.add(VDIRec(ref=new_ref(), uuid=new_uuid(), name_label="Imported VDI", SR=sr.ref,
                            virtual_size=len(body)))
    updates_of(lab).contents[vdi.ref] = body or b""
    return vdi


# ------------------------------------------------------------------------------------------------ calls
def _update(ctx: Ctx, ref: Any) -> PoolUpdateRec:
    return ctx.db.get(PoolUpdateRec, ref)


def _patch_uuid(uuid: str) -> str:
    """xapi's patch_uuid_of_update_uuid: the update's uuid with bytes 4..7 zeroed."""
    hexa = uuid.replace("-", "")
    hexa = hexa[:8] + "00000000" + hexa[16:]
    return f"{hexa[:8]}-{hexa[8:12]}-{hexa[12:16]}-{hexa[16:20]}-{hexa[20:]}"


@api("pool_update.introduce", 1)
def introduce(ctx: Ctx, vdi_ref: Any) -> str:
    _served(ctx, "introduce")
    vdi = ctx.db.get(VDIRec, vdi_ref)
    state = updates_of(ctx.lab)
    try:
        info = parse(state.contents.get(vdi.ref, b""))
    except InvalidUpdateFile as error:
        raise XapiError(INVALID_UPDATE, str(error)) from None
    existing = next((u for u in ctx.db.all(PoolUpdateRec) if u.uuid == info.uuid), None)
    if existing is not None:
        if ctx.db.find(VDIRec, existing.vdi) is None:
            existing.vdi = vdi.ref
        elif existing.vdi != vdi.ref:
            raise XapiError(UPDATE_ALREADY_EXISTS, info.uuid)
        return existing.ref
    update = ctx.db.add(PoolUpdateRec(
        ref=new_ref(), uuid=info.uuid, name_label=info.name_label, name_description=info.name_description,
        version=info.version, installation_size=info.installation_size, key=info.key,
        after_apply_guidance=list(info.after_apply_guidance), vdi=vdi.ref,
        enforce_homogeneity=info.enforce_homogeneity))
    ctx.db.add(PoolPatchRec(ref=new_ref(), uuid=_patch_uuid(info.uuid), name_label=info.name_label,
                            name_description=info.name_description, version=info.version,
                            size=info.installation_size, after_apply_guidance=list(info.after_apply_guidance),
                            pool_update=update.ref))
    state.files[update.ref] = info
    ctx.audit("pool_update.introduce", update=info.uuid, name=info.name_label)
    return update.ref


def _host_name(ctx: Ctx, host: HostRec) -> str:
    machine = ctx.lab.state.machine_of(ctx.db, host.ref)
    if machine is None or not machine.serving:
        raise XapiError(HOST_OFFLINE, host.ref)
    return machine.name


def _precheck(ctx: Ctx, update: PoolUpdateRec, host: HostRec) -> str:
    name = _host_name(ctx, host)
    state = updates_of(ctx.lab)
    info = state.files.get(update.ref)
    if ctx.db.find(VDIRec, update.vdi) is None or info is None:
        raise XapiError(CANNOT_FIND_UPDATE)
    label = update.name_label
    free = state.dom0_free.get(name, DEFAULT_DOM0_FREE)
    if update.installation_size > free:
        raise XapiError(PRECHECK + "OUT_OF_SPACE", label, free, update.installation_size)
    injected = state.fail_precheck.get((name, update.uuid)) or state.fail_precheck.get((name, "*"))
    if injected:
        raise XapiError(*injected)
    if update.key and update.key not in state.gpg_keys.get(name, {LAB_KEY}):
        raise XapiError(PRECHECK + "GPGKEY_NOT_IMPORTED", label)
    applied = {u.name_label for u in ctx.db.all(PoolUpdateRec) if u.ref in host.extra.get("updates", [])}
    conflicts = [c for c in info.conflicts if c in applied]
    if conflicts:
        raise XapiError(PRECHECK + "CONFLICT_PRESENT", label, " ".join(conflicts))
    missing = [r for r in info.requires if r not in applied]
    if missing:
        raise XapiError(PRECHECK + "PREREQUISITE_MISSING", label, " ".join(missing))
    installed = host.software_version.get("product_version", "")
    if info.server_version and installed != info.server_version:
        raise XapiError(PRECHECK + "WRONG_SERVER_VERSION", label, installed, info.server_version)
    return {"": "ok", "complete": "ok_livepatch_complete", "incomplete": "ok_livepatch_incomplete"}[info.livepatch]


@api("pool_update.precheck", 2)
def precheck(ctx: Ctx, ref: Any, host_ref: Any) -> str:
    _served(ctx, "precheck")
    update, host = _update(ctx, ref), ctx.db.get(HostRec, host_ref)
    verdict = _precheck(ctx, update, host)
    ctx.audit("pool_update.precheck", update=update.uuid, host=host.uuid, result=verdict)
    return verdict


def _apply(ctx: Ctx, update: PoolUpdateRec, host: HostRec) -> None:
    if update.ref in host.extra.get("updates", []):
        raise XapiError(UPDATE_ALREADY_APPLIED, update.ref)
    state = updates_of(ctx.lab)
    lock = (host.ref, update.uuid)
    if lock in state.applying:
        raise XapiError(OTHER_OPERATION_IN_PROGRESS, "Applying the update", update.ref)
    state.applying.add(lock)
    try:
        _precheck(ctx, update, host)
        if ctx.lab.timings.update_apply > 0:
            ctx.pause(ctx.lab.timings.update_apply)  # dnf installs the update's packages
        _install(ctx, update, host)
    finally:
        state.applying.discard(lock)


def _install(ctx: Ctx, update: PoolUpdateRec, host: HostRec) -> None:
    name = _host_name(ctx, host)
    state = updates_of(ctx.lab)
    output = state.fail_apply.get((name, update.uuid)) or state.fail_apply.get((name, "*"))
    if output is not None:
        raise XapiError(UPDATE_APPLY_FAILED, output)
    _list(host, "updates").append(update.ref)
    if host.ref not in update.hosts:
        update.hosts.append(host.ref)
    if "restartHost" in update.after_apply_guidance:
        requiring = _list(host, "updates_requiring_reboot")
        if update.ref not in requiring:
            requiring.append(update.ref)
    patch = next((p for p in ctx.db.all(PoolPatchRec) if p.pool_update == update.ref), None)
    if patch is not None:
        ctx.db.add(HostPatchRec(ref=new_ref(), uuid=new_uuid(), name_label=patch.name_label,
                                name_description=patch.name_description, version=patch.version, host=host.ref,
                                size=patch.size, pool_patch=patch.ref))
    ctx.audit("pool_update.apply", update=update.uuid, host=host.uuid, name=update.name_label)


@api("pool_update.apply", 2)
def apply(ctx: Ctx, ref: Any, host_ref: Any) -> str:
    _served(ctx, "apply")
    _apply(ctx, _update(ctx, ref), ctx.db.get(HostRec, host_ref))
    return ""


@api("pool_update.pool_apply", 1)
def pool_apply(ctx: Ctx, ref: Any) -> str:
    _served(ctx, "pool_apply")
    update = _update(ctx, ref)
    lacking = [h for h in ctx.db.hosts() if h.ref not in update.hosts]
    if not lacking:
        raise XapiError(UPDATE_ALREADY_APPLIED_IN_POOL, update.ref)
    failed = []
    for host in lacking:
        try:
            _apply(ctx, update, host)
        except XapiError:
            failed.append(host.ref)
    if failed:
        raise XapiError(UPDATE_POOL_APPLY_FAILED, *failed)
    return ""


@api("pool_update.pool_clean", 1)
def pool_clean(ctx: Ctx, ref: Any) -> str:
    _served(ctx, "pool_clean")
    update = _update(ctx, ref)
    vdi = ctx.db.find(VDIRec, update.vdi)
    if vdi is not None:
        ctx.db.remove(vdi)
        updates_of(ctx.lab).contents.pop(vdi.ref, None)
        update.vdi = NULL_REF
    return ""


@api("pool_update.destroy", 1)
def destroy(ctx: Ctx, ref: Any) -> str:
    _served(ctx, "destroy")
    update = _update(ctx, ref)
    if update.hosts:
        raise XapiError(UPDATE_IS_APPLIED)
    for patch in [p for p in ctx.db.all(PoolPatchRec) if p.pool_update == update.ref]:
        ctx.db.remove(patch)
    ctx.db.remove(update)
    for host in ctx.db.hosts():
        if update.ref in host.extra.get("updates_requiring_reboot", []):
            host.extra["updates_requiring_reboot"].remove(update.ref)
    updates_of(ctx.lab).files.pop(update.ref, None)
    return ""
