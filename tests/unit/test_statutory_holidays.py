"""The provisional calendar: statutory holidays for a year with no State Council notice.

Checked against real notices (the chinesecalendar package's 2025 and 2026 years): every
provisional day off must be a real day off, so a provisional deadline is never later than
the notice's. The 2027 figures are the statutory days computed here, not a notice.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import chinese_calendar
import pytest

from engine.calendar import (
    SHANGHAI,
    WORKING_HOURS,
    HolidayYears,
    add_working_time,
    calendar_revision,
    holiday_data_until,
    is_provisional,
    is_working_day,
    provisional_ahead,
    working_day_length,
)
from engine.statutory_holidays import provisional_days_off, statutory_holidays

YEAR_2027 = {
    "元旦": ["2027-01-01"],
    "春节": ["2027-02-05", "2027-02-06", "2027-02-07", "2027-02-08"],
    "清明": ["2027-04-05"],
    "劳动节": ["2027-05-01", "2027-05-02"],
    "端午": ["2027-06-09"],
    "中秋": ["2027-09-15"],
    "国庆": ["2027-10-01", "2027-10-02", "2027-10-03"],
}


def test_2027_statutory_days_follow_the_rules_in_force_since_2025() -> None:
    got = {name: [d.isoformat() for d in days] for name, days in statutory_holidays(2027)}
    assert got == YEAR_2027


@pytest.mark.parametrize(("year", "new_year", "qingming", "dragon", "moon"), [
    (2025, "2025-01-29", "2025-04-04", "2025-05-31", "2025-10-06"),
    (2026, "2026-02-17", "2026-04-05", "2026-06-19", "2026-09-25"),
    (2028, "2028-01-26", "2028-04-04", "2028-05-28", "2028-10-03"),
])
def test_lunar_holidays_fall_on_the_known_dates(year: int, new_year: str, qingming: str,
                                                dragon: str, moon: str) -> None:
    days = dict(statutory_holidays(year))
    assert days["春节"][1].isoformat() == new_year  # 初一; 除夕 is the day before
    assert days["春节"][0] == days["春节"][1] - timedelta(days=1)
    assert days["清明"][0].isoformat() == qingming
    assert days["端午"][0].isoformat() == dragon
    assert days["中秋"][0].isoformat() == moon


def test_weekend_statutory_days_are_made_up_on_the_next_free_weekdays() -> None:
    off = provisional_days_off(2027)
    # 春节: Fri 5 Feb, Sat 6, Sun 7, Mon 8 → the weekend's two days on Tue 9 and Wed 10.
    assert {date(2027, 2, d) for d in (5, 8, 9, 10)} <= off
    assert date(2027, 2, 11) not in off
    # 劳动节 1-2 May 2027 is a weekend: made up on Monday 3 and Tuesday 4 May.
    assert {date(2027, 5, 3), date(2027, 5, 4)} <= off
    # 国庆: Fri 1 Oct, Sat 2, Sun 3 → Mon 4, Tue 5.
    assert {date(2027, 10, 1), date(2027, 10, 4), date(2027, 10, 5)} <= off
    assert all(day.weekday() < 5 for day in off)


def test_a_holiday_on_another_holidays_day_is_made_up_too() -> None:
    # 2028: 中秋 is 3 October, inside 国庆; 1 October is a Sunday. Two days are owed.
    off = provisional_days_off(2028)
    assert {date(2028, 10, d) for d in (2, 3, 4, 5)} <= off
    assert date(2028, 10, 6) not in off


@pytest.mark.parametrize("year", [2025, 2026])
def test_provisional_days_off_are_real_days_off_in_noticed_years(year: int) -> None:
    for day in provisional_days_off(year):
        assert not chinese_calendar.is_workday(day), day


def test_twenty_working_days_from_2026_12_30_skip_new_years_day() -> None:
    assert is_provisional(2027) and not is_provisional(2026)
    start = datetime(2026, 12, 30, 9, 0, tzinfo=SHANGHAI)
    due = add_working_time(start, 20 * working_day_length())
    # Monday to Friday would say 2027-01-27; 1 January is a statutory day off.
    assert due == datetime(2027, 1, 28, 9, 0, tzinfo=SHANGHAI)


def test_the_spring_festival_2027_is_not_worked() -> None:
    for day in (5, 8, 9, 10):
        assert not is_working_day(date(2027, 2, day))
    start = datetime(2027, 2, 4, 9, 0, tzinfo=SHANGHAI)  # Thursday before 除夕
    assert add_working_time(start, working_day_length()) == datetime(
        2027, 2, 11, 9, 0, tzinfo=SHANGHAI)


def test_the_revision_and_the_metric_say_provisional_until_the_notice_is_entered() -> None:
    assert calendar_revision(WORKING_HOURS).count("+provisional-from-2027") == 1
    assert provisional_ahead(date(2026, 12, 7))
    assert not provisional_ahead(date(2025, 6, 1))
    days_off = frozenset(date(2027, 2, d) for d in (5, 8, 9, 10, 11, 12)) | {date(2027, 1, 1)}
    notice = HolidayYears({2027: days_off}, {2027: frozenset({date(2027, 2, 20)})},
                          "notice27")
    assert holiday_data_until(notice) == date(2027, 12, 31)
    assert not is_provisional(2027, notice) and is_provisional(2028, notice)
    revision = calendar_revision(WORKING_HOURS.with_holidays(notice))
    assert "+holidays-notice27" in revision and "+provisional-from-2028" in revision
    # The notice replaces the provisional year: its bridging day 11 Feb is now off, and
    # the worked Saturday 20 Feb counts.
    assert not is_working_day(date(2027, 2, 11), notice)
    assert is_working_day(date(2027, 2, 20), notice)
    assert is_working_day(date(2027, 5, 3), notice)  # the provisional make-up day is gone
