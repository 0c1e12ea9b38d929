"""The API endpoint: authentication, fault injection, dispatch and the JSON envelopes.

Mirrors ApiServlet + ApiServer:
- verifyRequest refuses (HTTP 401, errorcode 401, "unable to verify user credentials and/or request
  signature", no cserrorcode) a request without command, for a command that does not exist (API-key
  requests never reach the 432 "Unknown API command" path), without apiKey or signature, with
  signatureVersion=3 and a missing, unparsable or past `expires`, with an unknown apiKey, or with a wrong
  signature. The api-limit check (429) comes after the key lookup and before the signature check, as
  commandAvailable() does.
- errors are `{"<cmd>response": {"uuidList": [], "errorcode": N, "cserrorcode": M, "errortext": "..."}}`
  with HTTP status N; the key is "errorresponse" for an unknown command and for 432.
- success: exactly one top-level key, `<command lowercased>response`.
- `response` must be json here (case-insensitive): CloudStack answers XML without it; the simulator answers
  JSON only and refuses other requests with HTTP 430 and an XML error envelope (after authentication).
- GET and POST are the same to CloudStack (the signature covers the parameters, wherever they came from). For a
  command with a credential among its parameters (`requestHasSensitiveInfo`: addHost, addCluster, createAccount) the audit log
  records `api.sensitive_request` with the HTTP method and the names of the parameters that came in the URL, so
  tests can tell whether a password reached a URL (and with it proxy and access logs).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from stackops_lab.cloudstack import catalog, signing
from stackops_lab.cloudstack.errors import (API_LIMIT_EXCEED, CS_CLOUD_RUNTIME, INTERNAL_ERROR,
                                            MALFORMED_PARAMETER_ERROR, PARAM_ERROR, UNAUTHORIZED, UNAUTHORIZED_TEXT,
                                            UNSUPPORTED_ACTION_ERROR, USER_ERROR_MESSAGE, ApiError)
from stackops_lab.cloudstack.framework import REGISTRY, Command, Request, process
from stackops_lab.cloudstack.state import Account

if TYPE_CHECKING:
    from stackops_lab.cloudstack.simulator import CloudStackSimulator

log = logging.getLogger(__name__)
JSON_TYPE = "application/json; charset=UTF-8"
XML_TYPE = "text/xml; charset=UTF-8"
Answer = tuple[int, str, bytes]
CONTROL_CHARACTERS = re.compile("[\x00-\x09\x0b-\x0c\x0e-\x1f\x7f]")


def json_body(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def xml_error(name: str, body: dict[str, Any], version: str = catalog.CLOUDSTACK_VERSION) -> bytes:
    inner = "".join(f"<{key}>{escape(str(value))}</{key}>" for key, value in body.items() if key != "uuidList")
    return (f'<?xml version="1.0" encoding="UTF-8"?><{name} cloud-stack-version="{version}">'
            f"{inner}</{name}>").encode()


class Api:
    def __init__(self, sim: CloudStackSimulator) -> None:
        self.sim = sim

    def handle(self, params: dict[str, str], method: str = "GET", in_url: tuple[str, ...] = ()) -> Answer:
        """One API request: its parameters (query string and form body merged), the HTTP method, and the names of
        the parameters that came in the query string."""
        response_type = params.get("response")
        as_json = response_type is not None and response_type.lower() == "json"
        name = params.get("command")
        cmd = REGISTRY.get(name) if name else None
        if cmd is not None and cmd.sensitive:
            self.sim.audit_log.record("api.sensitive_request", command=cmd.name, method=method,
                                      url_parameters=sorted(in_url))
        try:
            caller = self.verify(params, name, cmd)
            assert cmd is not None
            if self.sim.dice.internal_error():
                self.sim.audit_log.record("fault.error_530", command=cmd.name)
                raise ApiError(INTERNAL_ERROR, USER_ERROR_MESSAGE, CS_CLOUD_RUNTIME)
            if not as_json:
                raise ApiError(MALFORMED_PARAMETER_ERROR, "The lab CloudStack simulator answers JSON only: add "
                                                          "response=json to the request")
            payload = self.dispatch(cmd, caller, params)
            return 200, JSON_TYPE, json_body({cmd.response_name: payload})
        except Exception as unexpected:  # never drop the connection: answer like ApiServer's catch-all
            if isinstance(unexpected, ApiError):
                error = unexpected
            else:
                log.exception("request %s failed", name)
                error = ApiError(INTERNAL_ERROR, str(unexpected) or type(unexpected).__name__, CS_CLOUD_RUNTIME)
            key = "errorresponse" if cmd is None or error.code == UNSUPPORTED_ACTION_ERROR else cmd.response_name
            if as_json:
                return error.code, JSON_TYPE, json_body({key: error.body()})
            return error.code, XML_TYPE, xml_error(key, error.body(), self.sim.version)

    def verify(self, params: dict[str, str], name: str | None, cmd: Command | None) -> Account:
        """ApiServer.verifyRequest; raises the 401 (or 429) answer."""
        sim = self.sim
        refused = ApiError(UNAUTHORIZED, UNAUTHORIZED_TEXT, None)
        if cmd is None:
            sim.audit_log.record("api.refused", command=name, reason="unknown command" if name else "no command")
            raise refused
        api_key = signing.find(params, "apiKey")
        if api_key is None or signing.find(params, "signature") is None:
            sim.audit_log.record("api.refused", command=name, reason="missing apiKey or signature")
            raise refused
        if signing.find(params, "signatureVersion") == "3":
            expires = signing.find(params, "expires")
            parsed = signing.parse_expires(expires) if expires is not None else None
            if parsed is None or parsed < datetime.now(timezone.utc):
                sim.audit_log.record("api.refused", command=name, reason="missing, unparsable or past expires")
                raise refused
        with sim.state.lock:
            accounts = [a for a in sim.state.values("account") if a.api_key is not None and a.api_key == api_key]
        if not accounts:
            sim.audit_log.record("api.refused", command=name, reason="unknown apiKey")
            raise refused
        account = accounts[0]
        if sim.dice.rate_limited():
            sim.audit_log.record("fault.rate_limit", command=name)
            raise ApiError(API_LIMIT_EXCEED, "The given user has reached his/her account api limit, please retry "
                                             "after [1000] ms.")
        assert account.secret_key is not None
        if not signing.verify(params, account.secret_key):
            sim.audit_log.record("api.refused", command=name, reason="bad signature or expired")
            raise refused
        return account

    def dispatch(self, cmd: Command, caller: Account, params: dict[str, str]) -> dict[str, Any]:
        sim = self.sim
        for key, value in params.items():  # ApiServer.checkCharacterInkParams
            if key != "activationrule" and CONTROL_CHARACTERS.search(value):
                raise ApiError(PARAM_ERROR, "Received value containing illegal ASCII non-printable characters for "
                                            f"parameter {key}")
        try:
            with sim.state.lock:
                values = process(sim, cmd, params)
                request = Request(sim=sim, caller=caller, values=values, raw=params, command=cmd)
                if cmd.locked:
                    return cmd.handler(request)
            return cmd.handler(request)
        except ApiError:
            raise
        except Exception as error:  # ApiServer.handleRequest: anything else is an internal error
            log.exception("command %s failed", cmd.name)
            raise ApiError(INTERNAL_ERROR, str(error) or type(error).__name__, CS_CLOUD_RUNTIME) from error
