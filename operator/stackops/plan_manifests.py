"""The manifests `stackops plan` reads, with where each document and field is, and errors that say where a
manifest is broken — file, document, field, line — without quoting it.

A file may hold Secrets, plain or SOPS-decrypted, and PyYAML's own messages print the offending line of the file
(and quote what it found: an undefined alias `*s3cr3t` is named in the message). So a YAML error is reported
from its marks only: the field is the path of mapping keys and list positions leading to the spot, read from the
parser's events up to it (a key is a name, never a value); what PyYAML says went wrong is kept with anything it
quotes replaced by `…`, except its own token names (`<document start>`, `']'`, `':'`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_OWN_WORDS = re.compile(r"'(<[a-z ]+>|[\[\]{},?:-])'")  # PyYAML's token names: <scalar>, <document start>, ':' …


class ManifestError(Exception):
    """A manifest that cannot be read; the message names where, never the manifest's text."""


@dataclass
class Manifest:
    """One YAML document of a file."""

    file: Path
    number: int  # 1-based, in the file
    document: Any
    node: yaml.Node

    @property
    def where(self) -> str:
        return f"{self.file}, document {self.number}"

    def line(self, path: Sequence[str | int]) -> int | None:
        """The 1-based line where the value at `path` (keys and list indexes) starts, or of its deepest part that
        exists."""
        node = self.node
        for part in path:
            child = None
            if isinstance(node, yaml.MappingNode):
                child = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                child = node.value[part]
            if child is None:
                break
            node = child
        return node.start_mark.line + 1


def _redacted(text: str) -> str:
    return _QUOTED.sub(lambda m: m.group(0) if _OWN_WORDS.fullmatch(m.group(0)) else "'…'", text)


def _field(text: str, index: int) -> tuple[int, str]:
    """(document number, field path) at character `index` of `text`: the mapping keys and list positions of the
    parser's events before it."""
    number = 0
    stack: list[list[Any]] = []  # [kind "map"|"seq", key or index, expecting a key]

    def start_of_node(scalar_key: str | None) -> None:
        """A node starts: the next item of a list, or a mapping's key (its value comes next)."""
        if not stack:
            return
        top = stack[-1]
        if top[0] == "seq":
            top[1] += 1
        elif top[2]:
            top[1], top[2] = scalar_key if scalar_key is not None else "?", False

    def value_done() -> None:
        if stack and stack[-1][0] == "map" and not stack[-1][2]:
            stack[-1][2] = True

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if event.start_mark is not None and event.start_mark.index >= index:
                break
            if isinstance(event, yaml.DocumentStartEvent):
                number, stack = number + 1, []
            elif isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
                is_key = bool(stack) and stack[-1][0] == "map" and stack[-1][2]
                start_of_node(event.value if is_key and isinstance(event, yaml.ScalarEvent) else None)
                if not is_key:
                    value_done()
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                start_of_node(None)
                stack.append(["map", None, True] if isinstance(event, yaml.MappingStartEvent) else ["seq", -1, False])
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                if stack:
                    stack.pop()
                value_done()
    except yaml.YAMLError:
        pass
    path = ""
    for kind, part, expecting_key in stack:
        if kind == "seq" and part >= 0:
            path += f"[{part}]"
        elif kind == "map" and part is not None and not expecting_key:
            path += f".{part}" if path else str(part)
    return max(number, 1), path


def yaml_error(file: Path, text: str, error: yaml.YAMLError) -> ManifestError:
    """`error` as a ManifestError: file, document, line and column, the field, and what went wrong (redacted)."""
    problem = _redacted(" ".join(str(getattr(error, "problem", "") or "").split())) or "not YAML"
    context = _redacted(" ".join(str(getattr(error, "context", "") or "").split()))
    mark = getattr(error, "problem_mark", None)
    start = getattr(error, "context_mark", None) or mark
    if mark is None or start is None:
        return ManifestError(f"{file}: {context + ': ' if context else ''}{problem}")
    number, field = _field(text, min(start.index, mark.index))
    where = f"{file}, document {number}, line {mark.line + 1}, column {mark.column + 1}"
    if start.line != mark.line:
        where += f" (from line {start.line + 1})"
    return ManifestError(f"{where}{', field ' + field if field else ''}: {context + ': ' if context else ''}"
                         f"{problem}")


def load(file: Path) -> Iterator[Manifest]:
    """The documents of one file, with their nodes (for line numbers); ManifestError for YAML that does not
    parse."""
    try:
        text = file.read_text()
    except UnicodeDecodeError as error:
        raise ManifestError(f"{file}: not UTF-8 text (at byte {error.start})") from None
    loader = yaml.SafeLoader(text)
    number = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            number += 1
            yield Manifest(file, number, loader.construct_document(node), node)
    except yaml.YAMLError as error:
        raise yaml_error(file, text, error) from None
    finally:
        loader.dispose()


def read(paths: list[Path]) -> Iterator[Manifest]:
    """Every document of the files and directories (`*.yaml`, `*.yml`, recursively) named."""
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        else:
            files = [path]
        for file in files:
            yield from load(file)
