"""Shared by the lab XenAPI simulator's tests: fast timings, an SDK login, a call expected to fail, a poll."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import XenAPI

from stackops_lab.xenapi import XenLab, XenTimings

FAST = XenTimings(ha_enable=0.2, ha_disable=0.1, join=0.2, eject_reboot=0.3, master_transition=0.2, fence=0.2,
                  host_boot=0.2, xapi_restart=0.1, liveness=0.3, tick=0.02)


def login(lab: XenLab, name: str) -> XenAPI.Session:
    session = XenAPI.Session(lab.url(name))
    session.xenapi.login_with_password(lab.username, lab.password, "2.21", "stackops-tests")
    return session


def failure(call: Callable[..., Any], *args: Any) -> list[str]:
    """The ErrorDescription of a call that must fail."""
    with pytest.raises(XenAPI.Failure) as caught:
        call(*args)
    return caught.value.details


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll until truthy; a XenAPI failure or a refused connection (a host rebooting) counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (XenAPI.Failure, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def events(lab: XenLab, name: str) -> list[dict[str, Any]]:
    return [event for event in lab.audit() if event["event"] == name]
