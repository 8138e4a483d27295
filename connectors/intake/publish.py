"""The one entry: every connector hands its reports to ``IntakePublisher.submit``.

What ``submit`` promises its caller (an HTTP handler, an MQTT bridge, a file replay):

* **Acknowledged means on the broker.** The report is produced to ``incidents.reported``
  (key = incident id, value = the intake contract's JSON, exactly what the classify worker
  parses) by ``AckedProducer`` (``engine/runtime/producer.py``), which returns only after the
  broker acked it; otherwise ``KafkaUnavailable`` is raised: the caller answers 503 /
  retries, and nothing was marked as seen.
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
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from engine.contracts import SCHEMA_INCIDENT, IntakeReport, to_json
from engine.runtime import metrics
from engine.runtime.producer import AckedProducer
from engine.runtime.redis_clients import RedisClient
from engine.runtime.settings import Settings

TOPIC = "incidents.reported"
SEEN_TTL_SECONDS = 30 * 24 * 3600

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


class IntakePublisher:
    """Thread-safe: ``AckedProducer`` and the Redis client are."""

    def __init__(self, settings: Settings, redis_client: RedisClient, *,
                 ack_timeout: float = 10.0) -> None:
        self.settings = settings
        self.redis = redis_client
        self.topic = settings.topic(TOPIC)
        self.producer = AckedProducer(settings, ack_timeout=ack_timeout)

    def _seen(self, incident_id: str) -> datetime | None:
        try:
            value = self.redis.get(seen_key(incident_id, self.settings.topic_prefix))
        except redis.RedisError as exc:
            metrics.REDIS_ERRORS.labels("dedup_check").inc()
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
            metrics.REDIS_ERRORS.labels("dedup_mark").inc()
            log.warning("Redis unreachable, %s is on the broker but not marked seen: %s",
                        incident_id, exc)
            return accepted_at

    def submit(self, report: IntakeReport) -> Submitted:
        """Publish one report and block until the broker acked it (or raise KafkaUnavailable)."""
        incident = report.incident_id
        first = self._seen(incident)
        if first is not None:
            return Submitted(incident, True, first)
        self.producer.send(self.topic, incident, to_json(report),
                           headers=[("schema", SCHEMA_INCIDENT.encode())])
        accepted_at = self._mark(incident, datetime.now(UTC))
        return Submitted(incident, False, accepted_at)

    def close(self) -> None:
        """Deliver what is queued (bounded by the ack timeout); ``submit`` refuses after."""
        self.producer.close()
