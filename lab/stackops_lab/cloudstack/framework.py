"""Declaring API commands and processing their parameters as CloudStack's dispatcher does.

- ParamProcessWorker: a missing required parameter → 431 "Unable to execute API command <cmd> due to missing
  parameter <name>" (cmd = the response name minus "response"); a uuid that resolves to nothing → 431
  "Unable to execute API command <cmd> due to invalid value. Invalid parameter <name> value=<uuid> due to
  incorrect long value format, or entity does not exist or due to incorrect parameter annotation for the field
  in api cmd class."; "-1" passes as the special value -1; a bad integer → 431 "... due to invalid value <v>
  for parameter <name>"; booleans are Boolean.valueOf (anything but "true" is false); unknown parameters are
  ignored, and so are those the simulated version does not have yet (`Param.since`, from `@Parameter(since = …)`).
- BaseListCmd paging: default and maximum page size 500 (default.page.size); pagesize -1 means unlimited
  (and then page is refused); `count` is the total, the list holds one page. BaseListCmd.validateSpecificParameters
  (SpecificCmdValidationWorker, after the parameters are processed) refuses `pagesize` (other than -1) without
  `page` (431 '"page" parameter is required when "pagesize" is specified') and `page` without `pagesize`
  (431 '"pagesize" parameter is required when "page" is specified'), both as ServerApiException (9999).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stackops_lab.cloudstack import versions
from stackops_lab.cloudstack.errors import ApiError, invalid_value, param_error
from stackops_lab.cloudstack.state import Account, Entity

if TYPE_CHECKING:
    from stackops_lab.cloudstack.simulator import CloudStackSimulator

MAX_PAGE_SIZE = 500
PAGE_SIZE_UNLIMITED = -1

STRING, UUID, BOOLEAN, INTEGER, LIST, UUID_LIST, MAP = "string", "uuid", "boolean", "integer", "list", \
    "uuidlist", "map"


@dataclass(frozen=True)
class Param:
    name: str
    type: str = STRING
    required: bool = False
    entity: tuple[str, ...] = ()  # kinds a UUID parameter may name
    since: str | None = None  # the first CloudStack version with the parameter; older ones ignore it


@dataclass
class Request:
    """A dispatched call: the caller and the processed parameter values (absent parameters are missing)."""

    sim: CloudStackSimulator
    caller: Account
    values: dict[str, Any]
    raw: dict[str, str]
    command: Command

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def has(self, name: str) -> bool:
        return name in self.values


Handler = Callable[[Request], dict[str, Any]]


@dataclass
class Command:
    name: str
    java_class: str
    handler: Handler
    params: tuple[Param, ...] = ()
    is_list: bool = False
    is_async: bool = False
    instance_type: str | None = None  # ApiCommandResourceType of the job's instance
    sensitive: bool = False  # @APICommand(requestHasSensitiveInfo = true): a credential among the parameters
    response_name: str = ""
    all_params: tuple[Param, ...] = field(default=())
    locked: bool = True  # run the handler with the state lock held (addHost takes it itself)

    @property
    def short_name(self) -> str:
        """getCommandName() minus "response", as ParamProcessWorker writes it in its messages."""
        return self.response_name[: -len("response")]


REGISTRY: dict[str, Command] = {}
LIST_PARAMS = (Param("keyword"), Param("page", INTEGER), Param("pagesize", INTEGER))  # BaseListCmd
ASYNC_PARAMS = (Param("starteventid", INTEGER), Param("customid"))  # BaseAsyncCmd


def command(name: str, java_class: str, params: Sequence[Param] = (), *, is_list: bool = False,
            is_async: bool = False, instance_type: str | None = None, locked: bool = True,
            sensitive: bool = False) -> Callable[[Handler], Handler]:
    """Register an API command handler (ApiServer's s_apiNameCmdClassMap)."""

    def register(handler: Handler) -> Handler:
        declared = tuple(params) + (LIST_PARAMS if is_list else ()) + (ASYNC_PARAMS if is_async else ())
        REGISTRY[name] = Command(name=name, java_class=java_class, handler=handler, params=tuple(params),
                                 is_list=is_list, is_async=is_async, instance_type=instance_type,
                                 response_name=name.lower() + "response", all_params=declared, locked=locked,
                                 sensitive=sensitive)
        return handler

    return register


_UUID_FORMAT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _bad_uuid(cmd: Command, param: Param, value: str) -> ApiError:
    return param_error(
        f"Unable to execute API command {cmd.short_name} due to invalid value. Invalid parameter {param.name} "
        f"value={value} due to incorrect long value format, or entity does not exist or due to incorrect "
        f"parameter annotation for the field in api cmd class.")


def _resolve(sim: CloudStackSimulator, cmd: Command, param: Param, value: str) -> Entity | int:
    if value == "-1":
        return -1
    entity = sim.state.resolve(value, param.entity) if _UUID_FORMAT.match(value) else None
    if entity is None:
        raise _bad_uuid(cmd, param, value)
    return entity


def process(sim: CloudStackSimulator, cmd: Command, raw: dict[str, str]) -> dict[str, Any]:
    """ParamProcessWorker.processParameters (call with the state lock held)."""
    values: dict[str, Any] = {}
    for param in cmd.all_params:
        if param.since is not None and versions.compare(sim.version, param.since) < 0:
            continue  # the parameter does not exist in this version: an unknown parameter, ignored
        text = raw.get(param.name)
        if text is None:
            if param.required:
                raise param_error(f"Unable to execute API command {cmd.short_name} due to missing parameter "
                                  f"{param.name}")
            continue
        if param.type == BOOLEAN:
            values[param.name] = text.lower() == "true"
        elif param.type == INTEGER:
            try:
                values[param.name] = int(text) if text.strip() else None
            except ValueError:
                raise param_error(f"Unable to execute API command {cmd.short_name} due to invalid value {text} "
                                  f"for parameter {param.name}") from None
            if values[param.name] is None:
                del values[param.name]
        elif param.type == UUID:
            values[param.name] = _resolve(sim, cmd, param, text)
        elif param.type == UUID_LIST:
            values[param.name] = [_resolve(sim, cmd, param, token) for token in text.split(",") if token]
        elif param.type == LIST:
            values[param.name] = [token for token in text.split(",") if token]
        else:
            values[param.name] = text
    if cmd.is_list:
        check_paging(raw)
    return values


def check_paging(raw: dict[str, str]) -> None:
    """BaseListCmd.validateSpecificParameters: page and pagesize come together (pagesize -1 alone is allowed)."""
    pagesize = raw.get("pagesize")
    if raw.get("page") is None and pagesize is not None and pagesize.strip() != str(PAGE_SIZE_UNLIMITED):
        raise param_error('"page" parameter is required when "pagesize" is specified')
    if pagesize is None and raw.get("page") is not None:
        raise param_error('"pagesize" parameter is required when "page" is specified')


def paginate(request: Request, items: Sequence[Any]) -> tuple[list[Any], int]:
    """BaseListCmd.getPageSizeVal/getStartIndex: the page to show and the total count."""
    page = request.get("page")
    pagesize = request.get("pagesize")
    if pagesize is not None and pagesize != PAGE_SIZE_UNLIMITED and pagesize > MAX_PAGE_SIZE:
        raise invalid_value(f"Page size can't exceed max allowed page size value: {MAX_PAGE_SIZE}")
    if pagesize == PAGE_SIZE_UNLIMITED:
        if page is not None:
            raise invalid_value("Can't specify page parameter when pagesize is -1 (Unlimited)")
        return list(items), len(items)
    if page is not None and page < 1:
        raise param_error("Invalid value provided for API arg: page")
    if pagesize is not None and pagesize < 1:
        raise param_error("Invalid value provided for API arg: pagesize")
    size = pagesize or MAX_PAGE_SIZE
    start = ((page or 1) - 1) * size
    return list(items[start:start + size]), len(items)


def list_response(key: str, items: Sequence[dict[str, Any]], count: int) -> dict[str, Any]:
    """ApiResponseSerializer for a ListResponse: {"count": N, key: [...]}; no count when it is 0; no list key
    when the page is empty."""
    result: dict[str, Any] = {}
    if count:
        result["count"] = count
    if items:
        result[key] = list(items)
    return result


def paged(request: Request, key: str, objects: Sequence[Any], render: Callable[[Any], dict[str, Any]]
          ) -> dict[str, Any]:
    page, count = paginate(request, objects)
    return list_response(key, [render(item) for item in page], count)


def keyword_match(request: Request, *texts: str | None) -> bool:
    keyword = request.get("keyword")
    return keyword is None or any(text and keyword.lower() in text.lower() for text in texts)
