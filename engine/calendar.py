"""When the offices work: Asia/Shanghai, Chinese public holidays and make-up working days.

Holidays come from the ``chinesecalendar`` package, which the State Council's yearly notice
updates (upgrade the package each December), or for a year the operators entered from the
notice themselves, from the rules (``engine.reference.holidays``). Entered years are part
of the rule set, not of the process: they travel inside ``WorkingHours`` (``holidays``), so
two rule sets in one process (``rules diff``) each count their own days, and a case's frozen
hours carry the days it was opened under. For a year neither covers, the statutory holidays
are computed (``engine.statutory_holidays``) and the year is *provisional*: the calendar
revision frozen on each case says so, a metric and an alert say so until the notice is
entered, and a log line says so once. Only the notice's rearranged days (调休) are missing
from such a year.
"""

from __future__ import annotations

import hashlib
import logging
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from importlib.metadata import version
from zoneinfo import ZoneInfo

import chinese_calendar

from engine.statutory_holidays import provisional_days_off

SHANGHAI = ZoneInfo("Asia/Shanghai")
Sessions = tuple[tuple[time, time], ...]
log = logging.getLogger("griddispatch.calendar")

# Wall-clock microseconds since 0001-01-01 00:00 in Shanghai: aware datetimes of one tzinfo
# subtract and add as wall clocks, so these ints and ``_ORIGIN + timedelta`` round-trip.
_ORIGIN = datetime(1, 1, 1, tzinfo=SHANGHAI)
_US = timedelta(microseconds=1)
_DAY_US = 86_400_000_000
_GUARD_DAYS = 3660  # ten years of days: never reached by real limits


@dataclass(frozen=True)
class Season:
    """Other office hours between two month-days, inclusive (e.g. summer hours 07-01..09-30)."""

    start: tuple[int, int]  # (month, day)
    end: tuple[int, int]
    sessions: Sessions

    def covers(self, day: date) -> bool:
        return self.start <= (day.month, day.day) <= self.end


@dataclass(frozen=True, eq=False)
class HolidayYears:
    """Years of holidays entered by hand, replacing the package's data for those years.

    Equal and hashed by content (the arithmetic caches per day and holidays), computed once.
    """

    days_off: Mapping[int, frozenset[date]] = field(default_factory=dict)
    workdays: Mapping[int, frozenset[date]] = field(default_factory=dict)
    digest: str = ""  # names the entered data in calendar revisions ("" when none)
    _key: tuple[object, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_key", tuple(
            (year, tuple(sorted(self.days_off.get(year, ()))),
             tuple(sorted(self.workdays.get(year, ()))))
            for year in sorted(set(self.days_off) | set(self.workdays))))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HolidayYears) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)


NO_ENTERED_YEARS = HolidayYears()


@dataclass(frozen=True)
class WorkingHours:
    """A county's office hours: the usual sessions, seasons that change them, and the
    holiday years the rules entered.

    Hashable, so the arithmetic below can cache per (day, hours) and a case can carry the
    exact hours it was opened under.
    """

    sessions: Sessions
    seasons: tuple[Season, ...] = ()
    holidays: HolidayYears = NO_ENTERED_YEARS
    _hash: int = field(init=False, repr=False, compare=False)
    # add_working_times' tables of sessions per year, kept here to save hashing the hours
    # on every call (None: sessions out of order, see _year).
    _years: dict[int, _Year | None] = field(init=False, repr=False, compare=False,
                                            default_factory=dict)

    def __post_init__(self) -> None:
        # Hashed on every cached lookup (once per day walked): hash the nested tuples once.
        object.__setattr__(self, "_hash", hash((self.sessions, self.seasons, self.holidays)))

    def with_holidays(self, holidays: HolidayYears) -> WorkingHours:
        return self if holidays == self.holidays else WorkingHours(self.sessions,
                                                                   self.seasons, holidays)

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
    digest = hashlib.sha1(repr((hours.sessions, hours.seasons)).encode(),
                          usedforsecurity=False).hexdigest()[:8]
    entered = f"+holidays-{hours.holidays.digest}" if hours.holidays.digest else ""
    provisional = f"+provisional-from-{holiday_data_until(hours.holidays).year + 1}"
    return (f"chinesecalendar-{version('chinesecalendar')}{entered}{provisional}"
            f"+hours-{digest}")


