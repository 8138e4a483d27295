"""The one home of confluent-kafka client configuration.

Workers, connectors, the CLI and tests ask here for admin clients, producers and consumers,
so that bootstrap servers, security settings, idempotence and error translation are decided
once (the habit Quix Streams keeps in its ``kafka/`` package).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from engine.runtime.settings import Settings

log = logging.getLogger("griddispatch.kafka")


class KafkaUnavailable(RuntimeError):
    """The cluster did not answer, or did not acknowledge in time: nothing was accepted.

    The message says where we looked and what to check. One exception for the failure,
    whoever meets it: the admin client, the intake publisher (which answers 503 on it) and
    the dead-letter producer alike."""


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


def faust_broker_urls(bootstrap: str) -> str:
    """``host1:9092,host2:9092`` (librdkafka style) → ``kafka://host1:9092;kafka://host2:9092``."""
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap.split(",")
                    if server.strip())


def faust_credentials(settings: Settings) -> Any:
    """Translate the librdkafka security settings we document into Faust credentials.

    ``GRIDDISPATCH_KAFKA_*`` variables are librdkafka names (``client_config`` above);
    aiokafka under Faust knows none of them, so a secured cluster would otherwise fail with
    a bare connection error. Names we cannot translate are refused at start, not ignored.
    Here, beside ``client_config``, so that both kinds of client read the same settings.
    """
    import ssl

    import faust

    extra = dict(settings.kafka_extra)
    protocol = extra.pop("security.protocol", "PLAINTEXT").upper()
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=extra.pop("ssl.ca.location", None))
    mechanism = extra.pop("sasl.mechanism", extra.pop("sasl.mechanisms", "PLAIN"))
    username, password = extra.pop("sasl.username", None), extra.pop("sasl.password", None)
    if extra:
        raise ValueError("the classify worker cannot use these Kafka settings: "
                         + ", ".join(sorted(extra)))
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(username=username, password=password,
                                     ssl_context=context, mechanism=mechanism)
    return faust.SSLCredentials(context) if context is not None else None


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


def offsets_reader(settings: Settings, group: str) -> Consumer:
    """A consumer that never subscribes: it reads ``group``'s committed offsets (the group
    id as given, already prefixed) for the lag sampler. Quiet while the broker is down."""
    return Consumer(client_config(settings, **{
        "group.id": group, "enable.auto.commit": False, "log_level": 0}))


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
    ``retry.backoff.ms``: right after a commit the coordinator answers the next
    transaction's AddPartitionsToTxn with CONCURRENT_TRANSACTIONS until its markers are
    written (a few ms); at librdkafka's default 100 ms back-off that wait was most of a
    back-to-back transaction's cycle (measured on the local broker: 15-34 ms at 100 ms,
    10-12 ms at 10 ms, for 50 records over 1-20 partitions).
    """
    return producer(settings, **{"transactional.id": transactional_id,
                                 "transaction.timeout.ms": 30000, "retry.backoff.ms": 10,
                                 **overrides})


def records(consumer: Consumer, stop: threading.Event, what: str,
            timeout: float = 0.5) -> Iterator[Message]:
    """A subscribed consumer's records until ``stop`` is set, one at a time.

    For bridges that hand each record on before the next (and commit it themselves). Errors
    the client reports (broker away, a partition moving) are logged under ``what`` and
    skipped: librdkafka retries them itself, and a bridge must outlive them.
    """
    while not stop.is_set():
        message = consumer.poll(timeout)
        if message is None:
            continue
        if message.error():
            log.warning("%s: %s", what, message.error())
            continue
        yield message


def read_to_end(settings: Settings, topic: str, add: Callable[[bytes | None, bytes | None], None],
                reader_name: str, timeout: float,
                partitions: Collection[int] | None = None) -> None:
    """``read_messages_to_end`` handing over each record's key and value."""
    read_messages_to_end(settings, topic, lambda m: add(m.key(), m.value()), reader_name,
                         timeout, partitions)


def read_messages_to_end(settings: Settings, topic: str, add: Callable[[Message], None],
                         reader_name: str, timeout: float,
                         partitions: Collection[int] | None = None) -> None:
    """Feed ``add`` every committed record of ``topic`` (of ``partitions``: all by default)
    up to the end offsets of now.

    For rebuilding state from a compacted topic. The end is the high watermark
    (read_uncommitted), not the last stable offset: other workers write into the same
    partitions, and one of their open
    transactions would hold the LSO before committed records of ours. Reading read_committed
    up to the watermark waits for such transactions to finish (at most
    ``transaction.timeout.ms``). The position passes transaction markers and aborted records
    too, so ``position >= end`` means done.
    """
    deadline = time.monotonic() + timeout
    ends = end_offsets(settings, topic, deadline)
    pending = {p for p, end in ends.items()
               if end > 0 and (partitions is None or p in partitions)}
    if not pending:
        return
    reader = consumer(settings, reader_name,
                      **{"enable.partition.eof": True, "fetch.wait.max.ms": 20})
    try:
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        while pending:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"could not read {topic} to its end within {timeout:.0f}s "
                                    f"(partitions {sorted(pending)})")
            for message in reader.consume(1000, 0.1):
                if message.error() is None:
                    add(message)
            positions = reader.position([TopicPartition(topic, p) for p in pending])
            pending = {tp.partition for tp in positions if tp.offset < ends[tp.partition]}
    finally:
        reader.close()


def end_offsets(settings: Settings, topic: str, deadline: float) -> dict[int, int]:
    """Each partition's high watermark, retrying what a young topic answers for a while
    (NOT_LEADER_FOR_PARTITION, LEADER_NOT_AVAILABLE right after ``topics apply``)."""
    admin = admin_client(settings)
    while True:
        try:
            meta = admin.list_topics(topic, timeout=10).topics[topic]
            if meta.error is not None:
                raise KafkaException(meta.error)
            latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
            futures = admin.list_offsets(
                {TopicPartition(topic, p): latest for p in meta.partitions},
                isolation_level=IsolationLevel.READ_UNCOMMITTED, request_timeout=10)
            return {tp.partition: f.result().offset for tp, f in futures.items()}
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"cannot find the end offsets of {topic}: {exc}") from exc
            log.warning("end offsets of %s not available yet (%s): retrying", topic, exc)
            time.sleep(0.5)
