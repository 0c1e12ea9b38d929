"""updateTemplate, listTemplatePermissions, updateTemplatePermissions (sync) and copyTemplate (async).

updateTemplate (TemplateManagerImpl.updateTemplateOrIso): the given fields replace the stored ones; `format`
must be an image format CloudStack knows; `isrouting=true` makes the template a ROUTING template (false turns a
ROUTING one back into USER). The answer is the template ({"template": {...}}, shown for its first zone).
listTemplatePermissions (TemplateManagerImpl.listTemplatePermissions, ApiResponseHelper
.createTemplatePermissionsResponse) answers one TemplatePermissionsResponse ({"templatepermission": {id, ispublic,
domainid, account, projectids}}): the accounts with a launch permission, and the owner when the template is not
public; project accounts are listed by their project's id under `projectids`; an empty list is left out.

updateTemplatePermissions (TemplateManagerImpl.updateTemplateOrIsoPermissions, sync, answers success): `accounts`
and `projectids` exclude each other; ispublic, isfeatured and isextractable are set first; `op` add grants a
launch permission to each named active account of the owner's domain (an unknown one refuses the whole list),
remove revokes them, reset makes the template private and unfeatured and revokes every permission. `accounts`
without a valid `op`, or add/remove without accounts, are refused. A project's template cannot be shared.

copyTemplate (CopyTemplateCmd.execute, TemplateManagerImpl.copyTemplate; in the job): exactly one of destzoneid /
destzoneids; a source zone among the destinations is refused; the template must be ready on an image store (the
source zone's, else any zone's: "There is no template <id> ready on image store."); a cross-zones template is not
copied; a zone that already holds the template is skipped; the others get a copy (DOWNLOADED once the copy ends,
which takes Timings.template_download). The job answers the template as listed in the first destination zone.
"""

from __future__ import annotations

from typing import Any

from stackops_lab.cloudstack import catalog, responses
from stackops_lab.cloudstack.errors import PARAM_ERROR, invalid_value
from stackops_lab.cloudstack.framework import BOOLEAN, INTEGER, LIST, MAP, UUID, UUID_LIST, Param, Request, command
from stackops_lab.cloudstack.jobs import JobContext
from stackops_lab.cloudstack.state import Account, Template, TemplateZone

USER = "org.apache.cloudstack.api.command.user.template"
ADMIN = "org.apache.cloudstack.api.command.admin.template"
TEMPLATE = ("template",)


def _live(request: Request) -> Template:
    template: Template = request.get("id")
    if not request.sim.state.live(template):
        raise invalid_value(f"Unable to find template/ISO with id {template.uuid}")
    return template


@command("updateTemplate", f"{ADMIN}.UpdateTemplateCmdByAdmin",
         [Param("bootable", BOOLEAN), Param("requireshvm", BOOLEAN), Param("displaytext"),
          Param("id", UUID, required=True, entity=TEMPLATE), Param("name"),
          Param("ostypeid", UUID, entity=("ostype",)), Param("format"), Param("passwordenabled", BOOLEAN),
          Param("sshkeyenabled", BOOLEAN), Param("sortkey", INTEGER), Param("isdynamicallyscalable", BOOLEAN),
          Param("isrouting", BOOLEAN), Param("details", MAP), Param("cleanupdetails", BOOLEAN),
          Param("arch", since="4.20")])
def update_template(request: Request) -> dict[str, Any]:
    template = _live(request)
    image_format = request.get("format")
    if image_format is not None and image_format.upper() not in catalog.IMAGE_FORMATS:
        raise invalid_value(f"Image format: {image_format} is incorrect. Supported formats are "
                            f"{', '.join(catalog.IMAGE_FORMATS)}")
    if request.get("name"):
        template.name = request.get("name")
    if request.get("displaytext"):
        template.display_text = request.get("displaytext")
    if request.has("ostypeid"):
        template.ostype = request.get("ostypeid")
    if image_format is not None:
        template.format = image_format.upper()
    if request.has("passwordenabled"):
        template.password_enabled = request.get("passwordenabled")
    if request.has("requireshvm"):
        template.requires_hvm = request.get("requireshvm")
    if request.has("isrouting"):
        if request.get("isrouting"):
            template.template_type = "ROUTING"
        elif template.template_type == "ROUTING":
            template.template_type = "USER"
    request.sim.audit_log.record("template.updated", template=template.uuid, name=template.name,
                                 templatetype=template.template_type)
    ref = next(iter(template.zones.values()), None)
    if ref is None:
        raise invalid_value(f"Unable to find template/ISO with id {template.uuid}")
    return {"template": responses.template(template, ref)}


@command("listTemplatePermissions", f"{ADMIN}.ListTemplatePermissionsCmdByAdmin",
         [Param("id", UUID, required=True, entity=TEMPLATE)])
def list_template_permissions(request: Request) -> dict[str, Any]:
    template = _live(request)
    if template.format == "ISO":
        raise invalid_value("Please provide a valid template")
    permitted = [a for a in template.launch_permissions if request.sim.state.live(a)]
    if not template.public and template.account is not None:
        permitted.append(template.account)
    result: dict[str, Any] = {"id": template.uuid, "ispublic": template.public}
    if template.account is not None and template.account.domain is not None:
        result["domainid"] = template.account.domain.uuid
    projects = {p.project_account: p for p in request.sim.state.values("project")}
    project_ids = [projects[a].uuid for a in permitted if a in projects]
    names = [a.name for a in permitted if a not in projects]
    if project_ids:
        result["projectids"] = project_ids
    if names:
        result["account"] = names
    return {"templatepermission": result}


OPERATIONS = ("add", "remove", "reset")


