"""Template commands: registerTemplate (sync), listTemplates, deleteTemplate (async).

registerTemplate follows RegisterTemplateCmd.validateParameters and TemplateAdapterBase.prepare: exactly one
of zoneid / zoneids ("-1" = all zones, a cross-zones template), a known hypervisor and image format, an
http(s) URL, and an ostypeid (optional in the command class since 4.15, but validateParameters refuses its
absence, 431 "Please provide a guest OS type", unless the template is a VMware deploy-as-is one). It answers
`template[]`, one entry per zone, then downloads the URL (downloads.py). The version a router booted from the
template reports is taken from its name (else URL).

listTemplates requires `templatefilter` (a TemplateFilter name; another value is refused as Java's
Enum.valueOf refuses it) and lists one entry per template and zone; `count` counts those entries.

deleteTemplate (TemplateManagerImpl.deleteTemplate) is refused inside its job when VMs — routers and system
VMs included — use the template (in the given zone, or anywhere), unless forced: 431 "Unable to delete
template [...] because there are [N] VM instances using it. Instances list: [...]".
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from stackops_lab.cloudstack import catalog, responses, versions
from stackops_lab.cloudstack.errors import PARAM_ERROR, ApiError, invalid_value, param_error
from stackops_lab.cloudstack.framework import (BOOLEAN, INTEGER, MAP, UUID, UUID_LIST, Param, Request, command,
                                               keyword_match, list_response, paginate)
from stackops_lab.cloudstack.jobs import JobContext
from stackops_lab.cloudstack.state import Template, TemplateZone

USER = "org.apache.cloudstack.api.command.user.template"
ADMIN = "org.apache.cloudstack.api.command.admin.template"
ZONE = ("zone",)
TEMPLATE = ("template",)


@command("registerTemplate", f"{ADMIN}.RegisterTemplateCmdByAdmin",
         [Param("name", required=True), Param("displaytext"), Param("format", required=True),
          Param("hypervisor", required=True), Param("url", required=True), Param("zoneid", UUID, entity=ZONE),
          Param("zoneids", UUID_LIST, entity=ZONE), Param("ostypeid", UUID, entity=("ostype",)),
          Param("checksum"), Param("templatetype", since="4.19.0"), Param("isextractable", BOOLEAN), Param("ispublic", BOOLEAN),
          Param("isfeatured", BOOLEAN), Param("passwordenabled", BOOLEAN), Param("requireshvm", BOOLEAN),
          Param("bits", INTEGER), Param("isrouting", BOOLEAN), Param("templatetag"), Param("account"),
          Param("domainid", UUID, entity=("domain",)), Param("sshkeyenabled", BOOLEAN),
          Param("isdynamicallyscalable", BOOLEAN), Param("directdownload", BOOLEAN),
          Param("deployasis", BOOLEAN, since="4.15.1"), Param("projectid", UUID, entity=("project",)),
          Param("details", MAP), Param("forcks", BOOLEAN, since="4.21.0"), Param("arch", since="4.20"),
          Param("extensionid", UUID, entity=("extension",), since="4.21.0"),
          Param("externaldetails", MAP, since="4.21.0")])
def register_template(request: Request) -> dict[str, Any]:
    sim = request.sim
    state = sim.state
    zone, zones = request.get("zoneid"), request.get("zoneids")
    if zone is not None and zones:
        raise param_error("Both zoneid and zoneids cannot be specified at the same time")
    if zone is None and not zones:
        raise param_error("Either zoneid or zoneids is required. Both cannot be null.")
    if zones and len(zones) > 1 and -1 in zones:
        raise param_error("Parameter zoneids cannot combine all zones (-1) option with other zones")
    deploy_as_is = request.get("hypervisor").lower() == "vmware" and request.get("deployasis") is True
    if not deploy_as_is and request.get("ostypeid") is None:
        raise param_error("Please provide a guest OS type")
    hypervisor = catalog.hypervisor_name(request.get("hypervisor"))
    if hypervisor is None:
        raise invalid_value(f"Hypervisor Type: {request.get('hypervisor')} is invalid. Supported Hypervisor types "
                            f"are {', '.join(catalog.HYPERVISORS.values())}")
    image_format = request.get("format").upper()
    if image_format not in catalog.IMAGE_FORMATS:
        raise invalid_value(f"Image format: {request.get('format')} is incorrect. Supported formats are "
                            f"{', '.join(catalog.IMAGE_FORMATS)}")
    url = request.get("url")
    if urlsplit(url).scheme.lower() not in ("http", "https") or not urlsplit(url).hostname:
        raise invalid_value(f"Unsupported scheme for url: {url}")
    template_type = (request.get("templatetype") or ("ROUTING" if request.get("isrouting") else "USER")).upper()
    if template_type not in catalog.TEMPLATE_TYPES:
        raise invalid_value(f"Invalid template type: {request.get('templatetype')}. Valid options are: "
                            f"{', '.join(catalog.TEMPLATE_TYPES)}")
    targets = [zone] if zone is not None else zones
    cross_zones = targets == [-1]
    if cross_zones:
        targets = state.values("zone")
    name = request.get("name")
    template = state.add(Template(
        uuid=state.new_uuid(), db_id=state.next_id("template"), name=name,
        display_text=request.get("displaytext") or name, hypervisor=hypervisor, format=image_format,
        template_type=template_type, url=url, checksum=request.get("checksum") or None,
        ostype=request.get("ostypeid"), account=request.caller, cross_zones=cross_zones,
        public=bool(request.get("ispublic")), featured=bool(request.get("isfeatured")),
        extractable=bool(request.get("isextractable")), password_enabled=bool(request.get("passwordenabled")),
        requires_hvm=request.get("requireshvm", True), bits=request.get("bits") or 64,
        version=versions.template_version(name, url)))
    for target in targets:
        template.zones[target.uuid] = TemplateZone(zone=target)
    sim.audit_log.record("template.registered", template=template.uuid, name=name, url=url,
                         checksum=template.checksum, hypervisor=hypervisor, templatetype=template_type,
                         zones=list(template.zones), version=template.version)
    sim.templates.start_download(template)
    rows = [responses.template(template, ref) for ref in template.zones.values()]
    return list_response("template", rows, len(rows))


def _visible(template: Template, request: Request, template_filter: str) -> bool:
    mine = template.account is request.caller
    ready = any(ref.ready for ref in template.zones.values())
    if template_filter == "featured":
        return template.public and template.featured
    if template_filter == "community":
        return template.public and not template.featured
    if template_filter == "self":
        return mine
    if template_filter == "selfexecutable":
        return mine and ready
    if template_filter == "executable":
        return (mine or template.public) and ready
    if template_filter == "system":
        return template.template_type == "SYSTEM"
    if template_filter in ("shared", "sharedexecutable"):
        return False
    return True  # all


@command("listTemplates", f"{ADMIN}.ListTemplatesCmdByAdmin",
         [Param("templatefilter", required=True), Param("id", UUID, entity=TEMPLATE), Param("name"),
          Param("zoneid", UUID, entity=ZONE), Param("hypervisor"), Param("templatetype"),
          Param("ids", UUID_LIST, entity=TEMPLATE, since="4.9"), Param("parenttemplateid", UUID, entity=TEMPLATE,
                                                                          since="4.4"),
          Param("showremoved", BOOLEAN), Param("account"), Param("domainid", UUID, entity=("domain",)),
          Param("listall", BOOLEAN), Param("isrecursive", BOOLEAN), Param("projectid", UUID, entity=("project",)),
          Param("tags", MAP)], is_list=True)
def list_templates(request: Request) -> dict[str, Any]:
    template_filter = request.get("templatefilter")
    if template_filter not in catalog.TEMPLATE_FILTERS:
        raise ApiError(PARAM_ERROR, "No enum constant com.cloud.template.VirtualMachineTemplate.TemplateFilter."
                                    f"{template_filter}", 0)
    hypervisor = (request.get("hypervisor") or "").lower()
    template_type = (request.get("templatetype") or "").upper()
    rows: list[tuple[Template, TemplateZone]] = []
    for template in request.sim.state.values("template"):
        if request.has("id") and request.get("id") is not template:
            continue
        if request.has("ids") and not any(t is template for t in request.get("ids")):
            continue
        if request.has("projectid") or request.has("parenttemplateid"):
            continue  # no template of the lab belongs to a project or is a data disk template
        if request.has("name") and request.get("name") != template.name:
            continue
        if hypervisor and template.hypervisor.lower() != hypervisor:
            continue
        if template_type and template.template_type != template_type:
            continue
        if not _visible(template, request, template_filter) or not keyword_match(request, template.name):
            continue
        for ref in template.zones.values():
            if request.get("zoneid") in (None, -1) or request.get("zoneid") is ref.zone:
                rows.append((template, ref))
    page, count = paginate(request, rows)
    return list_response("template", [responses.template(t, ref) for t, ref in page], count)


def _describe_vm(vm: Any) -> str:
    kind = "DomainRouter" if vm.kind == "router" else \
        ("SecondaryStorageVm" if vm.vm_type == "secondarystoragevm" else "ConsoleProxy")
    return f'VM instance {{"id":{vm.db_id},"instanceName":"{vm.name}","type":"{kind}","uuid":"{vm.uuid}"}}'


def delete_in_job(ctx: JobContext, request: Request, template: Template, zone: Any, forced: bool) -> None:
    sim = request.sim
    state = sim.state
    if not state.live(template):
        ctx.fail(PARAM_ERROR, f"Unable to find Template with id {template.db_id}")
        return
    users = [vm for vm in [*state.values("router"), *state.values("systemvm")]
             if vm.template is template and (zone is None or vm.zone is zone)]
    if users and not forced:
        ctx.fail(PARAM_ERROR, f'Unable to delete template [Template {{"id":{template.db_id},"name":"{template.name}",'
                              f'"uuid":"{template.uuid}"}}] because there are [{len(users)}] VM instances using it. '
                              f"Instances list: [{','.join(_describe_vm(vm) for vm in users)}].")
        return
    if zone is not None:
        template.zones.pop(zone.uuid, None)
    if zone is None or not template.zones:
        state.remove(template)
        sim.templates.fetches.pop(template.uuid, None)
    sim.audit_log.record("template.deleted", template=template.uuid, name=template.name,
                         zone=zone.uuid if zone is not None else None, forced=forced)
    ctx.succeed({"success": True})


@command("deleteTemplate", f"{USER}.DeleteTemplateCmd",
         [Param("id", UUID, required=True, entity=TEMPLATE), Param("zoneid", UUID, entity=ZONE),
          Param("forced", BOOLEAN, since="4.9"), Param("issystem", BOOLEAN, since="4.20.0")], is_async=True,
         instance_type="Template")
def delete_template(request: Request) -> dict[str, Any]:
    sim = request.sim
    template = request.get("id")
    zone = request.get("zoneid")
    zone = None if zone == -1 else zone
    job = sim.jobs.submit(request.command.java_class, request.caller, request.caller.user_uuid, "Template",
                          template.uuid, lambda ctx: delete_in_job(ctx, request, template, zone,
                                                                   bool(request.get("forced"))),
                          failure_text=f"Failed to delete template {template.uuid}")
    return {"jobid": job.uuid}
