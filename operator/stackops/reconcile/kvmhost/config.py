"""Key-by-key edits of configuration files, keeping everything else in them (comments, other keys, order).

The seeds append with `echo … >>`, which adds a duplicate on every run; here a key is set where it already is
(duplicates removed), or under its commented-out default, or appended once. Pure functions: text in, text out.
"""
from __future__ import annotations

import re
from typing import Literal

Style = Literal["libvirt", "properties", "shell"]


def _assignment(style: Style, key: str) -> re.Pattern[str]:
    separator = r"\s*=\s*" if style != "shell" else "="
    return re.compile(rf"^\s*{re.escape(key)}{separator}(.*)$")


def _commented(style: Style, key: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*#\s*{re.escape(key)}\s*=")


def render_value(style: Style, value: str | int | bool) -> str:
    """How a value is written: libvirt wants integers bare and strings in double quotes."""
    if style == "libvirt":
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, int):
            return str(value)
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if style == "shell":
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`") + '"'
    return str(value)


def _line(style: Style, key: str, value: str | int | bool) -> str:
    if style == "libvirt":
        return f"{key} = {render_value(style, value)}"
    return f"{key}={render_value(style, value)}"


def current_values(text: str | None, keys: list[str], style: Style) -> dict[str, str | None]:
    """The effective raw value text of each key (the last assignment wins), None when unset."""
    values: dict[str, str | None] = {key: None for key in keys}
    for line in (text or "").splitlines():
        for key in keys:
            match = _assignment(style, key).match(line)
            if match:
                values[key] = match.group(1).strip()
    return values


def set_keys(text: str | None, wanted: dict[str, str | int | bool], style: Style) -> str:
    """`text` with every key of `wanted` set exactly once; unchanged when already so."""
    lines = (text or "").splitlines()
    for key, value in wanted.items():
        new = _line(style, key, value)
        assigned = [i for i, line in enumerate(lines) if _assignment(style, key).match(line)]
        if assigned:
            first, *duplicates = assigned
            lines[first] = new
            for index in reversed(duplicates):
                del lines[index]
            continue
        commented = [i for i, line in enumerate(lines) if _commented(style, key).match(line)]
        if commented:
            lines.insert(commented[-1] + 1, new)
        else:
            lines.append(new)
    return "\n".join(lines) + "\n"


def needs_change(text: str | None, wanted: dict[str, str | int | bool], style: Style) -> dict[str, str]:
    """Keys whose effective value differs from `wanted`, or that are set more than once: key → new line."""
    changes = {}
    lines = (text or "").splitlines()
    for key, value in wanted.items():
        assigned = [line for line in lines if _assignment(style, key).match(line)]
        expected = render_value(style, value)
        if len(assigned) != 1 or _assignment(style, key).match(assigned[0]).group(1).strip() != expected:  # type: ignore[union-attr]
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
