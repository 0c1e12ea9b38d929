"""Domains, accounts and projects: createDomain, updateDomain, deleteDomain (async), createAccount, enableAccount,
disableAccount (async), deleteAccount (async), listProjects, createProject (async create), updateProject (async),
deleteProject (async).

As DomainManagerImpl, AccountManagerImpl and ProjectManagerImpl answer a root admin:
- createDomain: the parent defaults to ROOT; sibling names are unique. updateDomain renames (not ROOT).
  deleteDomain: never ROOT; without cleanup=true a domain with accounts or child domains is refused; with it the
  child domains and accounts go too.
- disableAccount: lock=true locks the account, lock=false disables it; enableAccount enables it again. Both take
  `id`, or `account` with `domainid` ("Unable to find account by accountId: <id> OR by name: <name> in domain
  <domain id>" otherwise). The default accounts (admin, system) cannot be disabled or deleted. deleteAccount
  removes the account and what it owns (its networks, VPCs and routers: AccountManagerImpl.cleanupAccount).
- createProject is a BaseAsyncCreateCmd: it answers {"id", "jobid"}; the project exists at once and is Active
  when the job ends. `account` needs `domainid` ("Account name and domain id must be specified together"). The
  project gets its own account, PrjAcct-<name>-<id> (type 5, not listed by listAccounts). Project names are unique
  in a domain. listProjects lists the caller's projects, every project with listall=true, one by `id`.
Texts the lab could not check against CloudStack's are modelled on it (duplicate names, ROOT, default accounts).
"""

from __future__ import annotations

from typing import Any

from stackops_lab.cloudstack import responses
from stackops_lab.cloudstack.commands_misc import OWNER_PARAMS, owned_by_visible, same
from stackops_lab.cloudstack.errors import INTERNAL_ERROR, PARAM_ERROR, invalid_value, param_error
from stackops_lab.cloudstack.framework import (BOOLEAN, INTEGER, LIST, MAP, UUID, Param, Request, command, keyword_match,
                                               paged)
from stackops_lab.cloudstack.jobs import JobContext
from stackops_lab.cloudstack.state import Account, Domain, Project

ADMIN = "org.apache.cloudstack.api.command.admin"
USER = "org.apache.cloudstack.api.command.user"
DOMAIN, ACCOUNT, PROJECT = ("domain",), ("account",), ("project",)
PROJECT_ACCOUNT_TYPE = 5  # Account.Type.PROJECT


def _submit(request: Request, instance_type: str, entity: Any, runner: Any) -> dict[str, Any]:
    job = request.sim.jobs.submit(request.command.java_class, request.caller, request.caller.user_uuid,
                                  instance_type, entity.uuid, runner)
    return {"jobid": job.uuid}


def _default(account: Account) -> bool:
    return account.name in ("admin", "system") and account.domain is not None and account.domain.parent is None


# ---------------------------------------------------------------------------------------------- domains
@command("createDomain", f"{ADMIN}.domain.CreateDomainCmd",
         [Param("name", required=True), Param("parentdomainid", UUID, entity=DOMAIN), Param("networkdomain"),
          Param("domainid")])
def create_domain(request: Request) -> dict[str, Any]:
    state = request.sim.state
    parent = request.get("parentdomainid") or state.root_domain
    name = request.get("name")
    if not state.live(parent):
        raise invalid_value(f"Unable to create domain {name}, parent domain {parent.db_id} not found.")
    if any(d.parent is parent and d.name.lower() == name.lower() for d in state.values("domain")):
        raise invalid_value(f"Domain with name {name} already exists for the parent id={parent.db_id}")
    domain = state.add(Domain(uuid=request.get("domainid") or state.new_uuid(), db_id=state.next_id("domain"),
                              name=name, parent=parent, network_domain=request.get("networkdomain"),
                              created=request.sim.clock.time()))
    request.sim.audit_log.record("domain.created", domain=domain.uuid, name=name, parent=parent.uuid)
    return {"domain": responses.domain(domain, False)}