def _permitted_names(request: Request) -> list[str] | None:
    if request.has("accounts") and request.has("projectids"):
        raise invalid_value("Accounts and projectIds can't be specified together")
    names = list(request.get("accounts")) if request.has("accounts") else None
    for project in request.get("projectids") or []:
        if not request.sim.state.live(project) or project.project_account is None:
            raise invalid_value(f"Unable to find project by id {project.db_id}")
        names = (names or []) + [project.project_account.name]
    return names


@command("updateTemplatePermissions", f"{USER}.UpdateTemplatePermissionsCmd",
         [Param("accounts", LIST), Param("id", UUID, required=True, entity=TEMPLATE), Param("isfeatured", BOOLEAN),
          Param("ispublic", BOOLEAN), Param("isextractable", BOOLEAN), Param("op"),
          Param("projectids", UUID_LIST, entity=("project",))])
def update_template_permissions(request: Request) -> dict[str, Any]:
    state = request.sim.state
    template: Template = request.get("id")
    if template.format == "ISO":
        raise invalid_value("Please provide a valid template")
    names = _permitted_names(request)
    if not state.live(template):
        raise invalid_value(f"unable to update permissions for template with id {template.db_id} as it is removed ")
    owner = template.account
    if owner is None:
        raise invalid_value(f"Update template permissions is an invalid operation on template {template.name}")
    if owner.account_type == 5:
        raise invalid_value(f"Update template permissions is an invalid operation on template {template.name}. "
                            "Project owned templates cannot be shared outside template.")
    operation = request.get("op")
    if names is not None and (operation is None or operation.lower() not in OPERATIONS):
        given = "null" if operation is None else operation
        raise invalid_value("Invalid operation on accounts, the operation must be either 'add' or 'remove' in order "
                            f"to modify launch permissions.  Given operation is: '{given}'")
    if request.has("ispublic"):
        template.public = request.get("ispublic")
    if request.has("isfeatured"):
        template.featured = request.get("isfeatured")
    if request.has("isextractable"):
        template.extractable = request.get("isextractable")
    operation = (operation or "").lower()
    if operation in ("add", "remove") and names is None:
        raise invalid_value(f"Operation {request.get('op')} requires accounts or projectIds to be passed in")
    domain = owner.domain

    def active(name: str) -> Account | None:
        found = [a for a in state.values("account") if a.name == name and a.domain is domain]
        return found[0] if found else None

    if operation == "add":
        granted = []
        for name in names or []:
            account = active(name)
            if account is None:
                raise invalid_value(f"Unable to grant a launch permission to account {name} in domain id="
                                    f"{domain.uuid if domain else None}, account not found.  No permissions "
                                    "updated, please verify the account names and retry.")
            if account is not request.caller and account not in granted:
                granted.append(account)
        template.launch_permissions += [a for a in granted if a not in template.launch_permissions]
    elif operation == "remove":
        gone = [active(name) for name in names or []]
        template.launch_permissions = [a for a in template.launch_permissions if a not in gone]
    elif operation == "reset":
        template.public = template.featured = False
        template.launch_permissions = []
    request.sim.audit_log.record("template.permissions", template=template.uuid, op=operation or None,
                                 accounts=[a.name for a in template.launch_permissions], public=template.public)
    return {"success": True}


@command("copyTemplate", f"{ADMIN}.CopyTemplateCmdByAdmin",
         [Param("destzoneid", UUID, entity=("zone",)), Param("id", UUID, required=True, entity=TEMPLATE),
          Param("sourcezoneid", UUID, entity=("zone",)), Param("destzoneids", UUID_LIST, entity=("zone",))],
         is_async=True, instance_type="Template")
def copy_template(request: Request) -> dict[str, Any]:
    sim = request.sim
    template: Template = request.get("id")
    single, several = request.get("destzoneid"), request.get("destzoneids") or []
    source = request.get("sourcezoneid")

    def run(ctx: JobContext) -> None:
        if single is None and not several:
            ctx.fail(PARAM_ERROR, "Either destzoneid or destzoneids parameters have to be specified.")
            return
        if single is not None and several:
            ctx.fail(PARAM_ERROR, "Both destzoneid and destzoneids cannot be specified at the same time.")
            return
        targets = several or [single]
        if not sim.state.live(template):
            ctx.fail(PARAM_ERROR, "Unable to find template with id")
            return
        if source is not None and any(zone is source for zone in targets):
            ctx.fail(PARAM_ERROR, "Please specify different source and destination zones.")
            return
        ready = [ref for ref in template.zones.values() if ref.ready and (source is None or ref.zone is source)]
        if not ready:
            ctx.fail(PARAM_ERROR, f"There is no template {template.db_id} ready on image store.")
            return

        def answer() -> None:
            ref = template.zones.get(targets[0].uuid) or ready[0]
            ctx.succeed({"template": responses.template(template, ref)})

        copies = [zone for zone in targets if not template.cross_zones and zone.uuid not in template.zones]
        if not copies:
            answer()
            return
        for zone in copies:
            template.zones[zone.uuid] = TemplateZone(zone=zone, download_state="DOWNLOAD_IN_PROGRESS",
                                                     created=sim.clock.time())

        def copied() -> None:
            for zone in copies:
                ref = template.zones.get(zone.uuid)
                if ref is not None:
                    ref.download_state, ref.percent, ref.store_state = "DOWNLOADED", 100, "Ready"
            sim.audit_log.record("template.copied", template=template.uuid, zones=[z.uuid for z in copies])
            answer()

        ctx.later(sim.timings.template_download, copied)

    job = sim.jobs.submit(request.command.java_class, request.caller, request.caller.user_uuid, "Template",
                          template.uuid, run, failure_text="Failed to copy Template")
    return {"jobid": job.uuid}
