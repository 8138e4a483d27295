"""Rule layer files (``rules/layers/*.yaml``): a provincial base and its overlays.

A county may adapt items and routing within the provincial frame (the seed's complaint is a
rigid one-size list): each layer file names its scope (a division-code prefix) and may add
rules, override a lower layer's rule by reusing its id, or disable one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.calendar import NO_ENTERED_YEARS, WORKING_HOURS, HolidayYears
from engine.contracts import Priority
from engine.durations import to_millis
from engine.sla.policy import (
    POLICY_NAME,
    PolicyFile,
    PolicySource,
    SlaTable,
    WorkingHoursFile,
)
from engine.yamlfile import FileProblem, FileProblems, LoadedYaml, load_folder

LayerLevel = Literal["province", "city", "county"]
SCOPE_DIGITS: dict[str, int] = {"province": 2, "city": 4, "county": 6}
RULE_ID = r"^[a-z0-9][a-z0-9:_-]*$"
CATALOGUE_WEIGHT = 10


def _keyword_list(values: list[str]) -> list[str]:
    for value in values:
        if len(value.strip()) < 2 or value != value.strip():
            raise ValueError(f"keyword '{value}' is too short or has spaces around it: "
                             "keywords are phrases of 2 or more characters")
    return values


class ClassifyRuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=RULE_ID)
    keywords: list[str] = Field(min_length=1, description="any of these phrases triggers it")
    exclude: list[str] = Field(default_factory=list, description="any of these vetoes it")
    patterns: list[str] = Field(default_factory=list,
                                description="regular expressions that must all match too")
    channels: list[str] = Field(default_factory=list, description="only for these channels")
    matter: str = Field(pattern=r"^\d{6}$")
    weight: int = Field(default=50, ge=0, le=1000)

    _check_keywords = field_validator("keywords", "exclude")(_keyword_list)

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern '{pattern}' is not a valid regular expression: "
                                 f"{exc}") from None
        return patterns


class PriorityRuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=RULE_ID)
    keywords: list[str] = Field(default_factory=list)
    matters: list[str] = Field(default_factory=list, description="matter code prefixes")
    channels: list[str] = Field(default_factory=list)
    set: Priority

    _check_keywords = field_validator("keywords")(_keyword_list)

    @model_validator(mode="after")
    def _has_condition(self) -> PriorityRuleFile:
        if not (self.keywords or self.matters or self.channels):
            raise ValueError("a priority rule needs at least one of keywords, matters, channels")
        return self


# A routing target: "matter" (the item's lead role), a role ("scjg": the township's office,
# else the county's), a role pinned to a level ("county.scjg"), or a department code.
TARGET = (r"^(matter|((township|county)\.)?[a-z][a-z0-9-]*"
          r"|\d{6}(\d{3})?\.[a-z][a-z0-9-]*)$")


class RouteWhen(BaseModel):
    """Conditions of a routing rule: every condition given must hold (each is any-of)."""

    model_config = ConfigDict(extra="forbid")

    matters: list[str] = Field(default_factory=list, description="matter code prefixes")
    divisions: list[str] = Field(default_factory=list,
                                 description="division or grid code prefixes")
    priorities: list[Priority] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)
    time: Literal["working", "off_hours"] | None = Field(
        default=None, description="working hours on working days (Chinese calendar), or not")

    @field_validator("matters", "divisions")
    @classmethod
    def _digits(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.isdigit():
                raise ValueError(f"'{value}' is not a code prefix (digits only)")
        return values


class RouteRuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(pattern=RULE_ID)
    when: RouteWhen = Field(default_factory=RouteWhen)
    lead: str | None = Field(default=None, pattern=TARGET)
    assist: list[str] = Field(default_factory=list)
    sla: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    priority: Priority | None = None
    continue_: bool = Field(default=False, alias="continue")

    @field_validator("assist")
    @classmethod
    def _targets(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.match(TARGET, value):
                raise ValueError(f"'{value}' is not a target: write matter, a role, "
                                 "township.<role>, county.<role> or a department code")
        return values

    @model_validator(mode="after")
    def _does_something(self) -> RouteRuleFile:
        if not (self.lead or self.assist or self.sla or self.priority):
            raise ValueError("a route rule needs at least one of lead, assist, sla, priority")
        return self


class DefaultRouteFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lead: str = Field(pattern=TARGET)
    sla: str = Field(default="default", pattern=r"^[a-z0-9][a-z0-9_-]*$")


class MergeRuleFile(BaseModel):
    """Reports of one matter class this near in space and time are one real-world incident."""

    model_config = ConfigDict(extra="forbid")

    matters: list[Annotated[str, Field(pattern=r"^\d{2}(\d{2}){0,2}$")]] = Field(
        min_length=1, description="matter code prefixes: class, subclass or item")
    distance_m: int = Field(ge=0, le=5000)
    window: str = Field(description="how long after the case's last report, e.g. 2h")

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        to_millis(value)
        return value


class LayerFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layer: LayerLevel
    scope: str = Field(pattern=r"^\d{2}(\d{2}){0,2}$",
                       description="division code prefix: 2 digits province, 4 city, 6 county")
    description: str | None = None
    classify: list[ClassifyRuleFile] = Field(default_factory=list)
    priority: list[PriorityRuleFile] = Field(default_factory=list)
    disable: list[str] = Field(default_factory=list)
    route: list[RouteRuleFile] = Field(default_factory=list)
    default_route: DefaultRouteFile | None = None
    merge: list[MergeRuleFile] = Field(default_factory=list)
    max_returns: int | None = Field(default=None, ge=1, le=10, description=(
        "returns after which a case goes to the county command centre"))
    sla: dict[Annotated[str, Field(pattern=POLICY_NAME)], PolicyFile] = Field(
        default_factory=dict, description="SLA policies by name; route rules refer to them")
    working_hours: WorkingHoursFile | None = None

    @model_validator(mode="after")
    def _scope_fits_level(self) -> LayerFile:
        if len(self.scope) != SCOPE_DIGITS[self.layer]:
            raise ValueError(f"a {self.layer} layer's scope has {SCOPE_DIGITS[self.layer]} "
                             f"digits, not {len(self.scope)}")
        return self


@dataclass(frozen=True)
class Layer:
    """A parsed layer file with what is needed to point at its lines."""

    name: str  # e.g. "county 330110 (rules/layers/330110.yaml)"
    file: LayerFile
    doc: LoadedYaml

    @property
    def depth(self) -> int:
        return SCOPE_DIGITS[self.file.layer]

    def line(self, *path: str | int) -> int:
        return self.doc.line_of(path)


def load_layers(layers_dir: Path) -> list[Layer]:
    layers = [Layer(f"{parsed.layer} {parsed.scope} ({doc.file})", parsed, doc)
              for doc, parsed in load_folder(layers_dir, LayerFile)]
    problems: list[FileProblem] = []
    scopes: dict[str, str] = {}
    for layer in layers:
        if layer.file.scope in scopes:
            problems.append(FileProblem(str(layer.doc.file), 1,
                                        f"scope {layer.file.scope} already has a layer file: "
                                        f"{scopes[layer.file.scope]}; join the two into one file"))
        scopes[layer.file.scope] = layer.doc.file
    if problems:
        raise FileProblems(problems)
    return sorted(layers, key=lambda layer: (layer.depth, layer.file.scope))


def compile_sla(layers: list[Layer], name: str,
                holidays: HolidayYears = NO_ENTERED_YEARS) -> SlaTable:
    """Least specific first: a deeper layer's policy replaces one of the same name. The
    office hours carry the rule set's entered holiday years: its calendar, not the
    process's."""
    policies: dict[str, PolicySource] = {}
    hours = WORKING_HOURS
    for layer in layers:
        for policy_name, policy in layer.file.sla.items():
            policies[policy_name] = PolicySource(policy_name, policy, layer.name,
                                                 layer.doc.file,
                                                 layer.line("sla", policy_name))
        if layer.file.working_hours is not None:
            hours = layer.file.working_hours.compile()
    return SlaTable(policies, hours.with_holidays(holidays))
