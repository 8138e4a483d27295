"""The department registry: who can receive work, and whom they answer to.

Departments include social organisations (housekeeping, elderly care, volunteers): the seed
asks that they can take work like any office, so they are registry entries like any other.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.yamlfile import FileProblem, FileProblems, LoadedYaml, load_yaml, validate

Platform = Literal["governance", "market", "enforcement", "services"]
Level = Literal["county", "township", "community", "social"]
DEPARTMENT_CODE = r"^\d{6}(\d{3})?\.[a-z][a-z0-9-]*$"
_CODE = re.compile(DEPARTMENT_CODE)


class Department(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=DEPARTMENT_CODE)
    name: str = Field(min_length=1)
    role: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    platform: Platform
    level: Level
    division: str = Field(pattern=r"^\d{12}$")
    supervisor: str | None = None
    topic: str

    @model_validator(mode="after")
    def _topic_follows_code(self) -> Department:
        if self.topic != f"assignments.{self.code}":
            raise ValueError(f"topic must be 'assignments.{self.code}' (derived from the code)")
        if not self.code.endswith("." + self.role):
            raise ValueError(f"role '{self.role}' must be the part of the code after the dot")
        return self


class DepartmentRegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    departments: list[Department]


class DepartmentRegistry:
    """Departments by code, checked for unknown supervisors and supervisor cycles."""

    def __init__(self, departments: list[Department]):
        self.by_code = {d.code: d for d in departments}

    def __iter__(self) -> Iterator[Department]:
        return iter(self.by_code.values())

    def __len__(self) -> int:
        return len(self.by_code)

    def __contains__(self, code: object) -> bool:
        return code in self.by_code

    def resolve(self, target: str, chain: list[str]) -> str | None:
        """The department a role names at a place (``township.scjg`` for the township of
        ``chain``; a bare role tries the township, then the county), or a concrete code."""
        if _CODE.match(target):
            return target if target in self.by_code else None
        level, _, role = target.rpartition(".")
        if level in ("", "township") and len(chain) > 3:
            code = f"{chain[3][:9]}.{role}"
            if code in self.by_code:
                return code
        if level in ("", "county") and len(chain) > 2:
            code = f"{chain[2][:6]}.{role}"
            if code in self.by_code:
                return code
        return None

    @classmethod
    def load(cls, path: Path) -> DepartmentRegistry:
        doc = load_yaml(path)
        parsed = validate(doc, DepartmentRegistryFile)
        problems = _problems(doc, parsed.departments)
        if problems:
            raise FileProblems(problems)
        return cls(parsed.departments)


def _problems(doc: LoadedYaml, departments: list[Department]) -> list[FileProblem]:
    seen: dict[str, int] = {}
    problems: list[FileProblem] = []
    for i, dept in enumerate(departments):
        if dept.code in seen:
            problems.append(doc.problem(("departments", i, "code"),
                                        f"department code '{dept.code}' is defined twice "
                                        f"(first at item {seen[dept.code] + 1})"))
        seen.setdefault(dept.code, i)
    codes = {d.code for d in departments}
    for i, dept in enumerate(departments):
        if dept.supervisor is not None and dept.supervisor not in codes:
            problems.append(doc.problem(("departments", i, "supervisor"),
                                        f"supervisor '{dept.supervisor}' of {dept.code} is not "
                                        "a department in this registry"))
    by_code = {d.code: d for d in departments}
    for i, dept in enumerate(departments):
        chain, current = [dept.code], dept.supervisor
        while current is not None and current in by_code:
            if current in chain:
                problems.append(doc.problem(("departments", i, "supervisor"),
                                            "supervisor chain loops: " + " → ".join(
                                                [*chain, current])))
                break
            chain.append(current)
            current = by_code[current].supervisor
    return problems
