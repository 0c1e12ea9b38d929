"""What the observe script reported: the resolved inputs, their hash, and the state of that build on the host.

The script writes one record per line (`\\n` only; a `\\r` or any other character is part of a field), fields
separated by tabs: a key, then the fields that key has. Parts of the records come from files a build can write
(its phase, log, result), so every record is checked: a known key, the right number of fields, each field of its
shape; a free-text field (log lines, messages) is the last one and keeps no control character. Anything else is
refused whole (`BuildOutputInvalid`) rather than half-read: a build's output cannot add a record of its own, and a
malformed line is a clear reason in status instead of a crash on every pass.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .reasons import Reason

PHASES = ("Pending", "Fetching", "Syncing", "Patching", "Versioning", "Building", "Packaging", "Publishing",
          "Succeeded", "Failed")
TEXT_LIMIT = 1000  # characters kept of a free-text field

COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
SHA256 = re.compile(r"[0-9a-f]{64}")
NUMBER = re.compile(r"[1-9][0-9]{0,9}")
DIGITS = re.compile(r"[0-9]{1,15}")
SIDE = re.compile(r"base|upstream")
STATE_NONE = re.compile(r"none")
REASON = re.compile(r"[A-Z][A-Za-z]{1,63}")
TOOL = re.compile(r"[a-z][a-z0-9_]{0,31}")
ABSOLUTE_PATH = re.compile(r"/[^\x00-\x1f\x7f]{0,4095}")
# A plain file name: what an RPM's file name is made of, no leading dot (so neither `.` nor `..`), no `/`.
PLAIN_NAME = re.compile(r"[A-Za-z0-9_+~^-][A-Za-z0-9._+~^-]{0,254}")
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


class BuildOutputInvalid(ValueError):
    """The build host's answer does not parse."""

    reason = Reason.BUILD_OUTPUT_INVALID


class ArtifactNameInvalid(BuildOutputInvalid):
    """An artifact's name is not a plain file name (it would be joined to `publish.directory`)."""

    reason = Reason.ARTIFACT_NAME_INVALID


def plain_name(name: str) -> bool:
    return PLAIN_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class Artifact:
    name: str
    sha256: str
    size: int
    path: str


@dataclass
class BuildFacts:
    """The observe script's records, parsed. `problem` is set when the inputs could not be resolved."""

    missing_tools: list[str] = field(default_factory=list)
    problem: tuple[str, str] | None = None  # (reason, message)
    base: str = ""
    upstream: str = ""
    patches: dict[int, str] = field(default_factory=dict)  # pull request → SHA-256 of its patch
    inputs_hash: str = ""
    current: str = ""  # hash of the build started last in this work dir
    current_running: bool = False  # that build (of other inputs) still runs
    exists: bool = False  # builds/<hash>/ exists
    running_pid: int = 0
    phase: str = ""
    started: int = 0
    finished: int = 0
    progress: str = ""
    base_version: str = ""
    failure: tuple[str, str] | None = None  # (reason, message)
    commit: str = ""
    applied: dict[int, list[str]] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.running_pid > 0


def text(value: str) -> str:
    """A free-text field as status may show it: no control characters, bounded."""
    return CONTROL.sub("\ufffd", value)[:TEXT_LIMIT]


def _shown(value: str) -> str:
    return repr(text(value)[:80])


def _field(value: str, shape: re.Pattern[str], what: str) -> str:
    if shape.fullmatch(value) is None:
        raise BuildOutputInvalid(f"{what} {_shown(value)} is malformed")
    return value


# key → (number of fields, whether the last one is free text)
RECORDS: dict[str, tuple[int, bool]] = {
    "missing": (1, False), "fetch-failed": (2, True), "ref-missing": (2, True), "patch-failed": (2, True),
    "base": (1, False), "upstream": (1, False), "patch": (2, False), "hash": (1, False), "current": (1, False),
    "current-running": (1, False), "state": (1, False), "running": (1, False), "phase": (1, False),
    "started": (1, False), "finished": (1, False), "progress": (1, True), "base_version": (1, True),
    "failure": (2, True), "result": (0, False), "log": (1, True),
}
REPEATED = {"missing", "patch", "result", "log"}
RESULTS: dict[str, tuple[int, bool]] = {"commit": (1, False), "pr": (2, False), "artifact": (4, True)}


def _split(line: str, count: int, free: bool, what: str) -> list[str]:
    fields = line.split("\t", count - 1) if free and count else line.split("\t")
    if len(fields) != count:
        raise BuildOutputInvalid(f"{what} has {len(fields)} field(s), not {count}")
    return fields


