"""``griddispatch worker webhooks``: POST each department's records to its own endpoint.

One lane (a thread with its own consumer, group ``webhooks.<dept>``) per configured
department: records of one department are delivered in order, and a receiver that is down
holds back only its own department while its records wait out the back-off.

Why threads and urllib rather than aiohttp: the Kafka consumer is synchronous (librdkafka),
delivery within a department is sequential by design (order of assignments matters), and
the traffic is a few records a second per department. A thread per department with the
standard library's HTTP client is the whole concurrency model, with nothing to bridge
between an event loop and the consumer; aiohttp would buy parallelism inside one
department, which the ordering forbids anyway.
"""

from __future__ import annotations

import http.client
import logging
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Message

from connectors.outgoing.webhooks.config import Target, load_config
from connectors.outgoing.webhooks.delivery import (
    Answer,
    DeliveryOutcome,
    ParkedDelivery,
    deliver,
    delivery_id,
    headers,
)
from engine.contracts import to_json
from engine.reference.departments import DepartmentRegistry
from engine.runtime import kafka, metrics
from engine.runtime.kafka import KafkaUnavailable
from engine.runtime.producer import AckedProducer
from engine.runtime.settings import Settings

WEBHOOKS_DEADLETTER = "webhooks.deadletter"
log = logging.getLogger("griddispatch.webhooks")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirected POST would arrive as a GET: refuse, so the 3xx is reported instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def post(url: str, body: bytes, request_headers: dict[str, str], timeout: float) -> Answer:
    request = urllib.request.Request(url, data=body, headers=request_headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(65536)
            return Answer(int(response.status))
    except urllib.error.HTTPError as exc:
        exc.close()
        return Answer(exc.code, str(exc.reason)[:200])
    except urllib.error.URLError as exc:
        return Answer(None, f"cannot reach {url}: {exc.reason}"[:300])
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, f"{type(exc).__name__} from {url}: {exc}"[:300])