def _has_child(request: Request, domain: Domain) -> bool:
    return any(d.parent is domain for d in request.sim.state.values("domain"))


@command("updateDomain", f"{ADMIN}.domain.UpdateDomainCmd",
         [Param("id", UUID, required=True, entity=DOMAIN), Param("name"), Param("networkdomain")])
def update_domain(request: Request) -> dict[str, Any]:
    state = request.sim.state
    domain: Domain = request.get("id")
    if not state.live(domain):
        raise invalid_value(f"Unable to find domain with specified domain id {domain.uuid}")
    name = request.get("name")
    if name and domain.parent is None:
        raise invalid_value("ROOT domain can not be edited with a new name")
    if name and any(d is not domain and d.parent is domain.parent and d.name.lower() == name.lower()
                    for d in state.values("domain")):
        raise invalid_value(f"Domain with name {name} already exists in the system")
    if name:
        domain.name = name
    if request.has("networkdomain"):
        domain.network_domain = request.get("networkdomain") or None
    return {"domain": responses.domain(domain, _has_child(request, domain))}


@command("deleteDomain", f"{ADMIN}.domain.DeleteDomainCmd",
         [Param("id", UUID, required=True, entity=DOMAIN), Param("cleanup", BOOLEAN)],
         is_async=True, instance_type="Domain")
def delete_domain(request: Request) -> dict[str, Any]:
    sim = request.sim
    domain: Domain = request.get("id")
    cleanup = bool(request.get("cleanup"))

    def run(ctx: JobContext) -> None:
        state = sim.state
        if not state.live(domain):
            ctx.fail(PARAM_ERROR, f"Unable to find domain with specified domain id {domain.uuid}")
            return
        if domain.parent is None:
            ctx.fail(PARAM_ERROR, "Can't delete ROOT domain")
            return
        below = [d for d in state.values("domain") if d is not domain and d.within(domain)]
        accounts = [a for a in state.values("account") if a.domain is not None and a.domain.within(domain)]
        if not cleanup and (below or accounts):
            ctx.fail(INTERNAL_ERROR, f"Can't delete the domain yet because it has {len(accounts)} accounts and "
                                     f"{len(below)} child domains; delete them first or pass cleanup=true")
            return
        for account in accounts:
            _remove_account(request, account)
        for child in [*below, domain]:
            state.remove(child)
        sim.audit_log.record("domain.deleted", domain=domain.uuid, name=domain.name, cleanup=cleanup)
        ctx.succeed({"success": True})

    return _submit(request, "Domain", domain, run)


# ---------------------------------------------------------------------------------------------- accounts
def _account(request: Request) -> Account:
    account = request.get("id")
    if account is None and request.has("account") and request.has("domainid"):
        found = [a for a in request.sim.state.values("account")
                 if a.name == request.get("account") and a.domain is request.get("domainid")]
        account = found[0] if found else None
    if account is None or not request.sim.state.live(account):
        domain = request.get("domainid")
        raise invalid_value(f"Unable to find account by accountId: {account.db_id if account else None} OR by "
                            f"name: {request.get('account')} in domain {domain.db_id if domain else None}")
    return account


OWNER_OF = [Param("id", UUID, entity=ACCOUNT), Param("account"), Param("domainid", UUID, entity=DOMAIN)]


@command("createAccount", f"{ADMIN}.account.CreateAccountCmd",
         [Param("account"), Param("accounttype", INTEGER), Param("roleid", UUID, entity=("role",)),
          Param("domainid", UUID, entity=DOMAIN), Param("email", required=True), Param("firstname", required=True),
          Param("lastname", required=True), Param("password", required=True), Param("timezone"),
          Param("username", required=True), Param("networkdomain"), Param("accountdetails", MAP),
          Param("accountid"), Param("userid")], sensitive=True)
