"""Build ``ops/grafana/griddispatch.json``, the griddispatch Grafana dashboard.

Why a script: a dashboard is ~20 panels of repetitive JSON in which ids, grid positions and
datasource references must all agree; writing it by hand drifts, and Grafana's own export
adds noise that hides the queries in review. Here each panel is one call that says what it
shows and which PromQL it runs; the JSON is committed (import it as is) and
``tests/unit/test_ops_grafana.py`` checks that it equals this script's output and that every
metric it queries exists in ``engine/runtime/metrics.py``.

Run from the repository root after editing::

    python ops/grafana/build_dashboard.py          # rewrites ops/grafana/griddispatch.json
    python ops/grafana/build_dashboard.py --check  # exit 1 when the file is out of date

Standard library only. Grafana JSON model, schemaVersion 39 (Grafana 10.x/11.x); the
Prometheus datasource is the dashboard variable ``datasource``, chosen at import.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("griddispatch.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
WIDTH = 24
RATE = "$__rate_interval"
DEPT = 'department=~"$department"'
# A department counts under the platform most of its assignments belong to (escalations and
# SLA gauges carry no platform label; the registry gives each department one platform).
DEPT_PLATFORM = ("(0 * topk by (department) (1, sum by (department, platform) "
                 "(griddispatch_assignments_total)) + 1)")


class Layout:
    """Places panels left to right in rows of 24 columns, numbering them as it goes."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = self.y = self.row_height = 0
        self.next_id = 1

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def row(self, title: str) -> None:
        self.y += self.row_height
        self.x = self.row_height = 0
        self.panels.append({"id": self._id(), "type": "row", "title": title, "collapsed": False,
                            "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": self.y},
                            "panels": []})
        self.y += 1

    def add(self, panel: dict[str, Any], w: int, h: int = 8) -> None:
        if self.x + w > WIDTH:
            self.y += self.row_height
            self.x = self.row_height = 0
        panel = {"id": self._id(), **panel,
                 "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y}}
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False,
           table: bool = False) -> dict[str, Any]:
    """One query; ``instant`` for bar gauges (one bar per series), ``table`` for tables."""
    found: dict[str, Any] = {"datasource": DS, "refId": ref, "expr": expr,
                             "legendFormat": legend or "__auto"}
    if instant or table:
        found.update(instant=True, range=False, format="table" if table else "time_series")
    else:
        found["range"] = True
    return found


def targets(*queries: tuple[str, str]) -> list[dict[str, Any]]:
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(queries)]


def timeseries(title: str, description: str, queries: list[tuple[str, str]], unit: str,
               stack: bool = False, minimum: float | None = 0) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": unit,
        "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if stack else 0,
                   "showPoints": "never", "spanNulls": False,
                   "stacking": {"mode": "normal" if stack else "none", "group": "A"}},
    }
    if minimum is not None:
        defaults["min"] = minimum
    return {"type": "timeseries", "title": title, "description": description,
            "datasource": DS, "targets": targets(*queries),
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom",
                                   "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def bargauge(title: str, description: str, expr: str, legend: str, unit: str,
             thresholds: list[tuple[float | None, str]] | None = None,
             maximum: float | None = None) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit, "min": 0, "thresholds": _thresholds(
        thresholds or [(None, "blue")])}
    if maximum is not None:
        defaults["max"] = maximum
    return {"type": "bargauge", "title": title, "description": description, "datasource": DS,
            "targets": [target(expr, legend, instant=True)],
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"orientation": "horizontal", "displayMode": "gradient",
                        "showUnfilled": True, "valueMode": "color", "namePlacement": "left",
                        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                          "values": False}}}


