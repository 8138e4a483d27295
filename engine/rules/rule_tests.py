"""Operator test cases for rules (``rules/tests/*.yaml``): report in, expected decision out.

Operators change rules; these cases say what must still come out. They run in CI through
``griddispatch rules test`` and pytest, so a rules edit that breaks dispatch fails the build
rather than a resident's report.

Besides the record's own fields, a case's ``expect`` may give the routing decision
(``engine.routing.decide.route``) of a classified report: ``lead`` (a department code),
``assist`` (department codes, any order), ``sla``, ``route_priority`` and ``route_rules`` (the
ids of the route rules that applied, in order, including ``default_route`` and
``locality-fallback``), and the deadlines of the case it would open then, ``accept_by`` and
``resolve_by`` (ISO 8601, +08:00), which test the SLA policies and the calendar. Routing and
deadlines depend on when the report arrived (``time: working | off_hours``, holidays), so a
case may set ``received_at`` (default ``2026-11-24T10:00:05+08:00``, a working Tuesday
morning).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from engine.calendar import SHANGHAI
from engine.classify import classify_data
from engine.contracts import Classified, Outcome, Rejected, Triage
from engine.routing.decide import RouteDecision, route
from engine.rules.ruleset import RuleSet
from engine.yamlfile import FileProblem, FileProblems, load_folder

DEFAULT_REPORTED_AT = "2026-11-24T10:00:00+08:00"
RECEIVED_AT = datetime.fromisoformat("2026-11-24T10:00:05+08:00")


class RuleCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    report: dict[str, Any]
    expect: dict[str, Any] = Field(min_length=1)
    received_at: AwareDatetime | None = Field(
        default=None, description="when the report reached the system (routing time windows); "
                                  "default 2026-11-24T10:00:05+08:00")
    model: bool = Field(
        default=True, description="false: decide without the learned classifier, as a rule "
                                  "set without examples does (to test keyword and priority "
                                  "rule semantics on their own)")


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
    received_at = loaded.case.received_at or RECEIVED_AT
    if not loaded.case.model:
        ruleset = ruleset.without_model()
    outcome = classify_data(ruleset, report_of(loaded.case), received_at)
    return CaseResult(loaded, outcome, compare(loaded.case.expect, outcome, ruleset))


def _got(outcome: Outcome) -> str:
    if isinstance(outcome, Rejected):
        return f"rejected: {outcome.reason} ({outcome.detail})"
    if isinstance(outcome, Triage):
        return f"triage: {outcome.reason} ({outcome.detail})"
    return f"classified as {outcome.matter_code} {outcome.matter_name}"


# expect keys checked against the routing decision rather than the record
ROUTING_KEYS = ("lead", "assist", "sla", "route_priority", "route_rules", "accept_by",
                "resolve_by", "stages_by")


def compare(expect: dict[str, Any], outcome: Outcome,
            ruleset: RuleSet | None = None) -> list[str]:
    """What differs between a case's expectation and the outcome (empty: the case passes).

    Routing keys need ``ruleset``: the decision is ``route(ruleset, outcome)``.
    """
    mismatches: list[str] = []
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
    routing = {key: expect[key] for key in ROUTING_KEYS if key in expect}
    if routing and not isinstance(outcome, Classified):
        mismatches.extend(f"'{key}' is a routing key: only a classified report is routed, "
                          f"this one is {_got(outcome)}" for key in routing)
    elif routing and isinstance(outcome, Classified):
        if ruleset is None:
            mismatches.append("routing keys need the rule set to route with")
        else:
            mismatches.extend(_compare_route(routing, route(ruleset, outcome),
                                             _deadlines(ruleset, outcome, routing)))
    data = outcome.model_dump(mode="json")
    for key, want in expect.items():
        if key in ("rejected", "triage") or key in ROUTING_KEYS:
            continue
        if key not in data:
            mismatches.append(f"'{key}' is not a field of a {actual_kind} record")
        elif data[key] != want:
            mismatches.append(f"{key}: expected {want!r}, got {data[key]!r}"
                              + (f" — {_got(outcome)}" if isinstance(outcome, Classified)
                                 and key != "matter_code" else ""))
    return mismatches


def _describe(decision: RouteDecision) -> str:
    assist = ", ".join(decision.assist) or "-"
    rules = ", ".join(m.rule for m in decision.matched) or "-"
    return f"routed to {decision.lead} (assist {assist}) by {rules}"


def _deadlines(ruleset: RuleSet, outcome: Classified,
               expect: dict[str, Any]) -> dict[str, Any]:
    """accept_by / resolve_by of the case this report would open when it is received."""
    if not {"accept_by", "resolve_by", "stages_by"} & set(expect):
        return {}
    from engine.cases.dispatch import on_classified
    from engine.cases.duplicates import CaseStore

    case = on_classified(ruleset, CaseStore(), outcome, outcome.received_at).case
    sla = case.sla if case else None

    def iso(at: datetime | None) -> str | None:
        return at.astimezone(SHANGHAI).isoformat() if at else None

    return {"accept_by": iso(sla.accept_by if sla else None),
            "resolve_by": iso(sla.resolve_by if sla else None),
            "stages_by": {name: iso(by) for name, by in sla.stage_deadlines.items()}
            if sla else {}}


def _compare_route(expect: dict[str, Any], decision: RouteDecision,
                   deadlines: dict[str, Any]) -> list[str]:
    got: dict[str, Any] = {
        "lead": decision.lead, "assist": list(decision.assist), "sla": decision.sla,
        "route_priority": decision.priority,
        "route_rules": [m.rule for m in decision.matched], **deadlines}
    mismatches = []
    for key, want in expect.items():
        if key in ("assist", "route_rules") and not (
                isinstance(want, list) and all(isinstance(w, str) for w in want)):
            mismatches.append(f"{key}: expected a list of strings, the case gives {want!r}")
            continue
        same = (sorted(want) == sorted(got[key]) if key == "assist" else want == got[key])
        if not same:
            mismatches.append(f"{key}: expected {want!r}, got {got[key]!r} — "
                              f"{_describe(decision)}")
    return mismatches
