"""Key-by-key edits of configuration files, keeping everything else in them (comments, other keys, order).

The seeds append with `echo … >>`, which adds a duplicate on every run; here a key is set where it already is
(duplicates removed), or under its commented-out default, or appended once. Pure functions: text in, text out.
Lines are those the file's reader sees; agent.properties is read and written by Java's rules (properties.py).
"""
from __future__ import annotations

import re
from typing import Literal

from . import properties

Style = Literal["libvirt", "properties", "shell"]
Line = tuple[str, str]  # a physical line's content and its terminator ("" for a last line without one)
Value = str | int | bool

# Lines end where the file's reader ends them: libvirt's parser at \n or \r (virconf.c IS_EOL), the shell at \n,
# Java's Properties at \n, \r or \r\n -- never at U+2028, U+0085, \v, \f, \x1c-\x1e as str.splitlines() would.
_SHELL_TERMINATOR = re.compile(r"\n")


def _assignment(style: Style, key: str) -> re.Pattern[str]:
    separator = r"[ \t]*=[ \t]*" if style != "shell" else "="
    return re.compile(rf"^[ \t]*{re.escape(key)}{separator}(.*)$")


def _commented(key: str) -> re.Pattern[str]:
    return re.compile(rf"^[ \t]*#[ \t]*{re.escape(key)}[ \t]*=")


def _lines(text: str | None, style: Style) -> list[Line]:
    """Physical lines; for "properties" the characters are those the agent reads (properties.as_java_reads)."""
    if style == "properties":
        return properties.physical_lines(properties.as_java_reads(text or ""))
    if style == "shell":
        parts = _SHELL_TERMINATOR.split(text or "")
        lines = [(part, "\n") for part in parts[:-1]]
        return lines + [(parts[-1], "")] if parts[-1] else lines
    return properties.physical_lines(text or "")


def _text(lines: list[Line], style: Style) -> str:
    text = "".join(content + (terminator or "\n") for content, terminator in lines)
    return properties.from_java_chars(text) if style == "properties" else text


def render_value(style: Style, value: Value) -> str:
    """How a value is written: libvirt wants integers bare and strings in double quotes; properties are escaped
    as Java's Properties.store escapes them."""
    if style == "libvirt":
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, int):
            return str(value)
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if style == "shell":
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`") + '"'
    return properties.escape(str(value), key=False)


def _line(style: Style, key: str, value: Value) -> str:
    if style == "libvirt":
        return f"{key} = {render_value(style, value)}"
    if style == "properties":
        return properties.line(key, str(value))
    return f"{key}={render_value(style, value)}"


def _found(lines: list[Line], style: Style, key: str) -> list[tuple[int, int, str | None]]:
    """Where `key` is assigned: (first line, last line, value) per assignment, in file order. The value is the
    raw text for libvirt and shell, the unescaped value (None: malformed) for properties."""
    if style == "properties":
        entries = properties.parse([content for content, _ in lines]).entries
        return [(e.first, e.last, e.value) for e in entries if e.key == key]
    pattern = _assignment(style, key)
    matches = [(i, pattern.match(content)) for i, (content, _) in enumerate(lines)]
    return [(i, i, match.group(1).strip()) for i, match in matches if match]


def _comments(lines: list[Line], style: Style) -> list[int]:
    if style == "properties":
        return properties.parse([content for content, _ in lines]).comments
    return [i for i, (content, _) in enumerate(lines) if content.lstrip(" \t").startswith("#")]


def _expected(style: Style, value: Value) -> str:
    return str(value) if style == "properties" else render_value(style, value)


def current_values(text: str | None, keys: list[str], style: Style) -> dict[str, str | None]:
    """The effective value of each key (the last assignment wins), None when unset: the raw value text for
    libvirt and shell, the value Java reads for properties."""
    lines = _lines(text, style)
    values: dict[str, str | None] = {}
    for key in keys:
        found = _found(lines, style, key)
        values[key] = found[-1][2] if found else None
    return values


def set_keys(text: str | None, wanted: dict[str, Value], style: Style) -> str:
    """`text` with every key of `wanted` set exactly once; unchanged when already so. An assignment spanning
    continuation lines is replaced whole; every other line keeps its bytes."""
    lines = _lines(text, style)
    for key, value in wanted.items():
        new = (_line(style, key, value), "\n")
        found = _found(lines, style, key)
        if found:
            (first, last, _), *duplicates = found
            for start, end, _ in reversed(duplicates):
                del lines[start:end + 1]
            lines[first:last + 1] = [new]
            continue
        commented = [i for i in _comments(lines, style) if _commented(key).match(lines[i][0])]
        if commented:
            lines.insert(commented[-1] + 1, new)
            continue
        if style == "properties" and properties.parse([content for content, _ in lines]).open_end:
            lines.append(("", "\n"))  # ends the last line's continuation, which would swallow the new one
        lines.append(new)
    return _text(lines, style)


def needs_change(text: str | None, wanted: dict[str, Value], style: Style) -> dict[str, str]:
    """Keys whose effective value differs from `wanted`, or that are set more than once: key → new line."""
    lines = _lines(text, style)
    changes = {}
    for key, value in wanted.items():
        found = _found(lines, style, key)
        if len(found) != 1 or found[0][2] != _expected(style, value):
            changes[key] = _line(style, key, value)
    return changes


_LOG4J1 = re.compile(r'(<category\s+name="com\.cloud"\s*>\s*<priority\s+value=")([A-Za-z]+)(")', re.S)
_LOG4J2 = re.compile(r'(<Logger\s+name="com\.cloud"[^>]*?\slevel=")([A-Za-z]+)(")', re.S)


def log_level(xml: str | None) -> str | None:
    """The cloudstack-agent's `com.cloud` log level in log4j-cloud.xml (log4j 1 or log4j 2 syntax)."""
    for pattern in (_LOG4J1, _LOG4J2):
        match = pattern.search(xml or "")
        if match:
            return match.group(2).upper()
    return None


def set_log_level(xml: str, level: str) -> str | None:
    """The XML with the `com.cloud` level set (None when the file has no such logger to edit)."""
    for pattern in (_LOG4J1, _LOG4J2):
        if pattern.search(xml):
            return pattern.sub(lambda m: f"{m.group(1)}{level}{m.group(3)}", xml, count=1)
    return None