def create_account(request: Request) -> dict[str, Any]:
    """CreateAccountCmd.validateParams, then AccountManagerImpl.createUserAccount: an account named after
    `account` (else the user name) in `domainid` (else ROOT), with one user; account names and user names are
    unique in a domain. Account types: 0 user, 1 root admin, 2 domain admin (roleid is not simulated)."""
    state = request.sim.state
    if not request.get("password"):
        raise param_error("Empty passwords are not allowed")
    if request.get("accounttype") is None:
        raise param_error("Neither account type and role ID are not provided")
    if request.get("accounttype") not in (0, 1, 2):
        raise invalid_value(f"Invalid account type {request.get('accounttype')} given; unable to create user")
    domain = request.get("domainid") or state.root_domain
    name = request.get("account") or request.get("username")
    if any(a.domain is domain and a.name == name for a in state.values("account")):
        raise invalid_value(f"The specified account: {name} already exists")
    if any(a.domain is domain and a.username == request.get("username") for a in state.values("account")):
        raise invalid_value(f"The user {request.get('username')} already exists in domain {domain.db_id}")
    account = state.add(Account(uuid=request.get("accountid") or state.new_uuid(), db_id=state.next_id("account"),
                                name=name, domain=domain, account_type=request.get("accounttype"),
                                user_uuid=request.get("userid") or state.new_uuid(),
                                username=request.get("username")))
    request.sim.audit_log.record("account.created", account=account.uuid, name=name, domain=domain.uuid)
    return {"account": responses.account(account)}


@command("enableAccount", f"{ADMIN}.account.EnableAccountCmd", OWNER_OF)
def enable_account(request: Request) -> dict[str, Any]:
    account = _account(request)
    account.state = "enabled"
    request.sim.audit_log.record("account.enabled", account=account.uuid)
    return {"account": responses.account(account)}


@command("disableAccount", f"{ADMIN}.account.DisableAccountCmd", [*OWNER_OF, Param("lock", BOOLEAN, required=True)],
         is_async=True, instance_type="Account")
def disable_account(request: Request) -> dict[str, Any]:
    account = _account(request)
    lock = request.get("lock")

    def run(ctx: JobContext) -> None:
        if _default(account):
            ctx.fail(PARAM_ERROR, f"Unable to {'lock' if lock else 'disable'} the default account {account.name}")
            return
        account.state = "locked" if lock else "disabled"
        request.sim.audit_log.record("account.disabled", account=account.uuid, state=account.state)
        ctx.succeed({"account": responses.account(account)})

    return _submit(request, "Account", account, run)


def _remove_account(request: Request, account: Account) -> None:
    state = request.sim.state
    for kind in ("router", "network", "vpc"):
        for owned in state.values(kind):
            if owned.account is account:
                state.remove(owned)
    state.remove(account)
    request.sim.audit_log.record("account.deleted", account=account.uuid, name=account.name)


@command("deleteAccount", f"{ADMIN}.account.DeleteAccountCmd", [Param("id", UUID, required=True, entity=ACCOUNT)],
         is_async=True, instance_type="Account")
def delete_account(request: Request) -> dict[str, Any]:
    account: Account = request.get("id")

    def run(ctx: JobContext) -> None:
        if not request.sim.state.live(account):
            ctx.fail(PARAM_ERROR, "The specified account does not exist in the system")
            return
        if _default(account):
            ctx.fail(PARAM_ERROR, f"Unable to delete the default account {account.name}")
            return
        _remove_account(request, account)
        ctx.succeed({"success": True})

    return _submit(request, "Account", account, run)


# ---------------------------------------------------------------------------------------------- projects
@command("listProjects", f"{USER}.project.ListProjectsCmd",
         [Param("id", UUID, entity=PROJECT), Param("name"), Param("displaytext"), Param("state"), Param("tags", MAP),
          Param("details", LIST), *OWNER_PARAMS], is_list=True)
def list_projects(request: Request) -> dict[str, Any]:
    found = [p for p in request.sim.state.values("project")
             if (same(request, "id", p) if request.has("id") else owned_by_visible(request, p.owner))
             and same(request, "name", p.name) and same(request, "displaytext", p.display_text)
             and (request.get("state") is None or request.get("state").lower() == p.state.lower())
             and keyword_match(request, p.name, p.display_text)]
    return paged(request, "project", found, responses.project)


