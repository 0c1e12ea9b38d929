"""A spec the models refuse, in words: each failing field by its path in the YAML's camelCase
(`spec.members[0].address`) with the model's message. The input is never quoted (it may be a Secret's value)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from pydantic import ValidationError

# Where a field takes one of several types, pydantic names the branch tried in the location: "int", "str",
# "function-after[…]". They are no part of the field's path.
UNION_TAGS = {"int", "str", "float", "bool", "list", "dict"}


@dataclass(frozen=True)
class FieldError:
    keys: tuple[str | int, ...]  # the field's keys in the document, from "spec"
    path: str  # spec.members[0].address
    message: str


def field_errors(error: ValidationError) -> Iterator[FieldError]:
    """One per error pydantic reports, in its order."""
    for item in error.errors(include_url=False, include_input=False):
        keys: list[str | int] = ["spec"]
        path = "spec"
        for loc in item["loc"]:
            if isinstance(loc, int):
                keys.append(loc)
                path += f"[{loc}]"
            elif loc not in UNION_TAGS and "[" not in loc:
                keys.append(loc)
                path += f".{loc}"
        yield FieldError(tuple(keys), path, item["msg"].removeprefix("Value error, "))


def format_validation_error(error: ValidationError) -> str:
    """`spec.members[0].address: String should match pattern …; …` (a model-level message without a path)."""
    parts: list[str] = []
    for found in field_errors(error):
        part = found.message if found.path == "spec" else f"{found.path}: {found.message}"
        if part not in parts:
            parts.append(part)
    return "; ".join(parts)
