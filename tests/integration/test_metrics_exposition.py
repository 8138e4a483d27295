"""What Prometheus scrapes from the classify and route workers, fed a known input.

Both workers run as subprocesses on a real broker. After three reports (one classified and
dispatched, one to triage, one malformed), their /metrics must pass ``promtool check
metrics`` (Prometheus' own exposition linter) and the series the alerts and the dashboard
read must have moved by exactly that input, consumer lag included (sampled every second
here through GRIDDISPATCH_LAG_SECONDS).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.calendar import holiday_data_until_timestamp
from engine.cli.stack.prometheus import promtool_binary
from engine.runtime import kafka
from engine.runtime.settings import Settings
from tests.integration.workers import REPO, apply_topics, running, sample, scrape, wait_for

pytestmark = pytest.mark.integration

FIRST_GRID = json.loads((REPO / "rules" / "reference" / "grids.geojson").read_text(
    encoding="utf-8"))["features"][0]["properties"]["grid_code"]


def report(channel_id: str, **extra: object) -> bytes:
    return json.dumps({"channel": "hotline", "channel_id": channel_id,
                       "reported_at": "2026-11-24T09:30:00+08:00",
                       "description": "小区门口有人占道经营摆摊卖水果", **extra},
                      ensure_ascii=False).encode()


def promtool_check(exposition: str) -> None:
    result = subprocess.run([promtool_binary(), "check", "metrics"], input=exposition,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_worker_metrics_lint_clean_and_move_with_known_input(
        kafka_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDDISPATCH_LAG_SECONDS", "1")
    settings = kafka_settings
    apply_topics(settings)
    producer = kafka.producer(settings)
    for value in (report("EX-1", grid_code=FIRST_GRID), report("EX-2"), b'{"channel": '):
        producer.produce(settings.topic("incidents.reported"), value=value)
    assert producer.flush(30) == 0
    prefix = settings.topic_prefix

    with running(settings, "classify", tmp_path / "classify.log") as (_, cport), \
            running(settings, "route", tmp_path / "route.log") as (_, rport):
        wait_for(lambda: sample(rport, "griddispatch_route_records_total",
                                outcome="assigned") == 1.0, 90, "the case in route's metrics")
        for outcome in ("classified", "triage", "rejected"):
            assert sample(cport, "griddispatch_classify_records_total", outcome=outcome) == 1.0
        assert sample(cport, "griddispatch_triage_total", reason="unplaced") == 1.0
        assert sample(cport, "griddispatch_rejected_total", reason="malformed_json") == 1.0
        assert sample(cport, "griddispatch_classify_seconds_count") == 3.0  # every decision
        assert sample(rport, "griddispatch_route_seconds_count") == 1.0
        assert sample(rport, "griddispatch_open_cases", state="dispatched") == 1.0
        assert sample(cport, "griddispatch_rules_reload_success") == 1.0
        assert (sample(rport, "griddispatch_calendar_covered_until_timestamp_seconds")
                == holiday_data_until_timestamp())

        lags = [(cport, "griddispatch-classify", "incidents.reported"),
                (rport, "griddispatch-route", "incidents.classified"),
                (rport, "griddispatch-route", "assignments.status")]
        for port, group, topic in lags:  # everything consumed and committed: lag 0
            wait_for(lambda p=port, g=group, t=topic: sample(
                p, "griddispatch_consumer_lag", group=prefix + g, topic=prefix + t) == 0.0,
                30, f"{group} lag 0 on {topic}")

        # a department's malformed answer: counted as a rejection, and consumed (lag 0 again)
        producer.produce(settings.topic("assignments.status"), key=b"330110012",
                         value=b'{"not": "a status"}')
        assert producer.flush(30) == 0
        wait_for(lambda: sample(rport, "griddispatch_route_records_total",
                                outcome="rejected") == 1.0, 30, "the rejected status update")
        wait_for(lambda: sample(rport, "griddispatch_consumer_lag",
                                group=prefix + "griddispatch-route",
                                topic=prefix + "assignments.status") == 0.0, 30, "route lag 0")

        for port in (cport, rport):
            exposition = scrape(port)
            assert exposition is not None
            promtool_check(exposition)
        # Each exports only what it owns: classify holds no calendar (a 0 there fired
        # "holiday data ends in -20794 days") and neither exports the other's series.
        classify_text, route_text = scrape(cport) or "", scrape(rport) or ""
        assert "griddispatch_calendar_covered_until" not in classify_text
        assert "griddispatch_route_records_total" not in classify_text
        assert "griddispatch_classify_records_total" not in route_text
        assert "process_resident_memory_bytes" in classify_text  # the standard collectors
