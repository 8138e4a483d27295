"""Dead letters: what a connector could not use, kept on Kafka with the reason, never dropped.

A sensor that sends garbage or a department system whose record the mapping cannot read is
not an incident, so it does not belong on ``incidents.reported`` (or ``incidents.rejected``,
whose records are about intake reports). It goes to ``intake.deadletter`` with the raw
message, so the people who run that device platform or system can see and fix it, and the
bridge acknowledges the source message and goes on: bad input never stops a bridge.

Writes wait for the broker's acknowledgement: a bridge acknowledges its source only after
the dead letter is safely on Kafka (``AckedProducer``; ``KafkaUnavailable`` otherwise).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.errors import AdapterError
from engine.contracts import MAX_REPORT_BYTES, to_json
from engine.runtime import metrics
from engine.runtime.producer import AckedProducer
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
