"""An extension (延期) through the real broker, route worker, timers workers and Redis: the
lead asks, its supervisor grants, the resolution deadline moves, the timers are re-planned,
and the breach fires once, at the new deadline, never at the old one."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.cases.records import StatusUpdate
from engine.rules.load import load_rules
from engine.runtime import kafka
from engine.runtime.settings import Settings
from tests.integration.test_route_worker import Watcher
from tests.integration.test_timers import escalations, gas_report
from tests.integration.workers import apply_topics, running
from tests.unit.rules_copy import rules_with_county_sla

pytestmark = pytest.mark.integration

EXTENDABLE = """
sla:
  urgent:
    description: test policy with limits in seconds
    accept: null
    resolve: 10s
    unit: natural
    warn_at: [50]
    extensions: {max: 1, total: 1h}
"""


def extendable_rules(tmp_path: Path) -> Path:
    return rules_with_county_sla(tmp_path, EXTENDABLE)


def test_a_granted_extension_moves_the_breach_and_nothing_fires_twice(
        kafka_settings: Settings, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = kafka_settings
    apply_topics(settings)
    monkeypatch.setenv("REDIS_URL", redis_url)
    rules = extendable_rules(tmp_path)
    ruleset = load_rules(rules)
    producer = kafka.producer(settings)
    watcher = Watcher(settings, ["cases", "escalations", "assignments.status.rejected"])

    def send(update: StatusUpdate, key: str) -> None:
        producer.produce(settings.topic("assignments.status"),
                         update.model_dump_json(by_alias=True).encode(), key.encode())
        producer.flush(10)

    with running(settings, "route", tmp_path / "route.log", rules_dir=rules), \
            running(settings, "timers", tmp_path / "timers.log", rules_dir=rules):
        record = gas_report(ruleset, f"ext-{uuid.uuid4().hex[:6]}", 30.2905)
        producer.produce(settings.topic("incidents.classified"), record.model_dump_json(
            by_alias=True).encode(), record.division_chain[3][:9].encode())
        producer.flush(10)
        opened = watcher.until("the case", lambda r: r["topic"] == "cases" and
                               record.incident_id in r["value"]["incident_ids"])["value"]
        case_id, lead, key = opened["case_id"], opened["lead"], opened["partition_key"]
        first_deadline = datetime.fromisoformat(opened["sla"]["resolve_by"])
        supervisor = ruleset.departments.by_code[lead].supervisor
        assert supervisor is not None
        send(StatusUpdate(case_id=case_id, department=lead, action="extension_requested",
                          at=datetime.now(UTC), extend_by="20s", note="等燃气公司备件"), key)
        send(StatusUpdate(case_id=case_id, department=supervisor, action="extension_approved",
                          at=datetime.now(UTC)), key)
        granted = watcher.until("the extension", lambda r: r["topic"] == "cases"
                                and r["value"]["case_id"] == case_id
                                and r["value"]["sla"]["extensions"])["value"]
        new_deadline = datetime.fromisoformat(granted["sla"]["resolve_by"])
        assert new_deadline - first_deadline == timedelta(seconds=20)
        breach = watcher.until("the breach", lambda r: r["topic"] == "escalations"
                               and r["value"]["case_id"] == case_id
                               and r["value"]["step"] == "breach", timeout=60)["value"]
        assert datetime.fromisoformat(breach["deadline"]) == new_deadline
        assert datetime.fromisoformat(breach["fired_at"]) >= new_deadline
        # a second request exceeds the policy's one extension: refused, with the reason
        send(StatusUpdate(case_id=case_id, department=lead, action="extension_requested",
                          at=datetime.now(UTC), extend_by="5s", note="再延"), key)
        refusal = watcher.until("the refusal", lambda r: r["topic"] ==
                                "assignments.status.rejected"
                                and r["value"]["case_id"] == case_id)["value"]
        assert "at most 1 extension" in refusal["detail"]
    fired = escalations(watcher, case_id)
    ids = Counter(e["escalation_id"] for e in fired)
    assert max(ids.values()) == 1, f"an escalation fired twice: {ids}"
    assert [e["step"] for e in fired if e["limit"] == "resolve"].count("breach") == 1
    assert datetime.now(UTC) > new_deadline
