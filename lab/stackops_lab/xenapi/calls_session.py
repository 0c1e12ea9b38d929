"""session.* and task.* (ocaml/xapi/xapi_session.ml, xapi_task.ml).

- login_with_password(uname, pwd[, version, originator]): wrong credentials →
  SESSION_AUTHENTICATION_FAILED [uname, "Authentication failure"]; on a supporter HOST_IS_SLAVE [master]
  (the dispatcher answers it before the credentials are looked at).
- slave_local_login_with_password(uname, pwd): a session of this host only (not in the pool database), the
  one the emergency calls take on a supporter; local_logout ends it.
- task: Async.* calls make one; status pending → success | failure, result is the XML-RPC <value> of the
  result ("" for void), error_info the ErrorDescription.
"""

from __future__ import annotations

from typing import Any

from stackops_lab.xenapi.dispatch import Ctx, api
from stackops_lab.xenapi.errors import SESSION_AUTHENTICATION_FAILED, XapiError
from stackops_lab.xenapi.state import SessionRec, new_ref, new_uuid


def _authenticate(ctx: Ctx, uname: Any, pwd: Any) -> None:
    if uname != ctx.lab.username or pwd != ctx.lab.password:
        raise XapiError(SESSION_AUTHENTICATION_FAILED, uname, "Authentication failure")


def _session(ctx: Ctx, uname: str, originator: str, local: bool) -> SessionRec:
    return SessionRec(ref=new_ref(), uuid=new_uuid(), this_host=ctx.machine.host_ref, auth_user_name=uname,
                      originator=originator, local=local, idle_since=ctx.lab.clock.monotonic())


@api("session.login_with_password", 4, session=False, optional=2)
def login_with_password(ctx: Ctx, uname: Any, pwd: Any, version: Any = "1.0", originator: Any = "") -> str:
    _authenticate(ctx, uname, pwd)
    session = ctx.db.add(_session(ctx, uname, str(originator), local=False))
    ctx.audit("session.login", session=session.uuid, originator=str(originator))
    return session.ref


@api("session.logout", 0)
def logout(ctx: Ctx) -> str:
    assert ctx.session is not None
    ctx.db.remove(ctx.session)
    ctx.machine.local_sessions.pop(ctx.session.ref, None)
    return ""


@api("session.slave_local_login_with_password", 2, session=False, emergency=True)
def slave_local_login(ctx: Ctx, uname: Any, pwd: Any) -> str:
    _authenticate(ctx, uname, pwd)
    session = _session(ctx, uname, "", local=True)
    ctx.machine.local_sessions[session.ref] = session
    ctx.audit("session.login", session=session.uuid, local=True)
    return session.ref


@api("session.local_logout", 0, emergency=True)
def local_logout(ctx: Ctx) -> str:
    assert ctx.session is not None
    ctx.machine.local_sessions.pop(ctx.session.ref, None)
    return ""
