"""The ops bundle: alert rules pass promtool and their own unit tests, every alert has a runbook
and tests that fire and stay quiet, and every metric the alerts and the dashboard query is
one that ``engine.runtime.metrics`` defines (under the name Prometheus will actually see).

promtool comes from Debian's ``prometheus`` package (``engine.cli.stack.prometheus`` installs it
when missing and root, else fails with the command to run).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from engine.cli.stack.prometheus import config_text, promtool_binary
from engine.runtime.metrics import all_metrics

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "ops" / "prometheus"
RUNBOOKS = REPO / "ops" / "runbooks"
DASHBOARD = REPO / "ops" / "grafana" / "griddispatch.json"
# Labels Prometheus adds at scrape time, and the histogram bucket bound.
SCRAPE_LABELS = {"job", "instance"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool_binary(), *args], cwd=PROMETHEUS, capture_output=True,
                          text=True, timeout=120, check=False)


@cache
def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


# --- promtool ---------------------------------------------------------------------------------

def test_alert_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_scrape_config_passes_promtool_check() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stack_runs_the_shipped_config_with_absolute_rule_files() -> None:
    shipped = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    generated = yaml.safe_load(config_text())
    assert generated["rule_files"] == [str(PROMETHEUS / "alerts.yml")]
    assert generated["scrape_configs"] == shipped["scrape_configs"]


def test_up_starts_prometheus_with_no_jobs_then_names_only_what_runs() -> None:
    # A job dropped on reload leaves no stale marker: had Prometheus scraped the kafka bridge
    # that up never starts, `up == 0` would read for five minutes (a CI failure).
    assert yaml.safe_load(config_text(targets={}))["scrape_configs"] == []
    jobs = yaml.safe_load(config_text(targets={"griddispatch-route": "127.0.0.1:4711"}))
    assert [(j["job_name"], j["static_configs"]) for j in jobs["scrape_configs"]] == [
        ("griddispatch-route", [{"targets": ["127.0.0.1:4711"]}])]
    assert jobs["rule_files"] == [str(PROMETHEUS / "alerts.yml")]


def test_the_scrape_targets_are_the_commands_default_metrics_ports() -> None:
    from engine.cli import (
        connect_cmd,
        console_cmd,
        intake_cmd,
        timers_cmd,
        webhooks_cmd,
        worker_cmd,
    )

    shipped = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {job["job_name"]: job["static_configs"][0]["targets"]
               for job in shipped["scrape_configs"]}
    ports = {"classify": worker_cmd.DEFAULT_METRICS_PORT,
             "route": worker_cmd.DEFAULT_ROUTE_METRICS_PORT,
             "timers": timers_cmd.DEFAULT_TIMERS_METRICS_PORT,
             "mqtt": connect_cmd.DEFAULT_MQTT_METRICS_PORT,
             "kafka-bridge": connect_cmd.DEFAULT_KAFKA_METRICS_PORT,
             "webhooks": webhooks_cmd.DEFAULT_METRICS_PORT,
             "intake": intake_cmd.DEFAULT_PORT, "console": console_cmd.DEFAULT_PORT}
    assert targets == {f"griddispatch-{job}": [f"127.0.0.1:{port}"]
                       for job, port in ports.items()}


# --- every alert: runbook, tests that fire and tests that stay quiet --------------------------

def test_every_alert_has_its_runbook() -> None:
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"ops/runbooks/{name}.md", name
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        text = (RUNBOOKS / f"{name}.md").read_text(encoding="utf-8")
        assert text.startswith(f"# {name}\n"), name
        for heading in ("## What it means", "## Confirm", "## What to do"):
            assert heading in text, f"{name}: missing {heading}"
        assert f"[{name}.md]({name}.md)" in (RUNBOOKS / "README.md").read_text(encoding="utf-8")
    pages = {p.stem for p in RUNBOOKS.glob("*.md")} - {"README"}
    assert pages == {rule["alert"] for rule in alert_rules()}, "a runbook without its alert"


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text(encoding="utf-8"))
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested staying quiet"


# --- every metric used exists -----------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_SELECTOR = re.compile(r"\b(griddispatch_[a-z0-9_]+|up)\b(?:\s*\{([^}]*)\})?")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


@cache
def defined() -> dict[str, MetricWrapperBase]:
    return {metric._name: metric for metric in all_metrics()}


def series_labels(name: str) -> set[str] | None:
    """The labels of the series ``name`` as exposed, or None when no metric exposes it.

    Counters are exposed as ``<name>_total`` (prometheus-client adds the suffix), histograms
    as ``_bucket`` (with ``le``), ``_sum`` and ``_count``; gauges under their own name.
    """
    if name == "up":
        return set()
    metrics = defined()
    candidates = [(name, "gauge", set()), (name.removesuffix("_total"), "counter", set())]
    candidates += [(name.removesuffix(s), "histogram", {"le"} if s == "_bucket" else set())
                   for s in ("_bucket", "_sum", "_count") if name.endswith(s)]
    for base, kind, extra in candidates:
        metric = metrics.get(base)
        if metric is not None and metric._type == kind and (kind == "gauge" or base != name):
            return set(metric._labelnames) | extra
    return None


def problems(expr: str) -> Iterator[str]:
    """Unknown metric names and labels a metric of the expression does not have."""
    bare = _STRING.sub('""', expr)
    used: dict[str, set[str]] = {}
    for name, matchers in _SELECTOR.findall(bare):
        labels = series_labels(name)
        if labels is None:
            yield f"unknown metric {name}"
            continue
        used[name] = labels
        for label in _MATCHER.findall(matchers or ""):
            if label not in labels | SCRAPE_LABELS:
                yield f"{name} has no label {label}"
    known = set().union(*used.values()) | SCRAPE_LABELS if used else SCRAPE_LABELS
    for grouping in _GROUPING.findall(bare):
        for label in filter(None, (part.strip() for part in grouping.split(","))):
            if label not in known:
                yield f"no metric of the expression has label {label}"


def dashboard_expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]
    exprs += [var["definition"] for var in board["templating"]["list"] if var["type"] == "query"]
    return exprs


def test_the_checker_catches_wrong_names_and_labels() -> None:
    assert list(problems('sum by (outcome) (rate(griddispatch_classify_records_total[5m]))')) == []
    assert list(problems("rate(griddispatch_classify_records[5m])")) == [
        "unknown metric griddispatch_classify_records"]  # a counter without _total
    assert list(problems("griddispatch_open_cases_total")) == [
        "unknown metric griddispatch_open_cases_total"]  # a gauge is not a counter
    assert list(problems('griddispatch_route_seconds_bucket{le="1"}')) == []
    assert list(problems('griddispatch_open_cases{department="x"}')) == [
        "griddispatch_open_cases has no label department"]
    assert list(problems("sum by (channel) (griddispatch_open_cases)")) == [
        "no metric of the expression has label channel"]
    assert list(problems('up{job=~"griddispatch_x"} == 0')) == []  # strings are not names


def test_every_metric_in_the_alerts_exists() -> None:
    found = {rule["alert"]: list(problems(rule["expr"])) for rule in alert_rules()}
    assert {name: p for name, p in found.items() if p} == {}


def test_every_metric_on_the_dashboard_exists() -> None:
    found = {expr: list(problems(expr)) for expr in dashboard_expressions()}
    assert {expr: p for expr, p in found.items() if p} == {}


# --- the dashboard ---------------------------------------------------------------------------

def build_module() -> Any:
    spec = importlib.util.spec_from_file_location("build_dashboard",
                                                  DASHBOARD.with_name("build_dashboard.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dashboard_file_is_what_the_script_builds() -> None:
    assert DASHBOARD.read_text(encoding="utf-8") == build_module().render(), (
        "run: python ops/grafana/build_dashboard.py")


def test_dashboard_is_a_grafana_model_on_a_prometheus_datasource_variable() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert board["schemaVersion"] == 39 and board["uid"] == "griddispatch"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) and refs, panel["title"]
        assert all(t["datasource"] == panel["datasource"] and t["expr"] for t in panel["targets"])
    titles = " | ".join(p["title"] for p in board["panels"])
    for shown in ("Throughput per stage", "Reported → assigned latency", "Consumer lag",
                  "Open cases per department", "SLA compliance per department",
                  "SLA compliance per platform", "Escalations", "Triage", "Rules revision",
                  "Intake results", "Webhook deliveries", "Timer lateness"):
        assert shown in titles


@pytest.mark.parametrize("name", ["griddispatch_consumer_lag"])
def test_the_lag_metric_is_a_gauge_by_group_and_topic(name: str) -> None:
    metric = defined()[name]
    assert metric._type == "gauge" and metric._labelnames == ("group", "topic")