def parse(output: str) -> BuildFacts:
    """The records of the observe script; BuildOutputInvalid names the first that does not parse."""
    facts = BuildFacts()
    if output and not output.endswith("\n"):
        raise BuildOutputInvalid("the answer ends inside a record")
    seen: set[str] = set()
    for number, line in enumerate(output.split("\n")[:-1], start=1):
        key, _, rest = line.partition("\t")
        if key not in RECORDS:
            raise BuildOutputInvalid(f"record {number}: unknown key {_shown(key)}")
        if key in seen and key not in REPEATED:
            raise BuildOutputInvalid(f"record {number}: a second {key!r} record")
        seen.add(key)
        if key == "result":
            _result(facts, rest, f"record {number} (result)")
        else:
            count, free = RECORDS[key]
            _record(facts, key, _split(rest, count, free, f"record {number} ({key})"), f"record {number} ({key})")
    return facts


def _record(facts: BuildFacts, key: str, fields: list[str], what: str) -> None:
    first = fields[0]
    if key == "missing":
        facts.missing_tools.append(_field(first, TOOL, what))
    elif key == "fetch-failed":
        side = _field(first, SIDE, what)
        why = text(fields[1]) or "git ls-remote failed"
        facts.problem = (Reason.SOURCE_UNREACHABLE, f"cannot resolve the {side} ref: {why}")
    elif key == "ref-missing":
        side = _field(first, SIDE, what)
        facts.problem = (Reason.REF_NOT_FOUND,
                         f"the {side} repository has no branch, tag or commit {text(fields[1])!r}")
    elif key == "patch-failed":
        facts.problem = (Reason.PATCH_DOWNLOAD_FAILED,
                         f"pull request #{_field(first, NUMBER, what)}: cannot download {text(fields[1])}")
    elif key == "base":
        facts.base = _field(first, COMMIT, what)
    elif key == "upstream":
        facts.upstream = first if first == "-" else _field(first, COMMIT, what)
    elif key == "patch":
        facts.patches[int(_field(first, NUMBER, what))] = _field(fields[1], SHA256, what)
    elif key == "hash":
        facts.inputs_hash = _field(first, SHA256, what)
    elif key == "current":
        facts.current = "" if first == "-" else _field(first, SHA256, what)
    elif key == "current-running":
        _field(first, NUMBER, what)
        facts.current_running = True
    elif key == "state":
        _field(first, STATE_NONE, what)
        facts.exists = False
    elif key == "running":
        facts.running_pid = int(_field(first, NUMBER, what))
    elif key == "phase":
        if first not in PHASES:
            raise BuildOutputInvalid(f"{what}: unknown phase {_shown(first)}")
        facts.exists, facts.phase = True, first
    elif key in ("started", "finished"):
        setattr(facts, key, int(_field(first, DIGITS, what)))
    elif key == "progress":
        facts.progress = text(first)
    elif key == "base_version":
        facts.base_version = text(first)
    elif key == "failure":
        facts.failure = (_field(first, REASON, what), text(fields[1]))
    elif key == "log":
        facts.log_tail.append(text(first))


def _result(facts: BuildFacts, line: str, what: str) -> None:
    """A line of the pipeline's result file: `commit`, `pr` or `artifact` and its fields."""
    kind, _, rest = line.partition("\t")
    if kind not in RESULTS:
        raise BuildOutputInvalid(f"{what}: unknown result {_shown(kind)}")
    what = f"{what[:-1]} {kind})"
    count, free = RESULTS[kind]
    fields = _split(rest, count, free, what)
    if kind == "commit":
        if facts.commit:
            raise BuildOutputInvalid(f"{what}: a second commit")
        facts.commit = _field(fields[0], COMMIT, what)
    elif kind == "pr":
        commits = fields[1].split(" ") if fields[1] else []
        facts.applied[int(_field(fields[0], NUMBER, what))] = [_field(c, COMMIT, what) for c in commits]
    else:
        name, digest, size, path = fields
        if not plain_name(name):
            raise ArtifactNameInvalid(f"the build made an artifact named {_shown(name)}, which is not a plain file "
                                      "name (letters, digits and ._+~^-, no leading dot) and would be "
                                      "joined to the publish directory")
        facts.artifacts.append(Artifact(name, _field(digest, SHA256, what), int(_field(size, DIGITS, what)),
                                        _field(path, ABSOLUTE_PATH, what)))
