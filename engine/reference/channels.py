"""Channel category maps: each channel's own categories mapped onto matter codes.

The 12345 hotline files work orders under its own 诉求分类, Open311 clients send service
codes, sensors send alarm types; none of them speak our matter codes, so each channel's
vocabulary is mapped once here instead of inside each connector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.yamlfile import FileProblem, FileProblems, LoadedYaml, load_yaml, validate


class AttributeValue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1)
    name: str = Field(min_length=1)


class ServiceAttribute(BaseModel):
    """An Open311 service attribute (GeoReport v2 service definition): a question the
    channel asks besides the description; answers travel in the report's ``attributes``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = Field(min_length=1)
    datatype: Literal["string", "number", "datetime", "text", "singlevaluelist",
                      "multivaluelist"] = "string"
    required: bool = False
    datatype_description: str | None = None
    values: list[AttributeValue] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_for_lists(self) -> ServiceAttribute:
        if self.datatype.endswith("valuelist") and not self.values:
            raise ValueError(f"a {self.datatype} attribute needs values (key and name)")
        if not self.datatype.endswith("valuelist") and self.values:
            raise ValueError(f"values are only for list attributes, not {self.datatype}")
        return self


class CategoryMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    category: str = Field(min_length=1)
    matter: str = Field(pattern=r"^\d{6}$")
    name: str | None = None
    group: str | None = None
    description: str | None = None
    # Open311 only: shown to the reporter after a request is created, and extra questions.
    notice: str | None = None
    attributes: list[ServiceAttribute] = Field(default_factory=list)


class ChannelMapFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hotline: list[CategoryMapping] = Field(default_factory=list)
    open311: list[CategoryMapping] = Field(default_factory=list)
    sensor: list[CategoryMapping] = Field(default_factory=list)
    gridapp: list[CategoryMapping] = Field(default_factory=list)


class ChannelMaps:
    def __init__(self, maps: dict[str, dict[str, CategoryMapping]], doc: LoadedYaml):
        self.maps = maps
        self.doc = doc

    def lookup(self, channel: str, category: str) -> CategoryMapping | None:
        return self.maps.get(channel, {}).get(category)

    def entries(self) -> list[tuple[str, int, CategoryMapping]]:
        return [(channel, i, m) for channel, by in self.maps.items()
                for i, m in enumerate(by.values())]

    @classmethod
    def load(cls, path: Path) -> ChannelMaps:
        doc = load_yaml(path)
        parsed = validate(doc, ChannelMapFile)
        maps: dict[str, dict[str, CategoryMapping]] = {}
        problems: list[FileProblem] = []
        for channel in ChannelMapFile.model_fields:
            by_category: dict[str, CategoryMapping] = {}
            for i, mapping in enumerate(getattr(parsed, channel)):
                if mapping.category in by_category:
                    problems.append(doc.problem((channel, i, "category"),
                                                f"{channel} category '{mapping.category}' is "
                                                "mapped twice"))
                by_category[mapping.category] = mapping
            maps[channel] = by_category
        if problems:
            raise FileProblems(problems)
        return cls(maps, doc)
