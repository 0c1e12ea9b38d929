"""The lab CloudStack simulator's admin commands next to the ones stackops uses (issue 17), driven through the `cs`
client: the paging rule of every list command, and each entity's list, create, update, delete and lifecycle
commands with CloudStack's required parameters, answers and errors (cited from CloudStack's command classes and
services in the simulator's modules)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from cs import CloudStack, CloudStackApiException
from support.cloudstack_sim import client, simulator

from stackops_lab.cloudstack import CloudStackSimulator


@pytest.fixture(scope="module")
def sim() -> Iterator[CloudStackSimulator]:
    with simulator(routers=6, redundant_pairs=1) as running:
        yield running


@pytest.fixture
def api(sim: CloudStackSimulator) -> CloudStack:
    return client(sim, fetch_result=True)


def refused(call: Callable[..., Any], **params: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(CloudStackApiException) as caught:
        call(**params)
    return caught.value.response.status_code, caught.value.error


def raw(sim: CloudStackSimulator, **params: str) -> tuple[int, dict[str, Any]]:
    """A signed request sent as it is (`cs` adds a pagesize to a `page` of its own)."""
    signed = {**params, "response": "json", "apiKey": sim.api_key}
    CloudStack(sim.endpoint, sim.api_key, sim.secret_key)._sign(signed)
    try:
        with urllib.request.urlopen(f"{sim.endpoint}?{urlencode(signed, quote_via=quote)}", timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_page_and_pagesize_come_together(sim: CloudStackSimulator, api: CloudStack) -> None:
    """BaseListCmd.validateSpecificParameters: `page` without `pagesize` and `pagesize` (other than -1) without
    `page` are refused with 431 (a ServerApiException: 9999); pagesize -1 alone lists everything."""
    assert raw(sim, command="listZones", page="1") == (431, {"listzonesresponse": {
        "uuidList": [], "errorcode": 431, "cserrorcode": 9999,
        "errortext": '"pagesize" parameter is required when "page" is specified'}})
    assert refused(api.listRouters, listall=True, pagesize=2) == (431, {
        "uuidList": [], "errorcode": 431, "cserrorcode": 9999,
        "errortext": '"page" parameter is required when "pagesize" is specified'})
    assert api.listRouters(listall=True, pagesize=-1)["count"] == 6
    assert len(api.listRouters(listall=True, page=2, pagesize=4)["router"]) == 2
