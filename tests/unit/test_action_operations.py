"""Every action the reconcilers can plan declares what it does to the infrastructure (`Action.operation`: add,
remove or change), which `stackops plan` shows as `+`, `-`, `~` (test_plan_command.py) without reading the
description's verb."""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil

import stackops.reconcile
from stackops.reconcile.base import Action

OPERATIONS = {"add", "remove", "change"}


def action_classes() -> list[type[Action]]:
    for module in pkgutil.walk_packages(stackops.reconcile.__path__, "stackops.reconcile."):
        importlib.import_module(module.name)
    found, todo = [], list(Action.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.startswith("stackops.") and cls.describe is not Action.describe:  # not a base (PoolAction)
            found.append(cls)
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def declared(cls: type[Action]) -> str | None:
    """The class's operation, or the default of its `operation` field (one class, several operations)."""
    fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
    if "operation" in fields:
        return fields["operation"].default  # type: ignore[return-value]
    return getattr(cls, "operation", None)


def test_every_action_class_declares_its_operation() -> None:
    classes = action_classes()
    assert len(classes) >= 30  # the four kinds' actions were found
    undeclared = [f"{c.__module__}.{c.__qualname__}" for c in classes if declared(c) not in OPERATIONS]
    assert undeclared == []


def test_the_base_class_has_no_default() -> None:
    assert "operation" not in vars(Action) and not hasattr(Action, "operation")
