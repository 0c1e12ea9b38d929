"""kstatus conditions: the one place status conditions are computed.

Every kind reports `Ready`, `Reconciling` and `Stalled` (kstatus' abnormal-true pair) plus its domain
conditions. A condition keeps its `lastTransitionTime` while its status stays the same.

Condition types are `ConditionType`'s members. Reasons are enums too: `Reason` here for those more than one kind
writes (or code every kind shares: the handlers, drivers/secrets.py, reconcile/base.py), `reconcile/<kind>/reasons.py`
for a kind's own. All are `StrEnum`s, so a member is its string everywhere; what reaches status, Events, JSON or YAML
is made a plain `str` at the boundary (`ConditionState`, `ReconcileError`, the handlers' Event sink), since YAML's
safe dumper refuses a str subclass. The typed errors of the drivers (SSH, XenAPI, CloudStack) keep a `reason` per
error class: the class is the reason's type. xapi's error codes pass through as xapi spells them.
"""
from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]
MAX_MESSAGE = 1024


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class ConditionType(enum.StrEnum):
    """Every condition type the operator writes."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    REACHABLE = "Reachable"  # KvmHost, XenPool, CloudStackRelease: the host or pool answers
    REGISTERED = "Registered"  # KvmHost, XenPool: in CloudStack
    CONFIGURED = "Configured"  # KvmHost: the host matches the spec
    HA_CONFIGURED = "HAConfigured"  # XenPool
    TEMPLATES_READY = "TemplatesReady"  # SystemVMTemplate's rollout stages
    ACTIVATED = "Activated"
    SYSTEM_VMS_REPLACED = "SystemVMsReplaced"
    ROUTERS_UPGRADED = "RoutersUpgraded"


KSTATUS = (ConditionType.READY, ConditionType.RECONCILING, ConditionType.STALLED)
"""The conditions every kind writes through the helpers below; the others are a kind's domain conditions."""


class Reason(enum.StrEnum):
    """The reasons written by code every kind shares (handlers, drivers/secrets.py, drivers/configmaps.py,
    reconcile/base.py, reconcile/cloudstack.py, reconcile/maintenance.py) or by more than one kind. A kind's own
    reasons: `reconcile/<kind>/reasons.py`."""

    INVALID_SPEC = "InvalidSpec"
    INTERNAL_ERROR = "InternalError"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_KEY_MISSING = "SecretKeyMissing"
    SECRET_FORBIDDEN = "SecretForbidden"
    SECRET_UNREADABLE = "SecretUnreadable"
    CREDENTIAL_DESTINATIONS_INVALID = "CredentialDestinationsInvalid"
    CREDENTIAL_NOT_ALLOWED = "CredentialNotAllowed"
    CONFIG_MAP_NOT_FOUND = "ConfigMapNotFound"
    CONFIG_MAP_KEY_MISSING = "ConfigMapKeyMissing"
    CONFIG_MAP_FORBIDDEN = "ConfigMapForbidden"
    CONFIG_MAP_UNREADABLE = "ConfigMapUnreadable"
    INSECURE_ENDPOINT = "InsecureEndpoint"
    MAINTENANCE_FAILED = "MaintenanceFailed"
    MAINTENANCE_TIMEOUT = "MaintenanceTimeout"
    # KvmHost and XenPool
    CONVERGING = "Converging"
    DRIFT_OBSERVED = "DriftObserved"
    ZONE_NOT_FOUND = "ZoneNotFound"
    POD_NOT_FOUND = "PodNotFound"
    REGISTRATION_FAILED = "RegistrationFailed"
    NOT_REGISTERED = "NotRegistered"  # Registered=False
    # KvmHost, XenPool and CloudStackRelease: Reachable=True
    CONNECTED = "Connected"
    # the webhook notices (reconcile/notify.py): SystemVMTemplate's rollout, XenPool's rolling maintenance
    NOTIFICATION_FAILED = "NotificationFailed"
    WEBHOOK_ADDRESS_NOT_ALLOWED = "WebhookAddressNotAllowed"


def plain(value: str) -> str:
    """A reason or condition type as a plain `str`: an enum member is a str subclass, which YAML's safe dumper
    refuses. (Anything that is not a str is returned as it is: a bug shows in status as it did before.)"""
    return str(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class ConditionState:
    """What a condition should say; the helper adds times and generations. `type` and `reason` are kept as plain
    strings, whether given as enum members or not."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", plain(self.type))
        object.__setattr__(self, "reason", plain(self.reason))
        object.__setattr__(self, "message", plain(self.message))


def _clean(message: str) -> str:
    """One paragraph, bounded: status is read by people and tools, never a traceback."""
    text = " ".join(message.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def merge_conditions(existing: list[dict[str, Any]] | None, wanted: list[ConditionState], generation: int,
                     timestamp: str | None = None) -> list[dict[str, Any]]:
    """The new condition list: `wanted` replaces same-typed conditions; others are kept as they were."""
    timestamp = timestamp or now()
    previous = {c.get("type"): c for c in existing or [] if isinstance(c, dict)}
    result: dict[str, dict[str, Any]] = {t: dict(c) for t, c in previous.items()}
    for state in wanted:
        old = previous.get(state.type)
        changed = old is None or old.get("status") != state.status
        result[state.type] = {
            "type": state.type,
            "status": state.status,
            "reason": state.reason,
            "message": _clean(state.message),
            "lastTransitionTime": timestamp if changed else old.get("lastTransitionTime", timestamp),
            "observedGeneration": generation,
        }
    order = {type_: index for index, type_ in enumerate(KSTATUS)}
    return sorted(result.values(), key=lambda c: (order.get(c["type"], 3), c["type"]))


def ready(reason: str, message: str = "") -> list[ConditionState]:
    """Converged: Ready=True, not reconciling, not stalled."""
    return [ConditionState(ConditionType.READY, "True", reason, message),
            ConditionState(ConditionType.RECONCILING, "False", reason),
            ConditionState(ConditionType.STALLED, "False", reason)]


def progressing(reason: str, message: str) -> list[ConditionState]:
    """Work in progress or waiting for something that will come (a retry will happen)."""
    return [ConditionState(ConditionType.READY, "False", reason, message),
            ConditionState(ConditionType.RECONCILING, "True", reason, message),
            ConditionState(ConditionType.STALLED, "False", reason)]


def not_ready(reason: str, message: str) -> list[ConditionState]:
    """Not as specified, and deliberately so (e.g. drift left alone under Observe): no work, not stuck."""
    return [ConditionState(ConditionType.READY, "False", reason, message),
            ConditionState(ConditionType.RECONCILING, "False", reason),
            ConditionState(ConditionType.STALLED, "False", reason)]


def stalled(reason: str, message: str) -> list[ConditionState]:
    """Cannot make progress without a change from a person (bad spec, refused operation)."""
    return [ConditionState(ConditionType.READY, "False", reason, message),
            ConditionState(ConditionType.RECONCILING, "False", reason),
            ConditionState(ConditionType.STALLED, "True", reason, message)]


def unknown(reason: str, message: str) -> list[ConditionState]:
    """The operator cannot tell (e.g. no reconciler for this kind yet). Never a fake Ready=True."""
    return [ConditionState(ConditionType.READY, "Unknown", reason, message),
            ConditionState(ConditionType.RECONCILING, "False", reason),
            ConditionState(ConditionType.STALLED, "False", reason)]


def get_condition(status: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for condition in (status or {}).get("conditions") or []:
        if condition.get("type") == type_:
            return condition
    return None
