"""The department client on a real broker: watch an assignment topic, answer on the status topic.

Each test applies the repository's topic specs under its own prefix, writes what the route
worker would write (an assignment from the real rules and route step, keyed by case id with
``schema`` and ``rules-revision`` headers) and runs the command in-process. Reads of the
status topic use a plain consumer, as a route worker or kcat would.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.cases.dispatch import on_classified
from engine.cases.duplicates import CaseStore
from engine.cases.records import Assignment, StatusUpdate
from engine.classify import classify_raw
from engine.cli import main
from engine.contracts import Classified, to_json
from engine.rules.load import load_rules
from engine.runtime import kafka
from engine.runtime.settings import Settings
from tests.integration.workers import apply_topics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEPT = "330110005.zhzf"  # 五常街道综合行政执法中队


def an_assignment() -> Assignment:
    ruleset = load_rules(REPO / "rules")
    raw = json.dumps({"channel": "gridapp", "channel_id": "GA-20261124-0042",
                      "reported_at": "2026-11-24T09:30:00+08:00",
                      "description": "西溪风情社区门口有流动摊贩占道经营，推车卖水果",
                      "grid_code": "330110005011002"}, ensure_ascii=False).encode()
    record = classify_raw(ruleset, raw, datetime(2026, 11, 24, 1, 31, tzinfo=UTC))
    assert isinstance(record, Classified)
    step = on_classified(ruleset, CaseStore(), record, record.received_at)
    (out,) = [o for o in step.outputs if o.topic == f"assignments.{DEPT}"]
    assert isinstance(out.value, Assignment)
    return out.value


def publish(settings: Settings, assignment: Assignment) -> None:
    producer = kafka.producer(settings)
    producer.produce(settings.topic(f"assignments.{assignment.department}"),
                     key=assignment.case_id.encode(), value=to_json(assignment),
                     headers=[("schema", b"griddispatch.assignment/1"),
                              ("rules-revision", assignment.rules_revision.encode())])
    assert producer.flush(30) == 0


def cli(settings: Settings, *argv: str) -> int:
    return main(["--bootstrap", settings.kafka_bootstrap, "--topic-prefix",
                 settings.topic_prefix, *argv, "--rules-dir", str(settings.rules_dir)])


def test_watch_prints_the_assignment_as_json_then_as_a_row(
        kafka_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    apply_topics(kafka_settings)
    assignment = an_assignment()
    publish(kafka_settings, assignment)
    capsys.readouterr()

    assert cli(kafka_settings, "dept", "watch", "--dept", DEPT, "--json", "--max", "1") == 0
    out = capsys.readouterr().out
    assert out == to_json(assignment).decode("utf-8") + "\n"
    assert "西溪风情社区" in out  # UTF-8 as is, not \\u escapes

    # The group committed what it showed; --from-beginning shows it again, as a table.
    assert cli(kafka_settings, "dept", "watch", "--dept", DEPT, "--from-beginning",
               "--max", "1") == 0
    head, row = capsys.readouterr().out.splitlines()
    assert head.startswith("time   case_id")
    assert row.startswith("09:31  " + assignment.case_id)
    assert "占道经营" in row and "330110005011002" in row


def test_accept_produces_a_status_update_keyed_by_place(
        kafka_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    apply_topics(kafka_settings)
    case_id = an_assignment().case_id
    before = datetime.now(UTC)
    assert cli(kafka_settings, "dept", "accept", case_id, "--dept", DEPT,
               "--note", "已安排队员前往") == 0
    assert capsys.readouterr().out == f"sent: accepted {case_id} by {DEPT}\n"

    consumer = kafka.consumer(kafka_settings, "test-status-reader")
    consumer.subscribe([kafka_settings.topic("assignments.status")])
    try:
        deadline = time.monotonic() + 60
        message = None
        while message is None and time.monotonic() < deadline:
            polled = consumer.poll(1.0)
            if polled is not None and polled.error() is None:
                message = polled
        assert message is not None, "no status update within 60 s"
    finally:
        consumer.close()
    assert message.key() == b"330110005"
    assert dict(message.headers() or []) == {"schema": b"griddispatch.status/1"}
    update = StatusUpdate.model_validate_json(message.value() or b"")
    assert (update.case_id, update.department, update.action, update.note) == (
        case_id, DEPT, "accepted", "已安排队员前往")
    assert update.at.utcoffset() == timedelta(hours=8)
    assert before - timedelta(seconds=5) <= update.at <= datetime.now(UTC)


def test_missing_topics_are_reported_not_waited_for(
        kafka_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    # No apply: under this test's prefix no topic exists yet.
    assert cli(kafka_settings, "dept", "watch", "--dept", DEPT, "--max", "1") == 1
    assert "does not exist" in capsys.readouterr().err
    assert cli(kafka_settings, "dept", "resolve", "330110005-ab954bb01bbe", "--dept", DEPT) == 1
    err = capsys.readouterr().err
    assert "assignments.status does not exist" in err and "topics apply" in err
