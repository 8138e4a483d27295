"""The department client on a real broker: watch an assignment topic, answer on the status topic.

Each test applies the repository's topic specs under its own prefix, writes what the route
worker would write (an assignment from the real rules and route step, keyed by case id with
``schema`` and ``rules-revision`` headers) and runs the command in-process. Reads of the
status topic use a plain consumer, as a route worker or kcat would. The answers' verdicts
come from the real route worker, as its own process.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.cases.dispatch import on_classified
from engine.cases.duplicates import CaseStore
from engine.cases.lifecycle import partition_key
from engine.cases.records import Assignment, StatusUpdate
from engine.classify import classify_raw
from engine.cli import main
from engine.contracts import Classified, to_json
from engine.rules.load import load_rules
from engine.runtime import kafka
from engine.runtime.settings import Settings
from tests.integration.workers import apply_topics, running

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEPT = "330110005.zhzf"  # 五常街道综合行政执法中队


def a_report() -> Classified:
    """A grid-app report of street vending in 五常街道, classified by the real rules."""
    ruleset = load_rules(REPO / "rules")
    raw = json.dumps({"channel": "gridapp", "channel_id": "GA-20261124-0042",
                      "reported_at": "2026-11-24T09:30:00+08:00",
                      "description": "西溪风情社区门口有流动摊贩占道经营，推车卖水果",
                      "grid_code": "330110005011002"}, ensure_ascii=False).encode()
    record = classify_raw(ruleset, raw, datetime(2026, 11, 24, 1, 31, tzinfo=UTC))
    assert isinstance(record, Classified)
    return record


def an_assignment() -> Assignment:
    ruleset = load_rules(REPO / "rules")
    record = a_report()
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
               "--note", "已安排队员前往", "--no-wait") == 0
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
    assert cli(kafka_settings, "dept", "resolve", "330110005-ab954bb01bbe", "--dept", DEPT,
               "--note", "已处理") == 1
    err = capsys.readouterr().err
    assert "assignments.status does not exist" in err and "topics apply" in err


def wait_for_case(settings: Settings, case_id: str, timeout: float = 90) -> None:
    """Until the route worker has written the case on ``cases`` (an answer sent before would
    meet no case: ``unknown_case``)."""
    consumer = kafka.consumer(settings, "test-cases-reader")
    consumer.subscribe([settings.topic("cases")])
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None and \
                    message.key() == case_id.encode():
                return
        raise AssertionError(f"no case {case_id} on cases within {timeout:.0f}s")
    finally:
        consumer.close()


def test_answers_wait_for_the_route_workers_verdict(
        kafka_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = kafka_settings
    apply_topics(settings)
    record = a_report()
    case_id = an_assignment().case_id

    def answer(verb: str, dept: str, *extra: str) -> tuple[int, str, str]:
        code = cli(settings, "dept", verb, case_id, "--dept", dept, "--wait", "60", *extra)
        out, err = capsys.readouterr()
        return code, out.strip(), err.strip()

    with running(settings, "route", tmp_path / "route.log"):
        producer = kafka.producer(settings)
        producer.produce(settings.topic("incidents.classified"), to_json(record),
                         partition_key(record.division_chain).encode())
        assert producer.flush(30) == 0
        wait_for_case(settings, case_id)
        capsys.readouterr()

        # Not ours: returned before accepting, re-routed to another lead (returned, reassigned).
        code, out, err = answer("return", DEPT, "--note", "不属于本部门")
        assert (code, err) == (0, "")
        found = re.fullmatch(rf"applied: returned {case_id} by {re.escape(DEPT)}; the case is "
                             r"now dispatched, lead (\S+)", out)
        assert found is not None, out
        lead = found.group(1)
        assert lead != DEPT

        assert answer("accept", lead) == (
            0, f"applied: accepted {case_id} by {lead}; the case is now accepted, lead {lead}",
            "")
        with pytest.raises(SystemExit) as exited:  # resolve needs its result
            cli(settings, "dept", "resolve", case_id, "--dept", lead)
        assert exited.value.code == 2
        assert "the following arguments are required: --note" in capsys.readouterr().err
        code, out, _ = answer("resolve", lead, "--note", "已劝离，恢复通行")
        assert (code, out) == (
            0, f"applied: resolved {case_id} by {lead}; the case is now resolved, lead {lead}")

        # Accepting a resolved case is refused: exit 2, the worker's reason on stderr.
        assert answer("accept", lead) == (
            2, "", f"refused: accepted {case_id} by {lead}: illegal_transition: cannot accept "
                   "a case that is resolved")
        # A department not on the case.
        code, out, err = answer("progress", DEPT, "--note", "进展")
        assert (code, out) == (2, "")
        assert err == (f"refused: progress {case_id} by {DEPT}: not_assigned: {DEPT} is not "
                       f"assigned to case {case_id}")

    # No route worker: sent, but no verdict in time.
    capsys.readouterr()  # the worker's log tail, printed as it stopped
    code = cli(settings, "dept", "progress", case_id, "--dept", lead, "--note", "进展",
               "--wait", "2")
    out, err = capsys.readouterr()
    assert (code, out) == (3, "")
    assert err.startswith(f"no answer: progress {case_id} by {lead} was sent") and "2s" in err
