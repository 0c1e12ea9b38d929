#!/usr/bin/env python3
"""Write lab/stackops_lab/cloudstack/apitable.json — the CloudStack API facts the lab simulator's commands are held
to (tests/unit/test_cloudstack_apitable.py) — out of a checkout of Apache CloudStack
(https://github.com/apache/cloudstack).

    git clone https://github.com/apache/cloudstack /tmp/cloudstack
    python3 scripts/cloudstack-apitable.py /tmp/cloudstack            # regenerate
    python3 scripts/cloudstack-apitable.py /tmp/cloudstack --check    # exit 1 when a command's parameters differ

Facts only, for the commands in COMMANDS (the admin list, create, update, delete and lifecycle commands of the
entities the simulator holds): per command the class that declares it (@APICommand name), whether it is async
(it extends BaseAsyncCmd or BaseAsyncCreateCmd) or a list (it extends BaseListCmd), its responseObject, and every
@Parameter of the class and of the classes it extends below BaseCmd — name, CommandType, required, since,
entityType, collectionType for a LIST — with the ApiConstants names resolved to their strings; per response
class the names its @SerializedName fields serialize to, its own and those of the classes it extends; and the
checkout's commit. BaseCmd's own parameters (handled by the API servlet for every command) are left out.

Where the facts are read: api/src/main/java (the command classes under org/apache/cloudstack/api/command, their
bases in org/apache/cloudstack/api, the responses in org/apache/cloudstack/api/response, the constants in
ApiConstants.java), as files at the checkout's HEAD (`git show HEAD:<path>`, so uncommitted edits do not count).
The annotations are read with a small scanner (balanced parentheses, string literals), not a Java parser: an
annotation it cannot read is reported and the script exits 1 rather than write a partial table.

The committed table was first compiled from the same classes as the search index stores them, one file at a time
(a full checkout was over the size this project's tools could fetch); its `how` says so and each entry records
the commit of the file it was read from. A run of this script replaces those per-file commits by the checkout's.
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
OUT = ROOT / "lab" / "stackops_lab" / "cloudstack" / "apitable.json"
JAVA = "api/src/main/java"
CONSTANTS = f"{JAVA}/org/apache/cloudstack/api/ApiConstants.java"
COMMANDS = (
    "listZones", "createZone", "updateZone", "deleteZone", "listPods", "createPod", "updatePod", "deletePod",
    "listClusters", "addCluster", "updateCluster", "deleteCluster", "listHosts", "addHost", "updateHost",
    "deleteHost", "reconnectHost", "prepareHostForMaintenance", "cancelHostMaintenance", "listRouters",
    "rebootRouter", "stopRouter", "startRouter", "destroyRouter", "upgradeRouterTemplate", "listSystemVms",
    "startSystemVm", "stopSystemVm", "rebootSystemVm", "destroySystemVm", "listTemplates", "registerTemplate",
    "updateTemplate", "deleteTemplate", "listTemplatePermissions", "listConfigurations", "updateConfiguration",
    "resetConfiguration", "listAccounts", "createAccount", "enableAccount", "disableAccount", "deleteAccount", "listDomains",
    "createDomain", "updateDomain", "deleteDomain", "listProjects", "createProject", "updateProject",
    "deleteProject", "listHypervisors", "queryAsyncJobResult", "listAsyncJobs",
    "updateAccount", "updateTemplatePermissions", "activateProject", "suspendProject", "migrateSystemVm",
    "declareHostAsDegraded", "cancelHostAsDegraded", "updateHostPassword", "listHostTags",
    "getRouterHealthCheckResults", "listHypervisorCapabilities", "updateHypervisorCapabilities", "copyTemplate",
    "listVirtualMachines",
)
STOP_AT = {"BaseCmd"}  # the servlet's own parameters are not a command's
ASYNC_BASES = {"BaseAsyncCmd", "BaseAsyncCreateCmd"}


class Unreadable(Exception):
    pass


def git(checkout: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(checkout), *args], check=True, capture_output=True,
                          text=True).stdout


def java_files(checkout: Path) -> dict[str, str]:
    """Every .java file under api/src/main/java at HEAD: path → text."""
    paths = [p for p in git(checkout, "ls-tree", "-r", "--name-only", "HEAD", JAVA).splitlines()
             if p.endswith(".java")]
    return {p: git(checkout, "show", f"HEAD:{p}") for p in paths}


# ------------------------------------------------------------------------------------------------ scanning
def strip_comments(text: str) -> str:
    """Remove // and /* */ comments outside string literals."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            i = text.find("\n", i) if text.find("\n", i) != -1 else n
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end == -1 else end + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def balanced(text: str, start: int) -> tuple[str, int]:
    """The text inside the parentheses opening at `start` (string literals respected) and the index after."""
    depth, i = 0, start
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c in "({":
            depth += 1
        elif c in ")}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i], i + 1
        i += 1
    raise Unreadable(f"unbalanced parentheses from offset {start}")


