"""Maintenance windows (api.common.MaintenanceWindow): whether one is open at a moment, and when it opens next.
Shared by the kinds whose disruptive work waits for a window (router reboots, host turns)."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from ..api.common import MaintenanceWindow

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class WindowState:
    open: bool
    closes: datetime.datetime | None = None
    next_open: datetime.datetime | None = None


def window_state(window: MaintenanceWindow | None, now: datetime.datetime) -> WindowState:
    """Whether `now` (aware) lies in the window; the window's day is the day it opens, in its time zone."""
    if window is None:
        return WindowState(open=True)
    zone = ZoneInfo(window.time_zone)
    local = now.astimezone(zone)
    hour, minute = (int(p) for p in window.start.split(":"))
    length = datetime.timedelta(minutes=window.duration_minutes)
    for offset in range(-1, 8):
        day = (local + datetime.timedelta(days=offset)).date()
        opening = datetime.datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        if WEEKDAYS[opening.weekday()] not in window.days:
            continue
        if opening <= local < opening + length:
            return WindowState(open=True, closes=(opening + length).astimezone(datetime.timezone.utc))
        if opening > local:
            return WindowState(open=False, next_open=opening.astimezone(datetime.timezone.utc))
    return WindowState(open=False)
