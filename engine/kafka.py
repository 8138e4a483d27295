"""The one home of confluent-kafka client configuration.

Workers, connectors, the CLI and tests ask here for admin clients, producers and consumers,
so that bootstrap servers, security settings, idempotence and error translation are decided
once (the habit Quix Streams keeps in its ``kafka/`` package).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from engine.settings import Settings


class KafkaUnavailable(RuntimeError):
    """The cluster did not answer: the message says where we looked and what to check."""


def client_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap}
    config.update(dict(settings.kafka_extra))
    config.update(overrides)
    return config


def admin_client(settings: Settings) -> AdminClient:
    """An admin client that stays quiet while the broker is down.

    librdkafka would log a connection failure every few milliseconds; callers turn the
    timeout into one ``KafkaUnavailable`` message that says what to do instead.
    """
    return AdminClient(client_config(settings, log_level=0))


def producer(settings: Settings, **overrides: Any) -> Producer:
    """An idempotent producer: retries never duplicate or reorder records on a partition.

    murmur2 is the partitioner of Java clients and of Faust (aiokafka): with it, a key lands
    on the same partition whichever of our clients wrote it.
    """
    return Producer(
        client_config(
            settings,
            **{"enable.idempotence": True, "acks": "all", "linger.ms": 5,
               "partitioner": "murmur2_random", **overrides},
        )
    )


def consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    """A consumer that commits only what the caller says it has processed."""
    return Consumer(
        client_config(
            settings,
            **{
                "group.id": settings.topic(group_id),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                **overrides,
            },
        )
    )


def broker_count(admin: AdminClient, settings: Settings, timeout: float = 10.0) -> int:
    """Number of live brokers, raising KafkaUnavailable with a hint when none answers."""
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"no Kafka broker answered at {settings.kafka_bootstrap} within {timeout:.0f}s "
            f"({exc.args[0]}); start the local stack with 'griddispatch stack up' or set "
            "KAFKA_BOOTSTRAP_SERVERS"
        ) from None
    return len(metadata.brokers)


def wait_for_broker(settings: Settings, timeout: float) -> bool:
    """True once the cluster answers a metadata request, False if it never did in time."""
    import time

    deadline = time.monotonic() + timeout
    admin = AdminClient(client_config(settings, **{"socket.connection.setup.timeout.ms": 1000,
                                                    "log_level": 0}))
    while time.monotonic() < deadline:
        try:
            if admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic()))).brokers:
                return True
        except KafkaException:
            time.sleep(0.2)
    return False


def transactional_producer(settings: Settings, transactional_id: str, **overrides: Any) -> Producer:
    """A transactional producer for consume-transform-produce (the route worker).

    The caller calls ``init_transactions()`` before the first transaction: that fences any
    earlier producer with the same ``transactional_id`` (a killed worker's zombie) and aborts
    its open transaction, so read_committed readers are not held back by it. The id must be
    stable across restarts of one worker instance and distinct between concurrent ones.
    ``transaction.timeout.ms``: how long a transaction of a worker that died and never came
    back holds back read_committed readers before the broker aborts it.
    """
    return producer(settings, **{"transactional.id": transactional_id,
                                 "transaction.timeout.ms": 30000, **overrides})
