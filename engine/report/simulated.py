"""What a ``griddispatch simulate`` output can say about departments: volume and outcomes.

A simulation runs classify and route only: no department answers, so there is no
acceptance, resolution, return, verification or satisfaction, and its output lines do not
carry the report's attributes (so no grid worker). From those lines the report can give the
volume per lead department (cases opened, reports merged into them) and the outcome counts
(assigned, merged, duplicate, triage and rejected by reason). When the simulation ran with
SLA timers (``escalated`` lines), it also gives the cases that breached a limit, counted for
the lead they were dispatched to. Every other column needs the ``cases`` topic of a running
system.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

NEEDS_CASES_TOPIC = ("on-time acceptance", "on-time resolution", "returns", "reopen rate",
                     "satisfaction", "score", "grid workers")


@dataclass(frozen=True)
class DepartmentVolume:
    key: str
    name: str
    cases: int
    merged: int
    assisting: int
    breached: int = 0


@dataclass(frozen=True)
class SimulatedSummary:
    lines: int
    outcomes: Counter[str]
    reasons: Counter[str] = field(default_factory=Counter)  # "triage unplaced", ...
    departments: list[DepartmentVolume] = field(default_factory=list)


class SimulateLineError(ValueError):
    """A line that is not a simulate outcome; the message names the line."""


def parse_lines(lines: Iterable[bytes | str]) -> Iterable[dict[str, object]]:
    for number, line in enumerate(lines, 1):
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        if not text.strip():
            continue
        try:
            out = json.loads(text)
        except ValueError as exc:
            raise SimulateLineError(f"line {number}: not JSON ({exc})") from None
        if not isinstance(out, dict) or "outcome" not in out:
            raise SimulateLineError(f"line {number}: no 'outcome' field; is this the output "
                                    "of 'griddispatch simulate'?")
        yield out


def summarize(outcomes: Iterable[Mapping[str, object]],
              names: Mapping[str, str] | None = None) -> SimulatedSummary:
    names = names or {}
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    opened: Counter[str] = Counter()
    merged: Counter[str] = Counter()
    assisting: Counter[str] = Counter()
    lead_of: dict[str, str] = {}
    breached: dict[str, set[str]] = {}
    lines = 0
    for out in outcomes:
        lines += 1
        outcome = str(out["outcome"])
        counts[outcome] += 1
        if outcome in ("triage", "rejected"):
            reasons[f"{outcome} {out.get('reason', '?')}"] += 1
        departments = out.get("departments")
        if outcome in ("assigned", "merged") and isinstance(departments, list) and departments:
            lead = str(departments[0])
            (opened if outcome == "assigned" else merged)[lead] += 1
            if outcome == "assigned":
                lead_of[str(out.get("case_id"))] = lead
                for other in departments[1:]:
                    assisting[str(other)] += 1
        if outcome == "escalated" and out.get("step") == "breach":
            case_id = str(out.get("case_id"))
            if case_id in lead_of:
                breached.setdefault(lead_of[case_id], set()).add(case_id)
    keys = set(opened) | set(merged) | set(assisting)
    rows = [DepartmentVolume(k, names.get(k, k), opened[k], merged[k], assisting[k],
                             len(breached.get(k, ()))) for k in keys]
    rows.sort(key=lambda r: (-r.cases, -r.merged, r.key))
    return SimulatedSummary(lines=lines, outcomes=counts, reasons=reasons, departments=rows)
