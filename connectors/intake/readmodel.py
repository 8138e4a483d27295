"""The request read model in Redis, and the thin loop that feeds it from Kafka.

Keys (prefixed with the environment's topic prefix; Redis Cluster ready: the incident id is
the hash tag, so an incident's hash and its intake ``seen`` key share a slot while incidents
spread over the cluster):

* ``gd:intake:request:{<incident_id>}``: hash of the fields ``connectors.intake.requests_view``
  projects (report fields written once, status fields guarded by ``rank``), expiring
  ``REQUEST_TTL_SECONDS`` (400 days) after its last change;
* ``gd:intake:requests``: sorted set of incident ids by reported time, for ``GET requests``
  (one key: listing needs one order; it is trimmed to the same 400 days).

Feeding: every intake instance runs ``ReadModelFeed`` in one consumer group
(``griddispatch-intake-readmodel``), so the instances share the partitions of ``cases``,
``incidents.triage``, ``incidents.rejected``, ``incidents.reported`` and ``triage.decisions``
(a report the console rejected) and each record is
applied about once; offsets are committed only after Redis took the batch, and because
writes are idempotent and rank-guarded a replay after a crash or rebalance is harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from confluent_kafka import KafkaError

from connectors.intake.requests_view import Projection, project
from engine.runtime import kafka, metrics
from engine.runtime.redis_clients import AsyncRedisClient, ClusterScripts, RedisClient
from engine.runtime.settings import Settings

REQUEST_TTL_SECONDS = 400 * 24 * 3600
GROUP = "griddispatch-intake-readmodel"
TOPICS = ("cases", "incidents.triage", "incidents.rejected", "incidents.reported",
          "triage.decisions")
_SCAN_CHUNK = 500

log = logging.getLogger("griddispatch.intake.readmodel")

# KEYS[1] the hash; ARGV: ttl, rank, n report pairs, report pairs..., status pairs...
APPLY = """
local key, ttl, rank, n = KEYS[1], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
for i = 0, n - 1 do
  redis.call('HSETNX', key, ARGV[4 + 2 * i], ARGV[5 + 2 * i])
end
local first = 4 + 2 * n
if #ARGV >= first then
  local current = redis.call('HGET', key, 'rank')
  if (not current) or current <= rank then
    redis.call('HSET', key, 'rank', rank)
    for i = first, #ARGV, 2 do
      redis.call('HSET', key, ARGV[i], ARGV[i + 1])
    end
  end
end
redis.call('EXPIRE', key, ttl)
return 1
"""


def request_key(incident_id: str, prefix: str = "") -> str:
    return f"{prefix}gd:intake:request:{{{incident_id}}}"


def index_key(prefix: str = "") -> str:
    return f"{prefix}gd:intake:requests"


def _args(p: Projection) -> list[str | int]:
    args: list[str | int] = [REQUEST_TTL_SECONDS, p.rank, len(p.report)]
    for name, value in p.report.items():
        args += [name, value]
    for name, value in p.status.items():
        args += [name, value]
    return args


def _decoded(raw: dict[Any, Any]) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else str(k)):
            (v.decode() if isinstance(v, bytes) else str(v)) for k, v in raw.items()}


class RequestStore:
    """Async access for the HTTP server: apply its own submissions, read views, list."""

    def __init__(self, client: AsyncRedisClient, prefix: str = "") -> None:
        self.client = client
        self.prefix = prefix
        self.index = index_key(prefix)
        self._apply = client.register_script(APPLY)

    async def apply(self, projections: list[Projection]) -> None:
        for p in projections:
            await self._apply(keys=[request_key(p.incident_id, self.prefix)], args=_args(p))
            if p.requested_at is not None:
                await self.client.zadd(self.index, {p.incident_id: p.requested_at}, nx=True)

    async def get(self, incident_id: str) -> dict[str, str] | None:
        fields = _decoded(await self.client.hgetall(request_key(incident_id, self.prefix)))
        return fields if fields.get("state") else None

    async def many(self, ids: list[str]) -> list[tuple[str, dict[str, str]]]:
        pipe = self.client.pipeline(transaction=False)
        for incident in ids:
            pipe.hgetall(request_key(incident, self.prefix))
        rows = await pipe.execute()
        return [(i, _decoded(r)) for i, r in zip(ids, rows, strict=True)
                if r and _decoded(r).get("state")]

    async def between(self, start: float, end: float, keep: Callable[[str, dict[str, str]], bool],
                      limit: int) -> list[tuple[str, dict[str, str]]]:
        """Requests reported in [start, end], newest first, filtered, at most ``limit``."""
        found: list[tuple[str, dict[str, str]]] = []
        offset = 0
        while len(found) < limit:
            ids = await self.client.zrevrangebyscore(self.index, end, start, start=offset,
                                                     num=_SCAN_CHUNK)
            if not ids:
                break
            offset += len(ids)
            names = [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
            found += [row for row in await self.many(names) if keep(*row)]
        return found[:limit]


class ReadModelFeed:
    """Consumes the source topics into Redis until ``stop`` is set (a daemon thread)."""

    def __init__(self, settings: Settings, client: RedisClient) -> None:
        self.settings = settings
        self.client = client
        self._apply = client.register_script(APPLY)
        self._scripts = ClusterScripts(client, APPLY)
        self.prefix = settings.topic_prefix
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="intake-readmodel", daemon=True)
        self._trimmed = 0.0

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=15)

    def write(self, projections: list[Projection]) -> None:
        self._scripts.ensure()
        pipe = self.client.pipeline(transaction=False)
        for p in projections:
            self._apply(keys=[request_key(p.incident_id, self.prefix)], args=_args(p),
                        client=pipe)
            if p.requested_at is not None:
                pipe.zadd(index_key(self.prefix), {p.incident_id: p.requested_at}, nx=True)
        pipe.execute()
        if time.monotonic() - self._trimmed > 3600:
            oldest = time.time() - REQUEST_TTL_SECONDS
            self.client.zremrangebyscore(index_key(self.prefix), "-inf", oldest)
            self._trimmed = time.monotonic()

    def run(self) -> None:
        prefix = self.settings.topic_prefix
        consumer = kafka.consumer(self.settings, GROUP, log_level=0)
        consumer.subscribe([self.settings.topic(t) for t in TOPICS])
        try:
            while not self.stop.is_set():
                messages = consumer.consume(num_messages=500, timeout=0.5)
                projections: list[Projection] = []
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("read model consumer: %s", error)
                        continue
                    topic = str(message.topic()).removeprefix(prefix)
                    _kind, stamp = message.timestamp()
                    projections += project(topic, message.value(),
                                           stamp / 1000 if stamp > 0 else None)
                if not messages:
                    continue
                while not self.stop.is_set():
                    try:
                        if projections:
                            self.write(projections)
                        break
                    except redis.RedisError as exc:  # keep the batch; offsets stay put
                        metrics.REDIS_ERRORS.labels("read_model").inc()
                        log.warning("read model: Redis unavailable, retrying: %s", exc)
                        self.stop.wait(1.0)
                else:
                    break
                consumer.commit(asynchronous=True)
        finally:
            consumer.close()