@command("createProject", f"{USER}.project.CreateProjectCmd",
         [Param("account"), Param("userid", UUID, entity=("user",), since="4.15.0"),
          Param("domainid", UUID, entity=DOMAIN), Param("accountid", UUID, entity=ACCOUNT),
          Param("name", required=True), Param("displaytext", required=True)], is_async=True, instance_type="Project")
def create_project(request: Request) -> dict[str, Any]:
    sim = request.sim
    state = sim.state
    name = request.get("name")
    if not name:
        raise invalid_value("Empty or null value provided for API arg: name")
    if request.has("account") and not request.has("domainid"):
        raise invalid_value("Account name and domain id must be specified together")
    owner = request.get("accountid") or request.caller
    if request.has("account"):
        owner = _account(request)
    domain = request.get("domainid") or owner.domain
    if any(p.domain is domain and p.name.lower() == name.lower() for p in state.values("project")):
        raise invalid_value(f"Project with name {name} already exists in domain id={domain.db_id}")
    project_id = state.next_id("project")
    project_account = state.add(Account(uuid=state.new_uuid(), db_id=state.next_id("account"),
                                        name=f"PrjAcct-{name}-{project_id}", domain=domain,
                                        account_type=PROJECT_ACCOUNT_TYPE))
    project = state.add(Project(uuid=state.new_uuid(), db_id=project_id, name=name,
                                display_text=request.get("displaytext"), domain=domain, owner=owner,
                                project_account=project_account, state="Disabled", created=sim.clock.time()))

    def run(ctx: JobContext) -> None:
        project.state = "Active"
        sim.audit_log.record("project.created", project=project.uuid, name=name, owner=owner.uuid)
        ctx.succeed({"project": responses.project(project)})

    return {"id": project.uuid, **_submit(request, "Project", project, run)}


@command("updateProject", f"{USER}.project.UpdateProjectCmd",
         [Param("id", UUID, required=True, entity=PROJECT), Param("account"), Param("displaytext"),
          Param("userid", UUID, entity=("user",)), Param("roletype"), Param("swapowner", BOOLEAN),
          Param("name", since="4.19.0")], is_async=True, instance_type="Project")
def update_project(request: Request) -> dict[str, Any]:
    project: Project = request.get("id")
    if not request.sim.state.live(project):
        raise invalid_value(f"Unable to find project by id {project.db_id}")
    if request.has("account") and request.has("userid"):
        raise invalid_value("Account name and User ID are mutually exclusive. Provide either Account name"
                            "to update Account or user ID to update the user of the project")
    new_owner = None
    if request.has("account"):
        found = [a for a in request.sim.state.values("account")
                 if a.name == request.get("account") and a.domain is project.domain]
        if not found:
            raise invalid_value(f"Unable to find account name={request.get('account')} in domain "
                                f"id={project.domain.db_id if project.domain else None}")
        new_owner = found[0]

    def run(ctx: JobContext) -> None:
        if request.get("displaytext"):
            project.display_text = request.get("displaytext")
        if request.get("name"):
            project.name = request.get("name")
        if new_owner is not None:
            project.owner = new_owner
        ctx.succeed({"project": responses.project(project)})

    return _submit(request, "Project", project, run)


@command("deleteProject", f"{USER}.project.DeleteProjectCmd",
         [Param("id", UUID, required=True, entity=PROJECT), Param("cleanup", BOOLEAN, since="4.16.0")],
         is_async=True, instance_type="Project")
def delete_project(request: Request) -> dict[str, Any]:
    sim = request.sim
    project: Project = request.get("id")
    if not sim.state.live(project):
        raise invalid_value(f"Unable to find project by id {project.db_id}")

    def run(ctx: JobContext) -> None:
        if project.project_account is not None and sim.state.live(project.project_account):
            sim.state.remove(project.project_account)
        sim.state.remove(project)
        sim.audit_log.record("project.deleted", project=project.uuid, name=project.name)
        ctx.succeed({"success": True})

    return _submit(request, "Project", project, run)
