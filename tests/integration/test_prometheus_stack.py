"""The stack's optional Prometheus: started and stopped with the stack, loading our alert rules,
scraping /metrics and evaluating the rules against what it scraped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import start_http_server

from engine.cli.stack import LocalStack, StackPorts, process, prometheus
from engine.runtime import metrics
from engine.runtime.settings import Settings
from tests.integration.intake_helpers import form
from tests.integration.workers import REPO, apply_topics, running, scrape, stop, wait_for
from tests.unit.test_ops import dashboard_expressions

pytestmark = pytest.mark.integration

ALERTS = Path(prometheus.OPS_DIR) / "alerts.yml"


def api(port: int, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/{path}{query}",
                                timeout=5) as answer:
        body = json.loads(answer.read())
    assert body["status"] == "success", body
    return body["data"]


def every_second(folder: Path, rules: Path, jobs: dict[str, int]) -> Path:
    """A Prometheus config: ``rules``, and each job's port on loopback scraped and the rules
    evaluated every second."""
    config = yaml.safe_load((prometheus.OPS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    config["rule_files"] = [str(rules)]
    config["scrape_configs"] = [
        {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}
        for job, target in jobs.items()]
    source = folder / "prometheus.yml"
    source.write_text(yaml.safe_dump(config), encoding="utf-8")
    return source


def alert_names() -> set[str]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"]}


def test_stack_runs_prometheus_only_when_asked_and_stops_it(tmp_path: Path) -> None:
    ports = StackPorts(kafka=process.free_port(), kafka_controller=process.free_port(),
                       redis=process.free_port(), mqtt=process.free_port(),
                       prometheus=process.free_port())
    stack = LocalStack(tmp_path / "stack")
    try:
        statuses = stack.up(ports, persistent_redis=False, with_prometheus=True)
        assert [(s.name, s.answering) for s in statuses][-1] == ("prometheus", True)
        pid = statuses[-1].pid
        assert pid is not None
        rules = api(ports.prometheus, "rules")["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} == alert_names()
        assert (stack.home / "prometheus" / "data").is_dir()
        again = stack.up(ports)  # without the flag: a running Prometheus is left alone
        assert again[-1].pid == pid
    finally:
        stopped = stack.down()
    assert stopped[0] == "prometheus"
    assert not process.pid_alive(pid)
    assert [s.name for s in stack.status()] == ["kafka", "redis", "mqtt"]


def test_prometheus_scrapes_worker_metrics_and_evaluates_the_alerts(tmp_path: Path) -> None:
    """A /metrics of this process as the route job, a port with nothing as the timers job."""
    served, dead = process.free_port(), process.free_port()
    server, thread = start_http_server(served, addr="127.0.0.1")
    config = yaml.safe_load((prometheus.OPS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    config["rule_files"] = [str(ALERTS)]
    config["scrape_configs"] = [
        {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}
        for job, target in (("griddispatch-route", served), ("griddispatch-timers", dead))]
    source = tmp_path / "prometheus.yml"
    source.write_text(yaml.safe_dump(config), encoding="utf-8")
    layout = prometheus.layout(tmp_path / "home")
    port = process.free_port()
    group = "it-lag.griddispatch-route"
    metrics.CONSUMER_LAG.labels(group=group, topic="it-lag.incidents.classified").set(1234)
    try:
        prometheus.start(layout, port, source=source)

        def value(query: str) -> list[dict[str, Any]]:
            return list(api(port, "query", query=query)["result"])

        lag = f'max by (group, topic) (griddispatch_consumer_lag{{group="{group}"}})'
        wait_for(lambda: bool(value(lag)), 30, "the lag series in Prometheus")
        found = value(lag)
        assert found[0]["value"][1] == "1234"
        # the timers job is down: the alert rule sees it (pending: it needs 2 minutes to fire)
        wait_for(lambda: bool(value('ALERTS{alertname="GriddispatchWorkerDown", '
                                    'job="griddispatch-timers"}')), 30, "WorkerDown pending")
        pending = value('ALERTS{alertname="GriddispatchWorkerDown"}')
        assert [(a["metric"]["job"], a["metric"]["alertstate"]) for a in pending] == [
            ("griddispatch-timers", "pending")]
        # every dashboard query is PromQL this Prometheus accepts (Grafana's variables filled)
        for expr in dashboard_expressions():
            if not expr.startswith("label_values("):  # a Grafana variable query, not PromQL
                value(expr.replace("$__rate_interval", "1m").replace("$department", ".*"))
    finally:
        process.stop(layout.pid_file)
        metrics.CONSUMER_LAG.remove(group, "it-lag.incidents.classified")
        server.shutdown()
        thread.join(5)


def test_a_healthy_engine_under_load_fires_no_alert(
        kafka_settings: Settings, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The real workers and intake, scraped by Prometheus with the real rules every second:
    nothing may be pending or firing for 15 evaluation cycles. On a healthy stack the intake
    used to export the rules-reload gauge at 0 (RulesReloadFailed) and the calendar gauge at
    0 (HolidayDataEnding, "ends in -20794d"). The one alert a healthy engine may raise is
    HolidayDataEnding itself while the holiday data really ends within 60 days (December)."""
    settings = kafka_settings
    apply_topics(settings)
    monkeypatch.setenv("REDIS_URL", redis_url)
    intake_port = process.free_port()
    intake_log = tmp_path / "intake.log"
    with intake_log.open("ab") as out:
        intake = subprocess.Popen(
            [sys.executable, "-m", "engine", "--bootstrap", settings.kafka_bootstrap,
             "--topic-prefix", settings.topic_prefix, "intake", "--port", str(intake_port)],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    layout = prometheus.layout(tmp_path / "home")
    port = process.free_port()
    try:
        with running(settings, "classify", tmp_path / "classify.log") as (_, cport), \
                running(settings, "route", tmp_path / "route.log") as (_, rport), \
                running(settings, "timers", tmp_path / "timers.log") as (_, tport):
            wait_for(lambda: scrape(intake_port) is not None, 60, "the intake's /metrics")
            jobs = {"griddispatch-classify": cport, "griddispatch-route": rport,
                    "griddispatch-timers": tport, "griddispatch-intake": intake_port}
            prometheus.start(layout, port, source=every_second(tmp_path, ALERTS, jobs))

            def value(query: str) -> list[dict[str, Any]]:
                return list(api(port, "query", query=query)["result"])

            wait_for(lambda: len(value("up == 1")) == len(jobs), 60, "every job up")
            for n in range(40):  # load: open311 reports through the real intake
                form(f"http://127.0.0.1:{intake_port}/open311/v2/requests.json",
                     {"api_key": "dev-open311", "service_code": "streetlight",
                      "lat": "30.2912", "long": "119.9921",
                      "description": f"路灯不亮 {n} {uuid.uuid4().hex[:6]}"})
            seen: set[str] = set()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                seen |= {f"{a['metric']['alertname']} ({a['metric']['alertstate']})"
                         for a in value("ALERTS")
                         if a["metric"]["alertname"] != "GriddispatchHolidayDataEnding"}
                time.sleep(1)
            assert seen == set()
            ending = value("min(griddispatch_calendar_covered_until_timestamp_seconds > 0)")
            assert ending and float(ending[0]["value"][1]) > time.time()  # a real date
    finally:
        process.stop(layout.pid_file)
        stop(intake, intake_log)
