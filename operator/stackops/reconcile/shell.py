"""Shell scripts that run on hosts: `.sh` files in a `scripts/` directory next to the module that runs them, shipped
as package data and read once, when that module is imported. tests/unit/test_shell_scripts.py runs `shellcheck` on
every one of them.

A value the operator and a script share (a path on the host) is held by a Python module and reaches the script in
a preamble of shell assignments put before its text (after its `#!` line: `with_values`), so it exists once. The
names are upper case: shellcheck takes them for the environment's and does not ask where they are assigned. Values
from the spec never go into a preamble: they are positional arguments.
"""
from __future__ import annotations

import re
import shlex
from importlib.resources import files
from typing import Iterable, Mapping

_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_WORD = re.compile(r"[A-Za-z0-9_./:+@%,=-]+")  # a list element: no blank, quote or glob character

Value = str | Iterable[str]  # a list: for `for x in $NAME`


def load(package: str | None, name: str) -> str:
    """The text of `scripts/<name>` in `package` (the calling module's `__package__`)."""
    if not package:
        raise ValueError(f"{name}: scripts belong to a package")
    return files(package).joinpath("scripts", name).read_text(encoding="utf-8")


def fill(script: str, placeholder: str, text: str) -> str:
    """`script` with its line `placeholder` (there must be exactly one) replaced by `text` (whole lines)."""
    line = f"\n{placeholder}\n"
    if script.count(line) != 1:
        raise ValueError(f"the script must have one line {placeholder}")
    return script.replace(line, "\n" + text + ("" if text.endswith("\n") else "\n"))


def preamble(source: str, values: Mapping[str, Value]) -> str:
    """`NAME=value` lines (quoted); a list becomes its elements separated by spaces."""
    lines = [f"# set by stackops ({source})"]
    for name, value in values.items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"not an upper-case shell name: {name!r}")
        if isinstance(value, str):
            text = value
        else:
            words = list(value)
            bad = [w for w in words if not _WORD.fullmatch(w)]
            if bad:
                raise ValueError(f"{name}: {bad!r} would not survive word splitting")
            text = " ".join(words)
        lines.append(f"{name}={shlex.quote(text)}")
    return "\n".join(lines) + "\n"


def with_values(script: str, source: str, values: Mapping[str, Value]) -> str:
    """`script` with the preamble of `values` before it (after its `#!` line, when it has one)."""
    first, newline, rest = script.partition("\n")
    if first.startswith("#!"):
        return first + newline + preamble(source, values) + rest
    return preamble(source, values) + script
