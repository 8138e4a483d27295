"""IntakePublisher on a real broker and Redis: acked means on the broker, once per report."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis

from connectors.intake.publish import IntakePublisher, seen_key
from engine.cli.stack.process import free_port
from engine.contracts import IntakeReport
from engine.runtime.kafka import KafkaUnavailable
from engine.runtime.settings import Settings
from tests.integration.intake_helpers import records
from tests.integration.workers import apply_topics

pytestmark = pytest.mark.integration


def _report(channel_id: str) -> IntakeReport:
    return IntakeReport(channel="open311", channel_id=channel_id,
                        reported_at=datetime(2026, 11, 24, 9, 30, tzinfo=UTC),
                        description="仓前街道太炎社区路灯不亮", address="余杭区仓前街道太炎社区")


def test_same_report_twice_is_one_record_and_the_same_answer(kafka_settings: Settings,
                                                              redis_url: str) -> None:
    apply_topics(kafka_settings)
    client = redis.Redis.from_url(redis_url)
    publisher = IntakePublisher(kafka_settings, client, ack_timeout=10)
    try:
        report = _report("pub-1")
        first = publisher.submit(report)
        again = publisher.submit(report)
    finally:
        publisher.close()
    assert not first.duplicate and again.duplicate
    assert again.incident_id == first.incident_id == report.incident_id
    assert again.accepted_at == first.accepted_at
    found = records(kafka_settings, "incidents.reported")
    assert [key for key, _ in found] == [report.incident_id]
    assert IntakeReport.model_validate(found[0][1]) == report
    assert client.ttl(seen_key(report.incident_id, kafka_settings.topic_prefix)) > 29 * 24 * 3600


def test_broker_down_marks_nothing_and_a_retry_succeeds(kafka_settings: Settings,
                                                        redis_url: str) -> None:
    apply_topics(kafka_settings)
    client = redis.Redis.from_url(redis_url)
    report = _report("pub-down")
    down = kafka_settings.with_(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    publisher = IntakePublisher(down, client, ack_timeout=1.0)
    try:
        with pytest.raises(KafkaUnavailable):
            publisher.submit(report)
    finally:
        publisher.close()
    assert client.get(seen_key(report.incident_id, kafka_settings.topic_prefix)) is None
    publisher = IntakePublisher(kafka_settings, client, ack_timeout=10)
    try:
        answer = publisher.submit(report)
    finally:
        publisher.close()
    assert not answer.duplicate
    assert [key for key, _ in records(kafka_settings, "incidents.reported")] == [
        report.incident_id]
