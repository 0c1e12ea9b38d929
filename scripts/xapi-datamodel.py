#!/usr/bin/env python3
"""Write lab/stackops_lab/xenapi/datamodel.json — the XenAPI datamodel facts the lab simulator serves records
from — out of a checkout of xapi (https://github.com/xapi-project/xen-api).

    git clone https://github.com/xapi-project/xen-api /tmp/xen-api
    python3 scripts/xapi-datamodel.py /tmp/xen-api            # regenerate
    python3 scripts/xapi-datamodel.py /tmp/xen-api --check    # exit 1 when datamodel.json is out of date
    # with an OCaml toolchain, HEAD's datamodel exactly (gen_json writes D/_data/xenapi.json):
    (cd /tmp/xen-api && dune exec ocaml/idl/json_backend/gen_json.exe -- -destdir /tmp/xapi-doc)
    python3 scripts/xapi-datamodel.py /tmp/xen-api --json /tmp/xapi-doc/_data/xenapi.json

Facts only, for the classes a XenServer pool with VMs, storage and networking has (CLASSES below): per class its
fields in the datamodel's order with name, type (as xapi's docs spell it: `string`, `int`, `VM ref`,
`(string -> string) map`, `enum vm_power_state`, `VBD ref set` …), qualifier (`RW`, `StaticRO`, `DynamicRO`),
default value (as the datamodel writes it, or null when it has none) and lifecycle state; the values of every enum
those fields use; per class its messages (name, parameters after the session, whether xapi generates it from a
field: `implicit`, e.g. get_<field>, set_<field>, add_to_<map>); and the commit the facts came from.

Where the facts are read: xapi's datamodel is OCaml (ocaml/idl/datamodel*.ml: `field ~qualifier ~ty
~default_value "name"` inside `namespace`s, `uid`, `names`, `allowed_and_current_operations` helpers). xapi's own
JSON backend (ocaml/idl/json_backend/gen_json.ml) flattens it — namespaces joined with `_`, internal-only fields
left out, as the wire records are — into doc/data/xenapi.json, which the repository keeps checked in for its docs.
gen_json keeps the fields a client sees (not internal_only) and the messages a client can call, the implicit ones
(get_<field>, set_<field> …) included. This script reads that file at the checkout's HEAD (`git show
HEAD:doc/data/xenapi.json`; or the one --json names, freshly generated), records the commit that last changed it
(the datamodel version it describes: the checked-in file lags HEAD's datamodel, whose newer fields it lacks) and
checks that every field it keeps is still declared (its name appears as a string literal) in HEAD's
ocaml/idl/datamodel*.ml, listing those that are not.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "lab" / "stackops_lab" / "xenapi" / "datamodel.json"
JSON_PATH = "doc/data/xenapi.json"
CLASSES = ("session", "task", "pool", "host", "host_metrics", "host_cpu", "SR", "PBD", "VDI", "VBD", "VBD_metrics",
           "VM", "VM_metrics", "VM_guest_metrics", "network", "PIF", "PIF_metrics", "VIF", "VIF_metrics", "console",
           "message", "SDN_controller", "pool_update", "pool_patch", "host_patch")
QUALIFIERS = {"RW": "RW", "RO/constructor": "StaticRO", "RO/runtime": "DynamicRO"}


def git(checkout: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(checkout), *args], check=True, capture_output=True, text=True).stdout


def enums_of(type_name: str) -> list[str]:
    return re.findall(r"enum (\w+)", type_name)


def build(checkout: Path, generated: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    text = generated.read_text() if generated else git(checkout, "show", f"HEAD:{JSON_PATH}")
    dump = {cls["name"]: cls for cls in json.loads(text)}
    all_enums = {enum["name"]: [value["name"] for value in enum["values"]]
                 for cls in dump.values() for enum in cls.get("enums", [])}
    sources = "\n".join(git(checkout, "show", f"HEAD:{path}")
                        for path in git(checkout, "ls-tree", "--name-only", "HEAD", "ocaml/idl/").split()
                        if re.fullmatch(r"ocaml/idl/datamodel\w*\.ml", path))
    classes: dict[str, Any] = {}
    used: set[str] = set()
    undeclared: list[str] = []
    for name in CLASSES:
        fields = []
        for item in dump[name]["fields"]:
            fields.append({"name": item["name"], "type": item["type"], "qualifier": QUALIFIERS[item["qualifier"]],
                           "default": item.get("default"), "state": item["lifecycle"]["state"].removesuffix("_s")})
            used.update(enums_of(item["type"]))
            # a namespaced field (memory_static_max) is declared as its last part ("static_max")
            if not any(f'"{tail}"' in sources for tail in _tails(item["name"])):
                undeclared.append(f"{name}.{item['name']}")
        messages = sorted((item["name"], len([p for p in item["params"] if p["name"] != "session_id"]),
                           bool(item.get("implicit"))) for item in dump[name]["messages"])
        classes[name] = {"fields": fields,
                         "messages": [{"name": m, "arity": n, "implicit": i} for m, n, i in messages]}
    data = {
        "source": {"repository": "https://github.com/xapi-project/xen-api",
                   "head": git(checkout, "rev-parse", "HEAD").strip(),
                   "file": "gen_json output of HEAD" if generated else JSON_PATH,
                   "file_commit": (git(checkout, "rev-parse", "HEAD").strip() if generated else
                                   git(checkout, "log", "-1", "--format=%H %cs", "--", JSON_PATH).strip()),
                   "generated_by": "scripts/xapi-datamodel.py"},
        "classes": classes,
        "enums": {name: all_enums[name] for name in sorted(used)},
    }
    return data, undeclared


def _tails(name: str) -> list[str]:
    parts = name.split("_")
    return ["_".join(parts[i:]) for i in range(len(parts))]


def render(data: dict[str, Any]) -> str:
    lines = ["{", f'  "source": {json.dumps(data["source"])},', '  "classes": {']
    for index, (name, cls) in enumerate(data["classes"].items()):
        lines.append(f"    {json.dumps(name)}: {{")
        for key in ("fields", "messages"):
            items = cls[key]
            lines.append(f'      "{key}": [')
            lines.extend(f"        {json.dumps(item)}{',' if i < len(items) - 1 else ''}" for i, item in enumerate(items))
            lines.append("      ]" + ("," if key == "fields" else ""))
        lines.append("    }" + ("," if index < len(data["classes"]) - 1 else ""))
    lines.append("  },")
    lines.append('  "enums": {')
    enums = list(data["enums"].items())
    lines.extend(f"    {json.dumps(name)}: {json.dumps(values)}{',' if i < len(enums) - 1 else ''}"
                 for i, (name, values) in enumerate(enums))
    lines.extend(["  }", "}", ""])
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a xen-api git checkout (or bare mirror)")
    parser.add_argument("--check", action="store_true", help="exit 1 when datamodel.json differs")
    parser.add_argument("--json", type=Path, help="a xenapi.json gen_json wrote from the checkout")
    options = parser.parse_args()
    data, undeclared = build(options.checkout, options.json)
    for name in undeclared:
        print(f"warning: {name} is not declared in HEAD's ocaml/idl/datamodel*.ml", file=sys.stderr)
    text = render(data)
    if options.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run scripts/xapi-datamodel.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    counts = ", ".join(f"{name} {len(cls['fields'])}" for name, cls in data["classes"].items())
    print(f"wrote {OUT.relative_to(ROOT)}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
