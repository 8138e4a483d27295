"""The one producer that waits for the broker: ``send`` returns only once the record is on Kafka.

Connectors acknowledge their own sources (an HTTP 201, an MQTT PUBACK, a committed offset)
only after the record is safe, so they need a synchronous ``send``. What it promises:

* **Acknowledged means on the broker.** The producer is idempotent with ``acks=all``
  (``kafka.producer``); ``send`` waits for the delivery report. If the broker does not ack
  within ``ack_timeout`` (librdkafka's ``message.timeout.ms`` is the same bound, so the
  record is dropped from the local queue rather than sent later behind the caller's back),
  ``KafkaUnavailable`` is raised and the caller refuses or retries: nothing was taken.
* **Thread-safe.** librdkafka's producer is; a daemon thread serves delivery callbacks, so
  any number of threads may wait in ``send`` at once.
* **Recovers from a fatal error.** A fatal idempotence error means the librdkafka instance
  can never send again: the next ``send`` builds a new one (records in flight on the old one
  fail to their callers, who retry).
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from engine.runtime import kafka
from engine.runtime.kafka import KafkaUnavailable
from engine.runtime.settings import Settings

_POLL_SECONDS = 0.05

log = logging.getLogger("griddispatch.producer")


class _Delivery:
    """One produce call's outcome, handed from librdkafka's callback thread to the caller."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: KafkaError | None = None

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        self.error = err
        self.done.set()


class AckedProducer:
    """An idempotent producer whose ``send`` returns only once the broker has the record."""

    def __init__(self, settings: Settings, *, ack_timeout: float = 10.0,
                 linger_ms: int = 2) -> None:
        self.settings = settings
        self.ack_timeout = ack_timeout
        self.linger_ms = linger_ms
        self._lock = threading.Lock()
        self._fatal = False
        self._producer = self._new_producer()
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="acked-producer-poll",
                                        daemon=True)
        self._poller.start()

    def _new_producer(self) -> Producer:
        timeout_ms = max(1, int(self.ack_timeout * 1000))
        return kafka.producer(self.settings, **{
            "message.timeout.ms": timeout_ms,
            # a request must fit inside the delivery bound, else librdkafka refuses the config
            "request.timeout.ms": min(30000, timeout_ms),
            "linger.ms": self.linger_ms,
            "socket.connection.setup.timeout.ms": min(30000, max(1000, timeout_ms)),
            "error_cb": self._on_error,
            "log_level": 0,  # quiet while the broker is down: failures surface per record
        })

    def _on_error(self, err: KafkaError) -> None:
        # Transport errors (broker down) are expected and surface as failed deliveries.
        if err.fatal():
            log.error("producer fatal error, a new producer will be created: %s", err)
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

    def send(self, topic: str, key: str, value: bytes,
             headers: list[tuple[str, str | bytes | None]] | None = None) -> None:
        """Produce to ``topic`` (already prefixed) and wait for the broker's ack."""
        if self._closed.is_set():
            raise KafkaUnavailable(f"the producer for {topic} is closed")
        delivery = _Delivery()
        try:
            self._current().produce(topic, key=key.encode(), value=value, headers=headers,
                                    on_delivery=delivery)
        except BufferError:
            raise KafkaUnavailable(f"the producer's queue is full; the broker is not keeping "
                                    f"up with {topic}") from None
        except KafkaException as exc:
            raise KafkaUnavailable(f"cannot queue a record for {topic}: {exc}") from None
        # message.timeout.ms bounds the wait; the margin covers the callback's scheduling
        if not delivery.done.wait(self.ack_timeout + 2.0):
            raise KafkaUnavailable(f"no acknowledgement for {topic} from "
                                    f"{self.settings.kafka_bootstrap} within "
                                    f"{self.ack_timeout:g}s")
        if delivery.error is not None:
            raise KafkaUnavailable(f"the broker at {self.settings.kafka_bootstrap} did not "
                                    f"take the record for {topic}: {delivery.error.str()}")

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
