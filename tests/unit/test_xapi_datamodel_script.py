"""scripts/xapi-datamodel.py reads a xen-api checkout's datamodel (gen_json's doc/data/xenapi.json, checked against
ocaml/idl/datamodel*.ml) into stackops_lab/xenapi/datamodel.json. Here on a made-up miniature checkout (a git
repository with one class in each file, in the shapes xapi writes them), and the lab's own tables against the
datamodel.json it serves from."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from stackops_lab.xenapi.classes import INTERNAL_FIELDS, RELATIONS
from stackops_lab.xenapi.datamodel import ENUMS, FIELDS, SOURCE
from stackops_lab.xenapi.state import RECORD_TYPES

ROOT = Path(__file__).resolve().parents[2]


def field(name: str, type_: str, qualifier: str, default: str | None = None, state: str = "Published_s") -> dict:
    item = {"name": name, "description": "", "type": type_, "qualifier": qualifier, "tag": "",
            "lifecycle": {"state": state, "transitions": []}}
    return item if default is None else {**item, "default": default}


def message(name: str, params: int, implicit: bool) -> dict:
    return {"name": name, "params": [{"type": "session ref", "name": "session_id"}] +
            [{"type": "string", "name": f"p{i}"} for i in range(params)], "implicit": implicit}


DUMP = [
    {"name": "VM", "fields": [
        field("uuid", "string", "RO/runtime"),
        field("power_state", "enum vm_power_state", "RO/constructor", "Halted"),
        field("memory_static_max", "int", "RO/constructor"),
        field("other_config", "(string -> string) map", "RW", "{}"),
        field("gone_field", "bool", "RO/runtime", "false", "Removed_s")],
     "messages": [message("get_power_state", 1, True), message("start", 3, False)],
     "enums": [{"name": "vm_power_state", "values": [{"name": "Halted"}, {"name": "Running"}]}]},
    {"name": "host", "fields": [field("uuid", "string", "RO/runtime"), field("renamed", "string", "RW")],
     "messages": [], "enums": []},
    {"name": "Bond", "fields": [field("uuid", "string", "RO/runtime")], "messages": [], "enums": []},
]
SOURCES = {
    "ocaml/idl/datamodel_vm.ml": 'field ~qualifier:StaticRO ~ty:Int "static_max" "..."\n'
                                 'field ~ty:power_state "power_state"\nfield "gone_field"\nfield "other_config"\n',
    "ocaml/idl/datamodel_host.ml": 'uid _host\n',  # host.renamed is declared in no datamodel file: a warning
    "ocaml/idl/datamodel_common.ml": 'let uid ?(in_oss_since = Some "3.0.3") refname = field "uuid"\n',
    "ocaml/idl/other.ml": '"renamed"\n',
}


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("xapi_datamodel", ROOT / "scripts" / "xapi-datamodel.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "xen-api"
    for path, text in {**SOURCES, "doc/data/xenapi.json": json.dumps(DUMP)}.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "miniature"], check=True)
    return repo


def test_the_script_keeps_facts_per_field_and_message(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = load_script()
    monkeypatch.setattr(script, "CLASSES", ("VM", "host"))
    data, undeclared = script.build(checkout)
    vm = data["classes"]["VM"]
    assert vm["fields"] == [
        {"name": "uuid", "type": "string", "qualifier": "DynamicRO", "default": None, "state": "Published"},
        {"name": "power_state", "type": "enum vm_power_state", "qualifier": "StaticRO", "default": "Halted",
         "state": "Published"},
        {"name": "memory_static_max", "type": "int", "qualifier": "StaticRO", "default": None, "state": "Published"},
        {"name": "other_config", "type": "(string -> string) map", "qualifier": "RW", "default": "{}",
         "state": "Published"},
        {"name": "gone_field", "type": "bool", "qualifier": "DynamicRO", "default": "false", "state": "Removed"}]
    assert vm["messages"] == [{"name": "get_power_state", "arity": 1, "implicit": True},
                              {"name": "start", "arity": 3, "implicit": False}]
    assert "Bond" not in data["classes"] and data["enums"] == {"vm_power_state": ["Halted", "Running"]}
    assert undeclared == ["host.renamed"]
    head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert data["source"]["head"] == head and data["source"]["file_commit"].startswith(head)
    assert json.loads(script.render(data)) == data


def test_the_lab_serves_from_the_datamodel_it_ships() -> None:
    """Every class the lab stores is in datamodel.json, every field the lab models by name is a datamodel field of
    its class, and every relation the lab computes joins a set of refs to a ref of the other class."""
    assert len(SOURCE["head"]) == 40 and SOURCE["generated_by"] == "scripts/xapi-datamodel.py"
    assert set(RECORD_TYPES) <= set(FIELDS)
    modelled = {name: sorted({f.name for f in dataclasses.fields(cls)} - INTERNAL_FIELDS - set(FIELDS[name]))
                for name, cls in RECORD_TYPES.items()}
    assert {name: extra for name, extra in modelled.items() if extra} == {}
    for (cls, name), (other, ref_field) in RELATIONS.items():
        assert FIELDS[cls][name].type == f"{other} ref set", (cls, name)
        assert FIELDS[other][ref_field].type == f"{cls} ref", (other, ref_field)
    used = {f.type.split()[1] for fields in FIELDS.values() for f in fields.values() if f.type.startswith("enum ")}
    assert used <= set(ENUMS)
