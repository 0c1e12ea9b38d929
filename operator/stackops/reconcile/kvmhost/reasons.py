"""KvmHost's condition reasons (those more than one kind writes: status.Reason; the SSH and CloudStack drivers':
their error classes, e.g. `CommandFailed.reason`)."""
from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    CONFIGURED = "Configured"  # Ready=True, Configured=True: the host matches the spec
    PROBE_OUTPUT_INVALID = "ProbeOutputInvalid"  # the probe's answer could not be read: nothing is planned from it
    # applying
    PACKAGE_INSTALL_FAILED = "PackageInstallFailed"
    CHECKPOINT_FAILED = "CheckpointFailed"
    ROLLBACK_PENDING = "RollbackPending"
    ROLLED_BACK = "RolledBack"
    # what the plan refuses (Stalled)
    INTERFACE_IN_USE = "InterfaceInUse"
    PACKAGES_MISSING = "PackagesMissing"
    NO_PACKAGE_MANAGER = "NoPackageManager"
    OPEN_VSWITCH_NOT_RUNNING = "OpenVSwitchNotRunning"
    SELINUX_UNAVAILABLE = "SELinuxUnavailable"
    APPARMOR_UNAVAILABLE = "AppArmorUnavailable"
    SIGNING_KEY_INVALID = "SigningKeyInvalid"
    CLIENT_CERTIFICATE_INVALID = "ClientCertificateInvalid"
    # CloudStack registration (Registered, and Ready while it waits)
    CLUSTER_NOT_FOUND = "ClusterNotFound"
    CLUSTER_NOT_KVM = "ClusterNotKVM"
    REGISTRATION_REFUSED = "RegistrationRefused"
    NO_CLOUDSTACK_DRIVER = "NoCloudStackDriver"
    WAITING_FOR_CONFIGURATION = "WaitingForConfiguration"
    UP = "Up"  # Registered=True: CloudStack's name of the state (the others pass through as CloudStack spells them)
    CLOUDSTACK_HOST = "CloudStackHost"  # a prefix: Ready's reason while registration waits, CloudStackHost<reason>
    # maintenance (Reconciling while it waits; a failure's reason is the step's: MaintenanceFailed, …)
    MAINTENANCE_WAITING = "MaintenanceWaiting"  # the group's lock is held, a peer is not Up, no room for the VMs
    WAITING_FOR_MAINTENANCE_WINDOW = "WaitingForMaintenanceWindow"
    # deletion only: the finalizer retries, no condition is written
    REMOVAL_INCOMPLETE = "RemovalIncomplete"
