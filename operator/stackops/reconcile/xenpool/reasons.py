"""XenPool's condition reasons (those more than one kind writes: status.Reason; the XenAPI and CloudStack
drivers': their error classes, e.g. `XenNoMaster.reason`; xapi's error codes pass through as xapi spells them)."""
from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    POOL_CONVERGED = "PoolConverged"  # Ready=True
    MEMBER_UNREACHABLE = "MemberUnreachable"
    INVALID_CA = "InvalidCA"
    MASTER_NOT_IN_POOL = "MasterNotInPool"
    POOL_CHANGE_TIMEOUT = "PoolChangeTimeout"
    # a lost master
    MASTER_UNREACHABLE = "MasterUnreachable"
    MASTER_UNREACHABLE_FROM_OPERATOR_ONLY = "MasterUnreachableFromOperatorOnly"
    MASTER_LOST_HA_WILL_RECOVER = "MasterLostHAWillRecover"
    SUPPORTERS_VIEW_UNAVAILABLE = "SupportersViewUnavailable"
    MASTER_FAILED_OVER = "MasterFailedOver"
    FAILOVER_TIMEOUT = "FailoverTimeout"
    # clones made unique
    MAKE_UNIQUE_NEEDS_SSH = "MakeUniqueNeedsSSH"
    MAKE_UNIQUE_FAILED = "MakeUniqueFailed"
    MAKE_UNIQUE_TIMEOUT = "MakeUniqueTimeout"
    MAKE_UNIQUE_CERTIFICATE = "MakeUniqueCertificate"
    HOST_NOT_FOUND = "HostNotFound"
    # what the plan refuses (Stalled)
    TOO_FEW_HOSTS_FOR_HA = "TooFewHostsForHA"
    DUPLICATE_HOST_UUID = "DuplicateHostUUID"
    DUPLICATE_HOST_NAME = "DuplicateHostName"
    MEMBER_IN_ANOTHER_POOL = "MemberInAnotherPool"
    MEMBER_IS_MASTER_OF_OTHER_HOSTS = "MemberIsMasterOfOtherHosts"
    JOINING_HOST_HAS_RUNNING_VMS = "JoiningHostHasRunningVMs"
    HOST_HAS_RESIDENT_VMS = "HostHasResidentVMs"
    CANNOT_EJECT_MASTER = "CannotEjectMaster"
    HEARTBEAT_SR_NOT_FOUND = "HeartbeatSRNotFound"
    HEARTBEAT_SR_AMBIGUOUS = "HeartbeatSRAmbiguous"
    HEARTBEAT_SR_NOT_SHARED = "HeartbeatSRNotShared"
    # rolling maintenance
    ROLLING = "Rolling"  # Reconciling while a roll goes on
    ROLL_FAILED = "RollFailed"
    ROLL_BLOCKED = "RollBlocked"
    BOOT_TIME_UNKNOWN = "BootTimeUnknown"
    UPDATE_NAME_MISMATCH = "UpdateNameMismatch"
    UPDATE_CHECKSUM_MISMATCH = "UpdateChecksumMismatch"
    DOWNLOAD_FAILED = "DownloadFailed"
    HOST_DID_NOT_RETURN = "HostDidNotReturn"
    HOST_LEFT_POOL = "HostLeftPool"
    WAITING_FOR_MAINTENANCE_WINDOW = "WaitingForMaintenanceWindow"
    # HAConfigured
    HA_AS_SPECIFIED = "HAAsSpecified"
    HA_DIFFERS = "HADiffers"
    # CloudStack registration (Registered, and Ready while it waits)
    CLOUDSTACK_UNAVAILABLE = "CloudStackUnavailable"
    CLUSTER_NOT_XENSERVER = "ClusterNotXenServer"
    CLUSTER_UP = "ClusterUp"
    CLUSTER_UNMANAGED = "ClusterUnmanaged"
    HOSTS_MISSING = "HostsMissing"
    HOSTS_NOT_UP = "HostsNotUp"
    NO_MASTER = "NoMaster"
    CLOUDSTACK = "CloudStack"  # a prefix: Ready's reason while registration waits, CloudStack<Registered's reason>
