"""Field descriptions say something (issue 13, "Words users read").

The attribute docstrings of the API models become the CRDs' `description`, what `kubectl explain` prints and the
README's field reference. A description that only restates the field's name ("Name.", "Pool UUID." for `poolUUID`,
"`lacp`." for `lacp`) tells the reader nothing: each must say what the field does or holds, and for a spec field
its unit, what its default means and what changing it causes.

The rule, kept simple so that a failure is easy to understand: the description's words, less stop words and the
words of the field's name and of the model that declares it, must leave at least MIN_NEW_WORDS words.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import typing

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

import stackops.api
from stackops.api.common import to_camel
from stackops.api.kinds import KINDS

MIN_NEW_WORDS = 3

STOP_WORDS = frozenset("""
    a an the this that these those it its it's is are was were be been being has have had do does
    of in on at to for from by with into onto as or and nor not no
    what which who whom whose when where whether how
    each any all some one
    """.split())

# "Model.field" → why its description may stay as it is. Empty: every description passes the rule.
EXCEPTIONS: dict[str, str] = {}

API_MODULES = [importlib.import_module(f"stackops.api.{module.name}")
               for module in pkgutil.iter_modules(stackops.api.__path__)]


def words(text: str) -> set[str]:
    """Lower-case words of `text`, camelCase and snake_case split, a plural `s` dropped, single letters and
    stop words left out: `hostTags` → {host, tag}, `heartbeatSR` → {heartbeat, sr}."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text)
    found = set()
    for word in re.findall(r"[A-Za-z0-9]+", text):
        word = word.lower()
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        if len(word) > 1 and word not in STOP_WORDS:
            found.add(word)
    return found


def new_words(description: str, field: str, alias: str, model: str) -> set[str]:
    """The words of `description` that are not in the field's name, its YAML name or its model's name."""
    return words(description) - words(field) - words(alias) - words(model)


def restates(description: str | None, field: str, alias: str = "", model: str = "") -> bool:
    """Whether a description is missing or says no more than the field's name."""
    return description is None or len(new_words(description, field, alias or to_camel(field), model)) < MIN_NEW_WORDS


def _models_in(annotation: object) -> typing.Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for argument in typing.get_args(annotation):
        yield from _models_in(argument)


def _declaring(model: type[BaseModel], name: str) -> type[BaseModel]:
    """The class in `model`'s hierarchy whose own body declares the field (and its docstring)."""
    for cls in model.__mro__:
        if name in inspect.get_annotations(cls):
            return cls
    raise AssertionError(f"{model.__name__}.{name} is declared nowhere")


def api_models() -> list[type[BaseModel]]:
    """Every model the four kinds' specs and statuses reach, and every model a module of stackops.api defines."""
    pending: list[type[BaseModel]] = [m for kind in KINDS for m in (kind.spec, kind.status)]
    pending += [value for module in API_MODULES for value in vars(module).values()
                if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == module.__name__]
    seen: list[type[BaseModel]] = []
    while pending:
        model = pending.pop(0)
        if model in seen:
            continue
        seen.append(model)
        for info in model.model_fields.values():
            pending.extend(_models_in(info.annotation))
    return seen


def declared_fields() -> dict[str, tuple[type[BaseModel], str, FieldInfo]]:
    """"Model.field" → (declaring model, field name, field), each field once, where its docstring is written."""
    fields = {}
    for model in api_models():
        for name, info in model.model_fields.items():
            owner = _declaring(model, name)
            fields[f"{owner.__name__}.{name}"] = (owner, name, owner.model_fields[name])
    return fields


FIELDS = declared_fields()


def test_every_field_is_walked() -> None:
    """The walk reaches spec and status fields of every kind, the shared models and inherited fields once."""
    for expected in ("XenPoolSpec.members", "KvmHostSpec.address", "SystemVMTemplateSpec.version",
                     "CloudStackReleaseSpec.builder", "XenPoolStatus.pool_uuid", "RouterRetry.job_id",
                     "ResourceCommon.management_policy", "Status.conditions", "Condition.reason",
                     "SecretReference.name", "SSHKeySecretRef.key", "SSHSettings.host_key", "HeartbeatSRSelector.uuid"):
        assert expected in FIELDS
    assert "KvmHostSpec.management_policy" not in FIELDS  # inherited: checked where it is written
    assert len(FIELDS) > 250


def test_every_description_says_more_than_the_field_name() -> None:
    failing = []
    for where, (owner, name, info) in FIELDS.items():
        if where in EXCEPTIONS:
            continue
        if restates(info.description, name, info.alias or "", owner.__name__):
            failing.append(f"{where} ({owner.__module__}): {info.description!r}")
    assert not failing, (f"{len(failing)} field description(s) missing or only restating the field's name; say "
                         "what the field does, its unit and default, and what changing it causes:\n"
                         + "\n".join(failing))


def test_exceptions_are_still_needed() -> None:
    for where, reason in EXCEPTIONS.items():
        assert reason.strip(), where
        assert where in FIELDS, f"{where} is no field any more: drop its exception"
        owner, name, info = FIELDS[where]
        assert restates(info.description, name, info.alias or "", owner.__name__), \
            f"{where} passes the rule now: drop its exception"


@pytest.mark.parametrize("description, field, model", [
    (None, "name", "Bond"),
    ("", "name", "Bond"),
    ("Name.", "name", "SecretReference"),
    ("Name of the Secret.", "name", "SecretReference"),
    ("Timeout in seconds.", "timeout_seconds", "HASettings"),
    ("`lacp`.", "lacp", "Bond"),
    ("`bond_mode`.", "bond_mode", "Bond"),
    ("Pool UUID.", "pool_uuid", "XenPoolStatus"),
    ("Bond port name.", "name", "Bond"),
    ("Hosts in the pool.", "hosts", "XenPoolStatus"),
    ("SSH port.", "port", "SSHSettings"),
    ("Build host address.", "address", "SSHBuilder"),
    ("Length of the window.", "duration_minutes", "MaintenanceWindow"),
])
def test_restating_descriptions_fail(description: str | None, field: str, model: str) -> None:
    assert restates(description, field, model=model)


@pytest.mark.parametrize("description, field, model", [
    ("Size of the package file in bytes.", "size", "Artifact"),
    ("Why the last attempt failed.", "last_error", "RouterRetry"),
    ("TCP port sshd listens on; changing it reconnects on the next pass.", "port", "SSHSettings"),
    ("Minutes the window stays open from `start`.", "duration_minutes", "MaintenanceWindow"),
])
def test_short_descriptions_with_content_pass(description: str, field: str, model: str) -> None:
    assert not restates(description, field, model=model)
