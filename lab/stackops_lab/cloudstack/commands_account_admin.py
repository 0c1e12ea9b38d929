"""updateAccount (sync), activateProject and suspendProject (async).

updateAccount follows AccountManagerImpl.updateAccount: the account is `id`, else the enabled account named
`account` in `domainid`; none (or a project's account) → 431 "Unable to find account by accountId: <id> OR by
name: <name> in domain <domain id>" (Java prints a missing value as null). The system account cannot be changed
("Can not modify system account"). `newname` renames it: an empty name is refused, and so is a name another
active account of `domainid` has. `networkdomain` must be a valid domain name (an empty value clears it).

activateProject / suspendProject (ProjectManagerImpl): a project that does not exist is refused before the job
("Unable to find project by id <id>", getEntityOwnerId). Suspending sets the project Suspended and disables its
account; activating an Active project answers it unchanged, a Suspended one becomes Active (its account enabled
again), any other state fails the job with 431 "Can't activate the project in <state> state". ActivateProjectCmd's
response name is CloudStack's own misspelling, "activaterojectresponse".
"""

from __future__ import annotations

import re
from typing import Any

from stackops_lab.cloudstack import responses
from stackops_lab.cloudstack.errors import PARAM_ERROR, invalid_value
from stackops_lab.cloudstack.framework import MAP, REGISTRY, UUID, Param, Request, command
from stackops_lab.cloudstack.jobs import JobContext
from stackops_lab.cloudstack.state import Account, Project

ADMIN = "org.apache.cloudstack.api.command.admin"
USER = "org.apache.cloudstack.api.command.user"
PROJECT_ACCOUNT_TYPE = 5
# NetUtils.verifyDomainName: labels of 1-63 letters, digits and hyphens, not starting or ending with one; 190 at most
_LABEL = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")


def _java(value: Any) -> str:
    return "null" if value is None else str(value)


def valid_domain_name(name: str) -> bool:
    return len(name) <= 190 and all(_LABEL.match(label) for label in name.split("."))


@command("updateAccount", f"{ADMIN}.account.UpdateAccountCmd",
         [Param("id", UUID, entity=("account",)), Param("account"), Param("domainid", UUID, entity=("domain",)),
          Param("roleid", UUID, entity=("role",)), Param("newname"), Param("networkdomain"),
          Param("accountdetails", MAP), Param("apikeyaccess", since="4.20.1.0")])
def update_account(request: Request) -> dict[str, Any]:
    state = request.sim.state
    domain = request.get("domainid")
    account: Account | None = request.get("id")
    if account is None:
        found = [a for a in state.values("account") if a.name == request.get("account") and a.domain is domain
                 and a.state == "enabled"]
        account = found[0] if found else None
    if account is None or not state.live(account) or account.account_type == PROJECT_ACCOUNT_TYPE:
        given: Account | None = request.get("id")
        raise invalid_value(f"Unable to find account by accountId: {_java(given.db_id if given else None)} OR by "
                            f"name: {_java(request.get('account'))} in domain "
                            f"{_java(domain.db_id if domain else None)}")
    if account is state.system_account:
        raise invalid_value("Can not modify system account")
    new_name = request.get("newname")
    if new_name is not None:
        if not new_name:
            raise invalid_value(f"The new account name for account '{account.uuid}' within domain "
                                f"'{_java(domain.db_id if domain else None)}'  is empty string. Account will be "
                                f"not renamed.")
        clash = [a for a in state.values("account") if a.name == new_name and a.domain is domain and a is not account]
        if clash:
            raise invalid_value(f"The account with the proposed name '{new_name}' exists in the domain "
                                f"'{_java(domain.db_id if domain else None)}' with existing account id "
                                f"'{clash[0].db_id}'")
    network_domain = request.get("networkdomain")
    if network_domain and not valid_domain_name(network_domain):
        raise invalid_value("Invalid network domain or format. Total length shouldn't exceed 190 chars. Every "
                            "domain part must be between 1 and 63 characters long, can contain ASCII letters 'a' "
                            "through 'z', the digits '0' through '9', and the hyphen ('-'); can't start or end "
                            "with \"-\"")
    if new_name is not None:
        account.name = new_name
    if network_domain is not None:
        account.network_domain = network_domain or None
    request.sim.audit_log.record("account.updated", account=account.uuid, name=account.name)
    return {"account": responses.account(account)}


def _project(request: Request) -> Project:
    project: Project = request.get("id")
    if not request.sim.state.live(project):
        raise invalid_value(f"Unable to find project by id {project.db_id}")
    return project


def _set_account_state(project: Project, value: str) -> None:
    if project.project_account is not None:
        project.project_account.state = value


@command("activateProject", f"{USER}.project.ActivateProjectCmd", [Param("id", UUID, required=True,
                                                                          entity=("project",))],
         is_async=True, instance_type="Project")
def activate_project(request: Request) -> dict[str, Any]:
    sim = request.sim
    project = _project(request)

    def run(ctx: JobContext) -> None:
        if project.state == "Active":
            ctx.succeed({"project": responses.project(project)})
            return
        if project.state != "Suspended":
            ctx.fail(PARAM_ERROR, f"Can't activate the project in {project.state} state")
            return
        project.state = "Active"
        _set_account_state(project, "enabled")
        sim.audit_log.record("project.activated", project=project.uuid)
        ctx.succeed({"project": responses.project(project)})

    job = sim.jobs.submit(request.command.java_class, request.caller, request.caller.user_uuid, "Project",
                          project.uuid, run)
    return {"jobid": job.uuid}


REGISTRY["activateProject"].response_name = "activaterojectresponse"  # ActivateProjectCmd.s_name, as spelled


@command("suspendProject", f"{USER}.project.SuspendProjectCmd", [Param("id", UUID, required=True,
                                                                        entity=("project",))],
         is_async=True, instance_type="Project")
def suspend_project(request: Request) -> dict[str, Any]:
    sim = request.sim
    project = _project(request)

    def run(ctx: JobContext) -> None:
        project.state = "Suspended"
        _set_account_state(project, "disabled")
        sim.audit_log.record("project.suspended", project=project.uuid)
        ctx.succeed({"project": responses.project(project)})

    job = sim.jobs.submit(request.command.java_class, request.caller, request.caller.user_uuid, "Project",
                          project.uuid, run)
    return {"jobid": job.uuid}