def stat(title: str, description: str, expr: str, legend: str, unit: str,
         thresholds: list[tuple[float | None, str]],
         mappings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "stat", "title": title, "description": description, "datasource": DS,
            "targets": [target(expr, legend)],
            "fieldConfig": {"defaults": {"unit": unit, "thresholds": _thresholds(thresholds),
                                         "mappings": mappings or []},
                            "overrides": []},
            "options": {"colorMode": "background", "graphMode": "none", "justifyMode": "auto",
                        "textMode": "value_and_name", "orientation": "auto",
                        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                          "values": False}}}


def table(title: str, description: str, expr: str) -> dict[str, Any]:
    return {"type": "table", "title": title, "description": description, "datasource": DS,
            "targets": [target(expr, table=True)],
            "fieldConfig": {"defaults": {}, "overrides": []},
            "transformations": [{"id": "organize", "options": {
                "excludeByName": {"Time": True, "Value": True, "__name__": True},
                "indexByName": {}, "renameByName": {}}}],
            "options": {"showHeader": True, "cellHeight": "sm"}}


def _thresholds(steps: list[tuple[float | None, str]]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


def sla_open(matchers: str = "") -> str:
    """Open cases by department and state: every timer worker counts them all, so max."""
    selector = f"{{{matchers}}}" if matchers else ""
    return f"max by (department, state) (griddispatch_sla_open_cases{selector})"


def quantiles(metric: str, by: str = "") -> list[tuple[str, str]]:
    group = f"le{', ' + by if by else ''}"
    legend = f"{{{{{by}}}}} " if by else ""
    return [(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))",
             f"{legend}p{round(q * 100)}") for q in (0.5, 0.9, 0.99)]


