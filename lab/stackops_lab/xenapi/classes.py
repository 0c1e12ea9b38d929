"""Records on the wire, and the calls every class has: get_all, get_all_records, get_record, get_by_uuid,
get_by_name_label, get_<field> for every field, and the setters xapi generates from the datamodel (set_<field>
for the read-write fields, add_to_/remove_from_<map>, add_/remove_<set>). A record carries every field of its
class in the datamodel (datamodel.json): the lab's own values, the fields xapi computes from other tables, the
state-dependent allowed_operations, and the datamodel's defaults for the rest. A call the datamodel does not
declare for a class (set_ of a read-only field) is unknown, as in xapi: MESSAGE_METHOD_UNKNOWN.

Wire types (ocaml/doc/wire-protocol.md): int → decimal string, bool → <boolean>, float → <double>,
datetime → <dateTime.iso8601> (`20240101T12:00:00Z`), maps → <struct>, sets → <array>, refs → strings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import xmlrpc.client
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stackops_lab.xenapi.datamodel import DEFAULTS, FIELDS, IMPLICIT, Field, default, unmarshal
from stackops_lab.xenapi.devices import runtime_fields
from stackops_lab.xenapi.errors import FIELD_TYPE_ERROR, XapiError
from stackops_lab.xenapi.operations import allowed, vbd_attached, vif_attached
from stackops_lab.xenapi.state import RECORD_TYPES, PoolDB, Record, VBDRec, VIFRec

if TYPE_CHECKING:
    from stackops_lab.xenapi.dispatch import Ctx

INTERNAL_FIELDS = {"ref", "local", "idle_since", "extra"}
# Set fields xapi computes from the other side of a one-to-many relation: (class, field) → (class, ref field)
RELATIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("host", "resident_VMs"): ("VM", "resident_on"), ("host", "PBDs"): ("PBD", "host"),
    ("host", "PIFs"): ("PIF", "host"), ("host", "host_CPUs"): ("host_cpu", "host"),
    ("SR", "PBDs"): ("PBD", "SR"), ("SR", "VDIs"): ("VDI", "SR"), ("VDI", "VBDs"): ("VBD", "VDI"),
    ("VM", "VBDs"): ("VBD", "VM"), ("VM", "VIFs"): ("VIF", "VM"), ("VM", "consoles"): ("console", "VM"),
    ("VM", "snapshots"): ("VM", "snapshot_of"), ("VM", "children"): ("VM", "parent"),
    ("network", "PIFs"): ("PIF", "network"), ("network", "VIFs"): ("VIF", "network"),
    ("task", "subtasks"): ("task", "subtask_of"),
    ("host", "patches"): ("host_patch", "host"), ("pool_patch", "host_patches"): ("host_patch", "pool_patch"),
}


class RawInt(int):
    """An int that travels as an XML-RPC <int>, not as xapi's decimal string (event.from's valid_ref_counts, an
    Rpc.Int32)."""


def wire(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, RawInt):
        return int(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        return xmlrpc.client.DateTime(value.strftime("%Y%m%dT%H:%M:%SZ"))
    if isinstance(value, dict):
        return {str(key): wire(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [wire(item) for item in value]
    return value


def value_of(record: Record, name: str) -> Any:
    """A field's stored value: the dataclass's, else one set in `extra`, else the datamodel's default."""
    if name not in INTERNAL_FIELDS and hasattr(record, name):
        return getattr(record, name)
    if name in record.extra:
        return record.extra[name]
    return default(FIELDS[record.CLASS][name])


Index = dict[tuple[str, str], dict[str, list[str]]]


def relation_index(db: PoolDB) -> Index:
    """RELATIONS at once for a whole database: (class, field) → referenced ref → the refs pointing at it, in table
    order (for a caller that turns every record into a wire record: events.Journal.sweep)."""
    index: Index = {}
    for key, (other, ref_field) in RELATIONS.items():
        by_target: dict[str, list[str]] = {}
        for r in db.tables[other].values():
            target = r.__dict__.get(ref_field) or r.extra.get(ref_field)
            if target:
                by_target.setdefault(target, []).append(r.ref)
        index[key] = by_target
    return index


def computed(db: PoolDB, record: Record, index: Index | None = None) -> dict[str, Any]:
    """The fields xapi derives from other tables or from the object's state."""
    values: dict[str, Any] = {}
    for (class_name, name), (other, ref_field) in RELATIONS.items():
        if class_name != record.CLASS:
            continue
        if index is not None:
            values[name] = list(index[(class_name, name)].get(record.ref, ()))
        else:
            values[name] = [r.ref for r in db.tables[other].values()
                            if (r.__dict__.get(ref_field) or r.extra.get(ref_field)) == record.ref]
    values.update(runtime_fields(db, record))
    ops = allowed(db, record)
    if ops is not None:
        values["allowed_operations"] = ops
    if isinstance(record, VBDRec):
        values["currently_attached"] = vbd_attached(db, record)
    if isinstance(record, VIFRec):
        values["currently_attached"] = vif_attached(db, record)
    return values


