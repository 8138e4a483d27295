"""When the offices work: Asia/Shanghai, Chinese public holidays and make-up working days.

Holidays come from the ``chinesecalendar`` package, which the State Council's yearly notice
updates (upgrade the package each December). For a year it does not cover yet we fall back
to Monday–Friday and say so in a log line once, rather than failing dispatch.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo

import chinese_calendar

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Office hours of township and county departments (morning and afternoon sessions).
WORKING_HOURS: tuple[tuple[time, time], ...] = ((time(8, 30), time(12, 0)),
                                                (time(14, 0), time(17, 30)))
log = logging.getLogger("griddispatch.calendar")


@lru_cache(maxsize=4096)
def is_working_day(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        _warn_uncovered(day.year)
        return day.weekday() < 5


@lru_cache(maxsize=64)
def _warn_uncovered(year: int) -> None:
    log.warning("chinesecalendar has no holiday data for %d: treating Monday-Friday as working "
                "days; upgrade the package", year)


def is_working_time(instant: datetime,
                    hours: tuple[tuple[time, time], ...] = WORKING_HOURS) -> bool:
    local = instant.astimezone(SHANGHAI)
    if not is_working_day(local.date()):
        return False
    now = local.time()
    return any(start <= now < end for start, end in hours)
