"""Holiday years entered by the operators, from the State Council's notice itself.

``chinesecalendar`` carries the public holidays one year at a time and is released some
weeks after the State Council's yearly notice (国务院办公厅关于部分节假日安排的通知, usually
published in November). Until a release has the new year, working-time limits that run into
it count Monday to Friday, so a deadline over the Spring Festival comes out days early.
``rules/reference/holidays.yaml`` (optional) lets operators enter a year's days off and
make-up working days from the notice; for a year listed there it replaces the package's
data, so it can also correct a package error. ``engine.calendar`` applies it.
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from engine.calendar import HolidayYears
from engine.yamlfile import FileProblem, FileProblems, load_yaml, validate


class HolidayYearFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notice: str = Field(min_length=1, description="the notice the days come from, by its "
                                                  "number, e.g. 国办发明电〔2026〕N号")
    days_off: list[date] = Field(min_length=1, description="every day off (放假) of the "
                                                           "year's holidays (weekend days may "
                                                           "be left out)")
    workdays: list[date] = Field(default_factory=list,
                                 description="make-up working days (调休上班): the Saturdays "
                                             "and Sundays that are worked")


class HolidaysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    years: dict[int, HolidayYearFile] = Field(default_factory=dict)


def load_holidays(path: Path) -> HolidayYears:
    """The entered years (none when the file is absent); problems name file and line."""
    if not path.exists():
        return HolidayYears()
    doc = load_yaml(path)
    parsed = validate(doc, HolidaysFile)
    problems: list[FileProblem] = []
    for year, entry in parsed.years.items():
        for key in ("days_off", "workdays"):
            for i, day in enumerate(getattr(entry, key)):
                where = ("years", str(year), key, i)  # the document keys years as text
                if day.year != year:
                    problems.append(doc.problem(where, f"{day} is listed under {year}: move "
                                                       f"it to its own year"))
                elif key == "workdays" and day.weekday() < 5:
                    problems.append(doc.problem(where, f"{day} is a weekday, a working day "
                                                       "anyway: list only the weekend days "
                                                       "the notice makes working days"))
                elif key == "workdays" and day in entry.days_off:
                    problems.append(doc.problem(where, f"{day} is both a day off and a "
                                                       "working day: keep the one the notice "
                                                       "says"))
    if problems:
        raise FileProblems(problems)
    digest = hashlib.sha1(path.read_bytes(), usedforsecurity=False).hexdigest()[:8]
    return HolidayYears(
        {year: frozenset(e.days_off) for year, e in parsed.years.items()},
        {year: frozenset(e.workdays) for year, e in parsed.years.items()},
        digest if parsed.years else "")