def to_record(db: PoolDB, record: Record, index: Index | None = None) -> dict[str, Any]:
    values = dict(DEFAULTS[record.CLASS])
    values.update(record.extra)
    values.update({f.name: getattr(record, f.name) for f in dataclasses.fields(record)
                   if f.name not in INTERNAL_FIELDS})
    values.update(computed(db, record, index))
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
    """Register the per-class calls for every record type: those xapi generates from its fields."""
    for class_name, cls in RECORD_TYPES.items():
        fields = FIELDS[class_name]
        for message, arity in IMPLICIT[class_name].items():
            handler = _implicit(cls, message, fields)
            if handler is not None:
                register(f"{class_name}.{message}", handler, arity)
    # messages live outside xapi's database; their reads are declared by hand in the datamodel
    message = RECORD_TYPES["message"]
    for name, make in (("get_all", _get_all), ("get_all_records", _get_all_records), ("get_record", _get_record),
                       ("get_by_uuid", _get_by_uuid)):
        register(f"message.{name}", make(message), 0 if name.startswith("get_all") else 1)
    register("message.get_since", _messages_since, 1)
    register("message.get", lambda ctx, cls, obj_uuid, since: {
        ref: record for ref, record in _messages_since(ctx, since).items()
        if record["cls"] == cls and record["obj_uuid"] == obj_uuid}, 3)


def _messages_since(ctx: Ctx, since: Any) -> dict[str, Any]:
    after = unmarshal(FIELDS["message"]["timestamp"], since)
    return {record.ref: to_record(ctx.db, record) for record in ctx.db.all(RECORD_TYPES["message"])
            if value_of(record, "timestamp") > after}


def _implicit(cls: type[Record], message: str, fields: dict[str, Field]) -> Handler | None:
    """The handler of a generated message, None for those the lab does not serve (create, destroy)."""
    fixed = {"get_all": _get_all, "get_all_records": _get_all_records, "get_record": _get_record,
             "get_by_uuid": _get_by_uuid, "get_by_name_label": _get_by_name_label}
    if message in fixed:
        return fixed[message](cls)
    for prefix, make in (("get_", _getter), ("set_", _setter), ("add_to_", _add_to_map),
                         ("remove_from_", _remove_from_map), ("add_", _add_to_set), ("remove_", _remove_from_set)):
        name = message[len(prefix):]
        if message.startswith(prefix) and name in fields:
            return make(cls, name)
    return None


def _get_all(cls: type[Record]) -> Handler:
    return lambda ctx: [record.ref for record in ctx.db.all(cls)]


def _get_all_records(cls: type[Record]) -> Handler:
    def get_all_records(ctx: Ctx) -> dict[str, Any]:
        records = ctx.db.all(cls)
        index = relation_index(ctx.db) if len(records) > 1 else None
        return {record.ref: to_record(ctx.db, record, index) for record in records}
    return get_all_records


def _get_record(cls: type[Record]) -> Handler:
    return lambda ctx, ref: to_record(ctx.db, ctx.db.get(cls, ref))


def _get_by_uuid(cls: type[Record]) -> Handler:
    return lambda ctx, uuid: ctx.db.by_uuid(cls, uuid).ref


def _get_by_name_label(cls: type[Record]) -> Handler:
    return lambda ctx, label: [r.ref for r in ctx.db.all(cls) if getattr(r, "name_label") == label]


def _getter(cls: type[Record], name: str) -> Handler:
    return lambda ctx, ref: to_record(ctx.db, ctx.db.get(cls, ref))[name]


def _setter(cls: type[Record], name: str) -> Handler:
    spec = FIELDS[cls.CLASS][name]

    def set_field(ctx: Ctx, ref: str, value: Any) -> str:
        record = ctx.db.get(cls, ref)
        if name in _own_fields(cls):
            setattr(record, name, check_type("value", getattr(record, name), value))
        else:
            record.extra[name] = unmarshal(spec, value)
        ctx.audit(f"{cls.CLASS}.set_{name}", uuid=record.uuid, value=value_of(record, name))
        return ""
    return set_field


def _own_fields(cls: type[Record]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - INTERNAL_FIELDS


def _stored(record: Record, name: str) -> Any:
    """The field's value, stored in the record so that it can be changed in place."""
    if name in _own_fields(type(record)):
        return getattr(record, name)
    return record.extra.setdefault(name, value_of(record, name))


def _add_to_map(cls: type[Record], name: str) -> Handler:
    def add(ctx: Ctx, ref: str, key: Any, value: Any) -> str:
        record = ctx.db.get(cls, ref)
        if not isinstance(key, str) or not isinstance(value, str):
            raise XapiError(FIELD_TYPE_ERROR, "key" if not isinstance(key, str) else "value")
        mapping = _stored(record, name)
        if key in mapping:
            raise XapiError("MAP_DUPLICATE_KEY", cls.CLASS, name, ref, key)
        mapping[key] = value
        return ""
    return add


def _remove_from_map(cls: type[Record], name: str) -> Handler:
    def remove(ctx: Ctx, ref: str, key: Any) -> str:
        _stored(ctx.db.get(cls, ref), name).pop(key, None)
        return ""
    return remove


def _add_to_set(cls: type[Record], name: str) -> Handler:
    def add(ctx: Ctx, ref: str, value: Any) -> str:
        if not isinstance(value, str):
            raise XapiError(FIELD_TYPE_ERROR, "value")
        items = _stored(ctx.db.get(cls, ref), name)
        if value not in items:
            items.append(value)
        return ""
    return add


def _remove_from_set(cls: type[Record], name: str) -> Handler:
    def remove(ctx: Ctx, ref: str, value: Any) -> str:
        items = _stored(ctx.db.get(cls, ref), name)
        if value in items:
            items.remove(value)
        return ""
    return remove
