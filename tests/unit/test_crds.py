"""The generated CRDs: current in crds/, structural, RE2-safe patterns, valid defaults, printer columns; and the
README field reference (`stackops docs`) covers every spec field."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from stackops.api import crds, reference
from stackops.api.kinds import BY_KIND, KINDS
from stackops.cli import main

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"

# The keywords of apiextensions.k8s.io/v1 JSONSchemaProps a structural schema may use.
STRUCTURAL_KEYWORDS = {
    "type", "description", "properties", "required", "items", "additionalProperties", "enum", "pattern",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems",
    "minProperties", "maxProperties", "multipleOf", "uniqueItems", "default", "format", "anyOf", "nullable",
    "example", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-map-type", "x-kubernetes-embedded-resource",
}
TYPES = {"string", "integer", "number", "boolean", "object", "array"}
INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
LOOK_AROUND = ("(?=", "(?!", "(?<=", "(?<!", "(?<")


# --- helpers --------------------------------------------------------------------------------------------------------


def generated() -> dict[str, dict[str, Any]]:
    return crds.all_crds()


def stackops_crds() -> list[tuple[str, dict[str, Any]]]:
    return [(k.kind, crds.crd(k)) for k in KINDS]


def root_schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (`.spec.members[].address`)."""
    yield path, schema
    for name, prop in (schema.get("properties") or {}).items():
        yield from nodes(prop, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")
    for i, branch in enumerate(schema.get("anyOf") or []):
        yield from nodes(branch, f"{path}<anyOf{i}>")


def is_int_or_string(node: dict[str, Any]) -> bool:
    return bool(node.get("x-kubernetes-int-or-string"))


def structural_problems(schema: dict[str, Any]) -> list[str]:
    """What the API server's structural-schema checks (and pruning) would object to."""
    problems = []
    for path, node in nodes(schema):
        where = path or "<root>"
        in_any_of = "<anyOf" in path
        unknown = set(node) - STRUCTURAL_KEYWORDS
        if unknown:
            problems.append(f"{where}: keywords not allowed in a structural schema: {sorted(unknown)}")
        for banned in ("$ref", "title", "oneOf", "allOf", "not", "definitions", "$defs", "patternProperties"):
            if banned in node:
                problems.append(f"{where}: {banned} present")
        if "anyOf" in node and not (is_int_or_string(node) and node["anyOf"] == INT_OR_STRING_ANY_OF):
            problems.append(f"{where}: anyOf other than the int-or-string form: {node['anyOf']}")
        if is_int_or_string(node):
            if "type" in node:
                problems.append(f"{where}: int-or-string with a type")
        elif not node.get("x-kubernetes-preserve-unknown-fields") and not in_any_of:
            if "type" not in node:
                problems.append(f"{where}: no type")
            elif node["type"] not in TYPES:
                problems.append(f"{where}: unknown type {node['type']!r}")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{where}: additionalProperties alongside properties")
        if node.get("type") == "object" and path != ".metadata":
            if not (node.get("properties") or isinstance(node.get("additionalProperties"), dict)
                    or node.get("x-kubernetes-preserve-unknown-fields")):
                problems.append(f"{where}: object without properties or additionalProperties: "
                                f"everything under it is pruned by the API server")
        if node.get("type") == "array" and not isinstance(node.get("items"), dict):
            problems.append(f"{where}: array without items")
        if node.get("uniqueItems"):
            problems.append(f"{where}: uniqueItems: true is forbidden")
        for name in node.get("required") or []:
            if name not in (node.get("properties") or {}):
                problems.append(f"{where}: required {name!r} is not a property")
        if in_any_of and set(node) - {"type"}:
            problems.append(f"{where}: anyOf branch with more than a type")
    metadata = (schema.get("properties") or {}).get("metadata")
    if metadata is not None and metadata != {"type": "object"}:
        problems.append(f".metadata: only `type: object` is allowed at the root, got {metadata}")
    return problems


def value_problems(value: Any, node: dict[str, Any], path: str) -> list[str]:
    """Validate a value (a default) against a schema node the way the API server would, pruning included."""
    problems: list[str] = []
    if is_int_or_string(node):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return [f"{path}: {value!r} is neither integer nor string"]
    else:
        kind = node.get("type")
        checks = {
            "string": lambda v: isinstance(v, str),
            "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            "boolean": lambda v: isinstance(v, bool),
            "object": lambda v: isinstance(v, dict),
            "array": lambda v: isinstance(v, list),
        }
        if kind in checks and not checks[kind](value):
            return [f"{path}: {value!r} is not of type {kind}"]
    if "enum" in node and value not in node["enum"]:
        problems.append(f"{path}: {value!r} not in {node['enum']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in node and value < node["minimum"]:
            problems.append(f"{path}: {value} < minimum {node['minimum']}")
        if "maximum" in node and value > node["maximum"]:
            problems.append(f"{path}: {value} > maximum {node['maximum']}")
    if isinstance(value, str):
        if "pattern" in node and not re.search(node["pattern"], value):
            problems.append(f"{path}: {value!r} does not match {node['pattern']!r}")
        if "maxLength" in node and len(value) > node["maxLength"]:
            problems.append(f"{path}: {value!r} longer than {node['maxLength']}")
        if "minLength" in node and len(value) < node["minLength"]:
            problems.append(f"{path}: {value!r} shorter than {node['minLength']}")
    if isinstance(value, list):
        if "minItems" in node and len(value) < node["minItems"]:
            problems.append(f"{path}: fewer than {node['minItems']} items")
        if "maxItems" in node and len(value) > node["maxItems"]:
            problems.append(f"{path}: more than {node['maxItems']} items")
        for i, item in enumerate(value):
            problems += value_problems(item, node.get("items") or {}, f"{path}[{i}]")
    if isinstance(value, dict):
        properties = node.get("properties") or {}
        for name in node.get("required") or []:
            if name not in value:
                problems.append(f"{path}: required {name!r} missing")
        if "maxProperties" in node and len(value) > node["maxProperties"]:
            problems.append(f"{path}: more than {node['maxProperties']} properties")
        for key, item in value.items():
            if key in properties:
                problems += value_problems(item, properties[key], f"{path}.{key}")
            elif isinstance(node.get("additionalProperties"), dict):
                problems += value_problems(item, node["additionalProperties"], f"{path}.{key}")
            elif not node.get("x-kubernetes-preserve-unknown-fields"):
                problems.append(f"{path}: unknown field {key!r} (pruned by the API server)")
    return problems


def default_problems(schema: dict[str, Any]) -> list[str]:
    problems = []
    for path, node in nodes(schema):
        if "default" in node:
            where = f"{path or '<root>'} default"
            if node["default"] == "":
                # Kubernetes 1.20 refuses the CRD: `default: Invalid value: "null": in body must be of type string`.
                problems.append(f"{where}: an empty string default is read as null by the API server")
            problems += value_problems(node["default"], node, where)
    return problems


# --- `stackops crds --check` ----------------------------------------------------------------------------------------


def test_checked_in_crds_are_current() -> None:
    assert crds.stale(CRD_DIR) == []


def test_check_command_passes_on_checked_in_crds() -> None:
    assert main(["crds", "--check", "--output-dir", str(CRD_DIR)]) == 0


def test_modified_copy_is_stale(tmp_path: Path) -> None:
    copy = tmp_path / "crds"
    shutil.copytree(CRD_DIR, copy)
    assert crds.stale(copy) == []
    target = copy / "stackops.io_xenpools.yaml"
    target.write_text(target.read_text().replace("minimum: 30", "minimum: 1", 1))
    assert crds.stale(copy) == ["stale stackops.io_xenpools.yaml"]
    assert main(["crds", "--check", "--output-dir", str(copy)]) == 1


def test_missing_and_unexpected_files_are_reported(tmp_path: Path) -> None:
    copy = tmp_path / "crds"
    shutil.copytree(CRD_DIR, copy)
    (copy / "stackops.io_kvmhosts.yaml").unlink()
    (copy / "stackops.io_old.yaml").write_text("{}\n")
    assert crds.stale(copy) == ["missing stackops.io_kvmhosts.yaml", "unexpected stackops.io_old.yaml"]


def test_missing_directory_reports_every_file(tmp_path: Path) -> None:
    assert sorted(crds.stale(tmp_path / "absent")) == sorted(f"missing {n}" for n in generated())


def test_write_then_check_round_trips(tmp_path: Path) -> None:
    assert main(["crds", "--output-dir", str(tmp_path)]) == 0
    assert crds.stale(tmp_path) == []
    for name, document in generated().items():
        assert yaml.safe_load((tmp_path / name).read_text()) == document


def test_checked_in_files_parse_to_the_generated_documents() -> None:
    for name, document in generated().items():
        assert yaml.safe_load((CRD_DIR / name).read_text()) == document


# --- structural schemas ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(generated()))
def test_schema_is_structural(name: str) -> None:
    assert structural_problems(root_schema(generated()[name])) == []


@pytest.mark.parametrize("name", sorted(generated()))
def test_defaults_validate_against_their_node(name: str) -> None:
    assert default_problems(root_schema(generated()[name])) == []


@pytest.mark.parametrize("name", sorted(generated()))
def test_patterns_compile_and_have_no_look_around(name: str) -> None:
    patterns = [(path, node["pattern"]) for path, node in nodes(root_schema(generated()[name])) if "pattern" in node]
    for path, pattern in patterns:
        re.compile(pattern)
        assert not any(token in pattern for token in LOOK_AROUND), f"{path}: {pattern}"
        assert pattern.startswith("^") and pattern.endswith("$"), f"{path}: pattern not anchored: {pattern}"
        assert "\\Z" not in pattern and "\\A" not in pattern, f"{path}: Python-only anchor in {pattern}"


def patterns_of(name: str) -> list[str]:
    return [node["pattern"] for _, node in nodes(root_schema(generated()[name])) if "pattern" in node]


def test_patterns_use_no_escape_only_one_dialect_reads() -> None:
    # The API server compiles patterns with Go's RE2, pydantic with Rust's regex, these tests with Python's re:
    # \uXXXX is not RE2, \x{...} and \p{...} are not Python. A character beyond \xff stands as itself.
    for name in generated():
        for pattern in patterns_of(name):
            assert not re.search(r"(?<!\\)(\\\\)*\\(u[0-9a-fA-F]{4}|U|x\{|[pP]\{|N\{)", pattern), f"{name}: {pattern}"


def test_checked_in_crds_hold_no_raw_yaml_line_breaks() -> None:
    # YAML reads U+0085, U+2028 and U+2029 as line breaks: the pattern that refuses them in agent.properties
    # values carries them escaped (double-quoted \L, \P), not raw inside a folded scalar.
    for path in sorted(CRD_DIR.glob("*.yaml")):
        text = path.read_text()
        assert not any(char in text for char in "\x85\u2028\u2029"), path.name
    assert '"^[^\\\\x00-\\\\x1f\\\\x7f-\\\\x9f\\L\\P]*$"' in (CRD_DIR / "stackops.io_kvmhosts.yaml").read_text()


SAMPLES = {
    # (the field, values that must match, values that must not)
    "properties": (["host-passthrough", "C:\\dir\\", "a=b:c#d!e", "caf\u00e9 \u00a0\u4e2d\U0001F600", ""],
                   ["a\nb", "a\rb", "a\x00b", "a\x7fb", "a\x80b", "a\x85b", "a\x9fb", "a\u2028b", "a\u2029b"]),
    "extra": (["qemu-guest-agent", "g++", "gcc-c++", "libstdc++6", "a"],
              ["openssh-server-", "vim+", "vim+-", "vim-+", "-vim", "Vim"]),
    "cloudstackAgentVersion": (["4.19.0.0", "4.19.0.0~rc1", "4"], ["4.19.0.0-", "4.19.0.0+", "v4"]),
}


def kvmhost_pattern(field: str) -> str:
    (pattern,) = {node["pattern"] for path, node in nodes(root_schema(generated()["stackops.io_kvmhosts.yaml"]))
                  if "pattern" in node and path.rstrip("[]{}").endswith("." + field)}
    return pattern


@pytest.mark.parametrize("field", list(SAMPLES))
def test_kvmhost_value_patterns_in_python_re(field: str) -> None:
    good, bad = SAMPLES[field]
    pattern = kvmhost_pattern(field)
    assert [v for v in good if not re.search(pattern, v)] == []
    assert [v for v in bad if re.search(pattern, v)] == []


def test_patterns_compile_and_match_alike_in_go_re2(tmp_path: Path) -> None:
    """Every CRD pattern compiled by Go's regexp (RE2, as the API server compiles it), and the KvmHost value
    patterns matching the samples as Python's re does. Skipped without a Go toolchain."""
    import json
    import subprocess
    go = shutil.which("go")
    if go is None:
        pytest.skip("no `go` on PATH: the patterns are checked with Python's re only")
    patterns = sorted({p for name in generated() for p in patterns_of(name)})
    samples = [[kvmhost_pattern(field), good + bad] for field, (good, bad) in SAMPLES.items()]
    (tmp_path / "input.json").write_text(json.dumps({"patterns": patterns, "samples": samples}))
    (tmp_path / "main.go").write_text(GO_CHECK)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GOCACHE": str(tmp_path / "cache"), "GO111MODULE": "off",
           "GOPATH": str(tmp_path / "gopath"), "GOFLAGS": ""}
    result = subprocess.run([go, "run", "main.go"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["errors"] == []
    for (pattern, values), matches in zip(samples, answer["matches"]):
        assert matches == [bool(re.search(pattern, v)) for v in values], pattern


GO_CHECK = """package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
)

func main() {
	var input struct {
		Patterns []string   `json:"patterns"`
		Samples  [][]any    `json:"samples"`
	}
	data, _ := os.ReadFile("input.json")
	if err := json.Unmarshal(data, &input); err != nil {
		panic(err)
	}
	errors := []string{}
	for _, p := range input.Patterns {
		if _, err := regexp.Compile(p); err != nil {
			errors = append(errors, err.Error())
		}
	}
	matches := [][]bool{}
	for _, sample := range input.Samples {
		re := regexp.MustCompile(sample[0].(string))
		row := []bool{}
		for _, v := range sample[1].([]any) {
			row = append(row, re.MatchString(v.(string)))
		}
		matches = append(matches, row)
	}
	out, _ := json.Marshal(map[string]any{"errors": errors, "matches": matches})
	fmt.Print(string(out))
}
"""


def test_pattern_count_is_plausible() -> None:
    # Guards the walk above: the spec schemas carry many patterns.
    total = sum(1 for _, crd in stackops_crds() for _, node in nodes(root_schema(crd)) if "pattern" in node)
    assert total > 50


def test_checker_catches_non_structural_schemas() -> None:
    bad = {
        "type": "object",
        "properties": {
            "a": {"$ref": "#/x"},
            "b": {"type": "string", "title": "B"},
            "c": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "d": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": {"type": "string"}},
            "e": {"type": "object", "maxProperties": 3, "default": {"k": "v"}},
            "f": {"type": "integer", "minimum": 30, "default": 10},
            "g": {"type": "string", "enum": ["A"], "default": "B"},
            "h": {"type": "string", "pattern": "^[a-z]+$", "default": "A1"},
            "i": {"type": "string", "default": ""},
        },
    }
    problems = structural_problems(bad)
    for fragment in (".a: $ref", ".b: title", ".c: anyOf", ".d: additionalProperties alongside",
                     ".e: object without properties"):
        assert any(p.startswith(fragment) for p in problems), (fragment, problems)
    defaults = default_problems(bad)
    for fragment in (".e default: unknown field 'k'", ".f default: 10 < minimum", ".g default: 'B' not in",
                     ".h default: 'A1' does not match", ".i default: an empty string default"):
        assert any(p.startswith(fragment) for p in defaults), (fragment, defaults)


def test_int_or_string_form() -> None:
    schema = root_schema(crds.crd(BY_KIND["SystemVMTemplate"]))
    node = schema["properties"]["spec"]["properties"]["rollout"]["properties"]["routers"]["properties"]["maxUnavailable"]
    assert node["x-kubernetes-int-or-string"] is True
    assert node["anyOf"] == INT_OR_STRING_ANY_OF
    assert "type" not in node
    assert node["default"] == 1


@pytest.mark.parametrize(("kind", "path", "default"), [
    ("XenPool", ("ha", "timeoutSeconds"), 180),
    ("XenPool", ("managementPolicy",), "Manage"),
    ("XenPool", ("deletionPolicy",), "Orphan"),
    ("KvmHost", ("managementPolicy",), "Manage"),
    ("KvmHost", ("deletionPolicy",), "Orphan"),
    ("SystemVMTemplate", ("deletionPolicy",), "Orphan"),
    ("CloudStackRelease", ("deletionPolicy",), "Orphan"),
])
def test_documented_defaults_in_the_schema(kind: str, path: tuple[str, ...], default: Any) -> None:
    node = root_schema(crds.crd(BY_KIND[kind]))["properties"]["spec"]
    for name in path:
        node = node["properties"][name]
    assert node["default"] == default


def test_spec_required_and_status_subresource() -> None:
    for _, crd in stackops_crds():
        (version,) = crd["spec"]["versions"]
        assert version["subresources"] == {"status": {}}
        assert root_schema(crd)["required"] == ["spec"]
        assert crd["spec"]["scope"] == "Namespaced"


# --- printer columns ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "columns"), [
    ("XenPool", ["MASTER", "HOSTS", "HA", "READY", "AGE"]),
    ("KvmHost", ["ADDRESS", "OVS", "LIBVIRT", "READY", "AGE"]),
    ("SystemVMTemplate", ["VERSION", "PHASE", "READY", "AGE"]),
    ("CloudStackRelease", ["VERSION", "PHASE", "COMMIT", "READY", "AGE"]),
])
def test_printer_columns(kind: str, columns: list[str]) -> None:
    (version,) = crds.crd(BY_KIND[kind])["spec"]["versions"]
    printed = version["additionalPrinterColumns"]
    default_view = [c["name"] for c in printed if not c.get("priority")]
    assert [c for c in default_view if c in columns] == columns  # present, in this order, in the default view
    for column in printed:
        assert column["type"] in {"string", "integer", "number", "boolean", "date"}
        assert column["jsonPath"].startswith(".")
    by_name = {c["name"]: c for c in printed}
    assert by_name["AGE"] == {"name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    assert by_name["READY"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'


def test_printer_columns_point_at_schema_fields() -> None:
    for kind, crd in stackops_crds():
        schema = root_schema(crd)
        (version,) = crd["spec"]["versions"]
        for column in version["additionalPrinterColumns"]:
            path = column["jsonPath"]
            if "[" in path or path.startswith(".metadata"):
                continue
            node = schema
            for name in path.lstrip(".").split("."):
                assert name in node.get("properties", {}), f"{kind} column {column['name']}: {path}"
                node = node["properties"][name]


# --- `stackops docs --check` ----------------------------------------------------------------------------------------


def field_paths(schema: dict[str, Any], prefix: str = "") -> tuple[set[str], set[str]]:
    """(all field paths, leaf field paths) of a spec schema, spelled as the reference table spells them."""
    every: set[str] = set()
    leaves: set[str] = set()
    for name, prop in (schema.get("properties") or {}).items():
        path = f"{prefix}.{name}" if prefix else name
        every.add(path)
        if prop.get("type") == "array" and (prop.get("items") or {}).get("properties"):
            sub_every, sub_leaves = field_paths(prop["items"], f"{path}[]")
        elif prop.get("properties"):
            sub_every, sub_leaves = field_paths(prop, path)
        else:
            leaves.add(path)
            continue
        every |= sub_every
        leaves |= sub_leaves
    return every, leaves


def reference_rows(text: str) -> dict[str, set[str]]:
    """Kind → field paths in its table."""
    rows: dict[str, set[str]] = {}
    current = None
    for line in text.splitlines():
        heading = re.match(r"^### (\w+) \(", line)
        if heading:
            current = heading.group(1)
            rows[current] = set()
            continue
        row = re.match(r"^\| `([^`]+)` \|", line)
        if row and current is not None:
            rows[current].add(row.group(1))
    return rows


def test_reference_lists_every_spec_field() -> None:
    rows = reference_rows(reference.markdown())
    assert set(rows) == {k.kind for k in KINDS}
    for kind in KINDS:
        every, leaves = field_paths(crds.openapi_schema(kind.spec))
        assert leaves, kind.kind
        assert leaves - rows[kind.kind] == set(), f"{kind.kind}: leaf fields missing from the reference"
        assert rows[kind.kind] == every, f"{kind.kind}: reference rows differ from the schema"


def test_reference_rows_are_well_formed() -> None:
    for line in reference.markdown().splitlines():
        if line.startswith("| `"):
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            assert len(cells) == 6, line
            assert "\n" not in line


def test_reference_mentions_documented_defaults() -> None:
    text = reference.markdown()
    assert "| `ha.timeoutSeconds` | integer |  | `180` | ≥ 30; ≤ 3600 |" in text
    assert re.search(r"\| `managementPolicy` \| string \|  \| `\"Manage\"` \| one of `Manage`, `Observe` \|", text)
    assert "| `openvswitch.bridges[].bonds[].lacpTime` |" in text


def readme_with(block: str) -> str:
    return f"# stackops\n\nIntro.\n\n## Field reference\n\n{block}\n\n## License\n\nApache-2.0\n"


def test_docs_check_detects_stale_and_current_readme(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(readme_with(f"{reference.BEGIN}\nold table\n{reference.END}"))
    assert not reference.readme_is_current(readme)
    assert main(["docs", "--check", "--readme", str(readme)]) == 1
    assert main(["docs", "--readme", str(readme)]) == 0
    assert reference.readme_is_current(readme)
    assert main(["docs", "--check", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text == readme_with(reference.markdown())
    assert text.startswith("# stackops\n") and text.endswith("## License\n\nApache-2.0\n")


def test_docs_without_markers_is_an_error(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# stackops\n")
    with pytest.raises(ValueError, match="FIELD REFERENCE"):
        reference.readme_is_current(readme)


def test_repository_readme_reference_is_current() -> None:
    readme = REPO / "README.md"
    if not readme.exists() or reference.BEGIN not in readme.read_text():
        pytest.skip("README.md has no field reference block yet")
    assert reference.readme_is_current(readme), "run `stackops docs`"
