"""The XenAPI datamodel as the lab reads it: datamodel.json (facts from xapi's ocaml/idl/datamodel*.ml, written
by scripts/xapi-datamodel.py) — per class its fields with type, qualifier and default — and the lab values of
those defaults and of values sent to setters.

Lab values are what the records in state.py hold: int for `int`, float, bool, `datetime.datetime` for
`datetime`, str for strings, enums and refs (`OpaqueRef:NULL` for a null ref), list for sets, dict for maps;
classes.wire() turns them into XML-RPC values.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import xmlrpc.client
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from stackops_lab.xenapi.errors import FIELD_TYPE_ERROR, XapiError
from stackops_lab.xenapi.state import EPOCH, NULL_REF

_DATA = json.loads((Path(__file__).parent / "datamodel.json").read_text())
SOURCE: dict[str, str] = _DATA["source"]
ENUMS: dict[str, list[str]] = _DATA["enums"]


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # as xapi's docs spell it: "int", "VM ref", "(string -> string) map", "enum vm_power_state", …
    qualifier: str  # RW, StaticRO, DynamicRO
    default: str | None  # as the datamodel writes it, None when it declares none

    @cached_property
    def kind(self) -> str:
        """map, set, ref, enum, or the base type (string, int, float, bool, datetime)."""
        if self.type.endswith(" map"):
            return "map"
        if self.type.endswith(" set"):
            return "set"
        if self.type.endswith(" ref"):
            return "ref"
        if self.type.startswith("enum "):
            return "enum"
        return self.type


FIELDS: dict[str, dict[str, Field]] = {
    name: {item["name"]: Field(item["name"], item["type"], item["qualifier"], item["default"])
           for item in cls["fields"]}
    for name, cls in _DATA["classes"].items()}
# the messages xapi generates from the fields (get_<field>, set_<field>, add_to_<map> …): name → parameters
# after the session
IMPLICIT: dict[str, dict[str, int]] = {
    name: {m["name"]: m["arity"] for m in cls["messages"] if m["implicit"]} for name, cls in _DATA["classes"].items()}


def rw_fields(class_name: str) -> list[Field]:
    return [f for f in FIELDS[class_name].values() if f.qualifier == "RW"]


def default(field: Field) -> Any:
    """The field's value in a record nobody set it in: the datamodel's default, else xapi's zero of its type."""
    raw, kind = field.default, field.kind
    if kind == "map":
        return dict(re.findall(r'"([^"]*)" -> "([^"]*)"', raw or ""))
    if kind == "set":
        return [int(x) if field.type == "int set" else x for x in re.findall(r"[^{},\s]+", raw or "")]
    if kind == "ref":
        return NULL_REF
    if kind == "enum":
        return raw if raw is not None else ENUMS[field.type.split()[1]][0]
    if kind == "int":
        return int(raw) if raw else 0
    if kind == "float":
        return float(raw) if raw else 0.0
    if kind == "bool":
        return raw == "true"
    if kind == "datetime":
        return EPOCH
    return raw[1:-1] if raw else ""  # string: the datamodel writes it quoted


# per class, every field at its default (shared: copy before changing a value)
DEFAULTS: dict[str, dict[str, Any]] = {name: {f.name: default(f) for f in fields.values()}
                                       for name, fields in FIELDS.items()}


def unmarshal(field: Field, value: Any) -> Any:
    """A value sent for `field` (a setter's or add_to_'s), unmarshalled as xapi's generated server does;
    FIELD_TYPE_ERROR ["value"] when it is not of the field's type."""
    kind = field.kind
    ok: Any = None
    if kind == "bool" and isinstance(value, bool):
        ok = value
    elif kind == "int" and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            ok = int(value)
        except ValueError:
            ok = None
    elif kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        ok = float(value)
    elif kind == "datetime" and isinstance(value, (xmlrpc.client.DateTime, str)):
        try:
            ok = dt.datetime.strptime(str(value), "%Y%m%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            ok = None
    elif kind == "enum" and isinstance(value, str) and value in ENUMS[field.type.split()[1]]:
        ok = value
    elif kind in ("string", "ref") and isinstance(value, str):
        ok = value
    elif kind == "set" and isinstance(value, list):
        ok = list(value)
    elif kind == "map" and isinstance(value, dict):
        ok = dict(value)
    if ok is None:
        raise XapiError(FIELD_TYPE_ERROR, "value")
    return ok