def split_top(args: str) -> list[str]:
    """Split annotation arguments on the commas outside literals, parentheses and braces."""
    parts, depth, current, i = [], 0, [], 0
    while i < len(args):
        c = args[i]
        if c == '"':
            j = i + 1
            while args[j] != '"':
                j += 2 if args[j] == "\\" else 1
            current.append(args[i:j + 1])
            i = j + 1
            continue
        if c in "({":
            depth += 1
        elif c in ")}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def annotation_args(body: str) -> dict[str, str]:
    result = {}
    for part in split_top(body):
        key, _, value = part.partition("=")
        result[key.strip()] = value.strip()
    return result


def annotations(text: str, name: str) -> list[dict[str, str]]:
    found = []
    for match in re.finditer(rf"@{name}\s*\(", text):
        body, _ = balanced(text, match.end() - 1)
        found.append(annotation_args(body))
    return found


def literal(value: str, constants: dict[str, str], own: dict[str, str]) -> str:
    """A string argument: a literal (concatenations joined), ApiConstants.X, or a constant of the same class."""
    value = value.strip()
    if value.startswith('"'):
        return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', value))
    name = value.rsplit(".", 1)[-1]
    if value.startswith("ApiConstants.") and name in constants:
        return constants[name]
    if name in own:
        return own[name]
    raise Unreadable(f"cannot resolve {value}")


def string_constants(text: str) -> dict[str, str]:
    return dict(re.findall(r'static\s+final\s+String\s+(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*;', text))


def class_decl(text: str) -> tuple[str, str | None] | None:
    match = re.search(r"\bclass\s+(\w+)(?:<[^>]*>)?(?:\s+extends\s+([\w.]+))?", text)
    if match is None:
        return None
    return match.group(1), (match.group(2).rsplit(".", 1)[-1] if match.group(2) else None)