def panels() -> list[dict[str, Any]]:
    layout = Layout()

    layout.row("Flow: intake → classify → route")
    layout.add(timeseries(
        "Throughput per stage",
        "Records per second leaving each stage: reports accepted by the intake, classify "
        "outcomes, route outcomes, assignment records published to departments.",
        [(f'sum(rate(griddispatch_intake_requests_total{{result="accepted"}}[{RATE}]))',
          "intake accepted"),
         (f"sum by (outcome) (rate(griddispatch_classify_records_total[{RATE}]))",
          "classify {{outcome}}"),
         (f"sum by (outcome) (rate(griddispatch_route_records_total[{RATE}]))",
          "route {{outcome}}"),
         (f"sum(rate(griddispatch_assignments_total[{RATE}]))", "assignments")],
        "ops"), w=12)
    layout.add(timeseries(
        "Reported → assigned latency",
        "Time from an incident's reported_at to the dispatch of the case it opened "
        "(griddispatch_route_seconds). Includes any delay before the report reached the "
        "intake.", quantiles("griddispatch_route_seconds"), "s"), w=12)
    layout.add(timeseries(
        "Consumer lag",
        "Records each worker group has not committed yet, per topic (max over the group's "
        "members: each reports the whole group). Alert: GriddispatchConsumerLagHigh.",
        [("max by (group, topic) (griddispatch_consumer_lag)", "{{group}} {{topic}}")],
        "short"), w=8)
    layout.add(timeseries(
        "Triage inflow",
        "Reports no rule could place or classify, per hour by reason; people decide them. "
        "Alert: GriddispatchTriageBacklogGrowing (more than a fifth of the intake).",
        [("sum by (reason) (increase(griddispatch_triage_total[1h]))", "{{reason}}")],
        "short", stack=True), w=8)
    layout.add(timeseries(
        "Triage and rejected share",
        "Share of classify output that went to triage (a person decides) or was rejected "
        "(invalid input).",
        [(f"sum(rate(griddispatch_triage_total[{RATE}])) / "
          f"sum(rate(griddispatch_classify_records_total[{RATE}]))", "triage"),
         (f"sum(rate(griddispatch_rejected_total[{RATE}])) / "
          f"sum(rate(griddispatch_classify_records_total[{RATE}]))", "rejected")],
        "percentunit"), w=8)

    layout.row("Cases and SLA")
    layout.add(bargauge(
        "Open cases per department",
        "Open cases with running time limits, by lead department (all states; max over "
        "timer workers, each of which counts them all).",
        f"sort_desc(sum by (department) ({sla_open(DEPT)}))",
        "{{department}}", "short"), w=8, h=10)
    layout.add(bargauge(
        "SLA compliance per department (24 h)",
        "1 − breaches / assignments over the last 24 hours, per department: the share of "
        "work handed to a department that met its limits (acceptance and resolution).",
        f"sort(1 - (sum by (department) (increase(griddispatch_escalations_total"
        f"{{step=\"breach\", {DEPT}}}[1d])) or sum by (department) "
        f"(increase(griddispatch_assignments_total{{{DEPT}}}[1d])) * 0) / clamp_min(sum by "
        f"(department) (increase(griddispatch_assignments_total{{{DEPT}}}[1d])), 1))",
        "{{department}}", "percentunit",
        [(None, "red"), (0.8, "orange"), (0.95, "green")], maximum=1), w=8, h=10)
    layout.add(bargauge(
        "SLA compliance per platform (24 h)",
        "As per department, summed over the departments of each platform (a department "
        "counts under the platform most of its assignments belong to).",
        f"1 - sum by (platform) (sum by (department) (increase(griddispatch_escalations_total"
        f"{{step=\"breach\"}}[1d])) * on (department) group_left (platform) {DEPT_PLATFORM})"
        f" / clamp_min(sum by (platform) (increase(griddispatch_assignments_total[1d])), 1)",
        "{{platform}}", "percentunit",
        [(None, "red"), (0.8, "orange"), (0.95, "green")], maximum=1), w=8, h=10)
    layout.add(timeseries(
        "Open cases per platform and state",
        "Open cases by platform (timer workers' view) and, from the route workers, by case "
        "state.",
        [(f"sum by (platform) (sum by (department) ({sla_open()}) * on "
          f"(department) group_left (platform) {DEPT_PLATFORM})", "{{platform}}"),
         ("sum by (state) (griddispatch_open_cases)", "route: {{state}}")],
        "short"), w=12)
    layout.add(timeseries(
        "Escalations per hour",
        "Warnings, breaches and ladder steps published, by department and step. Alert: "
        "GriddispatchSlaBreachRateHigh.",
        [(f"sum by (department, step) (increase(griddispatch_escalations_total{{{DEPT}}}[1h]))",
          "{{department}} {{step}}")],
        "short", stack=True), w=12)
    layout.add(timeseries(
        "Assignments per platform",
        "Assignment records published per second (new, update, reassigned; lead and assist).",
        [(f"sum by (platform) (rate(griddispatch_assignments_total[{RATE}]))", "{{platform}}")],
        "ops", stack=True), w=12)
    layout.add(timeseries(
        "Timer lateness",
        "How late SLA timers fire (p50/p90/p99), and timers waiting in Redis. Alert: "
        "GriddispatchTimerLateness (p99 above 30 s).",
        [*quantiles("griddispatch_timer_lateness_seconds"),
         ("max(griddispatch_timers_pending)", "pending timers")],
        "s"), w=12)

    layout.row("Edges: intake, webhooks, dead letters")
    layout.add(timeseries(
        "Intake results",
        "Reports offered to the intake per second, by channel and result. Alert: "
        "GriddispatchIntakeUnavailable (more than 5% unavailable).",
        [(f"sum by (channel, result) (rate(griddispatch_intake_requests_total[{RATE}]))",
          "{{channel}} {{result}}")],
        "reqps", stack=True), w=8)
    layout.add(timeseries(
        "Intake latency",
        "Time from an intake request's arrival to the broker's acknowledgement.",
        quantiles("griddispatch_intake_seconds"), "s"), w=8)
    layout.add(timeseries(
        "Webhook deliveries",
        "Deliveries to department systems per second, by department and result.",
        [(f"sum by (department, result) (rate(griddispatch_webhook_deliveries_total"
          f"{{{DEPT}}}[{RATE}]))", "{{department}} {{result}}")],
        "ops", stack=True), w=8)
    layout.add(timeseries(
        "Connectors",
        "Messages the bridges (MQTT sensors, department Kafka bridges, replay) took from their "
        "source per second, by connector and result; and whether each is connected (1).",
        [(f"sum by (connector, result) (rate(griddispatch_connector_messages_total[{RATE}]))",
          "{{connector}} {{result}}"),
         ("min by (connector) (griddispatch_connector_connected)", "{{connector}} connected")],
        "short"), w=8)
    layout.add(timeseries(
        "Dead letters per hour",
        "Records parked on a dead-letter topic (intake.deadletter, webhooks.deadletter), by "
        "topic and reason. Alert: GriddispatchDeadLetters.",
        [("sum by (topic, reason) (increase(griddispatch_dead_letters_total[1h]))",
          "{{topic}} {{reason}}")],
        "short", stack=True), w=8)
    layout.add(timeseries(
        "Worker errors per hour",
        "Unexpected errors workers caught and survived (a record or tick was skipped). "
        "Alert: GriddispatchWorkerErrors.",
        [("sum by (worker, stage) (increase(griddispatch_worker_errors_total[1h]))",
          "{{worker}} {{stage}}")],
        "short", stack=True), w=8)

    layout.row("Workers and rules")
    layout.add(stat(
        "Workers up", "Scrape status of every griddispatch job (Alert: GriddispatchWorkerDown).",
        'up{job=~"griddispatch-.*"}', "{{job}} {{instance}}", "none",
        [(None, "red"), (1, "green")],
        [{"type": "value", "options": {"0": {"text": "down"}, "1": {"text": "up"}}}]), w=9, h=6)
    layout.add(stat(
        "Rules reload", "1 when the last reload of the rule files succeeded; 0: the edit was "
        "rejected and the previous revision still serves (Alert: GriddispatchRulesReloadFailed).",
        "griddispatch_rules_reload_success", "{{job}} {{instance}}", "none",
        [(None, "red"), (1, "green")],
        [{"type": "value", "options": {"0": {"text": "failed"}, "1": {"text": "ok"}}}]),
        w=5, h=6)
    layout.add(table(
        "Rules revision serving",
        "The rule-set revision (content hash) each process serves; differing revisions "
        "mean a reload has not reached every worker.",
        "max by (job, instance, revision) (griddispatch_rules_revision_info == 1)"), w=6, h=6)
    layout.add(stat(
        "Holiday data left", "Time until the holiday data of the route and timer workers "
        "ends; working-time limits past it count Monday to Friday "
        "(Alert: GriddispatchHolidayDataEnding).",
        "min(griddispatch_calendar_covered_until_timestamp_seconds) - time()", "", "s",
        [(None, "red"), (30 * 86400, "orange"), (60 * 86400, "green")]), w=4, h=6)
    return layout.panels


def variable_department() -> dict[str, Any]:
    return {"type": "query", "name": "department", "label": "department",
            "datasource": DS, "definition": "label_values(griddispatch_sla_open_cases, department)",
            "query": {"query": "label_values(griddispatch_sla_open_cases, department)",
                      "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2, "sort": 1, "multi": True, "includeAll": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [], "hide": 0, "regex": ""}


def dashboard() -> dict[str, Any]:
    return {
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "description": "griddispatch: intake, classify, route, SLA timers and departments "
                       "(ops/grafana/build_dashboard.py builds this file).",
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "panels": panels(),
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["griddispatch"],
        "templating": {"list": [
            {"type": "datasource", "name": "datasource", "label": "Prometheus",
             "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": "",
             "options": []},
            variable_department(),
        ]},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": "griddispatch",
        "uid": "griddispatch",
        "version": 1,
        "weekStart": "",
    }


def render() -> str:
    return json.dumps(dashboard(), ensure_ascii=False, indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv[1:2] == ["--check"]:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is out of date: run python {Path(__file__).as_posix()}",
                  file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
