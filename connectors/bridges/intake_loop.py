"""What every bridge does with one source message: map it, then submit it or dead-letter it.

Shared by the MQTT and Kafka bridges so that both keep the same promise: the source message
is acknowledged (MQTT PUBACK, Kafka offset commit) only after Kafka has either the intake
report or the dead letter. While Kafka is away the bridge waits and tries again rather than
acknowledging anything; a stop request ends the wait without acknowledging.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from connectors.deadletter import DeadLetterReason, IntakeDeadLetters, dead_letter, reason_for
from connectors.errors import AdapterError
from connectors.intake.publish import IntakePublisher
from engine.contracts import IntakeReport
from engine.runtime import metrics
from engine.runtime.kafka import KafkaUnavailable

log = logging.getLogger("griddispatch.connectors")


class BridgeIntake:
    def __init__(self, connector: str, publisher: IntakePublisher,
                 dead_letters: IntakeDeadLetters, stop: threading.Event,
                 retry_seconds: float = 2.0) -> None:
        self.connector = connector
        self.publisher = publisher
        self.dead_letters = dead_letters
        self.stop = stop
        self.retry_seconds = retry_seconds

    def take(self, build: Callable[[], IntakeReport], *, source: str, key: str, raw: bytes,
             default_reason: DeadLetterReason) -> bool:
        """Map with ``build`` and submit, or park the message; False only when stopping.

        ``source`` names the message for people (``kafka:topic/0@42``), ``key`` is the
        stable dead-letter key (``kafka:topic``), ``raw`` the message as received.
        """
        try:
            report = build()
        except AdapterError as exc:
            reason = reason_for(exc, default_reason)
            return self._park(reason, exc.reason, exc.field, source, key, raw)
        except Exception as exc:  # a bug of ours: keep the message, do not crash, go on
            metrics.WORKER_ERRORS.labels(self.connector, "map").inc()
            log.exception("unexpected error mapping %s", source)
            return self._park("internal_error", f"{type(exc).__name__}: {exc}"[:500], None,
                              source, key, raw)
        results: list[bool] = []
        if not self.until_done(lambda: results.append(self.publisher.submit(report).duplicate)):
            return False
        metrics.CONNECTOR_MESSAGES.labels(self.connector,
                                          "duplicate" if results[0] else "accepted").inc()
        return True

    def _park(self, reason: DeadLetterReason, detail: str, field: str | None, source: str,
              key: str, raw: bytes) -> bool:
        letter = dead_letter(reason, detail, field, source, raw)
        if not self.until_done(lambda: self.dead_letters.park(letter, key)):
            return False
        metrics.CONNECTOR_MESSAGES.labels(self.connector, "deadletter").inc()
        log.warning("dead-lettered %s: %s: %s (%s)", source, field, detail, reason)
        return True

    def until_done(self, action: Callable[[], object]) -> bool:
        """Run ``action`` until Kafka takes it; False if a stop came first."""
        while True:
            try:
                action()
                return True
            except KafkaUnavailable as exc:
                log.warning("Kafka unavailable (%s); retrying in %.0fs", exc, self.retry_seconds)
                if self.stop.wait(self.retry_seconds):
                    return False
