"""``griddispatch connect kafka``: a department system's own topic onto the one intake.

Consumes the source topic (the department's JSON, its own format) in a consumer group,
maps each record with the mapping file (``connectors.bridges.mapping``), submits it through
``IntakePublisher`` and commits the source offset only after that (or after the dead letter
is on ``intake.deadletter``). A crash re-reads what was not committed; the intake's
(channel, channel id) dedup makes the second submit a ``duplicate``: each source record
becomes exactly one report.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from connectors.bridges.intake_loop import BridgeIntake
from connectors.bridges.mapping import BridgeMapping
from connectors.deadletter import IntakeDeadLetters, MalformedPayload
from connectors.intake.publish import IntakePublisher
from engine.contracts import IntakeReport
from engine.runtime import kafka, metrics
from engine.runtime.settings import Settings

log = logging.getLogger("griddispatch.bridge")
CONNECTOR = "kafka"


def parse_and_map(mapping: BridgeMapping, raw: bytes) -> IntakeReport:
    """The pure step: bytes of one source record -> report (or an AdapterError)."""
    try:
        record: Any = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedPayload("(record)", f"not UTF-8 JSON: {exc}") from None
    return mapping.to_report(record)


class KafkaBridge:
    def __init__(self, settings: Settings, source: str, mapping: BridgeMapping,
                 publisher: IntakePublisher, dead_letters: IntakeDeadLetters,
                 group: str | None = None, retry_seconds: float = 2.0) -> None:
        self.settings = settings
        self.source = source  # the department's topic, used as given (not ours to prefix)
        self.mapping = mapping
        self.group = group or f"bridge.{mapping.name}"
        self.stop = threading.Event()
        self.intake = BridgeIntake(CONNECTOR, publisher, dead_letters, self.stop, retry_seconds)
        metrics.CONNECTOR_CONNECTED.labels(CONNECTOR).set(0)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))
        metrics.CONNECTOR_CONNECTED.labels(CONNECTOR).set(1 if partitions else 0)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        metrics.CONNECTOR_CONNECTED.labels(CONNECTOR).set(0)

    def handle(self, message: Message) -> bool:
        raw = message.value() or b""
        where = f"kafka:{message.topic()}/{message.partition()}@{message.offset()}"
        return self.intake.take(lambda: parse_and_map(self.mapping, raw), source=where,
                                key=f"kafka:{message.topic()}", raw=raw,
                                default_reason="unmappable")

    def run(self) -> int:
        consumer = kafka.consumer(self.settings, self.group, log_level=3)
        consumer.subscribe([self.source], on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("bridging %s -> %s with mapping %s (channel %s, group %s)", self.source,
                 self.settings.topic("incidents.reported"), self.mapping.name,
                 self.mapping.channel, self.settings.topic(self.group))
        try:
            for message in kafka.records(consumer, self.stop, f"source {self.source}"):
                if not self.handle(message):
                    break  # stopping before Kafka took it: left uncommitted, read again
                try:
                    consumer.commit(message=message, asynchronous=False)
                except KafkaException as exc:  # rebalanced away: re-read and deduplicated
                    log.warning("commit failed (%s); the record will be read again", exc)
        finally:
            consumer.close()
            metrics.CONNECTOR_CONNECTED.labels(CONNECTOR).set(0)
        return 0
