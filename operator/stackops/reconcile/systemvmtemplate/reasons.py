"""SystemVMTemplate's condition reasons (those more than one kind writes: status.Reason; the CloudStack driver's:
its error classes)."""
from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    # Ready: the rollout's stage
    REGISTERING = "Registering"
    ACTIVATING = "Activating"
    REPLACING_SYSTEM_VMS = "ReplacingSystemVMs"
    UPGRADING_ROUTERS = "UpgradingRouters"
    WAITING_FOR_MAINTENANCE_WINDOW = "WaitingForMaintenanceWindow"
    RETRYING_ROUTERS = "RetryingRouters"
    RESOLVING_REBOOTS = "ResolvingReboots"
    ROLLOUT_COMPLETE = "RolloutComplete"  # Ready=True
    ROUTERS_FAILED = "RoutersFailed"
    ROLLOUT_BLOCKED = "RolloutBlocked"
    OS_TYPE_NOT_FOUND = "OsTypeNotFound"
    DRIFT_DETECTED = "DriftDetected"  # Observe
    # the stages' conditions (TemplatesReady, Activated, SystemVMsReplaced, RoutersUpgraded)
    TEMPLATES_READY = "TemplatesReady"
    SETTINGS_APPLIED = "SettingsApplied"
    NOT_ACTIVATED = "NotActivated"
    SYSTEM_VMS_REPLACED = "SystemVMsReplaced"
    NOT_REPLACED = "NotReplaced"
    ROUTERS_UPGRADED = "RoutersUpgraded"
    NOT_UPGRADED = "NotUpgraded"
