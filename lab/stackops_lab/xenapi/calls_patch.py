"""The pool_patch API: XenServer 6.x's own way of patching (ocaml/xapi/xapi_pool_patch.ml at 28c904d), and the
compatibility layer current xapi keeps over pool_update (xapi_pool_patch.ml at HEAD). Which one a pool serves
follows its master's product_version (calls_update.legacy: before 7.1, legacy). The files are the lab's update files
(update_file.py).

Legacy (6.x):
- PUT /pool_patch_upload?session_id=…[&task_id=…] (the session may be a cookie instead, as for /import_raw_vdi) with
  the file as body: a pool_patch (pool_update NULL); the task's result is its ref (a plain string). Not a lab update
  file: INVALID_PATCH []; a uuid already uploaded whose file is still there: PATCH_ALREADY_EXISTS [uuid] (cleaned:
  this upload takes its place). Errors land in the task
  (the answer's headers were sent before the body was read). A bad session: HTTP 403; a supporter: HTTP 403.
- pool_patch.precheck(self, host) → "" or PATCH_PRECHECK_FAILED_OUT_OF_SPACE [patch, found, required], a failure
  injected for the host (LabUpdates.fail_precheck, as for updates), PATCH_PRECHECK_FAILED_VM_RUNNING [patch] (a
  patch that wants no running guest on the host), _PREREQUISITE_MISSING [patch, "uuid;uuid"] (the `requires`
  entries no applied patch has as uuid or name_label), _WRONG_SERVER_VERSION [patch, found, required]; a cleaned
  file: CANNOT_FIND_PATCH []. Parameters name the patch by ref, as 6.x's xapi does.
- pool_patch.apply(self, host) → "": PATCH_ALREADY_APPLIED [patch], the precheck's errors, PATCH_APPLY_FAILED
  [output] (LabUpdates.fail_apply); success records a host_patch (applied). 6.x has no updates_requiring_reboot:
  a client reads after_apply_guidance. While the patch runs (XenTimings.update_apply, lab time) its host_patch is
  there with applied false (write_patch_applied_db ~applied:false), and another apply of it on that host gets
  OTHER_OPERATION_IN_PROGRESS ["Pool_patch", patch, "Applying the same patch on <host> is in progress. …"]
  (patch_apply_in_progress); a failed patch erases the record.
- pool_patch.pool_apply(self): every host without it, in turn, **stopping at the first error** (that error is the
  answer; hosts before it keep the patch); then pool_applied := true.
- pool_patch.clean / clean_on_host / pool_clean: the file goes (the record stays); destroy: PATCH_IS_APPLIED [] if
  any host has it.
Current (7.1+): precheck, apply, pool_clean and destroy forward to the patch's pool_update (its errors; precheck
and apply answer ""), pool_apply applies on every host in turn stopping at the first error, clean and clean_on_host
do nothing. PUT /pool_patch_upload imports into the pool's default SR (unless sr_id says otherwise), introduces the
update and answers its pool_patch's ref as the task's result; on failure the VDI is destroyed and the task fails
with the error.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

from stackops_lab.xenapi import calls_update
from stackops_lab.xenapi.calls_update import _HttpError, _import, legacy, updates_of
from stackops_lab.xenapi.dispatch import Ctx, api
from stackops_lab.xenapi.errors import INTERNAL_ERROR, OTHER_OPERATION_IN_PROGRESS, XapiError
from stackops_lab.xenapi.state import (HostPatchRec, HostRec, PoolPatchRec, PoolUpdateRec, TaskRec, VDIRec, new_ref,
                                       new_uuid, now)
from stackops_lab.xenapi.update_file import InvalidUpdateFile, UpdateFile, parse

if TYPE_CHECKING:
    from stackops_lab.xenapi.simulator import XenLab

PATCH_PRECHECK = "PATCH_PRECHECK_FAILED_"
PATCH_ALREADY_EXISTS = "PATCH_ALREADY_EXISTS"
PATCH_ALREADY_APPLIED = "PATCH_ALREADY_APPLIED"
PATCH_APPLY_FAILED = "PATCH_APPLY_FAILED"
PATCH_IS_APPLIED = "PATCH_IS_APPLIED"
INVALID_PATCH = "INVALID_PATCH"
CANNOT_FIND_PATCH = "CANNOT_FIND_PATCH"


# ------------------------------------------------------------------------------------------------ upload (HTTP)
def pool_patch_upload(lab: XenLab, machine: Any, path: str, headers: Any,
                      body: bytes | None) -> tuple[int, dict[str, str]]:
    """PUT /pool_patch_upload: (HTTP status, headers)."""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))
    cookies = dict(item.strip().split("=", 1) for item in (headers.get("Cookie") or "").split(";") if "=" in item)
    query = {**cookies, **query}  # Xapi_http.with_context: the session from the query, else from the cookie
    with lab.state.lock:
        if not machine.is_master or machine.db is None:
            return 403, {}
        try:
            session = lab.dispatcher.check_session(machine, query.get("session_id"))
        except XapiError:
            return 403, {}
        db = machine.db
        task = db.find(TaskRec, query.get("task_id", ""))
        if task is None:
            task = db.add(TaskRec(ref=new_ref(), uuid=new_uuid(), name_label="pool_patch.upload",
                                  resident_on=machine.host_ref))
        ctx = Ctx(lab, machine, session)
        try:
            result = _upload_legacy(ctx, body or b"") if legacy(db) else _upload_current(ctx, query, body)
        except XapiError as error:
            task.status, task.error_info = "failure", error.description
        else:
            task.status, task.result = "success", result
        task.finished, task.progress = now(), 1.0
        lab.dispatcher.changed()
        return 200, {"task-id": task.ref}


def _upload_legacy(ctx: Ctx, body: bytes) -> str:
    try:
        info = parse(body)
    except InvalidUpdateFile:
        raise XapiError(INVALID_PATCH) from None
    files = updates_of(ctx.lab).patch_files
    existing = next((p for p in ctx.db.all(PoolPatchRec) if p.uuid == info.uuid), None)
    if existing is not None:
        if existing.ref in files:
            raise XapiError(PATCH_ALREADY_EXISTS, info.uuid)
        files[existing.ref] = info
        existing.size = len(body)
        return existing.ref
    patch = ctx.db.add(PoolPatchRec(ref=new_ref(), uuid=info.uuid, name_label=info.name_label,
                                    name_description=info.name_description, version=info.version, size=len(body),
                                    after_apply_guidance=list(info.after_apply_guidance)))
    files[patch.ref] = info
    ctx.audit("pool_patch.upload", patch=info.uuid, name=info.name_label)
    return patch.ref


def _upload_current(ctx: Ctx, query: dict[str, str], body: bytes | None) -> str:
    query = {k: v for k, v in query.items() if k != "task_id"}
    query.setdefault("sr_id", ctx.db.pool.default_SR)
    try:
        vdi = _import(ctx.lab, ctx.db, query, body)
    except _HttpError as error:
        raise XapiError(INTERNAL_ERROR, error.message) from None
    try:
        update = calls_update.introduce(ctx, vdi.ref)
    except XapiError:
        ctx.db.remove(vdi)
        updates_of(ctx.lab).contents.pop(vdi.ref, None)
        raise
    return next(p.ref for p in ctx.db.all(PoolPatchRec) if p.pool_update == update)


# ------------------------------------------------------------------------------------------------ calls
def _forwarded(ctx: Ctx, patch: PoolPatchRec) -> PoolUpdateRec:
    return ctx.db.get(PoolUpdateRec, patch.pool_update)


def _applied_on(ctx: Ctx, patch: PoolPatchRec, host: HostRec) -> bool:
    return any(hp.pool_patch == patch.ref and hp.host == host.ref and hp.applied for hp in ctx.db.all(HostPatchRec))


def _precheck_legacy(ctx: Ctx, patch: PoolPatchRec, host: HostRec) -> None:
    name = calls_update._host_name(ctx, host)
    state = updates_of(ctx.lab)
    info: UpdateFile | None = state.patch_files.get(patch.ref)
    if info is None:
        raise XapiError(CANNOT_FIND_PATCH)
    free = state.dom0_free.get(name, calls_update.DEFAULT_DOM0_FREE)
    if info.installation_size > free:
        raise XapiError(PATCH_PRECHECK + "OUT_OF_SPACE", patch.ref, free, info.installation_size)
    injected = state.fail_precheck.get((name, patch.uuid)) or state.fail_precheck.get((name, "*"))
    if injected:
        raise XapiError(*injected)
    if info.requires_no_running_vms and any(
            vm.power_state == "Running" and not vm.is_control_domain for vm in ctx.db.vms_on(host.ref)):
        raise XapiError(PATCH_PRECHECK + "VM_RUNNING", patch.ref)
    applied = {word for p in ctx.db.all(PoolPatchRec) if _applied_on(ctx, p, host) for word in (p.uuid, p.name_label)}
    missing = [r for r in info.requires if r not in applied]
    if missing:
        raise XapiError(PATCH_PRECHECK + "PREREQUISITE_MISSING", patch.ref, ";".join(missing))
    installed = host.software_version.get("product_version", "")
    if info.server_version and installed != info.server_version:
        raise XapiError(PATCH_PRECHECK + "WRONG_SERVER_VERSION", patch.ref, installed, info.server_version)


def _apply_legacy(ctx: Ctx, patch: PoolPatchRec, host: HostRec) -> None:
    found = next((hp for hp in ctx.db.all(HostPatchRec) if hp.pool_patch == patch.ref and hp.host == host.ref), None)
    if found is not None and found.applied:
        raise XapiError(PATCH_ALREADY_APPLIED, patch.ref)
    if found is not None:
        raise XapiError(OTHER_OPERATION_IN_PROGRESS, "Pool_patch", patch.ref,
                        f"Applying the same patch on {host.name_label} is in progress. If you believe this is not true "
                        "or the patching process is hung/frozen, try to restart the toolstack or host.")
    _precheck_legacy(ctx, patch, host)
    state = updates_of(ctx.lab)
    name = calls_update._host_name(ctx, host)
    record = ctx.db.add(HostPatchRec(ref=new_ref(), uuid=new_uuid(), name_label=patch.name_label,
                                     name_description=patch.name_description, version=patch.version, host=host.ref,
                                     size=patch.size, pool_patch=patch.ref, applied=False))
    try:
        if ctx.lab.timings.update_apply > 0:
            ctx.pause(ctx.lab.timings.update_apply)  # the patch's own `apply` runs
        output = state.fail_apply.get((name, patch.uuid)) or state.fail_apply.get((name, "*"))
        if output is not None:
            raise XapiError(PATCH_APPLY_FAILED, output)
    except BaseException:
        ctx.db.remove(record)  # erase_patch_applied_db
        raise
    record.applied, record.timestamp_applied = True, now()
    ctx.audit("pool_patch.apply", patch=patch.uuid, host=host.uuid, name=patch.name_label)


@api("pool_patch.precheck", 2)
def precheck(ctx: Ctx, ref: Any, host_ref: Any) -> str:
    patch, host = ctx.db.get(PoolPatchRec, ref), ctx.db.get(HostRec, host_ref)
    if legacy(ctx.db):
        _precheck_legacy(ctx, patch, host)
    else:
        calls_update._precheck(ctx, _forwarded(ctx, patch), host)
    return ""


def _apply(ctx: Ctx, patch: PoolPatchRec, host: HostRec) -> None:
    if legacy(ctx.db):
        _apply_legacy(ctx, patch, host)
    else:
        calls_update._apply(ctx, _forwarded(ctx, patch), host)


@api("pool_patch.apply", 2)
def apply(ctx: Ctx, ref: Any, host_ref: Any) -> str:
    _apply(ctx, ctx.db.get(PoolPatchRec, ref), ctx.db.get(HostRec, host_ref))
    return ""


@api("pool_patch.pool_apply", 1)
def pool_apply(ctx: Ctx, ref: Any) -> str:
    patch = ctx.db.get(PoolPatchRec, ref)
    for host in ctx.db.hosts():
        if legacy(ctx.db) and _applied_on(ctx, patch, host):
            continue  # 6.x skips the hosts that have it; current xapi calls apply on every host
        _apply(ctx, patch, host)
    patch.extra["pool_applied"] = True
    return ""


@api("pool_patch.clean", 1)
def clean(ctx: Ctx, ref: Any) -> str:
    patch = ctx.db.get(PoolPatchRec, ref)
    if legacy(ctx.db):
        updates_of(ctx.lab).patch_files.pop(patch.ref, None)
    return ""


@api("pool_patch.clean_on_host", 2)
def clean_on_host(ctx: Ctx, ref: Any, host_ref: Any) -> str:
    ctx.db.get(HostRec, host_ref)
    return clean(ctx, ref)


@api("pool_patch.pool_clean", 1)
def pool_clean(ctx: Ctx, ref: Any) -> str:
    patch = ctx.db.get(PoolPatchRec, ref)
    if legacy(ctx.db):
        updates_of(ctx.lab).patch_files.pop(patch.ref, None)
    else:
        update = _forwarded(ctx, patch)
        if ctx.db.find(VDIRec, update.vdi) is not None:
            calls_update.pool_clean(ctx, update.ref)
    return ""


@api("pool_patch.destroy", 1)
def destroy(ctx: Ctx, ref: Any) -> str:
    patch = ctx.db.get(PoolPatchRec, ref)
    if not legacy(ctx.db):
        return calls_update.destroy(ctx, _forwarded(ctx, patch).ref)
    if any(hp.pool_patch == patch.ref for hp in ctx.db.all(HostPatchRec)):
        raise XapiError(PATCH_IS_APPLIED)
    updates_of(ctx.lab).patch_files.pop(patch.ref, None)
    ctx.db.remove(patch)
    return ""

