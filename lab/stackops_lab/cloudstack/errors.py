"""CloudStack API errors: the HTTP status is the `errorcode` (ApiErrorCode.java) and the body carries a
`cserrorcode` (CSExceptionErrorCode.java) chosen by the exception that caused it.

Mirrors how ApiServer/ApiServlet turn exceptions into answers:
- a ServerApiException raised directly (missing parameter, "Unable to execute API command ... due to invalid
  value", API limit) carries cserrorcode 9999;
- an InvalidParameterValueException caught by ApiServer.handleRequest becomes PARAM_ERROR (431) with 4350;
- a CloudRuntimeException becomes INTERNAL_ERROR (530) with 4250;
- the signature check (ApiServlet → getSerializedApiError(int, ...)) sets no cserrorcode at all.
"""

from __future__ import annotations

UNAUTHORIZED = 401
API_LIMIT_EXCEED = 429
MALFORMED_PARAMETER_ERROR = 430
PARAM_ERROR = 431
UNSUPPORTED_ACTION_ERROR = 432
INTERNAL_ERROR = 530
ACCOUNT_ERROR = 531
INSUFFICIENT_CAPACITY_ERROR = 533
RESOURCE_UNAVAILABLE_ERROR = 534
RESOURCE_ALLOCATION_ERROR = 535
RESOURCE_IN_USE_ERROR = 536

CS_SERVER_API = 9999  # org.apache.cloudstack.api.ServerApiException
CS_CLOUD_RUNTIME = 4250  # com.cloud.utils.exception.CloudRuntimeException
CS_INVALID_PARAMETER = 4350  # com.cloud.exception.InvalidParameterValueException
CS_PERMISSION_DENIED = 4365  # com.cloud.exception.PermissionDeniedException
CS_RESOURCE_UNAVAILABLE = 4380  # com.cloud.exception.ResourceUnavailableException

# ApiServlet's text when verifyRequest() refuses a request (bad/missing signature, unknown apiKey, expired,
# unknown command: an API-key request for a command that does not exist is refused here, before dispatch).
UNAUTHORIZED_TEXT = "unable to verify user credentials and/or request signature"
# BaseCmd.USER_ERROR_MESSAGE
USER_ERROR_MESSAGE = "Internal error executing command, please contact your system administrator"


class ApiError(Exception):
    """An error answer: HTTP status `code`, body {uuidList, errorcode, cserrorcode?, errortext}."""

    def __init__(self, code: int, text: str, cs_code: int | None = CS_SERVER_API) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.cs_code = cs_code

    def body(self) -> dict[str, object]:
        """ExceptionResponse as Gson writes it (null fields omitted)."""
        result: dict[str, object] = {"uuidList": [], "errorcode": self.code}
        if self.cs_code is not None:
            result["cserrorcode"] = self.cs_code
        result["errortext"] = self.text
        return result


def param_error(text: str) -> ApiError:
    """ServerApiException(PARAM_ERROR, text): e.g. a missing parameter."""
    return ApiError(PARAM_ERROR, text, CS_SERVER_API)


def invalid_value(text: str) -> ApiError:
    """InvalidParameterValueException thrown by a service, mapped to 431 by ApiServer.handleRequest."""
    return ApiError(PARAM_ERROR, text, CS_INVALID_PARAMETER)


def internal(text: str, cs_code: int = CS_CLOUD_RUNTIME) -> ApiError:
    """CloudRuntimeException (4250), or a ServerApiException(INTERNAL_ERROR) raised directly (9999)."""
    return ApiError(INTERNAL_ERROR, text, cs_code)
