"""XenAPI error codes as they travel on the wire (ocaml/xapi-consts/api_errors.ml), and the exception the
simulator raises to answer `{'Status': 'Failure', 'ErrorDescription': [CODE, param, …]}`.

Names that differ from their OCaml identifiers (a classic trap): `sr_no_pbds` is "SR_HAS_NO_PBDS",
`license_restriction` is "LICENCE_RESTRICTION", the `pool_joining_*` errors drop the POOL_ prefix
("JOINING_HOST_CANNOT_HAVE_RUNNING_VMS") except the newer ones ("POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION"),
`pool_not_in_emergency_mode` is "NOT_IN_EMERGENCY_MODE", `pool_joining_host_service_failed` is
"JOINING_HOST_SERVICE_FAILED".

An OCaml exception that is not an API error becomes INTERNAL_ERROR [Printexc.to_string e]
(ocaml/xapi/exnHelper.ml), e.g. `Failure("constraint violation: timeout >= 10")` or
`Xapi_pool.Cannot_eject_master`.
"""

from __future__ import annotations

INTERNAL_ERROR = "INTERNAL_ERROR"
MESSAGE_METHOD_UNKNOWN = "MESSAGE_METHOD_UNKNOWN"
MESSAGE_PARAMETER_COUNT_MISMATCH = "MESSAGE_PARAMETER_COUNT_MISMATCH"
FIELD_TYPE_ERROR = "FIELD_TYPE_ERROR"
INVALID_VALUE = "INVALID_VALUE"
SESSION_AUTHENTICATION_FAILED = "SESSION_AUTHENTICATION_FAILED"
SESSION_INVALID = "SESSION_INVALID"
HANDLE_INVALID = "HANDLE_INVALID"
UUID_INVALID = "UUID_INVALID"
HOST_IS_SLAVE = "HOST_IS_SLAVE"
HOST_OFFLINE = "HOST_OFFLINE"
HOST_STILL_BOOTING = "HOST_STILL_BOOTING"
HOST_DISABLED_UNTIL_REBOOT = "HOST_DISABLED_UNTIL_REBOOT"
OTHER_OPERATION_IN_PROGRESS = "OTHER_OPERATION_IN_PROGRESS"
INVALID_IP_ADDRESS_SPECIFIED = "INVALID_IP_ADDRESS_SPECIFIED"
OPERATION_NOT_ALLOWED = "OPERATION_NOT_ALLOWED"
LICENCE_RESTRICTION = "LICENCE_RESTRICTION"
NOT_IN_EMERGENCY_MODE = "NOT_IN_EMERGENCY_MODE"
CANNOT_CREATE_STATE_FILE = "CANNOT_CREATE_STATE_FILE"
SR_HAS_NO_PBDS = "SR_HAS_NO_PBDS"
SR_OPERATION_NOT_SUPPORTED = "SR_OPERATION_NOT_SUPPORTED"
HA_IS_ENABLED = "HA_IS_ENABLED"
HA_NOT_ENABLED = "HA_NOT_ENABLED"
HA_ENABLE_IN_PROGRESS = "HA_ENABLE_IN_PROGRESS"
HA_DISABLE_IN_PROGRESS = "HA_DISABLE_IN_PROGRESS"
HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN = "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN"
HA_FAILED_TO_FORM_LIVESET = "HA_FAILED_TO_FORM_LIVESET"
HA_HOST_CANNOT_ACCESS_STATEFILE = "HA_HOST_CANNOT_ACCESS_STATEFILE"
HA_HEARTBEAT_DAEMON_STARTUP_FAILED = "HA_HEARTBEAT_DAEMON_STARTUP_FAILED"
DESIGNATE_NEW_MASTER_IN_PROGRESS = "DESIGNATE_NEW_MASTER_IN_PROGRESS"
JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS = "JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS"
JOINING_HOST_CANNOT_HAVE_RUNNING_VMS = "JOINING_HOST_CANNOT_HAVE_RUNNING_VMS"
JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS = "JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS"
JOINING_HOST_CONNECTION_FAILED = "JOINING_HOST_CONNECTION_FAILED"
JOINING_HOST_SERVICE_FAILED = "JOINING_HOST_SERVICE_FAILED"
HOSTS_NOT_HOMOGENEOUS = "HOSTS_NOT_HOMOGENEOUS"
POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION = "POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION"
TASK_CANCELLED = "TASK_CANCELLED"


class XapiError(Exception):
    """An API failure: `code` and its string parameters, answered as ErrorDescription [code, *params]."""

    def __init__(self, code: str, *params: object) -> None:
        super().__init__(code, *params)
        self.code = code
        self.params = [str(param) for param in params]

    @property
    def description(self) -> list[str]:
        return [self.code, *self.params]

    def __str__(self) -> str:
        return str(self.description)


def internal(text: str) -> XapiError:
    """INTERNAL_ERROR [text] — an OCaml exception that is not an API error (ExnHelper.error_of_exn)."""
    return XapiError(INTERNAL_ERROR, text)


def failure(message: str) -> XapiError:
    """What `failwith message` becomes on the wire: INTERNAL_ERROR ['Failure("message")']."""
    return internal(f'Failure("{message}")')
