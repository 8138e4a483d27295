"""Consumer lag measured against a real broker: records produced, offsets committed, lag read.

The group here is a plain group id with offsets committed by hand (no member running), which
is exactly what the workers' sampler sees between two commits of a real group.
"""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic
from prometheus_client import REGISTRY

from engine.runtime import kafka
from engine.runtime.lag import GroupOffsets, LagSampler, start_sampler
from engine.runtime.settings import Settings
from tests.integration.workers import wait_for

pytestmark = pytest.mark.integration


def make_topic(settings: Settings, name: str, partitions: int) -> str:
    topic = settings.topic(name)
    admin = kafka.admin_client(settings)
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(30)
    wait_for(lambda: topic in admin.list_topics(timeout=5).topics, 30, f"topic {topic}")
    return topic


def produce(settings: Settings, topic: str, per_partition: dict[int, int]) -> None:
    producer = kafka.producer(settings)
    for partition, count in per_partition.items():
        for i in range(count):
            producer.produce(topic, value=f"r{i}".encode(), partition=partition)
    assert producer.flush(30) == 0


def commit(settings: Settings, group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = kafka.consumer(settings, group)
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                        asynchronous=False)
    finally:
        consumer.close()


def gauge(group: str, topic: str) -> float | None:
    return REGISTRY.get_sample_value("griddispatch_consumer_lag",
                                     {"group": group, "topic": topic})


def test_lag_is_what_the_group_has_not_committed_summed_over_partitions(
        kafka_settings: Settings) -> None:
    topic = make_topic(kafka_settings, "lag.input", 2)
    produce(kafka_settings, topic, {0: 3, 1: 2})
    group = GroupOffsets(kafka_settings, kafka_settings.topic("lag-test"))  # kafka.consumer's
    try:
        assert group.lag([topic]) == {topic: 5}  # nothing committed: all of it
        commit(kafka_settings, "lag-test", topic, {0: 2})
        assert group.lag([topic]) == {topic: 1 + 2}
        commit(kafka_settings, "lag-test", topic, {0: 3, 1: 2})
        assert group.lag([topic]) == {topic: 0}
        produce(kafka_settings, topic, {1: 4})
        assert group.lag([topic]) == {topic: 4}
    finally:
        group.close()


def test_the_sampler_sets_the_gauge_and_survives_a_missing_topic(
        kafka_settings: Settings) -> None:
    topic = make_topic(kafka_settings, "lag.sampled", 1)
    produce(kafka_settings, topic, {0: 7})
    sampler = start_sampler(kafka_settings, "lag-sampled", ["lag.sampled"], "test")
    try:
        group = kafka_settings.topic("lag-sampled")
        wait_for(lambda: gauge(group, topic) == 7.0, 20, "lag 7 in the gauge")
    finally:
        sampler.stop()
        sampler.join(10)
    assert not sampler.is_alive()

    errors = {"worker": "test", "stage": "lag"}
    before = REGISTRY.get_sample_value("griddispatch_worker_errors_total", errors) or 0.0
    missing = kafka_settings.topic("lag.missing")
    broken = LagSampler(kafka_settings, group, [topic, missing], "test")
    clients = GroupOffsets(kafka_settings, group)
    try:
        broken.sample(clients)
    finally:
        clients.close()
    assert REGISTRY.get_sample_value("griddispatch_worker_errors_total", errors) == before + 1
    assert gauge(group, topic) is None  # no stale number while the sample fails
