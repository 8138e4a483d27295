"""Webhook delivery, the pure part: delivery ids, signatures, back-off, the retry loop.

Delivery is at-least-once: the worker commits a record's offset only after the receiver
answered 2xx or the record was parked, so a crash re-sends what was in flight. Receivers
make the effect exactly-once by remembering ``X-Griddispatch-Delivery``: the id is derived
from where the record sits in Kafka (topic, partition, offset), so every re-send of one
record, by any worker and by ``webhooks retry``, carries the same id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
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


# Signatures follow the Standard Webhooks scheme: an HMAC over the
# delivery id, the send time and the body together, so a captured request cannot be replayed
# later (its timestamp goes stale) nor its body reused under another id.
TOLERANCE_SECONDS = 300  # how far a receiver accepts a timestamp from its own clock


def signature(secret: bytes, delivery: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of
    ``{delivery}.{timestamp}.{body}``."""
    signed = f"{delivery}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()


class Rejected(ValueError):
    """Why a receiver refuses a delivery (answer 401 with it)."""


def verify(secret: bytes, body: bytes, request_headers: Mapping[str, str], now: float,
           tolerance: float = TOLERANCE_SECONDS) -> str:
    """What a receiver does: the delivery id if the request is genuine and fresh, else
    ``Rejected`` saying why. Header names are matched without regard to case."""
    lower = {k.lower(): v for k, v in request_headers.items()}
    delivery, stamp = lower.get("webhook-id"), lower.get("webhook-timestamp", "")
    sent = lower.get("webhook-signature", "")
    if not delivery or not stamp.isdigit() or not sent:
        raise Rejected("missing webhook-id, webhook-timestamp or webhook-signature")
    if abs(now - int(stamp)) > tolerance:
        raise Rejected(f"timestamp {stamp} is more than {tolerance:.0f} s from now")
    expected = signature(secret, delivery, int(stamp), body)
    # The header may carry several space-separated signatures (a secret being rotated).
    if not any(hmac.compare_digest(expected, one) for one in sent.split()):
        raise Rejected("bad signature")
    return delivery


def headers(department: str, topic: str, delivery: str, secret: bytes,
            body: bytes, now: float) -> dict[str, str]:
    """The headers of one POST; signed at ``now``, so every retry carries a fresh time."""
    timestamp = int(now)
    return {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": f"griddispatch-webhooks/{__version__}",
        "webhook-id": delivery,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, delivery, timestamp, body),
        "X-Griddispatch-Delivery": delivery,
        "X-Griddispatch-Topic": topic,
        "X-Griddispatch-Department": department,
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
    same body and delivery id as the first try (signed afresh: the signature covers the time).
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
