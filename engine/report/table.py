"""The assessment as terminal tables, aligned for Chinese names.

A CJK character takes two terminal columns (Unicode East Asian Width ``W``/``F``), so
``str.ljust`` misaligns every row with a Chinese department name; ``width`` counts columns
the way a terminal draws them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from engine.report.assess import Assessment, Row, Tally
from engine.report.simulated import NEEDS_CASES_TOPIC, DepartmentVolume, SimulatedSummary
from engine.simulate import OUTCOMES

BASE_OUTCOMES = ("assigned", "merged", "duplicate", "triage", "rejected")

DASH = "–"


def width(text: str) -> int:
    """Terminal columns of ``text``: wide and full-width characters take two, marks none."""
    total = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        total += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return total


def pad(text: str, columns: int, right: bool = False) -> str:
    fill = " " * max(columns - width(text), 0)
    return fill + text if right else text + fill


def grid(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    """Rows under a header; columns from ``numeric_from`` on are right-aligned."""
    columns = [max(width(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [pad(cell, columns[i], right=i >= numeric_from) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * c for c in columns))
    return "\n".join(lines)


def rate(value: float | None, of: int) -> str:
    return DASH if value is None else f"{value:.0%} ({of})"


def score(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}"


HEADER = ("cases", "accepted on time", "resolved on time", "returns", "extended",
          "supervised", "backlog", "reopened", "satisfied", "score")


def cells(tally: Tally) -> list[str]:
    return [str(tally.cases), rate(tally.acceptance_rate, tally.acceptance_known),
            rate(tally.resolution_rate, tally.resolution_known), str(tally.returns),
            str(tally.extended), str(tally.supervised), str(tally.backlogged),
            rate(tally.reopen_rate, tally.verified),
            rate(tally.satisfaction_rate, tally.answered), score(tally.score)]


def assessment_text(report: Assessment) -> str:
    period = f"cases opened since {report.since:%Y-%m-%d %H:%M %z}" if report.since else "all cases"
    parts = [f"Assessment as of {report.as_of:%Y-%m-%d %H:%M %z}, {period}: "
             f"{report.total.cases} cases, {report.total.without_sla} without time limits, "
             f"{report.total.unreachable} closed after call-backs reached nobody (回访未接通: "
             "out of the satisfaction rate).",
             "", "By lead department",
             grid(("department", "code", *HEADER),
                  [*(_row(r, with_code=True) for r in report.departments),
                   ["total", "", *cells(report.total)]], 2)]
    if report.grid_workers:
        parts += ["", "By grid worker",
                  grid(("grid worker", *HEADER), [_row(r) for r in report.grid_workers])]
    else:
        parts += ["", "By grid worker: no case carries attributes.grid_worker_id."]
    parts += ["", "Rates show the share and, in brackets, how many cases it is of. Score: "
                  "100 x weighted mean of smoothed rates (satisfaction 0.4, on-time "
                  "resolution 0.3, on-time acceptance 0.2, not reopened 0.1); volume is not "
                  "scored."]
    return "\n".join(parts)


def _row(row: Row, with_code: bool = False) -> list[str]:
    head = [row.name, row.key] if with_code else [row.key]
    return [*head, *cells(row.tally)]


SIMULATED_HEADER = ("cases opened", "reports merged", "assisting", "cases breached")


def outcome_names(summary: SimulatedSummary) -> list[str]:
    """The simulate outcomes in their documented order, then any other that occurred."""
    known = [name for name in OUTCOMES if name in BASE_OUTCOMES or summary.outcomes[name]]
    return known + sorted(set(summary.outcomes) - set(known))


def simulated_cells(row: DepartmentVolume) -> list[str]:
    return [str(row.cases), str(row.merged), str(row.assisting), str(row.breached)]


def simulated_text(summary: SimulatedSummary) -> str:
    outcomes = ", ".join(f"{name} {summary.outcomes[name]}" for name in outcome_names(summary))
    parts = [f"Simulation output: {summary.lines} lines: {outcomes}.", ""]
    if summary.reasons:
        parts += [grid(("not dispatched", "reports"),
                       [[k, str(v)] for k, v in sorted(summary.reasons.items())]), ""]
    parts += ["By lead department",
              grid(("department", "code", *SIMULATED_HEADER),
                   [[d.name, d.key, *simulated_cells(d)] for d in summary.departments], 2),
              "", "Not in simulate output (it carries no answer times, verifications or "
                  "report attributes; run the report on the cases topic): "
                  + ", ".join(NEEDS_CASES_TOPIC) + "."]
    return "\n".join(parts)