class Parking:
    """Puts given-up records on ``webhooks.deadletter`` (key: department), acked."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic(WEBHOOKS_DEADLETTER)
        self.producer = AckedProducer(settings)

    def park(self, record: ParkedDelivery) -> None:
        self.producer.send(self.topic, record.department, to_json(record))
        metrics.DEAD_LETTERS.labels(WEBHOOKS_DEADLETTER, record.reason).inc()
        metrics.WEBHOOK_DELIVERIES.labels(record.department, "parked").inc()

    def park_until_done(self, record: ParkedDelivery, stop: threading.Event) -> bool:
        """Keep trying while the broker is away; False only if we are stopping first."""
        while True:
            try:
                self.park(record)
                return True
            except KafkaUnavailable as exc:
                log.warning("cannot park a record of %s yet (%s); retrying", record.department,
                            exc)
                if stop.wait(2.0):
                    return False

    def close(self) -> None:
        self.producer.close()


def send(target: Target, topic: str, partition: int, offset: int, value: bytes,
         attempts: int, stop: threading.Event) -> DeliveryOutcome:
    """One record to one receiver, with retries; counts delivered and retried."""
    delivery = delivery_id(topic, partition, offset)

    def on_retry(answer: Answer) -> None:
        metrics.WEBHOOK_DELIVERIES.labels(target.department, "retried").inc()
        log.info("%s: %s failed (%s); retrying", target.department, delivery, answer.describe())

    def attempt() -> Answer:
        signed = headers(target.department, topic, delivery, target.secret, value, time.time())
        return post(target.url, value, signed, target.timeout)

    outcome = deliver(attempt,
                      attempts, target.backoff, lambda s: not stop.wait(s), random.random,
                      on_retry)
    if outcome.delivered:
        metrics.WEBHOOK_DELIVERIES.labels(target.department, "delivered").inc()
    return outcome


def parked_record(target: Target, message_topic: str, partition: int, offset: int,
                  key: bytes | None, value: bytes, outcome: DeliveryOutcome,
                  earlier_attempts: int = 0) -> ParkedDelivery:
    last = outcome.last
    return ParkedDelivery(
        department=target.department, url=target.url, reason=outcome.park_reason or "gave_up",
        last_error=last.describe() if last else "", last_status=last.status if last else None,
        attempts=earlier_attempts + outcome.attempts,
        delivery_id=delivery_id(message_topic, partition, offset), topic=message_topic,
        partition=partition, offset=offset,
        key=key.decode("utf-8", errors="replace") if key is not None else None,
        value=value.decode("utf-8", errors="replace"), parked_at=datetime.now(UTC))


class Lane(threading.Thread):
    """One department's records, in order: deliver or park, then commit."""

    def __init__(self, settings: Settings, target: Target, parking: Parking,
                 stop: threading.Event) -> None:
        super().__init__(name=f"webhooks-{target.department}", daemon=True)
        self.settings = settings
        self.target = target
        self.parking = parking
        self.stop = stop

    def run(self) -> None:
        target = self.target
        # A record may legitimately take the whole retry schedule; the group must not
        # think this consumer is dead meanwhile.
        poll_limit_ms = max(300_000, int((target.worst_case_seconds() + 60) * 1000))
        consumer = kafka.consumer(self.settings, f"webhooks.{target.department}",
                                  **{"max.poll.interval.ms": poll_limit_ms, "log_level": 3})
        consumer.subscribe([self.settings.topic(f"{kind}.{target.department}")
                            for kind in target.topics])
        try:
            for message in kafka.records(consumer, self.stop, target.department):
                if not self._handle(message):
                    return  # stopping mid-record: it stays uncommitted, sent again next start
                try:
                    consumer.commit(message=message, asynchronous=False)
                except Exception as exc:  # rebalanced away: the new owner re-sends it
                    log.warning("%s: commit failed (%s); the record may be sent again",
                                target.department, exc)
        finally:
            consumer.close()

    def _handle(self, message: Message) -> bool:
        topic, value = message.topic() or "", message.value() or b""
        partition, offset = message.partition() or 0, message.offset() or 0
        try:
            outcome = send(self.target, topic, partition, offset, value, self.target.attempts,
                           self.stop)
        except Exception as exc:  # never let one record kill the lane: park it with why
            metrics.WORKER_ERRORS.labels("webhooks", "deliver").inc()
            log.exception("%s: unexpected error delivering offset %s", self.target.department,
                          offset)
            outcome = DeliveryOutcome(False, 1, Answer(None, f"{type(exc).__name__}: {exc}"),
                                      park_reason="gave_up")
        if outcome.stopped:
            return False
        if outcome.delivered:
            return True
        record = parked_record(self.target, topic, partition, offset, message.key(), value,
                               outcome)
        log.warning("%s: parked %s on %s after %d attempt(s): %s", self.target.department,
                    record.delivery_id, WEBHOOKS_DEADLETTER, record.attempts, record.last_error)
        return self.parking.park_until_done(record, self.stop)


def run(settings: Settings, config: Path, metrics_port: int | None) -> int:
    """Load and check the configuration, then deliver until SIGTERM / SIGINT."""
    registry = DepartmentRegistry.load(settings.rules_dir / "reference" / "departments.yaml")
    targets = load_config(config, registry)
    if metrics_port:
        metrics.serve_metrics(metrics_port, "webhooks")
    for code in targets:
        for result in ("delivered", "retried", "parked"):
            metrics.WEBHOOK_DELIVERIES.labels(code, result)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    parking = Parking(settings)
    lanes = [Lane(settings, target, parking, stop) for target in targets.values()]
    for lane in lanes:
        lane.start()
    log.info("webhooks: delivering for %d department(s): %s", len(lanes), ", ".join(targets))
    while not stop.is_set():
        dead = [lane.name for lane in lanes if not lane.is_alive()]
        if dead:  # a department would silently get nothing: exit so a supervisor restarts us
            log.error("webhook lane(s) stopped: %s; exiting", ", ".join(dead))
            stop.set()
            parking.close()
            return 1
        stop.wait(1.0)
    deadline = time.monotonic() + 30
    for lane in lanes:
        lane.join(timeout=max(0.1, deadline - time.monotonic()))
    parking.close()
    return 0
