"""Public holidays computed from the statutory rules, for a year with no State Council notice.

The yearly notice (国务院办公厅关于部分节假日安排的通知) arrives in the autumn and the
``chinesecalendar`` package some weeks later; until one of them has a year, working-time
limits that run into it would otherwise count Monday to Friday straight through the Spring
Festival. Counting the statutory days instead is much closer to what offices will do:

- the days are those of 《全国年节及纪念日放假办法》 as amended in force since 2025: 元旦 1 day,
  春节 4 days (除夕 to 初三), 清明 1 day (the solar term), 劳动节 1-2 May, 端午 1 day
  (5th of the 5th lunar month), 中秋 1 day (15th of the 8th), 国庆 1-3 October;
- a statutory day that falls on a Saturday or Sunday is made up on the next working weekday
  after its holiday (补假), as article 6 of that regulation requires;
- the notice's own rearrangements (调休: bridging days off, worked weekends) cannot be
  predicted and are not guessed.

Such a year is *provisional*: ``engine.calendar`` says so in the calendar revision frozen
on each case and in the metrics, and the alert keeps firing until the notice is entered.
Lunar dates and the 清明 solar term come from ``lunar_python`` (6tail's well-kept lunar
calendar, pure Python, covering 1900-2100).
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

from lunar_python import Lunar

# (name, days) per holiday, in calendar order; each day is a date of the Gregorian year.
HolidayDays = tuple[tuple[str, tuple[date, ...]], ...]


def statutory_holidays(year: int) -> HolidayDays:
    """Each statutory holiday of ``year`` with its statutory days (before any 补假)."""
    new_year = Lunar.fromYmd(year, 1, 1).getSolar()
    eve = new_year.next(-1)  # 除夕 is the day before 初一, whether 腊月 has 29 or 30 days
    spring = _day(eve.getYear(), eve.getMonth(), eve.getDay())
    qingming = Lunar.fromYmd(year, 3, 1).getJieQiTable()["清明"]
    dragon_boat = Lunar.fromYmd(year, 5, 5).getSolar()
    mid_autumn = Lunar.fromYmd(year, 8, 15).getSolar()
    return (
        ("元旦", (date(year, 1, 1),)),
        ("春节", tuple(spring + timedelta(days=i) for i in range(4))),
        ("清明", (_day(qingming.getYear(), qingming.getMonth(), qingming.getDay()),)),
        ("劳动节", (date(year, 5, 1), date(year, 5, 2))),
        ("端午", (_day(dragon_boat.getYear(), dragon_boat.getMonth(), dragon_boat.getDay()),)),
        ("中秋", (_day(mid_autumn.getYear(), mid_autumn.getMonth(), mid_autumn.getDay()),)),
        ("国庆", (date(year, 10, 1), date(year, 10, 2), date(year, 10, 3))),
    )


@lru_cache(maxsize=32)
def provisional_days_off(year: int) -> frozenset[date]:
    """The weekdays off in ``year``: each statutory day, and a make-up day for each one that
    falls on a weekend or on another holiday's day (中秋 is 3 October in 2028), taken on the
    first free weekday after its own holiday."""
    off: set[date] = set()
    for _name, days in statutory_holidays(year):
        owed = 0
        for day in days:
            if day.weekday() < 5 and day not in off:
                off.add(day)
            else:
                owed += 1
        day = days[-1]
        while owed:
            day += timedelta(days=1)
            if day.weekday() < 5 and day not in off:
                off.add(day)
                owed -= 1
    return frozenset(day for day in off if day.year == year)


def _day(year: int, month: int, day: int) -> date:
    return date(year, month, day)
