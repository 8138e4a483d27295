"""Working-time arithmetic on the Chinese calendar (Asia/Shanghai)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from functools import lru_cache

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.calendar import (
    SHANGHAI,
    WORKING_HOURS,
    Season,
    WorkingHours,
    add_working_time,
    add_working_times,
    elapsed,
    holiday_data_until,
    holiday_data_until_timestamp,
    is_working_day,
    is_working_time,
    working_day_length,
    working_time_between,
)
from engine.statutory_holidays import provisional_days_off

_US = timedelta(microseconds=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def test_national_day_week_is_off_and_its_make_up_saturday_works() -> None:
    # 2026: 1-7 October off; Saturday 10 October is a make-up working day (调休).
    assert not any(is_working_day(at(f"2026-10-0{d}T10:00").date()) for d in range(1, 8))
    assert is_working_day(at("2026-10-10T10:00").date())
    assert not is_working_day(at("2026-10-11T10:00").date())  # an ordinary Sunday


def test_holiday_data_ends_where_the_package_stops_and_a_provisional_year_follows() -> None:
    until = holiday_data_until()
    assert (until.month, until.day) == (12, 31)
    chinese_calendar.is_workday(until)  # covered: no exception
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(until + timedelta(days=1))
    after = [until + timedelta(days=n) for n in range(1, 15)]
    off = provisional_days_off(until.year + 1)
    assert [is_working_day(d) for d in after] == [d.weekday() < 5 and d not in off
                                                  for d in after]
    assert not is_working_day(until + timedelta(days=1))  # 元旦 is never a working day
    assert holiday_data_until_timestamp() == datetime(until.year + 1, 1, 1,
                                                      tzinfo=SHANGHAI).timestamp()


def test_lunch_break_and_night_are_not_working_time() -> None:
    assert is_working_time(at("2026-11-24T09:00"))
    assert not is_working_time(at("2026-11-24T12:30"))
    assert not is_working_time(at("2026-11-24T20:00"))


def test_four_hours_from_late_morning_skip_lunch() -> None:
    # 11:00 → 12:00 is one hour; the other three run 14:00 → 17:00.
    assert add_working_time(at("2026-11-24T11:00"), timedelta(hours=4)) == at("2026-11-24T17:00")


def test_overnight_limit_continues_next_morning() -> None:
    assert add_working_time(at("2026-11-24T17:00"), timedelta(hours=1)) == at("2026-11-25T09:00")


def test_limit_started_before_the_holiday_week_resumes_after_it() -> None:
    # Wednesday 30 September 17:00 + 1 h: 1-7 October are holidays, so the hour is worked
    # on Thursday 8 October, the first working day after them.
    start = at("2026-09-30T17:00")
    end = add_working_time(start, timedelta(hours=1))
    assert end == at("2026-10-08T09:00")
    assert working_time_between(start, end) == timedelta(hours=1)


def test_five_working_days_span_a_weekend() -> None:
    start = at("2026-11-20T10:00")  # Friday
    end = add_working_time(start, 5 * working_day_length())
    assert end == at("2026-11-27T10:00")  # the next Friday, same time
    assert working_day_length() == timedelta(hours=7)


def test_pause_while_waiting_on_the_reporter_is_not_counted() -> None:
    start, end = at("2026-11-24T09:00"), at("2026-11-24T11:00")
    pause = (at("2026-11-24T09:30"), at("2026-11-24T10:30"))
    assert elapsed(start, end, "working", [pause]) == timedelta(hours=1)
    assert elapsed(start, end, "natural", [pause]) == timedelta(hours=1)


instants = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2026, 12, 1),
                        timezones=st.just(SHANGHAI))
durations = st.integers(min_value=0, max_value=60 * 24 * 20).map(lambda m: timedelta(minutes=m))


@settings(max_examples=200, deadline=None)
@given(instants, durations, durations)
def test_deadline_is_monotone_in_duration(start: datetime, a: timedelta, b: timedelta) -> None:
    short, long = sorted((a, b))
    assert add_working_time(start, short) <= add_working_time(start, long)


@settings(max_examples=200, deadline=None)
@given(instants, durations)
def test_natural_time_is_never_less_than_working_time(start: datetime, d: timedelta) -> None:
    end = start + d
    assert working_time_between(start, end) <= end - start


@settings(max_examples=200, deadline=None)
@given(instants, durations)
def test_adding_then_measuring_gives_the_duration_back(start: datetime, d: timedelta) -> None:
    assert working_time_between(start, add_working_time(start, d)) == d


@settings(max_examples=200, deadline=None)
@given(instants, st.lists(durations, min_size=1, max_size=8))
def test_one_walk_for_several_durations_agrees_with_one_walk_each(
        start: datetime, ds: list[timedelta]) -> None:
    together = add_working_times(start, ds)
    assert together == [add_working_time(start, d) for d in ds]
    assert [working_time_between(start, at) for at in together] == ds


# --- The day-by-day walk add_working_times used before it bisected cached year tables,
# kept verbatim as the reference the fast path must agree with exactly (same instant, same
# tzinfo, same fold), on every kind of start and duration.

@lru_cache(maxsize=8192)
def _reference_sessions(day: date, hours: WorkingHours) -> tuple[tuple[datetime, datetime], ...]:
    if not is_working_day(day):
        return ()
    return tuple((datetime.combine(day, start, SHANGHAI), datetime.combine(day, end, SHANGHAI))
                 for start, end in hours.on(day))


def _reference_add_working_times(start: datetime, durations: Sequence[timedelta],
                                 hours: WorkingHours = WORKING_HOURS) -> list[datetime]:
    if any(d < timedelta(0) for d in durations):
        raise ValueError("duration must not be negative")
    order = sorted(range(len(durations)), key=lambda i: durations[i])
    out: list[datetime] = [start] * len(durations)
    local = start.astimezone(SHANGHAI)
    day, done, passed = local.date(), 0, timedelta(0)
    for _ in range(3660):  # ten years of days: a guard, never reached by real limits
        for begin, end in _reference_sessions(day, hours):
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


SUMMER = WorkingHours(WORKING_HOURS.sessions, (
    Season((7, 1), (9, 30), ((time(8, 30), time(12, 0)), (time(14, 30), time(18, 0)))),))
# Three sessions, two of them touching, an odd minute and a winter season at the year's end.
SPLIT = WorkingHours(((time(8, 0), time(10, 0)), (time(10, 0), time(11, 59, 30)),
                      (time(13, 7), time(16, 45))),
                     (Season((12, 15), (12, 31), ((time(9, 0), time(15, 0)),)),))
# Holidays, make-up working days (2025-09-28 is a Sunday that works), year ends, the
# summer season's edges and days chinesecalendar does not cover (2027).
SPECIAL_DAYS = [date(2025, 9, 28), date(2025, 9, 30), *(date(2025, 10, d) for d in range(1, 12)),
                date(2025, 1, 26), date(2025, 2, 8), date(2025, 12, 31), date(2026, 1, 1),
                date(2026, 1, 4), date(2026, 2, 13), date(2026, 2, 14), date(2026, 6, 30),
                date(2026, 7, 1), date(2026, 9, 20), date(2026, 9, 30), date(2026, 10, 10),
                date(2026, 12, 14), date(2026, 12, 31), date(2027, 1, 4)]
BOUNDARIES = [time(0, 0), time(8, 0), time(8, 30), time(10, 0), time(11, 59, 30), time(12, 0),
              time(13, 7), time(14, 0), time(14, 30), time(16, 45), time(17, 30), time(18, 0),
              time(23, 59, 59, 999999)]
ZONES = [UTC, timezone(timedelta(hours=8)), SHANGHAI]


def _random_start(rng: random.Random) -> datetime:
    if rng.random() < 0.4:
        day = rng.choice(SPECIAL_DAYS)
    else:
        day = date(2025, 1, 1) + timedelta(days=rng.randrange(730))
    if rng.random() < 0.4:
        clock = rng.choice(BOUNDARIES)
    else:
        clock = time(rng.randrange(24), rng.randrange(60), rng.randrange(60),
                     rng.choice([0, rng.randrange(1_000_000)]))
    return datetime.combine(day, clock, SHANGHAI).astimezone(rng.choice(ZONES))


def _random_duration(rng: random.Random, start: datetime, hours: WorkingHours) -> timedelta:
    kind = rng.randrange(5)
    if kind == 0:
        return timedelta(0)
    if kind == 1:  # whole and half working days, and exact session lengths
        return rng.randrange(41) * working_day_length(hours) / 2
    if kind == 2:  # exactly up to a session's begin or end a few days on
        day = start.astimezone(SHANGHAI).date() + timedelta(days=rng.randrange(25))
        clock = rng.choice([t for pair in hours.on(day) for t in pair])
        return working_time_between(start, datetime.combine(day, clock, SHANGHAI), hours)
    if kind == 3:
        return timedelta(minutes=rng.randrange(60 * 24))
    return timedelta(microseconds=rng.randrange(20 * 7 * 3600 * 1_000_000))


def _same(got: list[datetime], want: list[datetime]) -> bool:
    return got == want and [(g.tzinfo, g.utcoffset(), g.fold) for g in got] == [
        (w.tzinfo, w.utcoffset(), w.fold) for w in want]


def test_the_fast_path_gives_exactly_what_the_day_by_day_walk_gave() -> None:
    rng = random.Random(20251001)
    for hours in (WORKING_HOURS, SUMMER, SPLIT):
        for _ in range(2500):
            start = _random_start(rng)
            ds = [_random_duration(rng, start, hours) for _ in range(rng.randrange(1, 5))]
            got = add_working_times(start, ds, hours)
            want = _reference_add_working_times(start, ds, hours)
            assert _same(got, want), (start, ds, hours)
            assert _same([add_working_time(start, ds[0], hours)], want[:1])


def test_the_fast_path_keeps_the_walks_errors_and_edge_cases() -> None:
    start = at("2025-09-30T17:00")
    for ds in ([], [timedelta(0)], [timedelta(days=2000)], [timedelta(hours=1), -_US]):
        try:
            want: list[datetime] | str = _reference_add_working_times(start, ds)
        except ValueError as error:
            want = str(error)
        try:
            got: list[datetime] | str = add_working_times(start, ds)
        except ValueError as error:
            got = str(error)
        assert got == want
    # Shanghai kept daylight saving time from 1986 to 1991: the walk's wall-clock arithmetic
    # across a change, and a start in the hour that happened twice, must survive too.
    for text in ("1990-09-15T17:10:00+00:00", "1990-09-15T16:10:00+00:00",
                 "1990-04-14T17:59:00+00:00", "1986-05-03T23:00:00+00:00"):
        for d in (timedelta(0), timedelta(hours=1), timedelta(days=3)):
            begin = datetime.fromisoformat(text)
            assert _same(add_working_times(begin, [d]), _reference_add_working_times(begin, [d]))


def test_sessions_out_of_order_still_follow_the_walk() -> None:
    # Not valid in a rules file (the loader refuses them), but a hand-built WorkingHours may
    # carry them: the fast path defers to the walk rather than guess.
    odd = WorkingHours(((time(14, 0), time(17, 0)), (time(9, 0), time(15, 0))))
    rng = random.Random(7)
    for _ in range(300):
        start = _random_start(rng)
        ds = [timedelta(minutes=rng.randrange(7 * 60 * 12)) for _ in range(3)]
        assert _same(add_working_times(start, ds, odd),
                     _reference_add_working_times(start, ds, odd))