@lru_cache(maxsize=4096)
def is_working_day(day: date, holidays: HolidayYears = NO_ENTERED_YEARS) -> bool:
    days_off = holidays.days_off.get(day.year)
    if days_off is not None:
        return (day.weekday() < 5 and day not in days_off) \
            or day in holidays.workdays.get(day.year, ())
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        _warn_provisional(day.year)
        return day.weekday() < 5 and day not in provisional_days_off(day.year)


# How long before the holiday data ends operators are told (`rules check`, and the alert
# GriddispatchHolidayDataEnding in ops/prometheus/alerts.yml): the notice usually comes in
# November, and a 20-working-day limit opened in December already runs into January.
HOLIDAY_WARNING_DAYS = 60


def holiday_data_until(holidays: HolidayYears = NO_ENTERED_YEARS) -> date:
    """The last day of the years with the State Council's holidays, package or entered.

    Working-time limits that run past it count a provisional calendar (see
    ``is_working_day``), so the workers export it
    (``griddispatch_calendar_covered_until_timestamp_seconds``) and an alert asks for an
    upgrade or an entered year weeks before a deadline can cross it.
    """
    last = max(chinese_calendar.constants.holidays).year
    while last + 1 in holidays.days_off:  # entered years extend it only without a gap
        last += 1
    return date(last, 12, 31)


def holiday_data_until_timestamp(holidays: HolidayYears = NO_ENTERED_YEARS) -> float:
    """The end of ``holiday_data_until()`` in Shanghai, as Unix time (for the metric)."""
    return datetime.combine(holiday_data_until(holidays) + timedelta(days=1), time(0),
                            SHANGHAI).timestamp()


def is_provisional(year: int, holidays: HolidayYears = NO_ENTERED_YEARS) -> bool:
    """Whether ``year``'s holidays are computed from the statutory rules (no notice yet)."""
    return year > holiday_data_until(holidays).year


def provisional_ahead(today: date, holidays: HolidayYears = NO_ENTERED_YEARS) -> bool:
    """Whether limits started now can end in a provisional year: this year's or the next
    year's holidays lack the notice (a limit of weeks opened in December runs into it)."""
    return is_provisional(today.year, holidays) or is_provisional(today.year + 1, holidays)


def provisional_now(holidays: HolidayYears = NO_ENTERED_YEARS) -> float:
    """``provisional_ahead`` for today in Shanghai, as the metric's 1 or 0."""
    return 1.0 if provisional_ahead(datetime.now(SHANGHAI).date(), holidays) else 0.0


@lru_cache(maxsize=64)
def _warn_provisional(year: int) -> None:
    log.warning("no State Council notice for %d (chinesecalendar or "
                "rules/reference/holidays.yaml): counting its statutory holidays only, "
                "without the notice's rearranged days; enter the notice when it is published",
                year)


def is_working_time(instant: datetime,
                    hours: WorkingHours = WORKING_HOURS) -> bool:
    local = instant.astimezone(SHANGHAI)
    if not is_working_day(local.date(), hours.holidays):
        return False
    now = local.time()
    return any(start <= now < end for start, end in hours.on(local.date()))


