"""task.create, task.cancel and task.destroy (ocaml/xapi/xapi_task.ml, taskHelper.ml).

- task.cancel(task) asks, it does not stop: it sets the task's current_operations to {caller's task: cancel}. A
  call notices only where xapi checks (Helpers.retry, exn_if_cancelling): in the lab while a pool operation waits
  for another one to end (calls_pool.begin_pool_operation); its task then ends `cancelled` there (TaskHelper.cancel:
  error_info stays empty; the call's TASK_CANCELLED [task] finds the task no longer pending). Elsewhere, and on a task that has already finished, the task goes on or stays as it is,
  and the call answers success as xapi's does (its datamodel declares OPERATION_NOT_ALLOWED, which xapi's
  implementation never raises). An unknown task → HANDLE_INVALID.
- A task's allowed_operations are [cancel] from the moment its call waits in Helpers.retry (set_cancellable) until
  it finishes; [] otherwise (TaskHelper.make, complete).
- task.destroy(self) removes a finished task; a pending one is only marked (current_operations {task: destroy})
  and goes when it finishes.
- task.create(label, description): a pending task the client drives itself: task.set_status (a
  task_status_type value, else FIELD_TYPE_ERROR) ends it so that task.destroy removes it; task.set_progress,
  set_result and set_error_info write those fields.
"""

from __future__ import annotations

from typing import Any

from stackops_lab.xenapi.datamodel import ENUMS
from stackops_lab.xenapi.dispatch import Ctx, api, register
from stackops_lab.xenapi.errors import FIELD_TYPE_ERROR, XapiError
from stackops_lab.xenapi.state import TaskRec, new_ref, new_uuid


@api("task.create", 2)
def task_create(ctx: Ctx, label: Any, description: Any) -> str:
    if not isinstance(label, str) or not isinstance(description, str):
        raise XapiError(FIELD_TYPE_ERROR, "label" if not isinstance(label, str) else "description")
    task = ctx.db.add(TaskRec(ref=new_ref(), uuid=new_uuid(), name_label=label, name_description=description,
                              resident_on=ctx.machine.host_ref))
    if ctx.session is not None:
        ctx.session.tasks.append(task.ref)
    return task.ref


@api("task.cancel", 1)
def task_cancel(ctx: Ctx, ref: Any) -> str:
    task = ctx.db.get(TaskRec, ref)
    task.current_operations = {ctx.task_ref or new_ref(): "cancel"}
    ctx.audit("task.cancel", task=task.uuid, status=task.status)
    return ""


@api("task.destroy", 1)
def task_destroy(ctx: Ctx, ref: Any) -> str:
    task = ctx.db.get(TaskRec, ref)
    if task.status == "pending":
        task.current_operations["task"] = "destroy"
    else:
        ctx.db.remove(task)
    return ""


@api("task.set_status", 2)
def task_set_status(ctx: Ctx, ref: Any, value: Any) -> str:
    task = ctx.db.get(TaskRec, ref)
    if value not in ENUMS["task_status_type"]:
        raise XapiError(FIELD_TYPE_ERROR, "value")
    task.status = value
    return ""


def _set(name: str, check: Any) -> None:
    def setter(ctx: Ctx, ref: Any, value: Any) -> str:
        task = ctx.db.get(TaskRec, ref)
        if not check(value):
            raise XapiError(FIELD_TYPE_ERROR, "value")
        setattr(task, name, float(value) if name == "progress" else value)
        return ""
    register(f"task.set_{name}", setter, 2)


_set("progress", lambda value: isinstance(value, (int, float)) and not isinstance(value, bool))
_set("result", lambda value: isinstance(value, str))
_set("error_info", lambda value: isinstance(value, list) and all(isinstance(item, str) for item in value))
