"""CloudStack's API facts as data (apitable.json): per command its class, whether it is async or a list, its
response class and its parameters (name, type, required, since, entity type); per response class the fields it
serializes. Written by scripts/cloudstack-apitable.py (see that script and the table's `how` for where each
entry was read). The simulator's registered commands are held to it by tests/unit/test_cloudstack_apitable.py."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from stackops_lab.cloudstack.framework import BOOLEAN, INTEGER, LIST, MAP, STRING, UUID, UUID_LIST

PATH = Path(__file__).with_name("apitable.json")


@functools.cache
def load() -> dict[str, Any]:
    return json.loads(PATH.read_text())


def simulator_type(param: dict[str, Any]) -> str:
    """The framework's parameter type for a CommandType (DATE and the other text types: string)."""
    kind = param["type"]
    if kind == "LIST":
        return UUID_LIST if param.get("collection") == "UUID" else LIST
    return {"UUID": UUID, "BOOLEAN": BOOLEAN, "INTEGER": INTEGER, "LONG": INTEGER, "SHORT": INTEGER,
            "MAP": MAP}.get(kind, STRING)


def response_fields(response_class: str) -> set[str]:
    entry = load()["responses"][response_class]
    return set(entry["fields"]) | set(entry["inherited"])
