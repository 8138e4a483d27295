"""What every intake handler shares: the ``Intake`` service, request helpers and refusals.

The routes (``open311_routes``, ``api_routes``) and the server that mounts them both use
these, so they live apart from both: the server imports the routes, the routes import this.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis
from aiohttp import web
from confluent_kafka.admin import AdminClient

from connectors.intake import render
from connectors.intake.keys import Client, KeyRefused, Keys
from connectors.intake.limits import RateLimited, RateLimiter
from connectors.intake.open311 import Catalog
from connectors.intake.publish import IntakePublisher, Submitted
from connectors.intake.readmodel import ReadModelFeed, RequestStore
from connectors.intake.requests_view import from_report
from engine.contracts import MAX_REPORT_BYTES, IntakeReport
from engine.runtime import kafka, metrics
from engine.runtime.kafka import KafkaUnavailable
from engine.runtime.redis_clients import AsyncRedisClient, async_redis_client, redis_client
from engine.runtime.settings import Settings

MAX_BATCH_ITEMS = 100
MAX_BATCH_BYTES = 1024 * 1024
# Form encoding triples non-ASCII text (%E4%BA%95), so a report at the contract's limit
# needs about three times its size as a form.
MAX_FORM_BYTES = 3 * MAX_REPORT_BYTES
RETRY_AFTER_UNAVAILABLE = 5
READY_CACHE_SECONDS = 5.0

log = logging.getLogger("griddispatch.intake")


class RequestRefused(Exception):
    """A request the intake will not take: HTTP status, metric result, reason, where."""

    def __init__(self, status: int, result: str | None, description: str, *,
                 field: str | None = None, index: int | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status, self.result, self.description = status, result, description
        self.field, self.index, self.retry_after = field, index, retry_after


@dataclass
class Intake:
    """Everything the handlers share; built once per process."""

    settings: Settings
    catalog: Catalog
    keys: Keys
    publisher: IntakePublisher
    feed: ReadModelFeed | None
    hotline_categories: frozenset[str]
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(32))
    redis_async: AsyncRedisClient | None = None
    _store: RequestStore | None = None
    _admin: AdminClient | None = None
    _ready: tuple[float, str | None] = (0.0, "not checked")

    @classmethod
    def build(cls, settings: Settings, catalog: Catalog, keys: Keys, *,
              hotline_categories: frozenset[str] = frozenset(), ack_timeout: float = 10.0,
              read_model: bool = True) -> Intake:
        sync = redis_client(settings.redis_url)
        feed = ReadModelFeed(settings, sync) if read_model else None
        return cls(settings, catalog, keys, IntakePublisher(settings, sync,
                                                            ack_timeout=ack_timeout),
                   feed, hotline_categories)

    @property
    def redis(self) -> AsyncRedisClient:
        if self.redis_async is None:  # bound to the serving loop on first use
            self.redis_async = async_redis_client(self.settings.redis_url)
        return self.redis_async

    @property
    def store(self) -> RequestStore:
        if self._store is None:
            self._store = RequestStore(self.redis, self.settings.topic_prefix)
        return self._store

    def authorize(self, presented: str | None, channel: str | None) -> Client:
        """The key's client (403 for none or an unknown key); with ``channel``, also 403
        unless the key may submit on it."""
        try:
            return self.keys.check(presented, channel)
        except KeyRefused as exc:
            raise RequestRefused(403, "unauthorized", str(exc), field="api_key") from None

    async def submit(self, entry: str, client: Client, reports: list[IntakeReport],
                     started: float) -> list[Submitted]:
        """Rate limit, publish and wait for the broker, record the views; see the module."""
        try:
            limiter = RateLimiter(self.redis, self.settings.topic_prefix)
            await limiter.take(client.name, client.rate_per_minute, len(reports))
        except RateLimited as exc:
            raise RequestRefused(429, "rate_limited", str(exc),
                                 retry_after=exc.retry_after) from None
        loop = asyncio.get_running_loop()
        outcomes = await asyncio.gather(
            *(loop.run_in_executor(self.executor, self.publisher.submit, r) for r in reports),
            return_exceptions=True)
        done = [o for o in outcomes if isinstance(o, Submitted)]
        for outcome in done:
            metrics.INTAKE_REQUESTS.labels(
                channel=entry, result="duplicate" if outcome.duplicate else "accepted").inc()
        failed = [o for o in outcomes if not isinstance(o, Submitted)]
        if failed:
            metrics.INTAKE_REQUESTS.labels(channel=entry, result="unavailable").inc(len(failed))
            unexpected = [o for o in failed if not isinstance(o, KafkaUnavailable)]
            for error in unexpected:
                log.error("intake submit failed unexpectedly", exc_info=error)
            raise RequestRefused(503, None, f"not accepted, retry later: {failed[0]}",
                                 retry_after=RETRY_AFTER_UNAVAILABLE)
        metrics.INTAKE_SECONDS.observe(time.monotonic() - started)
        try:
            await self.store.apply([from_report(r, s.accepted_at)
                                    for r, s in zip(reports, done, strict=True)
                                    if not s.duplicate])
        except redis.RedisError as exc:  # the feed from incidents.reported fills it in later
            metrics.REDIS_ERRORS.labels("request_view").inc()
            log.warning("request view not written yet (Redis): %s", exc)
        return done

    def broker_problem(self) -> str | None:
        """The cached answer of a metadata request (None: reachable), refreshed every 5 s."""
        checked, problem = self._ready
        if time.monotonic() - checked < READY_CACHE_SECONDS:
            return problem
        if self._admin is None:
            self._admin = kafka.admin_client(self.settings)
        try:
            kafka.broker_count(self._admin, self.settings, timeout=2.0)
            problem = None
        except kafka.KafkaUnavailable as exc:
            problem = str(exc)
        self._ready = (time.monotonic(), problem)
        return problem

    def close(self) -> None:
        if self.feed is not None:
            self.feed.close()
        self.publisher.close()
        self.executor.shutdown(wait=False)


INTAKE = web.AppKey("intake", Intake)


def intake_of(request: web.Request) -> Intake:
    return request.app[INTAKE]


async def read_body(request: web.Request, limit: int, result_channel: str) -> bytes:
    """The body, or 413 as soon as it exceeds ``limit`` (declared or streamed)."""
    if request.content_length is not None and request.content_length > limit:
        metrics.INTAKE_REQUESTS.labels(channel=result_channel, result="too_large").inc()
        raise RequestRefused(413, None, f"request body is {request.content_length} bytes; "
                                        f"the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            metrics.INTAKE_REQUESTS.labels(channel=result_channel, result="too_large").inc()
            raise RequestRefused(413, None, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def count(entry: str, result: str, n: int = 1) -> None:
    metrics.INTAKE_REQUESTS.labels(channel=entry, result=result).inc(n)


def open311_error(status: int, description: str, fmt: str,
                  retry_after: int | None = None) -> web.Response:
    body, content_type = render.render(fmt, "errors", render.errors(status, description))
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return web.Response(status=status, body=body, content_type=content_type.split(";")[0],
                        charset="utf-8", headers=headers)


def api_error(refusal: RequestRefused) -> web.Response:
    error: dict[str, Any] = {"code": refusal.status, "description": refusal.description}
    if refusal.field is not None:
        error["field"] = refusal.field
    if refusal.index is not None:
        error["index"] = refusal.index
    headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after else None
    return web.json_response({"errors": [error]}, status=refusal.status, headers=headers,
                             dumps=lambda d: render.json_document(d).decode())


def request_format(request: web.Request) -> str:
    return "json" if request.path.endswith(".json") else "xml"


@web.middleware
async def refusals(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every refusal in the surface's own error format, never a bare HTML error page."""
    open311 = request.path.startswith("/open311/")
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except RequestRefused as refusal:
        if refusal.result is not None:
            entry = request.match_info.get("entry", "open311" if open311 else "api")
            count(entry, refusal.result)
        if open311:
            return open311_error(refusal.status, refusal.description, request_format(request),
                                 refusal.retry_after)
        return api_error(refusal)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        description = exc.reason if exc.status != 404 else f"no such resource: {request.path}"
        return _failure(request, exc.status, description)
    except redis.RedisError as exc:
        log.warning("request store unavailable: %s", exc)
        return _failure(request, 503, "the request store (Redis) is unavailable; retry later",
                        RETRY_AFTER_UNAVAILABLE)
    except Exception:
        log.exception("intake: unexpected error on %s %s", request.method, request.path)
        return _failure(request, 500, "internal error; it has been logged")


def _failure(request: web.Request, status: int, description: str,
             retry_after: int | None = None) -> web.Response:
    if request.path.startswith("/open311/"):
        return open311_error(status, description, request_format(request), retry_after)
    return api_error(RequestRefused(status, None, description, retry_after=retry_after))
