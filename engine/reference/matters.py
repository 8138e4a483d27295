"""The matter catalogue: one code per kind of matter (一事一码).

Codes are hierarchical (class 2 digits, subclass 4, item 6) so that routing rules can match
a whole class by prefix. Each item carries what dispatch needs by default: platform,
priority, time limits and the department role that usually leads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.contracts import Platform, Priority
from engine.durations import split_duration
from engine.yamlfile import FileProblem, FileProblems, load_yaml, validate


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    accept: str | None = None
    resolve: str
    unit: Literal["working", "natural"] = "working"

    @field_validator("accept", "resolve")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            split_duration(value)
        return value


class ItemFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^\d{6}$")
    name: str = Field(min_length=1)
    keywords: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    priority: Priority = "normal"
    role: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    limits: Limits
    platform: Platform | None = None
    contact_reporter: bool | None = None


class SubclassFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^\d{4}$")
    name: str
    items: list[ItemFile]
    contact_reporter: bool | None = None


class ClassFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^\d{2}$")
    name: str
    platform: Platform
    subclasses: list[SubclassFile]
    contact_reporter: bool = Field(
        default=False, description="the lead department needs the reporter's name and phone "
                                   "(engine/privacy.py); a subclass or item may say otherwise")


class CatalogueFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classes: list[ClassFile]


@dataclass(frozen=True)
class Matter:
    """One catalogue item, flattened: what the rules stage and routing need of it."""

    code: str
    name: str
    class_name: str
    subclass_name: str
    platform: Platform
    priority: Priority
    role: str
    keywords: tuple[str, ...]
    exclude: tuple[str, ...]
    limits: Limits
    line: int
    contact_reporter: bool = False


class MatterCatalogue:
    def __init__(self, matters: list[Matter], file: str = "matters.yaml"):
        self.file = file
        self.by_code = {m.code: m for m in matters}

    def __contains__(self, code: object) -> bool:
        return code in self.by_code

    def __len__(self) -> int:
        return len(self.by_code)

    def get(self, code: str) -> Matter | None:
        return self.by_code.get(code)

    def is_prefix(self, prefix: str) -> bool:
        """True when some item's code starts with ``prefix`` (a class, subclass or item)."""
        return any(code.startswith(prefix) for code in self.by_code)

    @classmethod
    def load(cls, path: Path) -> MatterCatalogue:
        doc = load_yaml(path)
        parsed = validate(doc, CatalogueFile)
        matters: list[Matter] = []
        problems: list[FileProblem] = []
        seen: set[str] = set()
        for ci, klass in enumerate(parsed.classes):
            for si, sub in enumerate(klass.subclasses):
                if not sub.code.startswith(klass.code):
                    problems.append(doc.problem(("classes", ci, "subclasses", si, "code"),
                                                f"subclass {sub.code} must start with its class "
                                                f"code {klass.code}"))
                for ii, item in enumerate(sub.items):
                    where = ("classes", ci, "subclasses", si, "items", ii)
                    if not item.code.startswith(sub.code):
                        problems.append(doc.problem((*where, "code"),
                                                    f"item {item.code} must start with its "
                                                    f"subclass code {sub.code}"))
                    if item.code in seen:
                        problems.append(doc.problem((*where, "code"),
                                                    f"matter code {item.code} is defined twice"))
                    seen.add(item.code)
                    matters.append(Matter(
                        code=item.code, name=item.name, class_name=klass.name,
                        subclass_name=sub.name, platform=item.platform or klass.platform,
                        priority=item.priority, role=item.role, keywords=tuple(item.keywords),
                        exclude=tuple(item.exclude), limits=item.limits,
                        line=doc.line_of(where),
                        contact_reporter=_first_set(item.contact_reporter,
                                                    sub.contact_reporter,
                                                    klass.contact_reporter)))
        if problems:
            raise FileProblems(problems)
        return cls(matters, str(path))


def _first_set(*values: bool | None) -> bool:
    return next((v for v in values if v is not None), False)
