"""Rule layer files (``rules/layers/*.yaml``): a provincial base and its overlays.

A county may adapt items and routing within the provincial frame (the seed's complaint is a
rigid one-size list): each layer file names its scope (a division-code prefix) and may add
rules, override a lower layer's rule by reusing its id, or disable one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.contracts import Priority
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


class LayerFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layer: LayerLevel
    scope: str = Field(pattern=r"^\d{2}(\d{2}){0,2}$",
                       description="division code prefix: 2 digits province, 4 city, 6 county")
    description: str | None = None
    classify: list[ClassifyRuleFile] = Field(default_factory=list)
    priority: list[PriorityRuleFile] = Field(default_factory=list)
    disable: list[str] = Field(default_factory=list)

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
                                        f"{scopes[layer.file.scope]}; merge the two"))
        scopes[layer.file.scope] = layer.doc.file
    if problems:
        raise FileProblems(problems)
    return sorted(layers, key=lambda layer: (layer.depth, layer.file.scope))
