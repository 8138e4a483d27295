"""Webhook delivery on the real broker: retries, signatures, parking, ``webhooks retry``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from connectors.outgoing.webhooks.delivery import delivery_id
from engine.cli import main
from engine.runtime import kafka
from engine.runtime.settings import Settings
from tests.integration.connector_helpers import Receiver, produce
from tests.integration.intake_helpers import records
from tests.integration.workers import REPO, apply_topics, running, sample, wait_for

pytestmark = pytest.mark.integration

SECRET = "webhook-test-secret-0123456789"
SCJG, ZHZF = "330110.scjg", "330110005.zhzf"


def assignment(department: str, n: int) -> bytes:
    record = {"schema": "griddispatch.assignment/1",
              "case_id": f"330110005-{uuid.uuid4().hex[:12]}", "department": department,
              "description": f"五常大道占道经营第{n}起", "role": "lead"}
    return json.dumps(record, ensure_ascii=False).encode()


def write_config(path: Path, receiver: Receiver, attempts: int) -> Path:
    path.write_text(f"""
defaults:
  timeout: 2
  attempts: {attempts}
  backoff: {{first: 0.05, factor: 2, max: 0.2, jitter: 0.5}}
departments:
  {SCJG}: {{url: "{receiver.url}/scjg", secret: "{SECRET}"}}
  {ZHZF}: {{url: "{receiver.url}/zhzf", secret: "{SECRET}"}}
""", encoding="utf-8")
    return path


def cli(settings: Settings, *argv: str) -> int:
    return main(["--bootstrap", settings.kafka_bootstrap, "--topic-prefix",
                 settings.topic_prefix, *argv, "--rules-dir", str(REPO / "rules")])


def test_a_flaky_receiver_gets_every_record_once_signed(kafka_settings: Settings,
                                                         tmp_path: Path) -> None:
    apply_topics(kafka_settings)
    sent = {f"assignments.{SCJG}": [assignment(SCJG, n) for n in range(4)],
            f"escalations.{SCJG}": [assignment(SCJG, 9)],
            f"assignments.{ZHZF}": [assignment(ZHZF, n) for n in range(2)]}
    for topic, values in sent.items():
        produce(kafka_settings, topic, values)
    with Receiver(SECRET.encode(), fail_first=3) as receiver:
        config = write_config(tmp_path / "webhooks.yaml", receiver, attempts=6)
        with running(kafka_settings, "webhooks", tmp_path / "webhooks.log", "--config",
                     str(config)) as (_, port):
            wait_for(lambda: len(receiver.effects) == 7, 30, "7 deliveries")
            wait_for(lambda: sample(port, "griddispatch_webhook_deliveries_total",
                                    department=SCJG, result="delivered") == 5, 10, "metrics")
            retried = sum(sample(port, "griddispatch_webhook_deliveries_total", department=d,
                                 result="retried") or 0 for d in (SCJG, ZHZF))
    expected = {delivery_id(kafka_settings.topic(topic), 0, offset): value
                for topic, values in sent.items() for offset, value in enumerate(values)}
    assert receiver.effects == expected  # every record, each effect once, body untouched
    assert len(receiver.posts) == 7 + 3 and retried == 3  # three 500s, each retried
    assert all(post["signed"] == "True" for post in receiver.posts)
    assert {p["topic"] for p in receiver.posts if p["path"] == "/zhzf"} == {
        kafka_settings.topic(f"assignments.{ZHZF}")}
    # offsets were committed after delivery: a restart would not send them again
    consumer = kafka.consumer(kafka_settings, f"webhooks.{SCJG}")
    try:
        committed = consumer.committed([TopicPartition(kafka_settings.topic(t), 0)
                                        for t in (f"assignments.{SCJG}", f"escalations.{SCJG}")],
                                       timeout=10)
    finally:
        consumer.close()
    assert [tp.offset for tp in committed] == [4, 1]


def test_a_dead_receiver_gets_records_parked_and_retry_redrives_them(
        kafka_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    apply_topics(kafka_settings)
    values = [assignment(SCJG, n) for n in range(3)]
    produce(kafka_settings, f"assignments.{SCJG}", values)
    topic = kafka_settings.topic(f"assignments.{SCJG}")
    ids = [delivery_id(topic, 0, offset) for offset in range(3)]
    with Receiver(SECRET.encode(), fail_status=503) as receiver:
        receiver.always_fail = True
        config = write_config(tmp_path / "webhooks.yaml", receiver, attempts=2)
        with running(kafka_settings, "webhooks", tmp_path / "webhooks.log", "--config",
                     str(config)) as (_, port):
            wait_for(lambda: sample(port, "griddispatch_webhook_deliveries_total",
                                    department=SCJG, result="parked") == 3, 30, "3 parked")
            assert sample(port, "griddispatch_dead_letters_total", topic="webhooks.deadletter",
                          reason="gave_up") == 3
        parked = records(kafka_settings, "webhooks.deadletter")
        assert [key for key, _ in parked] == [SCJG] * 3
        assert [(p["delivery_id"], p["offset"], p["value"].encode(), p["attempts"],
                 p["last_status"], p["reason"]) for _, p in parked] == [
            (ids[n], n, values[n], 2, 503, "gave_up") for n in range(3)]
        assert {(p["department"], p["url"], p["topic"], p["partition"]) for _, p in parked} == {
            (SCJG, f"{receiver.url}/scjg", topic, 0)}
        assert len(receiver.posts) == 6 and not receiver.effects

        # still failing: re-parked with the attempts added up, exit 1
        assert cli(kafka_settings, "webhooks", "retry", "--config", str(config),
                   "--attempts", "1") == 1
        assert "delivered 0, parked again 3" in capsys.readouterr().out
        again = records(kafka_settings, "webhooks.deadletter")[3:]
        assert [(p["delivery_id"], p["attempts"]) for _, p in again] == [(i, 3) for i in ids]

        # healthy again: the re-parked copies are delivered with their original ids
        receiver.always_fail = False
        assert cli(kafka_settings, "webhooks", "retry", "--config", str(config)) == 0
        assert "delivered 3, parked again 0" in capsys.readouterr().out
        assert receiver.effects == dict(zip(ids, values, strict=True))
        assert all(post["signed"] == "True" for post in receiver.posts)

        # nothing left: the group's offsets moved past every parked record
        assert cli(kafka_settings, "webhooks", "retry", "--config", str(config)) == 0
        assert "re-driven 0" in capsys.readouterr().out
