"""Topic specifications as code: ``topics/*.yaml`` parsed, validated and expanded.

A spec names the production shape of each topic (replication factor 3, min ISR 2). The
cluster at hand may be smaller (the local stack has one broker); ``effective`` caps both at
what the cluster can hold and says so, rather than keeping a second set of files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.durations import to_millis
from engine.yamlfile import FileProblem, FileProblems, load_folder

TOPIC_NAME = r"^[A-Za-z0-9._-]+$"


class TopicFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partitions: int = Field(ge=1, le=10_000)
    replication_factor: int = Field(ge=1, le=7)
    cleanup_policy: Literal["delete", "compact", "compact,delete"] = "delete"
    retention: str = Field(description="how long records are kept: 7d, 12h, or 'forever'")
    min_insync_replicas: int = Field(default=2, ge=1)
    key: str = Field(description="what the record key is")
    value: str = Field(description="what the record value is")
    config: dict[str, str] = Field(default_factory=dict,
                                   description="other Kafka topic configs, as strings")

    @field_validator("retention")
    @classmethod
    def _retention_parses(cls, value: str) -> str:
        if value != "forever":
            to_millis(value)
        return value


class TopicSpec(TopicFields):
    name: str = Field(pattern=TOPIC_NAME)


class TopicTemplate(TopicFields):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]*\{department\}[A-Za-z0-9._-]*$",
                      description="a name with {department}, expanded once per department")
    for_each: Literal["department"]


class TopicFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topics: list[TopicSpec] = Field(default_factory=list)
    templates: list[TopicTemplate] = Field(default_factory=list)


@dataclass(frozen=True)
class DesiredTopic:
    """One concrete topic, its name already prefixed, with the Kafka configs we manage."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _configs(spec: TopicFields, replication_factor: int) -> dict[str, str]:
    configs = {
        "cleanup.policy": spec.cleanup_policy,
        "retention.ms": "-1" if spec.retention == "forever" else str(to_millis(spec.retention)),
        "min.insync.replicas": str(min(spec.min_insync_replicas, replication_factor)),
    }
    configs.update(spec.config)
    return configs


def load_specs(topics_dir: Path) -> list[TopicFile]:
    parsed = [spec for _, spec in load_folder(topics_dir, TopicFile)]
    if not parsed:
        raise FileProblems([FileProblem(str(topics_dir), 0, "no *.yaml topic files here")])
    return parsed


def expand(files: list[TopicFile], departments: list[str], prefix: str,
           brokers: int) -> list[DesiredTopic]:
    """Concrete topics for this cluster: templates expanded, names prefixed, RF capped."""
    desired: dict[str, DesiredTopic] = {}
    problems: list[str] = []

    def add(name: str, spec: TopicFields) -> None:
        rf = min(spec.replication_factor, brokers)
        notes: tuple[str, ...] = ()
        if rf < spec.replication_factor:
            notes = (f"replication factor {spec.replication_factor} capped to {rf}: "
                     f"the cluster has {brokers} broker(s)",)
        full = prefix + name
        if full in desired:
            problems.append(f"topic '{name}' is specified twice")
        desired[full] = DesiredTopic(full, spec.partitions, rf, _configs(spec, rf), notes)

    for topic_file in files:
        for spec in topic_file.topics:
            add(spec.name, spec)
        for template in topic_file.templates:
            for code in departments:
                add(template.name.format(department=code), template)
    if problems:
        raise FileProblems(FileProblem("topics", 0, p) for p in problems)
    return list(desired.values())
