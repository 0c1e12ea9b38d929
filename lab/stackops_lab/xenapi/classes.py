"""Records on the wire, and the calls every class has: get_all, get_all_records, get_record, get_by_uuid,
get_by_name_label, get_<field>, set_<field> for the read-write fields, add_to_/remove_from_other_config.

Wire types (ocaml/doc/wire-protocol.md): int → decimal string, bool → <boolean>, float → <double>,
datetime → <dateTime.iso8601> (`20240101T12:00:00Z`), maps → <struct>, sets → <array>, refs → strings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import xmlrpc.client
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stackops_lab.xenapi.errors import FIELD_TYPE_ERROR, XapiError
from stackops_lab.xenapi.state import (RECORD_TYPES, HostRec, PBDRec, PoolDB, Record, SRRec, VDIRec, VMRec)

if TYPE_CHECKING:
    from stackops_lab.xenapi.dispatch import Ctx

INTERNAL_FIELDS = {"ref", "local", "idle_since"}
# Read-write fields with a plain setter (datamodel qualifier RW); everything else is read-only.
RW_FIELDS: dict[str, tuple[str, ...]] = {
    "pool": ("name_label", "name_description", "default_SR", "suspend_image_SR", "crash_dump_SR",
             "other_config", "ha_allow_overcommit"),
    "host": ("name_label", "name_description", "other_config"),
    "host_metrics": ("other_config",),
    "SR": ("name_label", "name_description", "other_config", "sm_config"),
    "PBD": ("other_config",),
    "VDI": ("name_label", "name_description", "other_config"),
    "VM": ("name_label", "name_description", "other_config"),
    "SDN_controller": (),
    "task": ("other_config",),
    "session": ("other_config",),
}


def wire(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        return xmlrpc.client.DateTime(value.strftime("%Y%m%dT%H:%M:%SZ"))
    if isinstance(value, dict):
        return {str(key): wire(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [wire(item) for item in value]
    return value


def computed(db: PoolDB, record: Record) -> dict[str, Any]:
    """The fields xapi derives from other tables (Ref set fields of one-to-many relations)."""
    if isinstance(record, HostRec):
        return {"resident_VMs": [vm.ref for vm in db.vms_on(record.ref)],
                "PBDs": [pbd.ref for pbd in db.pbds_of_host(record.ref)]}
    if isinstance(record, SRRec):
        return {"PBDs": [pbd.ref for pbd in db.pbds_of_sr(record.ref)],
                "VDIs": [vdi.ref for vdi in db.all(VDIRec) if vdi.SR == record.ref]}
    if isinstance(record, VMRec):
        return {"VBDs": [], "VIFs": []}
    if isinstance(record, PBDRec):
        return {}
    return {}


def to_record(db: PoolDB, record: Record) -> dict[str, Any]:
    values = {f.name: getattr(record, f.name) for f in dataclasses.fields(record) if f.name not in INTERNAL_FIELDS}
    values.update(computed(db, record))
    return wire(values)


def check_type(name: str, current: Any, value: Any) -> Any:
    """Unmarshal `value` to the type of the field's current value, as xapi's generated server does."""
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(current, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            pass
    elif isinstance(current, dict):
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return dict(value)
    elif isinstance(current, list):
        if isinstance(value, list):
            return list(value)
    elif isinstance(value, str):
        return value
    raise XapiError(FIELD_TYPE_ERROR, name)


Handler = Callable[..., Any]


def generic_calls(register: Callable[..., None]) -> None:
    """Register the per-class calls for every record type."""
    for class_name, cls in RECORD_TYPES.items():
        field_names = [f.name for f in dataclasses.fields(cls) if f.name not in INTERNAL_FIELDS]
        extra = {"host": ["resident_VMs", "PBDs"], "SR": ["PBDs", "VDIs"], "VM": ["VBDs", "VIFs"]}.get(class_name, [])
        register(f"{class_name}.get_all", _get_all(cls), 0)
        register(f"{class_name}.get_all_records", _get_all_records(cls), 0)
        register(f"{class_name}.get_record", _get_record(cls), 1)
        register(f"{class_name}.get_by_uuid", _get_by_uuid(cls), 1)
        if "name_label" in field_names:
            register(f"{class_name}.get_by_name_label", _get_by_name_label(cls), 1)
        for name in field_names + extra:
            register(f"{class_name}.get_{name}", _getter(cls, name), 1)
        for name in RW_FIELDS[class_name]:
            register(f"{class_name}.set_{name}", _setter(cls, name), 2)
        if "other_config" in RW_FIELDS[class_name]:
            register(f"{class_name}.add_to_other_config", _add_to_map(cls, "other_config"), 3)
            register(f"{class_name}.remove_from_other_config", _remove_from_map(cls, "other_config"), 2)


def _get_all(cls: type[Record]) -> Handler:
    return lambda ctx: [record.ref for record in ctx.db.all(cls)]


def _get_all_records(cls: type[Record]) -> Handler:
    return lambda ctx: {record.ref: to_record(ctx.db, record) for record in ctx.db.all(cls)}


def _get_record(cls: type[Record]) -> Handler:
    return lambda ctx, ref: to_record(ctx.db, ctx.db.get(cls, ref))


def _get_by_uuid(cls: type[Record]) -> Handler:
    return lambda ctx, uuid: ctx.db.by_uuid(cls, uuid).ref


def _get_by_name_label(cls: type[Record]) -> Handler:
    return lambda ctx, label: [r.ref for r in ctx.db.all(cls) if getattr(r, "name_label") == label]


def _getter(cls: type[Record], name: str) -> Handler:
    return lambda ctx, ref: to_record(ctx.db, ctx.db.get(cls, ref))[name]


def _setter(cls: type[Record], name: str) -> Handler:
    def set_field(ctx: Ctx, ref: str, value: Any) -> str:
        record = ctx.db.get(cls, ref)
        setattr(record, name, check_type("value", getattr(record, name), value))
        ctx.audit(f"{cls.CLASS}.set_{name}", uuid=record.uuid, value=getattr(record, name))
        return ""
    return set_field


def _add_to_map(cls: type[Record], name: str) -> Handler:
    def add(ctx: Ctx, ref: str, key: Any, value: Any) -> str:
        record = ctx.db.get(cls, ref)
        if not isinstance(key, str) or not isinstance(value, str):
            raise XapiError(FIELD_TYPE_ERROR, "key" if not isinstance(key, str) else "value")
        mapping = getattr(record, name)
        if key in mapping:
            raise XapiError("MAP_DUPLICATE_KEY", cls.CLASS, name, ref, key)
        mapping[key] = value
        return ""
    return add


def _remove_from_map(cls: type[Record], name: str) -> Handler:
    def remove(ctx: Ctx, ref: str, key: Any) -> str:
        getattr(ctx.db.get(cls, ref), name).pop(key, None)
        return ""
    return remove
