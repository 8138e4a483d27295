"""What a case carries about its time limits, and what an escalation record says.

The terms are frozen on the case when it is opened (docs/design.md "SLA and escalation": later
edits apply to new cases only), including the office hours they count in, so a case's deadlines
can be recomputed anywhere, years later, from the case record alone. The computed deadlines and
the timer plan travel on the case too: Open311, the assessment report and the timer workers read
them instead of repeating calendar arithmetic.
"""

from __future__ import annotations

from datetime import date, datetime, time
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.calendar import NO_ENTERED_YEARS, HolidayYears, Season, WorkingHours
from engine.contracts import Platform, Priority

Unit = Literal["working", "natural"]
LimitName = Literal["accept", "resolve", "verify", "supervision", "backlog", "stage"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _hhmm(value: time) -> str:
    return value.strftime("%H:%M")


class EnteredYear(_Wire):
    """One holiday year the rules entered from the State Council's notice."""

    year: int
    days_off: tuple[date, ...]
    workdays: tuple[date, ...] = ()


class HoursSpec(_Wire):
    """Office hours as data: ``[["08:30", "12:00"], ...]``, seasons as MM-DD ranges, and the
    holiday years the rules entered: the whole calendar a case's limits count in, frozen on
    it, so the workers recompute its deadlines with the days it was opened under."""

    sessions: tuple[tuple[str, str], ...]
    seasons: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = ()
    entered: tuple[EnteredYear, ...] = ()
    entered_digest: str = ""

    @classmethod
    def of(cls, hours: WorkingHours) -> HoursSpec:
        def pairs(sessions: tuple[tuple[time, time], ...]) -> tuple[tuple[str, str], ...]:
            return tuple((_hhmm(a), _hhmm(b)) for a, b in sessions)

        holidays = hours.holidays
        entered = tuple(
            EnteredYear(year=year, days_off=tuple(sorted(holidays.days_off.get(year, ()))),
                        workdays=tuple(sorted(holidays.workdays.get(year, ()))))
            for year in sorted(set(holidays.days_off) | set(holidays.workdays)))
        return cls(sessions=pairs(hours.sessions), seasons=tuple(
            (f"{s.start[0]:02d}-{s.start[1]:02d}", f"{s.end[0]:02d}-{s.end[1]:02d}",
             pairs(s.sessions)) for s in hours.seasons), entered=entered,
            entered_digest=holidays.digest)

    def hours(self) -> WorkingHours:
        return _compile_hours(self)


@lru_cache(maxsize=64)
def _compile_hours(spec: HoursSpec) -> WorkingHours:
    def clock(text: str) -> time:
        return time(int(text[:2]), int(text[3:]))

    def sessions(pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[time, time], ...]:
        return tuple((clock(a), clock(b)) for a, b in pairs)

    holidays = HolidayYears({y.year: frozenset(y.days_off) for y in spec.entered},
                            {y.year: frozenset(y.workdays) for y in spec.entered},
                            spec.entered_digest) if spec.entered else NO_ENTERED_YEARS
    return WorkingHours(sessions(spec.sessions), tuple(
        Season((int(a[:2]), int(a[3:])), (int(b[:2]), int(b[3:])), sessions(s))
        for a, b, s in spec.seasons), holidays)


class LadderStep(_Wire):
    after: str = Field(description="delay after the breach, in the terms' unit")
    to: str = Field(description="supervisor, a role (county.zhzx) or a department code")


class SlaTerms(_Wire):
    """The policy as it stood when the case was opened."""

    policy: str
    rules_revision: str
    calendar: str = Field(description="holiday data and office hours the limits count in")
    unit: Unit
    accept: str | None = Field(description="acceptance limit, e.g. 1h; null: none")
    resolve: str
    warn_at: list[int]
    ladder: list[LadderStep]
    hours: HoursSpec
    verify_within: str | None = Field(
        default=None, description="a resolved case nobody verified (回访) is closed this long "
                                  "after its resolution, natural time; null: never")
    # Cases opened before extensions existed get the default policy's allowance.
    max_extensions: int = Field(default=2, description="extensions (延期) a case may be "
                                                       "granted")
    max_extension_total: str = Field(default="10d", description="all extensions together, "
                                                                "in the unit")
    callback_attempts: int = Field(default=3, description="call-backs reaching nobody before "
                                                          "the case closes as unreachable")
    stages: list[Stage] = Field(default_factory=list, description="staged limits, in order; "
                                                                  "empty: none")
    supervise_on_breach: str | None = Field(
        default=None, description="at a resolution breach the command centre supervises the "
                                  "case (督办), the lead to answer within this; null: by hand "
                                  "only")


class SlaTimer(_Wire):
    """One moment at which someone must hear about a limit."""

    escalation_id: str = Field(description="stable id: the same step of the same clock of "
                                           "the same case always has it")
    limit: LimitName
    step: str = Field(description="warning, breach, ladder level1, level2, ...; autoclose "
                                  "(limit verify) closes an unverified resolved case")
    percent: int | None = Field(default=None, description="for warnings: share of the limit")
    due: datetime
    deadline: datetime
    recipient: str
    stage: str | None = Field(default=None, description="with limit stage: which stage")


class Stage(_Wire):
    """One named stage of a staged limit (e.g. illegal building: stop the works in 4 working
    hours, a penalty decision in 7 working days, demolition in 20), counted from the start of
    the resolution clock, each with the policy's warnings and ladder."""

    name: str
    within: str = Field(description="a duration in the terms' unit")


class StageDone(_Wire):
    name: str
    at: datetime
    note: str = ""


class Extension(_Wire):
    """Time added to the resolution limit by a supervisor's approval (延期)."""

    extend_by: str = Field(description="a duration in the terms' unit, e.g. 3d, 8h")
    reason: str
    requested_at: datetime
    approved_by: str
    approved_at: datetime


class CaseSla(_Wire):
    terms: SlaTerms
    accept_from: datetime | None = Field(description="start of the acceptance clock "
                                                     "(dispatch, re-dispatch or reopening)")
    resolve_from: datetime = Field(description="start of the resolution clock")
    paused_since: datetime | None = Field(default=None, description="waiting on the reporter")
    pauses: list[tuple[datetime, datetime]] = Field(default_factory=list)
    accept_by: datetime | None = None
    resolve_by: datetime | None = None
    timers: list[SlaTimer] = Field(default_factory=list,
                                   description="what is still to fire for the running clocks")
    stages_done: list[StageDone] = Field(default_factory=list,
                                         description="stages the lead reported complete")
    stage_deadlines: dict[str, datetime] = Field(default_factory=dict,
                                                 description="each open stage's deadline")
    extensions: list[Extension] = Field(default_factory=list,
                                        description="granted extensions (延期) of the "
                                                    "resolution limit, in the terms' unit")


class Escalation(_Wire):
    """A warning, breach or ladder step, on ``escalations`` and ``escalations.<recipient>``."""

    schema_: Literal["griddispatch.escalation/1"] = Field(
        default="griddispatch.escalation/1", alias="schema")
    escalation_id: str
    case_id: str
    partition_key: str
    limit: LimitName
    step: str
    percent: int | None = None
    recipient: str
    recipient_name: str
    assignee: str = Field(description="the lead department whose limit this is")
    deadline: datetime
    due: datetime
    fired_at: datetime
    matter_code: str
    platform: Platform
    priority: Priority
    grid_code: str | None
    policy: str
    case_version: int = Field(description="the case record version the timer was planned on")
    stage: str | None = Field(default=None, description="with limit stage: which stage")
