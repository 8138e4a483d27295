"""SLA policies as operators write them in the rule layers, and their overlay per county.

A route rule names a policy (``sla: urgent``); the policy says how long the lead has to
accept (签收) and to resolve (办结), whether that counts natural or working time, when to
warn, and who hears about it after a breach. Limits may defer to the matter catalogue
(``matter``), which already carries each item's statutory time limits, so a policy can be a
frame ("urgent things run on natural time") rather than 232 copies of the catalogue.

A county overlay replaces a policy of the same name wholesale: partial overlays of ladders
and thresholds across three files are too hard to read at 3 a.m.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.calendar import (
    Season,
    WorkingHours,
    calendar_revision,
    working_day_length,
)
from engine.contracts import Priority
from engine.durations import split_duration
from engine.sla.model import HoursSpec, LadderStep, SlaTerms, Stage, Unit

if TYPE_CHECKING:
    from engine.reference.matters import Matter

POLICY_NAME = r"^[a-z0-9][a-z0-9_-]*$"
LADDER_TARGET = (r"^(supervisor|((township|county)\.)?[a-z][a-z0-9-]*"
                 r"|\d{6}(\d{3})?\.[a-z][a-z0-9-]*)$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_MONTH_DAY = re.compile(r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")


def _limit_text(value: str | None) -> str | None:
    if value is not None and value != "matter":
        split_duration(value)
    return value


def _ascending(values: list[int]) -> list[int]:
    if values != sorted(set(values)):
        raise ValueError("warn_at must be ascending percentages without repeats")
    return values


LimitText = Annotated[str | None, AfterValidator(_limit_text)]
Percents = Annotated[list[Annotated[int, Field(gt=0, lt=100)]], AfterValidator(_ascending)]


class LimitsFile(BaseModel):
    """Limits and thresholds; each field left out keeps the policy's (or the catalogue's)."""

    model_config = ConfigDict(extra="forbid")

    accept: LimitText = Field(default=None, description="duration, or 'matter'")
    resolve: LimitText = Field(default=None, description="duration, or 'matter'")
    unit: Literal["working", "natural", "matter"] | None = None
    warn_at: Percents | None = Field(
        default=None, description="percentages of the limit, ascending, e.g. [50, 80]")


class OverrideFile(LimitsFile):
    """Other limits for some matters or priorities inside one policy; first match wins."""

    matters: list[Annotated[str, Field(pattern=r"^\d{2}(\d{2}){0,2}$")]] = Field(
        default_factory=list, description="matter code prefixes")
    priorities: list[Priority] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_condition(self) -> OverrideFile:
        if not (self.matters or self.priorities):
            raise ValueError("an override needs matters or priorities to apply to")
        return self


class LadderStepFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: str = Field(description="delay after the breach, in the policy's unit, e.g. 2h")
    to: str = Field(default="supervisor", pattern=LADDER_TARGET,
                    description="supervisor (next above the previous recipient), a role "
                                "such as county.zhzx, or a department code")

    @field_validator("after")
    @classmethod
    def _duration(cls, value: str) -> str:
        split_duration(value)
        return value


class StageFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$", description="e.g. stop_work, penalty")
    within: Annotated[str, AfterValidator(_limit_text)] = Field(
        description="from the start of the resolution clock, in the policy's unit")


class ExtensionsFile(BaseModel):
    """What the supervisor may grant: a lead asks, and more is refused before anyone sees it."""

    model_config = ConfigDict(extra="forbid")

    max: int = Field(default=2, ge=0, le=10, description="extensions granted per case")
    total: Annotated[str, AfterValidator(_limit_text)] = Field(
        default="10d", description="all extensions of a case together, in the policy's unit")


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    accept: LimitText = Field(default="matter", description="duration, 'matter', or null "
                                                           "for no acceptance limit")
    resolve: Annotated[str, AfterValidator(_limit_text)] = Field(
        default="matter", description="duration or 'matter'")
    unit: Literal["working", "natural", "matter"] = "matter"
    warn_at: Percents = Field(default_factory=lambda: [50, 80])
    ladder: list[LadderStepFile] = Field(default_factory=list, max_length=8)
    overrides: list[OverrideFile] = Field(default_factory=list)
    verify_within: Annotated[str | None, AfterValidator(_limit_text)] = Field(
        default=None, description="close a resolved case nobody verified after this long "
                                  "(natural time), e.g. 7d; null: wait for the verification")
    stages: list[StageFile] = Field(default_factory=list, max_length=6,
                                    description="staged limits (each with the policy's "
                                                "warnings and ladder), in order")
    supervise_on_breach: Annotated[str | None, AfterValidator(_limit_text)] = Field(
        default=None, description="supervise (督办) a case automatically when its resolution "
                                  "limit is breached, the lead to answer within this (the "
                                  "policy's unit), e.g. 4h; null: supervision by hand only")
    callback_attempts: int = Field(default=3, ge=1, le=10,
                                   description="call-backs (回访) that reach nobody before the "
                                               "case closes as unreachable")
    extensions: ExtensionsFile = Field(default_factory=lambda: ExtensionsFile(),
                                       description="how far a case's resolution may be "
                                                   "extended (延期)")


def _clock(value: str) -> time:
    if not _CLOCK.match(value):
        raise ValueError(f"'{value}' is not a time of day; write HH:MM, e.g. 08:30")
    return time(int(value[:2]), int(value[3:]))


class SeasonFile(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", description="first day, MM-DD")
    to: str = Field(description="last day, MM-DD")
    sessions: list[tuple[str, str]] = Field(min_length=1)

    @field_validator("from_", "to")
    @classmethod
    def _month_day(cls, value: str) -> str:
        if not _MONTH_DAY.match(value):
            raise ValueError(f"'{value}' is not a month-day; write MM-DD, e.g. 07-01")
        return value


class WorkingHoursFile(BaseModel):
    """Office hours: sessions as [start, end] pairs, and seasonal hours."""

    model_config = ConfigDict(extra="forbid")

    sessions: list[tuple[str, str]] = Field(min_length=1)
    seasons: list[SeasonFile] = Field(default_factory=list)

    @model_validator(mode="after")
    def _well_formed(self) -> WorkingHoursFile:
        for sessions in [self.sessions, *(s.sessions for s in self.seasons)]:
            _sessions(sessions)
        return self

    def compile(self) -> WorkingHours:
        seasons = tuple(Season((int(s.from_[:2]), int(s.from_[3:])),
                               (int(s.to[:2]), int(s.to[3:])), _sessions(s.sessions))
                        for s in self.seasons)
        return WorkingHours(_sessions(self.sessions), seasons)


def _sessions(pairs: list[tuple[str, str]]) -> tuple[tuple[time, time], ...]:
    out = tuple((_clock(a), _clock(b)) for a, b in pairs)
    previous = time(0, 0)
    for start, end in out:
        if not previous <= start < end:
            raise ValueError("sessions must be in order, each ending after it starts and "
                             "not overlapping the previous one")
        previous = end
    return out


@dataclass(frozen=True)
class PolicySource:
    name: str
    policy: PolicyFile
    layer: str
    file: str
    line: int


@dataclass(frozen=True)
class SlaTable:
    """The policies and office hours in force for one county."""

    policies: dict[str, PolicySource]
    hours: WorkingHours
    _terms: dict[tuple[str, str, str, str], SlaTerms] = field(
        default_factory=dict, compare=False, repr=False)

    def terms(self, policy_name: str, matter: Matter, priority: Priority,
              revision: str) -> SlaTerms:
        """Freeze the limits that apply to one case; unknown names fall back to default."""
        key = (policy_name, matter.code, priority, revision)
        found = self._terms.get(key)
        if found is None:
            found = self._terms[key] = self._resolve(policy_name, matter, priority, revision)
        return found

    def _resolve(self, policy_name: str, matter: Matter, priority: Priority,
                 revision: str) -> SlaTerms:
        source = self.policies.get(policy_name) or self.policies["default"]
        policy = source.policy
        accept, resolve, unit = policy.accept, policy.resolve, policy.unit
        warn_at = policy.warn_at
        for override in policy.overrides:
            if override.matters and not any(matter.code.startswith(p)
                                            for p in override.matters):
                continue
            if override.priorities and priority not in override.priorities:
                continue
            accept = override.accept or accept
            resolve = override.resolve or resolve
            unit = override.unit or unit
            warn_at = override.warn_at or warn_at
            break
        real_unit: Unit = matter.limits.unit if unit == "matter" else unit
        return SlaTerms(
            policy=source.name, rules_revision=revision,
            calendar=calendar_revision(self.hours), unit=real_unit,
            accept=matter.limits.accept if accept == "matter" else accept,
            resolve=matter.limits.resolve if resolve == "matter" else resolve,
            warn_at=list(warn_at),
            ladder=[LadderStep(after=s.after, to=s.to) for s in policy.ladder],
            hours=HoursSpec.of(self.hours), verify_within=policy.verify_within,
            max_extensions=policy.extensions.max, max_extension_total=policy.extensions.total,
            callback_attempts=policy.callback_attempts,
            supervise_on_breach=policy.supervise_on_breach,
            stages=[Stage(name=s.name, within=s.within) for s in policy.stages])


def limit_span(text: str, unit: Unit, hours: WorkingHours) -> timedelta:
    """A limit as a span of counted time: in working time a day is one working day."""
    amount, suffix = split_duration(text)
    if suffix == "d" and unit == "working":
        return amount * working_day_length(hours)
    if suffix == "w" and unit == "working":
        return amount * 5 * working_day_length(hours)
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[suffix]
    return timedelta(seconds=amount * seconds)
