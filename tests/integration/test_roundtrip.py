"""Records really go through the broker and Redis: the base every other test stands on."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import redis

from engine.runtime import kafka
from engine.runtime.settings import Settings
from engine.runtime.topic_admin import apply, pending_changes

pytestmark = pytest.mark.integration

SMALL_SPEC = """
topics:
  - name: incidents.reported
    partitions: 3
    replication_factor: 3
    retention: 7d
    key: incident id
    value: intake report JSON
"""


def test_applied_topic_carries_a_record_from_producer_to_consumer(
        kafka_settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "topics.yaml").write_text(SMALL_SPEC)
    settings = kafka_settings.with_(topics_dir=tmp_path, rules_dir=tmp_path)
    admin = kafka.admin_client(settings)
    _, changes = pending_changes(settings, admin)
    apply(admin, changes)

    topic = settings.topic("incidents.reported")
    report = {"channel": "hotline", "channel_id": "ZJ-1", "description": "楼道堆放杂物"}
    producer = kafka.producer(settings)
    producer.produce(topic, key=b"hotline:ZJ-1", value=json.dumps(report, ensure_ascii=False))
    assert producer.flush(30) == 0

    consumer = kafka.consumer(settings, f"roundtrip-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([topic])
    try:
        message = None
        for _ in range(60):
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.error() is None
        assert message.key() == b"hotline:ZJ-1"
        assert json.loads(message.value()) == report
    finally:
        consumer.close()


def test_redis_stores_and_returns_chinese_text(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    key = f"test:{uuid.uuid4().hex}"
    client.set(key, "余杭区仓前街道", ex=60)
    assert client.get(key) == "余杭区仓前街道"
    client.zadd(f"{key}:z", {"case-1": 10.0, "case-2": 5.0})
    assert client.zrangebyscore(f"{key}:z", 0, 7) == ["case-2"]
