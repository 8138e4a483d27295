"""Working-time arithmetic on the Chinese calendar (Asia/Shanghai)."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.calendar import (
    SHANGHAI,
    add_working_time,
    add_working_times,
    elapsed,
    is_working_day,
    is_working_time,
    working_day_length,
    working_time_between,
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def test_national_day_week_is_off_and_its_make_up_saturday_works() -> None:
    # 2026: 1-7 October off; Saturday 10 October is a make-up working day (调休).
    assert not any(is_working_day(at(f"2026-10-0{d}T10:00").date()) for d in range(1, 8))
    assert is_working_day(at("2026-10-10T10:00").date())
    assert not is_working_day(at("2026-10-11T10:00").date())  # an ordinary Sunday


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
