"""The one entry: every connector hands its reports to ``IntakePublisher.submit``.

What ``submit`` promises its caller (an HTTP handler, an MQTT bridge, a file replay):

* **Acknowledged means on the broker.** The report is produced to ``incidents.reported``
  (key = incident id, value = the intake contract's JSON, exactly what the classify worker
  parses) by an idempotent producer with ``acks=all``, and ``submit`` returns only after the
  delivery report says the broker has it. If the broker does not ack within ``ack_timeout``
  (librdkafka's ``message.timeout.ms`` is set to the same bound, so the message is dropped
  from the local queue rather than sent later behind the caller's back), ``KafkaUnavailable``
  is raised: the caller answers 503 / retries, and nothing was marked as seen.
* **Idempotent across retries and instances.** After the ack, a Redis key
  ``<prefix>gd:intake:seen:{<incident_id>}`` (value: when it was first accepted, ISO 8601; TTL
  ``SEEN_TTL_SECONDS``, 30 days, the retention of ``incidents.reported``) is set with NX.
  A later submit of the same (channel, channel_id) finds it and answers ``duplicate=True``
  with the first acceptance time, publishing nothing. The key is written only after the
  ack, so a broker failure never turns a lost report into a "duplicate". The incident id is
  the hash tag, so in a Redis Cluster the seen key and the read model's hash of the same
  incident share a slot while different incidents spread over the cluster.
* **Not a distributed lock.** Two concurrent submits of the same report (a client retrying
  on a timeout while its first request is still in flight, or two intake instances) may
  both publish. That is safe: the record carries the same incident id and the route worker
  drops the second as ``duplicate`` (``engine.cases.dispatch.on_classified``). A lock would
  buy nothing but a new way to fail.

If Redis is unreachable the publisher still publishes (availability of the one entry beats
a perfect duplicate flag; downstream dedup by incident id still holds) and logs it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from engine.contracts import SCHEMA_INCIDENT, IntakeReport, to_json
from engine.runtime import kafka
from engine.runtime.kafka import KafkaUnavailable
from engine.runtime.settings import Settings

TOPIC = "incidents.reported"
SEEN_TTL_SECONDS = 30 * 24 * 3600
_POLL_SECONDS = 0.05

log = logging.getLogger("griddispatch.intake")


@dataclass(frozen=True)
class Submitted:
    incident_id: str
    duplicate: bool  # True: this (channel, channel_id) was accepted before; nothing new published
    accepted_at: datetime  # when it was first accepted


def seen_key(incident_id: str, prefix: str = "") -> str:
    """Cluster-ready: the incident id is the hash tag (see the module docstring); ``prefix``
    is the environment's topic prefix, so environments sharing a Redis never meet."""
    return f"{prefix}gd:intake:seen:{{{incident_id}}}"


class _Delivery:
    """One produce call's outcome, handed from librdkafka's callback thread to the caller."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: KafkaError | None = None

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        self.error = err
        self.done.set()


class IntakePublisher:
    """Thread-safe: librdkafka's producer is; a daemon thread serves its delivery callbacks."""

    def __init__(self, settings: Settings, redis_client: redis.Redis[Any], *,
                 ack_timeout: float = 10.0) -> None:
        self.settings = settings
        self.redis = redis_client
        self.ack_timeout = ack_timeout
        self.topic = settings.topic(TOPIC)
        self._lock = threading.Lock()
        self._fatal = False
        self._producer = self._new_producer()
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="intake-producer-poll",
                                        daemon=True)
        self._poller.start()

    def _new_producer(self) -> Producer:
        timeout_ms = max(1, int(self.ack_timeout * 1000))
        return kafka.producer(self.settings, **{
            "message.timeout.ms": timeout_ms,
            # a request must fit inside the delivery bound, else librdkafka refuses the config
            "request.timeout.ms": min(30000, timeout_ms),
            "linger.ms": 2,
            "socket.connection.setup.timeout.ms": min(30000, max(1000, timeout_ms)),
            "error_cb": self._on_error,
            "log_level": 0,  # quiet while the broker is down: failures surface per report
        })

    def _on_error(self, err: KafkaError) -> None:
        # Transport errors (broker down) are expected and surface as failed deliveries;
        # a fatal idempotence error means this producer instance can never send again.
        if err.fatal():
            log.error("intake producer fatal error, a new producer will be created: %s", err)
            self._fatal = True

    def _poll(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                producer = self._producer
            producer.poll(_POLL_SECONDS)

    def _current(self) -> Producer:
        with self._lock:
            if self._fatal:
                old, self._producer, self._fatal = self._producer, self._new_producer(), False
                old.purge()
            return self._producer

    def _seen(self, incident_id: str) -> datetime | None:
        try:
            value = self.redis.get(seen_key(incident_id, self.settings.topic_prefix))
        except redis.RedisError as exc:
            log.warning("Redis unreachable, cannot check %s for a duplicate: %s", incident_id,
                        exc)
            return None
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        return datetime.fromisoformat(text)

    def _mark(self, incident_id: str, accepted_at: datetime) -> datetime:
        """Set the seen key if absent; the first acceptance time wins (a concurrent submit)."""
        key = seen_key(incident_id, self.settings.topic_prefix)
        try:
            if self.redis.set(key, accepted_at.isoformat(), nx=True, ex=SEEN_TTL_SECONDS):
                return accepted_at
            return self._seen(incident_id) or accepted_at
        except redis.RedisError as exc:
            log.warning("Redis unreachable, %s is on the broker but not marked seen: %s",
                        incident_id, exc)
            return accepted_at

    def submit(self, report: IntakeReport) -> Submitted:
        """Publish one report and block until the broker acked it (or raise KafkaUnavailable)."""
        if self._closed.is_set():
            raise KafkaUnavailable("the intake publisher is closed")
        incident = report.incident_id
        first = self._seen(incident)
        if first is not None:
            return Submitted(incident, True, first)
        delivery = _Delivery()
        try:
            self._current().produce(self.topic, key=incident.encode(), value=to_json(report),
                                    headers=[("schema", SCHEMA_INCIDENT.encode())],
                                    on_delivery=delivery)
        except BufferError:
            raise KafkaUnavailable("the intake producer's queue is full; the broker is not "
                                    "keeping up") from None
        except KafkaException as exc:
            raise KafkaUnavailable(f"the broker refused the report: {exc}") from None
        # message.timeout.ms bounds the wait; the margin covers the callback's scheduling
        if not delivery.done.wait(self.ack_timeout + 2.0):
            raise KafkaUnavailable(f"no acknowledgement from {self.settings.kafka_bootstrap} "
                                    f"within {self.ack_timeout:g}s")
        if delivery.error is not None:
            raise KafkaUnavailable(f"the broker at {self.settings.kafka_bootstrap} did not "
                                    f"take the report: {delivery.error.str()}")
        accepted_at = self._mark(incident, datetime.now(UTC))
        return Submitted(incident, False, accepted_at)

    def close(self) -> None:
        """Deliver what is queued (bounded by the ack timeout), then stop the poll thread."""
        if self._closed.is_set():
            return
        deadline = time.monotonic() + self.ack_timeout
        with self._lock:
            producer = self._producer
        while producer.flush(0.1) > 0 and time.monotonic() < deadline:
            pass
        self._closed.set()
        self._poller.join(timeout=2)
