"""Webhook delivery, the pure part: delivery ids, signatures, back-off, the retry loop.

Delivery is at-least-once: the worker commits a record's offset only after the receiver
answered 2xx or the record was parked, so a crash re-sends what was in flight. Receivers
make the effect exactly-once by remembering ``X-Griddispatch-Delivery``: the id is derived
from where the record sits in Kafka (topic, partition, offset), so every re-send of one
record, by any worker and by ``webhooks retry``, carries the same id.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine import __version__
from engine.durations import to_timedelta

SCHEMA_PARKED: Literal["griddispatch.webhook-parked/1"] = "griddispatch.webhook-parked/1"
ParkReason = Literal["gave_up", "refused", "not_configured"]


def seconds(value: float | str) -> float:
    """``0.5`` or ``"0.5"`` (seconds) or a duration like ``10s`` / ``5m``."""
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except ValueError:
        return to_timedelta(value).total_seconds()


class Backoff(BaseModel):
    """Exponential back-off with jitter: the n-th retry waits about first × factor^(n-1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first: float = Field(default=1.0, gt=0, description="delay before the first retry")
    factor: float = Field(default=2.0, ge=1)
    max: float = Field(default=300.0, gt=0, description="no delay is longer than this")
    jitter: float = Field(default=0.5, ge=0, le=1,
                          description="up to this fraction of each delay is taken off at "
                                      "random, so that many records waiting on one receiver "
                                      "that comes back do not all hit it in the same instant")

    @field_validator("first", "max", mode="before")
    @classmethod
    def _duration(cls, value: float | str) -> float:
        return seconds(value)


def backoff_delay(retry: int, policy: Backoff, rand: float) -> float:
    """Seconds to wait before retry number ``retry`` (1 = after the first failed POST).

    ``rand`` in [0, 1) takes up to ``jitter`` of the delay off: with jitter 0.5 the wait lies
    between half and all of the capped exponential delay, so it never collapses to zero (full
    jitter can) while concurrent retries still spread out.
    """
    if retry < 1:
        raise ValueError("retry numbers start at 1")
    capped = min(policy.max, policy.first * policy.factor ** (retry - 1))
    return capped * (1.0 - policy.jitter * rand)


def delivery_id(topic: str, partition: int, offset: int) -> str:
    """Stable per record: SHA-1 of ``topic:partition:offset`` (hex)."""
    return hashlib.sha1(f"{topic}:{partition}:{offset}".encode(), usedforsecurity=False).hexdigest()


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Griddispatch-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """What a receiver does (constant-time compare); used by our tests and the README."""
    return header is not None and hmac.compare_digest(signature(secret, body), header)


def headers(department: str, topic: str, delivery: str, secret: bytes,
            body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": f"griddispatch-webhooks/{__version__}",
        "X-Griddispatch-Delivery": delivery,
        "X-Griddispatch-Topic": topic,
        "X-Griddispatch-Department": department,
        "X-Griddispatch-Signature": signature(secret, body),
    }


@dataclass(frozen=True)
class Answer:
    """One POST's result: the HTTP status, or ``None`` with the transport error."""

    status: int | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Network errors, timeouts, 408, 425, 429 and 5xx may pass; other answers will not.

        A 3xx is final because webhooks do not follow redirects (a redirected POST turns into
        a GET in most clients, which would "deliver" nothing): the URL must be fixed.
        """
        if self.status is None:
            return True
        return self.status in (408, 425, 429) or self.status >= 500

    def describe(self) -> str:
        if self.status is None:
            return self.error
        return f"HTTP {self.status}" + (f": {self.error}" if self.error else "")


@dataclass(frozen=True)
class DeliveryOutcome:
    """How one record ended: delivered, to be parked (with why), or stopped by shutdown."""

    delivered: bool
    attempts: int
    last: Answer | None
    park_reason: ParkReason | None = None
    stopped: bool = False


def deliver(post: Callable[[], Answer], attempts: int, policy: Backoff,
            wait: Callable[[float], bool], rand: Callable[[], float],
            on_retry: Callable[[Answer], None] = lambda _: None) -> DeliveryOutcome:
    """POST until 2xx, a final answer, or ``attempts`` tries; waits between tries.

    ``wait(seconds)`` returns False when the worker is stopping: the record is then neither
    delivered nor parked, its offset stays uncommitted, and the next start sends it again.
    """
    answer: Answer | None = None
    for attempt in range(1, attempts + 1):
        answer = post()
        if answer.ok:
            return DeliveryOutcome(True, attempt, answer)
        if not answer.retryable:
            return DeliveryOutcome(False, attempt, answer, park_reason="refused")
        if attempt == attempts:
            break
        on_retry(answer)
        if not wait(backoff_delay(attempt, policy, rand())):
            return DeliveryOutcome(False, attempt, answer, stopped=True)
    return DeliveryOutcome(False, attempts, answer, park_reason="gave_up")


class ParkedDelivery(BaseModel):
    """A record every attempt failed for, on ``webhooks.deadletter`` (key: department).

    ``value`` is the original record's bytes as UTF-8 text, so a re-drive sends the exact
    same body (and signature) as the first try.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["griddispatch.webhook-parked/1"] = Field(default=SCHEMA_PARKED,
                                                              alias="schema")
    department: str
    url: str
    reason: ParkReason
    last_error: str
    last_status: int | None
    attempts: int = Field(description="POSTs made for this record, over every run")
    delivery_id: str
    topic: str
    partition: int
    offset: int
    key: str | None
    value: str
    parked_at: datetime
