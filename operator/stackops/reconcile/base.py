"""What every kind shares: the actions a plan is made of, the context of a pass, its outcome and its errors.
The engine that runs a kind's pass is engine.py."""
from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, ClassVar, Generic, Iterable, Literal, Mapping, TypeVar

from pydantic import BaseModel, SecretStr

from .. import status as st
from ..destinations import ANNOTATION, NOWHERE, safe_destination

SpecT = TypeVar("SpecT", bound=BaseModel)


@dataclass(frozen=True)
class Action:
    """One planned change. Subclasses are small frozen dataclasses that describe themselves; `disruptive` (a class
    attribute or a field) says whether it can interrupt workloads or the management path, and `operation` (a class
    attribute, or a field where one class does several) what it does to the infrastructure: "add" something,
    "remove" something or "change" what is there (`stackops plan` shows them as `+`, `-`, `~`). It has no default:
    every action says."""

    disruptive = False
    operation: ClassVar[Literal["add", "remove", "change"]]
    event_reason: ClassVar[str] = "Applied"
    """The reason of the Event the engine posts once the action is done."""
    failure_reason: ClassVar[str | None] = None
    """The reason of the Warning Event the engine posts when the action fails (None: the failure's own reason)."""

    def describe(self) -> str:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def record(self) -> dict[str, Any]:
        return {"description": self.describe(), "disruptive": self.disruptive}


class ReconcileError(Exception):
    """A failure with a reason for status (a reason enum member, kept as its plain string). `retry` says whether
    trying again later can help (→ `Reconciling`) or a person must act (→ `Stalled`)."""

    def __init__(self, reason: str, message: str, *, retry: bool = True, delay: float = 30.0,
                 conditions: list[st.ConditionState] | None = None):
        super().__init__(message)
        self.reason = st.plain(reason)
        self.retry = retry
        self.delay = delay
        self.conditions = conditions or []  # domain conditions to report with the failure (e.g. Reachable=False)


class CredentialNotAllowed(ReconcileError):
    """A credential would go to a destination its Secret does not list: nothing is sent. A person must widen the
    Secret's list or correct the spec (Stalled; the next resync or change looks again)."""

    reason = st.Reason.CREDENTIAL_NOT_ALLOWED

    def __init__(self, namespace: str, secret: str, refused: list[str], what: str):
        """`refused`: the destinations as messages show them."""
        shown = ", ".join(refused)
        super().__init__(self.reason,
                         f"Secret {namespace}/{secret} does not allow sending it to {shown} ({what}): its annotation {ANNOTATION} "
                         "must list each address (or a CIDR, *.<domain> or URL prefix holding it); nothing was sent",
                         retry=False)
        self.refused = refused


EventSink = Callable[[str, str, str], None]  # (type "Normal"|"Warning", reason, message)
Checkpoint = Callable[[dict[str, Any]], Awaitable[None]]  # status fields (camelCase) written at once


async def keep_in_memory(fields: dict[str, Any]) -> None:
    """The checkpoint of tools without a cluster: nothing is persisted."""


@dataclass
class Context(Generic[SpecT]):
    """What a reconciler gets for one pass over one object (`Context[KvmHostSpec]`: its spec is a KvmHostSpec)."""

    namespace: str
    name: str
    generation: int
    spec: SpecT
    status: dict[str, Any]
    secrets: dict[str, dict[str, SecretStr]]
    event: EventSink
    logger: logging.Logger | logging.LoggerAdapter
    checkpoint: Checkpoint = keep_in_memory
    """Write status fields now, before a step that must survive a crash (e.g. the intent of an HA dance)."""
    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    """The ConfigMaps the spec references: name → key → value (values that are not secret, e.g. a public key)."""

    def secret(self, name: str, key: str) -> SecretStr:
        """A value that goes nowhere a spec chooses (a CA, a public key, or a credential whose destination is in its
        own Secret, as a CloudStack `url`). A credential sent to an address from the spec: `credential`."""
        return self.secrets[name][key]

    def credential(self, name: str, key: str, *, to: Iterable[str] | Mapping[str, str], what: str) -> SecretStr:
        """The value, when the Secret's allowed destinations hold every one of `to` (addresses from the spec, or
        URLs; a mapping gives each the words a message shows instead, e.g. for a URL kept in a Secret); else
        CredentialNotAllowed (Stalled), and nothing is sent anywhere. `what` names the use, e.g. "the XenAPI login"."""
        values = self.secrets[name]
        shown = dict(to) if isinstance(to, Mapping) else {d: safe_destination(d) for d in to}
        refused = getattr(values, "destinations", NOWHERE).refused(shown)
        if refused:
            raise CredentialNotAllowed(self.namespace, name, [shown[d] for d in refused], what)
        return values[key]


@dataclass
class Outcome:
    """What a pass found and did; the handler turns it into status."""

    conditions: list[st.ConditionState]
    fields: dict[str, Any] = field(default_factory=dict)  # kind-specific status fields, camelCase
    drift: list[Action] | None = None  # None: drift unknown (not observed)
    applied: list[Action] = field(default_factory=list)
    requeue_after: float | None = None


class Reconciler(abc.ABC):
    """A kind's reconciler, as the handlers see it."""

    kind: ClassVar[str]
    resync: ClassVar[bool] = True
    """Whether the object is observed again every `spec.resyncIntervalSeconds`."""

    @abc.abstractmethod
    async def reconcile(self, ctx: Context) -> Outcome:
        """One level-based pass: converge (or, under Observe, report)."""

    async def finalize(self, ctx: Context) -> None:
        """Deletion with `deletionPolicy: Delete`: undo what the operator created outside Kubernetes. Also called
        under `Orphan` while `in_flight` says work is under way, to end it with nothing left half-done."""

    def in_flight(self, status: dict[str, Any]) -> bool:
        """Whether `status` records multi-step work under way that deletion must end first, whatever the
        deletionPolicy (a host in maintenance). Default: none."""
        return False

    def not_observable_here(self, spec: Any) -> tuple[str, str] | None:
        """Why (reason, message) a tool outside the operator (`stackops plan`) cannot observe this resource at all
        (a release built in the operator's own container). None: it can. Never a status reason."""
        return None

    def later_stages(self, conditions: list[st.ConditionState]) -> list[str]:
        """What follows the changes a pass lists, for `stackops plan` to show after them (a kind whose work comes
        one stage per pass names the stages still to come). Default: nothing."""
        return []


class PartialApply(ReconcileError):
    """Apply stopped at a failure; `applied` lists what was done before it."""

    def __init__(self, cause: ReconcileError, applied: list[Action]):
        super().__init__(cause.reason, str(cause), retry=cause.retry, delay=cause.delay, conditions=cause.conditions)
        self.applied = applied
