"""The assessment as one self-contained HTML page with inline SVG charts.

Self-contained on purpose: the page is mailed around and opened on office machines without
internet access, and nothing may load from a CDN. Charts are drawn here as SVG (horizontal
bars, which keep long Chinese department names readable); the markup is also well-formed
XML, so tests parse it strictly.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from engine.report.assess import Assessment, Row, Tally
from engine.report.simulated import NEEDS_CASES_TOPIC, SimulatedSummary
from engine.report.table import (
    HEADER,
    SIMULATED_HEADER,
    cells,
    outcome_names,
    simulated_cells,
    width,
)

PALETTE = ("#2b6cb0", "#2f855a", "#c05621", "#6b46c1")
STYLE = """
body { font-family: "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif;
       margin: 2em; color: #1a202c; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #e2e8f0; padding: 0.3em 0.8em; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: bold; padding: 0.5em 0; }
p.note { color: #4a5568; max-width: 60em; }
svg text { font-size: 12px; }
"""
BAR, GAP, CHART_WIDTH = 14, 6, 420


def _e(text: object) -> str:
    return escape(str(text), quote=True)


Series = Sequence[tuple[str, Sequence[float | None]]]


def bar_chart(title: str, labels: Sequence[str], series: Series, maximum: float,
              unit: str = "") -> str:
    """Horizontal bars: one group per label, one bar per series; None draws no bar."""
    if not labels:
        return ""
    left = max(width(label) for label in labels) * 7 + 16
    group = len(series) * BAR + GAP * 2
    height = 40 + len(labels) * group + 24
    total_width = left + CHART_WIDTH + 80
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{total_width}" '
           f'height="{height}" viewBox="0 0 {total_width} {height}">',
           f"<title>{_e(title)}</title>",
           f'<text x="0" y="16" font-weight="bold">{_e(title)}</text>']
    for s, (name, _) in enumerate(series):  # legend
        x = left + s * 140
        out.append(f'<rect x="{x}" y="24" width="10" height="10" fill="{PALETTE[s]}"/>'
                   f'<text x="{x + 14}" y="33">{_e(name)}</text>')
    for i, label in enumerate(labels):
        top = 44 + i * group
        out.append(f'<text x="{left - 8}" y="{top + group / 2:.0f}" text-anchor="end">'
                   f"{_e(label)}</text>")
        for s, (_, values) in enumerate(series):
            value = values[i]
            y = top + GAP + s * BAR
            if value is None:
                out.append(f'<text x="{left + 4}" y="{y + BAR - 3}" fill="#718096">–</text>')
                continue
            length = CHART_WIDTH * min(max(value / maximum, 0.0), 1.0) if maximum else 0.0
            out.append(f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{BAR - 2}" '
                       f'fill="{PALETTE[s]}"/>'
                       f'<text x="{left + length + 4:.1f}" y="{y + BAR - 3}">'
                       f"{_e(_fmt(value, unit))}</text>")
    out.append(f'<line x1="{left}" y1="40" x2="{left}" y2="{height - 20}" stroke="#a0aec0"/>')
    out.append("</svg>")
    return "\n".join(out)


def _fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.0f}%"
    return f"{value:.1f}" if unit == "score" else f"{value:.0f}"


def _pct(value: float | None) -> float | None:
    return None if value is None else value * 100


def _table(caption: str, header: Sequence[str], rows: Sequence[Sequence[str]],
           text_columns: int) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    numeric = ' class="n"'
    body = "".join("<tr>" + "".join(
        f"<td{'' if i < text_columns else numeric}>{_e(c)}</td>" for i, c in enumerate(row))
        + "</tr>" for row in rows)
    return (f"<table><caption>{_e(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _service_charts(title: str, rows: Sequence[Row]) -> str:
    labels = [r.name for r in rows]
    return "\n".join((
        bar_chart(f"{title}: score (0–100)", labels,
                  [("score", [r.tally.score for r in rows])], 100, "score"),
        bar_chart(f"{title}: service and satisfaction", labels,
                  [("accepted on time", [_pct(r.tally.acceptance_rate) for r in rows]),
                   ("resolved on time", [_pct(r.tally.resolution_rate) for r in rows]),
                   ("satisfied", [_pct(r.tally.satisfaction_rate) for r in rows])], 100, "%"),
        bar_chart(f"{title}: volume (shown, not scored)", labels,
                  [("cases", [float(r.tally.cases) for r in rows])],
                  max([r.tally.cases for r in rows] + [1]))))


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\"/>\n"
            f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")


def _total_row(tally: Tally) -> list[str]:
    return ["total", "", *cells(tally)]


def assessment_html(report: Assessment) -> str:
    period = (f"cases opened since {report.since:%Y-%m-%d %H:%M %z}" if report.since
              else "all cases")
    parts = ["<h1>griddispatch assessment</h1>",
             f"<p>As of {_e(f'{report.as_of:%Y-%m-%d %H:%M %z}')}, {_e(period)}: "
             f"{report.total.cases} cases ({report.total.without_sla} without time limits).</p>",
             "<h2>By lead department</h2>",
             _table("Departments", ("department", "code", *HEADER),
                    [[r.name, r.key, *cells(r.tally)] for r in report.departments]
                    + [_total_row(report.total)], 2),
             _service_charts("Departments", report.departments)]
    parts.append("<h2>By grid worker</h2>")
    if report.grid_workers:
        parts += [_table("Grid workers", ("grid worker", *HEADER),
                         [[r.key, *cells(r.tally)] for r in report.grid_workers], 1),
                  _service_charts("Grid workers", report.grid_workers)]
    else:
        parts.append("<p>No case carries <code>attributes.grid_worker_id</code>.</p>")
    parts.append(
        '<p class="note">Rates show the share and, in brackets, how many cases it is of; a '
        "case without time limits counts as unknown, not on time. Score: 100 × the weighted "
        "mean of the rates that have data, each smoothed as (k + 1) / (n + 2): satisfaction "
        "0.4, on-time resolution 0.3, on-time acceptance 0.2, not reopened 0.1. Volume is "
        "shown but not scored: assessment weighs service and residents' satisfaction, not "
        "counts.</p>")
    return _page("griddispatch assessment", "\n".join(parts))


def simulated_html(summary: SimulatedSummary) -> str:
    names = outcome_names(summary)
    rows = summary.departments
    parts = ["<h1>griddispatch simulation summary</h1>",
             f"<p>{summary.lines} lines of simulate output.</p>",
             bar_chart("Outcomes", list(names),
                       [("reports", [float(summary.outcomes[n]) for n in names])],
                       max([summary.outcomes[n] for n in names] + [1])),
             _table("Not dispatched", ("reason", "reports"),
                    [[k, str(v)] for k, v in sorted(summary.reasons.items())], 1),
             "<h2>By lead department</h2>",
             _table("Departments", ("department", "code", *SIMULATED_HEADER),
                    [[d.name, d.key, *simulated_cells(d)] for d in rows], 2),
             bar_chart("Cases opened per lead department", [d.name for d in rows],
                       [("cases opened", [float(d.cases) for d in rows]),
                        ("reports merged", [float(d.merged) for d in rows])],
                       max([d.cases for d in rows] + [d.merged for d in rows] + [1])),
             '<p class="note">Not in simulate output (it carries no answer times, '
             "verifications or report attributes; run the report on the cases topic): "
             + _e(", ".join(NEEDS_CASES_TOPIC)) + ".</p>"]
    return _page("griddispatch simulation summary", "\n".join(parts))
