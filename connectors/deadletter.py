"""Dead letters: what a connector could not use, kept on Kafka with the reason, never dropped.

A sensor that sends garbage or a department system whose record the mapping cannot read is
not an incident, so it does not belong on ``incidents.reported`` (or ``incidents.rejected``,
whose records are about intake reports). It goes to ``intake.deadletter`` with the raw
message, so the people who run that device platform or system can see and fix it, and the
bridge acknowledges the source message and goes on: bad input never stops a bridge.

Writes wait for the broker's acknowledgement: a bridge acknowledges its source only after
the dead letter is safely on Kafka (``KafkaUnavailable`` otherwise, like ``submit``).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Literal

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from pydantic import BaseModel, ConfigDict, Field

from connectors.errors import AdapterError
from engine.contracts import MAX_REPORT_BYTES, to_json
from engine.runtime import kafka, metrics
from engine.runtime.kafka import KafkaUnavailable
from engine.runtime.settings import Settings

INTAKE_DEADLETTER = "intake.deadletter"
SCHEMA_INTAKE_DEADLETTER: Literal["griddispatch.intake-deadletter/1"] = (
    "griddispatch.intake-deadletter/1")
# internal_error: a bug of ours met this message; it is kept here rather than lost or retried
# forever (the worker's log has the traceback, griddispatch_worker_errors counts it).
DeadLetterReason = Literal["malformed_json", "unknown_device", "invalid_payload", "unmappable",
                           "internal_error"]



class MalformedPayload(AdapterError):
    """The source message is not a JSON object at all."""

    dead_letter_reason: DeadLetterReason = "malformed_json"


def reason_for(exc: AdapterError, default: DeadLetterReason) -> DeadLetterReason:
    """An adapter error's dead-letter reason: its class's, else the adapter's ``default``."""
    reason: DeadLetterReason = getattr(exc, "dead_letter_reason", default)
    return reason


class IntakeDeadLetter(BaseModel):
    """One source message that could not become an intake report."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["griddispatch.intake-deadletter/1"] = Field(
        default=SCHEMA_INTAKE_DEADLETTER, alias="schema")
    reason: DeadLetterReason
    detail: str
    field: str | None = Field(description="the source field at fault, in the source's terms")
    source: str = Field(description="where it came from: 'mqtt:<topic>' or "
                                    "'kafka:<topic>/<partition>@<offset>'")
    raw: str = Field(description="the message as received (UTF-8, undecodable bytes replaced, "
                                 "cut at 64 KiB)")
    received_at: datetime


def dead_letter(reason: DeadLetterReason, detail: str, field: str | None, source: str,
                raw: bytes, received_at: datetime | None = None) -> IntakeDeadLetter:
    return IntakeDeadLetter(reason=reason, detail=detail, field=field, source=source,
                            raw=raw[:MAX_REPORT_BYTES].decode("utf-8", errors="replace"),
                            received_at=received_at or datetime.now(UTC))


class AckedProducer:
    """An idempotent producer whose ``send`` returns only once the broker has the record."""

    def __init__(self, settings: Settings, ack_timeout: float = 10.0) -> None:
        self.settings = settings
        self.ack_timeout = ack_timeout
        timeout_ms = max(1, int(ack_timeout * 1000))
        self._producer: Producer = kafka.producer(settings, **{
            "message.timeout.ms": timeout_ms, "request.timeout.ms": min(30000, timeout_ms),
            "log_level": 3})

    def send(self, topic: str, key: str, value: bytes) -> None:
        """Produce to ``topic`` (already prefixed) and wait for the ack."""
        done = threading.Event()
        failure: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failure.append(err)
            done.set()

        try:
            self._producer.produce(topic, key=key.encode(), value=value, on_delivery=on_delivery)
        except (BufferError, KafkaException) as exc:
            raise KafkaUnavailable(f"cannot queue a record for {topic}: {exc}") from None
        # Several threads may poll: whichever serves the callback, ``done`` is set.
        self._producer.flush(self.ack_timeout + 2.0)
        if not done.wait(0.5):
            raise KafkaUnavailable(f"no acknowledgement for {topic} from "
                                    f"{self.settings.kafka_bootstrap} within "
                                    f"{self.ack_timeout:g}s")
        if failure:
            raise KafkaUnavailable(f"the broker did not take the record for {topic}: "
                                    f"{failure[0].str()}")

    def close(self) -> None:
        self._producer.flush(self.ack_timeout)


class IntakeDeadLetters:
    """Writes ``intake.deadletter`` records and counts them in ``griddispatch_dead_letters``."""

    def __init__(self, settings: Settings, producer: AckedProducer | None = None) -> None:
        self.topic = settings.topic(INTAKE_DEADLETTER)
        self.producer = producer or AckedProducer(settings)

    def park(self, letter: IntakeDeadLetter, key: str) -> None:
        """``key``: the source's stable name (``mqtt:<topic>``, ``kafka:<topic>``)."""
        self.producer.send(self.topic, key, to_json(letter))
        metrics.DEAD_LETTERS.labels(INTAKE_DEADLETTER, letter.reason).inc()

    def close(self) -> None:
        self.producer.close()