@lru_cache(maxsize=8192)
def _sessions(day: date, hours: WorkingHours) -> tuple[tuple[datetime, datetime], ...]:
    if not is_working_day(day, hours.holidays):
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
    """``add_working_time`` for several durations from one start (a case's warnings and
    breach share their start).

    Every deadline of the route worker's hot path comes through here, so instead of
    walking the calendar day by day in aware datetimes it bisects a cached table of the
    year's sessions in integer microseconds (exact, like timedelta), and builds a datetime
    only for each answer. The answers are the walk's to the microsecond, offset and fold:
    the walk added timedeltas to Shanghai datetimes, which is wall-clock arithmetic, so the
    table counts wall-clock microseconds too.
    """
    amounts = [d // _US for d in durations]
    if amounts and min(amounts) < 0:
        raise ValueError("duration must not be negative")
    local = start.astimezone(SHANGHAI)
    now = (local - _ORIGIN) // _US
    try:
        year = hours._years[local.year]
    except KeyError:
        year = _year(local.year, hours)
    if year is None:
        return _walk(local, durations, hours)
    first = bisect_right(year.ends, now)  # the first session still running or to come
    if first < len(year.ends):
        worked = year.before[first] + max(0, now - year.begins[first])
    else:
        worked = year.total
    out = []
    for amount in amounts:
        target = worked + amount
        if target <= year.total and first < len(year.ends):
            # The first session by whose end the target is worked (a target reached just
            # as a session ends is that session's end, not the next one's start).
            at = bisect_left(year.done_by, target, first)
            out.append(_ORIGIN + _US * (year.begins[at] + target - year.before[at]))
        else:
            later = _in_later_years(local, target - year.total, durations, hours)
            if later is None:
                return _walk(local, durations, hours)
            out.append(later)
    return out


def _in_later_years(local: datetime, left: int, durations: Sequence[timedelta],
                    hours: WorkingHours) -> datetime | None:
    """The instant ``left`` µs of working time into the years after ``local``'s."""
    limit = (local.toordinal() - 1 + _GUARD_DAYS) * _DAY_US  # the day the walk gave up
    number = local.year
    while True:
        number += 1
        try:
            table = hours._years[number]
        except KeyError:
            table = _year(number, hours)
        if table is None:
            return None
        if table.begin >= limit:
            break
        if left <= table.total and table.ends:
            at = bisect_left(table.done_by, left)
            if table.begins[at] >= limit:
                break
            return _ORIGIN + _US * (table.begins[at] + left - table.before[at])
        left -= table.total
    raise ValueError(f"{max(durations)} of working time does not fit in ten years")


@dataclass(frozen=True)
class _Year:
    """A year's sessions, wall-clock µs, in order, with the working time of the year done
    before each begins and by the time each ends: what bisecting needs."""

    begin: int  # 1 January, 00:00
    begins: list[int]
    ends: list[int]
    before: list[int]
    done_by: list[int]
    total: int


def _year(number: int, hours: WorkingHours) -> _Year | None:
    """None when the sessions of a day overlap or run backwards (a hand-built WorkingHours;
    the rules loader refuses those): the day-by-day walk then answers as it always did."""
    table = hours._years[number] = _tabulate(number, hours)
    return table


@lru_cache(maxsize=128)  # by value: an equal WorkingHours built anew shares the tables
def _tabulate(number: int, hours: WorkingHours) -> _Year | None:
    first = date(number, 1, 1)
    day, ordinal = first, first.toordinal()
    begins: list[int] = []
    ends: list[int] = []
    before: list[int] = []
    done_by: list[int] = []
    total = 0
    while day.year == number:
        if is_working_day(day, hours.holidays):
            midnight = (ordinal - 1) * _DAY_US
            previous = midnight
            for start, end in hours.on(day):
                begin, finish = midnight + _clock_us(start), midnight + _clock_us(end)
                if not previous <= begin <= finish:
                    return None
                begins.append(begin)
                ends.append(finish)
                before.append(total)
                total += finish - begin
                done_by.append(total)
                previous = finish
        day, ordinal = day + timedelta(days=1), ordinal + 1
    return _Year((first.toordinal() - 1) * _DAY_US, begins, ends, before, done_by, total)


def _clock_us(clock: time) -> int:
    return ((clock.hour * 60 + clock.minute) * 60 + clock.second) * 1_000_000 \
        + clock.microsecond


def _walk(local: datetime, durations: Sequence[timedelta],
          hours: WorkingHours) -> list[datetime]:
    """The day-by-day walk, for hours ``_year`` cannot tabulate."""
    order = sorted(range(len(durations)), key=lambda i: durations[i])
    out: list[datetime] = [local] * len(durations)
    day, done, passed = local.date(), 0, timedelta(0)
    for _ in range(_GUARD_DAYS):
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
