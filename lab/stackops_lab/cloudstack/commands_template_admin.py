"""updateTemplate (sync) and listTemplatePermissions (sync).

updateTemplate (TemplateManagerImpl.updateTemplateOrIso): the given fields replace the stored ones; `format`
must be an image format CloudStack knows; `isrouting=true` makes the template a ROUTING template (false turns a
ROUTING one back into USER). The answer is the template ({"template": {...}}, shown for its first zone).
listTemplatePermissions answers one TemplatePermissionsResponse ({"templatepermission": {id, ispublic,
domainid, account: [...]}}); the lab grants no launch permissions to other accounts, so `account` is empty.
"""

from __future__ import annotations

from typing import Any

from stackops_lab.cloudstack import catalog, responses
from stackops_lab.cloudstack.errors import invalid_value
from stackops_lab.cloudstack.framework import BOOLEAN, INTEGER, MAP, UUID, Param, Request, command
from stackops_lab.cloudstack.state import Template

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
    result: dict[str, Any] = {"id": template.uuid, "ispublic": template.public, "account": []}
    if template.account is not None and template.account.domain is not None:
        result["domainid"] = template.account.domain.uuid
    return {"templatepermission": result}
