"""When the offices work: Asia/Shanghai, Chinese public holidays and make-up working days.

Holidays come from the ``chinesecalendar`` package, which the State Council's yearly notice
updates (upgrade the package each December). For a year it does not cover yet we fall back
to Monday–Friday and say so in a log line once, rather than failing dispatch.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from importlib.metadata import version
from zoneinfo import ZoneInfo

import chinese_calendar

SHANGHAI = ZoneInfo("Asia/Shanghai")
Sessions = tuple[tuple[time, time], ...]
log = logging.getLogger("griddispatch.calendar")


@dataclass(frozen=True)
class Season:
    """Other office hours between two month-days, inclusive (e.g. summer hours 07-01..09-30)."""

    start: tuple[int, int]  # (month, day)
    end: tuple[int, int]
    sessions: Sessions

    def covers(self, day: date) -> bool:
        return self.start <= (day.month, day.day) <= self.end


@dataclass(frozen=True)
class WorkingHours:
    """A county's office hours: the usual sessions, and seasons that change them.

    Hashable, so the arithmetic below can cache per (day, hours) and a case can carry the
    exact hours it was opened under.
    """

    sessions: Sessions
    seasons: tuple[Season, ...] = ()
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Hashed on every cached lookup (once per day walked): hash the nested tuples once.
        object.__setattr__(self, "_hash", hash((self.sessions, self.seasons)))

    def __hash__(self) -> int:
        return self._hash

    def on(self, day: date) -> Sessions:
        for season in self.seasons:
            if season.covers(day):
                return season.sessions
        return self.sessions


# Office hours of township and county departments (morning and afternoon sessions).
WORKING_HOURS = WorkingHours(((time(8, 30), time(12, 0)), (time(14, 0), time(17, 30))))


@lru_cache(maxsize=64)
def calendar_revision(hours: WorkingHours) -> str:
    """Names the holiday data and the hours a deadline was computed with, for the case."""
    digest = hashlib.sha1(repr(hours).encode(), usedforsecurity=False).hexdigest()[:8]
    return f"chinesecalendar-{version('chinesecalendar')}+hours-{digest}"


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
                    hours: WorkingHours = WORKING_HOURS) -> bool:
    local = instant.astimezone(SHANGHAI)
    if not is_working_day(local.date()):
        return False
    now = local.time()
    return any(start <= now < end for start, end in hours.on(local.date()))


@lru_cache(maxsize=8192)
def _sessions(day: date, hours: WorkingHours) -> tuple[tuple[datetime, datetime], ...]:
    if not is_working_day(day):
        return ()
    return tuple((datetime.combine(day, start, SHANGHAI), datetime.combine(day, end, SHANGHAI))
                 for start, end in hours.on(day))


def working_day_length(hours: WorkingHours = WORKING_HOURS) -> timedelta:
    """How much working time one working day holds (7 h with the default sessions).

    Always the usual sessions, not a season's: "N working days" must mean the same length
    all year, or a limit set in June would shrink in July.
    """
    return sum((datetime.combine(date.min, e) - datetime.combine(date.min, s)
                for s, e in hours.sessions), timedelta())


def add_working_time(start: datetime, duration: timedelta,
                     hours: WorkingHours = WORKING_HOURS) -> datetime:
    """The instant at which ``duration`` of working time has passed since ``start``.

    Nights, lunch breaks, weekends and public holidays do not count; make-up working days do.
    A limit of "N working days" is N × ``working_day_length``. A zero duration started
    outside working time ends at the next session's start, when work can begin.
    """
    return add_working_times(start, (duration,), hours)[0]


def add_working_times(start: datetime, durations: Sequence[timedelta],
                      hours: WorkingHours = WORKING_HOURS) -> list[datetime]:
    """``add_working_time`` for several durations from one start, in one walk of the
    calendar (a case's warnings and breach share their start: one walk, not one each)."""
    if any(d < timedelta(0) for d in durations):
        raise ValueError("duration must not be negative")
    order = sorted(range(len(durations)), key=lambda i: durations[i])
    out: list[datetime] = [start] * len(durations)
    local = start.astimezone(SHANGHAI)
    day, done, passed = local.date(), 0, timedelta(0)
    for _ in range(3660):  # ten years of days: a guard, never reached by real limits
        for begin, end in _sessions(day, hours):
            if end <= local:
                continue
            begin = max(begin, local)
            while done < len(order) and passed + (end - begin) >= durations[order[done]]:
                out[order[done]] = begin + (durations[order[done]] - passed)
                done += 1
            if done == len(order):
                return out
            passed += end - begin
        day += timedelta(days=1)
    raise ValueError(f"{max(durations)} of working time does not fit in ten years")


def working_time_between(start: datetime, end: datetime,
                         hours: WorkingHours = WORKING_HOURS) -> timedelta:
    """Working time elapsed from ``start`` to ``end`` (zero when end is not after start)."""
    if end <= start:
        return timedelta(0)
    total = timedelta(0)
    day, last = start.astimezone(SHANGHAI).date(), end.astimezone(SHANGHAI).date()
    while day <= last:
        for begin, finish in _sessions(day, hours):
            overlap = min(finish, end) - max(begin, start)
            if overlap > timedelta(0):
                total += overlap
        day += timedelta(days=1)
    return total


def natural_time_between(start: datetime, end: datetime,
                         hours: WorkingHours = WORKING_HOURS) -> timedelta:
    """Wall-clock time from ``start`` to ``end``; ``hours`` is ignored (same signature)."""
    return max(end - start, timedelta(0))


def elapsed(start: datetime, end: datetime, unit: str,
            pauses: Sequence[tuple[datetime, datetime]] = (),
            hours: WorkingHours = WORKING_HOURS) -> timedelta:
    """Time that counts against a limit: natural or working, minus pauses (e.g. while the
    department waits on the reporter). Pauses must not overlap one another."""
    measure = working_time_between if unit == "working" else natural_time_between
    total = measure(start, end, hours)
    for pause_start, pause_end in pauses:
        clipped_start, clipped_end = max(pause_start, start), min(pause_end, end)
        if clipped_end > clipped_start:
            total -= measure(clipped_start, clipped_end, hours)
    return total