# ------------------------------------------------------------------------------------------------ reading
class Source:
    def __init__(self, files: dict[str, str]) -> None:
        self.files = {path: strip_comments(text) for path, text in files.items()}
        self.constants = string_constants(self.files.get(CONSTANTS, ""))
        if not self.constants:
            raise Unreadable(f"no constants in {CONSTANTS}")
        self.classes: dict[str, tuple[str, str | None]] = {}  # simple name → (path, parent)
        for path, text in self.files.items():
            decl = class_decl(text)
            if decl is not None:
                self.classes.setdefault(decl[0], (path, decl[1]))

    def chain(self, name: str) -> list[str]:
        """The class and the classes it extends that the api module declares, stopping at BaseCmd."""
        chain: list[str] = []
        current: str | None = name
        while current is not None and current in self.classes and current not in STOP_AT:
            chain.append(current)
            current = self.classes[current][1]
        return chain

    def parameters(self, cls: str) -> dict[str, dict[str, Any]]:
        path = self.classes[cls][0]
        text = self.files[path]
        own = string_constants(text)
        params: dict[str, dict[str, Any]] = {}
        for args in annotations(text, "Parameter"):
            name = literal(args["name"], self.constants, own)
            fact: dict[str, Any] = {"type": args.get("type", "CommandType.STRING").rsplit(".", 1)[-1],
                                    "required": args.get("required", "false") == "true"}
            if "since" in args:
                fact["since"] = literal(args["since"], self.constants, own)
            entity = re.findall(r"(\w+)\.class", args.get("entityType", ""))
            if entity:
                fact["entity"] = entity[0]
            if fact["type"] == "LIST":
                fact["collection"] = args.get("collectionType", "CommandType.STRING").rsplit(".", 1)[-1]
            params[name] = fact
        return params

    def command(self, cls: str) -> dict[str, Any]:
        path = self.classes[cls][0]
        text = self.files[path]
        (api,) = annotations(text, "APICommand")
        chain = self.chain(cls)
        params: dict[str, dict[str, Any]] = {}
        for member in chain:
            for name, fact in self.parameters(member).items():
                params.setdefault(name, fact)
        parent = self.classes[cls][1]
        return {"class": path[len(JAVA) + 1:-5].replace("/", "."), "path": path, "extends": parent,
                "async": any(c in ASYNC_BASES for c in [*chain, *self.ancestors(cls)]),
                "list": "BaseListCmd" in chain, "response": re.sub(r"\.class$", "", api["responseObject"]),
                "params": dict(sorted(params.items()))}

    def ancestors(self, cls: str) -> list[str]:
        result, current = [], self.classes.get(cls, ("", None))[1]
        while current is not None:
            result.append(current)
            current = self.classes.get(current, ("", None))[1]
        return result

    def response(self, cls: str) -> dict[str, Any]:
        def fields(name: str) -> list[str]:
            text = self.files[self.classes[name][0]]
            own = string_constants(text)
            names = []
            for match in re.finditer(r"@SerializedName\s*\(", text):
                body, _ = balanced(text, match.end() - 1)
                args = split_top(body)
                names.append(literal(args[0].split("=", 1)[-1] if "=" in args[0] else args[0], self.constants, own))
            return names

        inherited: list[str] = []
        for base in self.ancestors(cls):
            if base in self.classes:
                inherited += [f for f in fields(base) if f not in inherited]
        path = self.classes[cls][0]
        return {"path": path, "extends": self.classes[cls][1], "fields": fields(cls), "inherited": inherited}

    def by_api_name(self) -> dict[str, str]:
        names = {}
        for path, text in self.files.items():
            if "@APICommand" not in text or "/command/" not in path:
                continue
            decl = class_decl(text)
            for args in annotations(text, "APICommand"):
                if decl is not None and "name" in args:
                    names.setdefault(literal(args["name"], self.constants, string_constants(text)), decl[0])
        return names


def build(files: dict[str, str], commit: str | None, commands: tuple[str, ...]) -> dict[str, Any]:
    source = Source(files)
    by_name = source.by_api_name()
    missing = [name for name in commands if name not in by_name]
    if missing:
        raise Unreadable(f"no @APICommand for {', '.join(missing)}")
    table_commands = {}
    responses: dict[str, Any] = {}
    for name in sorted(commands):
        entry = source.command(by_name[name])
        entry["commit"] = commit
        table_commands[name] = entry
        response = entry["response"]
        if response in source.classes and response not in responses and response != "SuccessResponse":
            responses[response] = dict(source.response(response), commit=commit)
    return {"source": "apache/cloudstack", "generator": "scripts/cloudstack-apitable.py",
            "how": f"Generated from a checkout of apache/cloudstack at {commit} by scripts/cloudstack-apitable.py.",
            "not_included": "BaseCmd's own parameters (response, ...) that the API servlet handles for every "
                            "command",
            "commands": table_commands, "responses": dict(sorted(responses.items()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a clone of apache/cloudstack")
    parser.add_argument("--check", action="store_true", help="compare with the committed table instead of writing")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    commit = git(args.checkout, "rev-parse", "HEAD").strip()
    try:
        table = build(java_files(args.checkout), commit, COMMANDS)
    except Unreadable as error:
        print(f"cloudstack-apitable: {error}", file=sys.stderr)
        return 1
    if args.check:
        current = json.loads(args.out.read_text())["commands"]
        differ = sorted(name for name, entry in table["commands"].items()
                        if current.get(name, {}).get("params") != entry["params"])
        for name in differ:
            print(f"{name}: parameters differ from {args.out}", file=sys.stderr)
        return 1 if differ else 0
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {args.out}: {len(table['commands'])} commands, {len(table['responses'])} response classes "
          f"at {commit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
