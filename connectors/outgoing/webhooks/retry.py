"""``griddispatch webhooks retry``: re-drive parked deliveries once a receiver is fixed.

It reads ``webhooks.deadletter`` from the offsets its consumer group committed last time
(group ``webhooks-retry``, or ``webhooks-retry.<dept>`` with ``--department``, so a
department's re-drive does not consume the others' records) up to the end as it was at
start, re-posts each record with its original body and delivery id, re-parks what still
fails (appended, so the next run sees it again), and commits each record once it is settled.
A full run after a department run may post that department's records again; receivers
drop them by delivery id.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from pydantic import ValidationError

from connectors.outgoing.webhooks.config import Target
from connectors.outgoing.webhooks.delivery import Answer, DeliveryOutcome, ParkedDelivery
from connectors.outgoing.webhooks.worker import WEBHOOKS_DEADLETTER, Parking, send
from engine.runtime import kafka
from engine.runtime.kafka import KafkaUnavailable
from engine.runtime.settings import Settings

log = logging.getLogger("griddispatch.webhooks")


@dataclass
class RedriveSummary:
    delivered: int = 0
    parked: int = 0
    skipped: int = 0  # other departments' records, or records that are not parked deliveries

    def __str__(self) -> str:
        return (f"re-driven {self.delivered + self.parked}: delivered {self.delivered}, "
                f"parked again {self.parked}; skipped {self.skipped}")


def _start_offsets(consumer: Consumer, topic: str) -> list[tuple[TopicPartition, int]]:
    """(partition at its committed offset, end offset) for every partition with work."""
    try:
        metadata = consumer.list_topics(topic, timeout=10)
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot read {topic}: {exc}") from None
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        raise KafkaUnavailable(f"topic {topic} does not exist; run 'griddispatch topics apply'")
    partitions = [TopicPartition(topic, p) for p in sorted(described.partitions)]
    committed = consumer.committed(partitions, timeout=10)
    work = []
    for tp in committed:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition),
                                                   timeout=10)
        start = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        if (tp.offset if tp.offset >= 0 else low) < high:
            work.append((TopicPartition(topic, tp.partition, start), high))
    return work


def redrive(settings: Settings, targets: dict[str, Target], department: str | None,
            attempts: int, stop: threading.Event | None = None) -> RedriveSummary:
    stop = stop or threading.Event()
    topic = settings.topic(WEBHOOKS_DEADLETTER)
    group = "webhooks-retry" + (f".{department}" if department else "")
    consumer = kafka.consumer(settings, group, log_level=3)
    parking = Parking(settings)
    summary = RedriveSummary()
    try:
        work = _start_offsets(consumer, topic)
        ends = {tp.partition: high for tp, high in work}
        remaining = set(ends)
        consumer.assign([tp for tp, _ in work])
        while remaining and not stop.is_set():
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                log.warning("%s", message.error())
                continue
            partition, offset = message.partition() or 0, message.offset() or 0
            if offset >= ends[partition]:  # parked by this very run: the next run's work
                consumer.pause([TopicPartition(topic, partition)])
                remaining.discard(partition)
                continue
            if offset + 1 >= ends[partition]:
                remaining.discard(partition)
            if not _settle(message.value() or b"", targets, department, attempts, parking,
                           stop, summary):
                break  # stopping: leave this record uncommitted
            consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()
        parking.close()
    return summary


def _settle(value: bytes, targets: dict[str, Target], department: str | None, attempts: int,
            parking: Parking, stop: threading.Event, summary: RedriveSummary) -> bool:
    """Deliver or re-park one parked record; False when stopping before it settled."""
    try:
        parked = ParkedDelivery.model_validate_json(value)
    except ValidationError as exc:
        log.warning("skipping a record that is not a parked delivery: %s",
                    exc.errors()[0]["msg"])
        summary.skipped += 1
        return True
    if department is not None and parked.department != department:
        summary.skipped += 1
        return True
    target = targets.get(parked.department)
    body = parked.value.encode("utf-8")
    if target is None:
        outcome = DeliveryOutcome(False, 0, Answer(None, f"department {parked.department} is "
                                                         "not in the webhook configuration"),
                                  park_reason="not_configured")
    else:
        outcome = send(target, parked.topic, parked.partition, parked.offset, body, attempts,
                       stop)
        if outcome.stopped:
            return False
    if outcome.delivered:
        summary.delivered += 1
        return True
    last = outcome.last
    again = parked.model_copy(update={
        "reason": outcome.park_reason or "gave_up", "url": target.url if target else parked.url,
        "last_error": last.describe() if last else parked.last_error,
        "last_status": last.status if last else parked.last_status,
        "attempts": parked.attempts + outcome.attempts, "parked_at": datetime.now(UTC)})
    if not parking.park_until_done(again, stop):
        return False
    summary.parked += 1
    return True
