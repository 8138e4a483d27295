"""Operator test cases for rules (``rules/tests/*.yaml``): report in, expected decision out.

Operators change rules; these cases say what must still come out. They run in CI through
``griddispatch rules test`` and pytest, so a rules edit that breaks dispatch fails the build
rather than a resident's report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.classify import classify_data
from engine.contracts import Classified, Outcome, Rejected, Triage
from engine.rules.ruleset import RuleSet
from engine.yamlfile import FileProblem, FileProblems, load_folder

DEFAULT_REPORTED_AT = "2026-11-24T10:00:00+08:00"
RECEIVED_AT = datetime.fromisoformat("2026-11-24T10:00:05+08:00")


class RuleCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    report: dict[str, Any]
    expect: dict[str, Any] = Field(min_length=1)


class CaseFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cases: list[RuleCase]


@dataclass(frozen=True)
class LoadedCase:
    case: RuleCase
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class CaseResult:
    case: LoadedCase
    outcome: Outcome
    mismatches: list[str]

    @property
    def passed(self) -> bool:
        return not self.mismatches


def load_cases(tests_dir: Path) -> list[LoadedCase]:
    cases: list[LoadedCase] = []
    problems: list[FileProblem] = []
    names: dict[str, str] = {}
    for doc, parsed in load_folder(tests_dir, CaseFile):
        for i, case in enumerate(parsed.cases):
            loaded = LoadedCase(case, doc.file, doc.line_of(("cases", i)))
            if case.name in names:
                problems.append(FileProblem(doc.file, loaded.line,
                                            f"case name '{case.name}' is used twice (first at "
                                            f"{names[case.name]})"))
            names[case.name] = loaded.where
            cases.append(loaded)
    if problems:
        raise FileProblems(problems)
    return cases


def report_of(case: RuleCase) -> dict[str, Any]:
    """The case's report with the documented defaults filled in."""
    return {"channel": "test", "channel_id": case.name, "reported_at": DEFAULT_REPORTED_AT,
            **case.report}


def run_case(ruleset: RuleSet, loaded: LoadedCase) -> CaseResult:
    outcome = classify_data(ruleset, report_of(loaded.case), RECEIVED_AT)
    return CaseResult(loaded, outcome, compare(loaded.case.expect, outcome))


def _got(outcome: Outcome) -> str:
    if isinstance(outcome, Rejected):
        return f"rejected: {outcome.reason} ({outcome.detail})"
    if isinstance(outcome, Triage):
        return f"triage: {outcome.reason} ({outcome.detail})"
    return f"classified as {outcome.matter_code} {outcome.matter_name}"


def compare(expect: dict[str, Any], outcome: Outcome) -> list[str]:
    mismatches = []
    expected_kind = ("rejected" if "rejected" in expect else
                     "triage" if "triage" in expect else "classified")
    actual_kind = ("rejected" if isinstance(outcome, Rejected) else
                   "triage" if isinstance(outcome, Triage) else "classified")
    if expected_kind != actual_kind:
        want = expect.get(expected_kind, "")
        return [f"expected {expected_kind}{': ' + str(want) if want else ''}, "
                f"got {_got(outcome)}"]
    if isinstance(outcome, Rejected | Triage) and outcome.reason != expect[expected_kind]:
        mismatches.append(f"reason: expected {expect[expected_kind]}, got {outcome.reason} "
                          f"({outcome.detail})")
    data = outcome.model_dump(mode="json")
    for key, want in expect.items():
        if key in ("rejected", "triage"):
            continue
        if key not in data:
            mismatches.append(f"'{key}' is not a field of a {actual_kind} record")
        elif data[key] != want:
            mismatches.append(f"{key}: expected {want!r}, got {data[key]!r}"
                              + (f" — {_got(outcome)}" if isinstance(outcome, Classified)
                                 and key != "matter_code" else ""))
    return mismatches
