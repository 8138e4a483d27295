"""Per-key rate limits shared by every intake instance: fixed one-minute windows in Redis.

A fixed window (``INCRBY`` on ``gd:intake:rate:{<client>}:<minute>``, expiring after two
windows) is one round trip per request and exact across instances; its known weakness, up
to twice the rate across a window boundary, is acceptable for protecting the broker from a
runaway client. Reports, not requests, are counted, so a batch of 100 costs 100.

If Redis does not answer, requests are let through (and logged): the broker's back-pressure
still protects the flow, and refusing every report because a counter is unreachable would
turn a Redis outage into an intake outage.
"""

from __future__ import annotations

import logging
import math
import time

import redis

from engine.runtime import metrics
from engine.runtime.redis_clients import AsyncRedisClient

WINDOW_SECONDS = 60

log = logging.getLogger("griddispatch.intake")


class RateLimited(Exception):
    def __init__(self, retry_after: int, limit: int) -> None:
        super().__init__(f"rate limit of {limit} reports per minute reached; retry in "
                         f"{retry_after}s")
        self.retry_after = retry_after


class RateLimiter:
    def __init__(self, client: AsyncRedisClient, prefix: str = "",
                 window: int = WINDOW_SECONDS) -> None:
        self.client = client
        self.prefix = prefix
        self.window = window

    async def take(self, who: str, limit: int, count: int = 1) -> None:
        """Count ``count`` reports for ``who``; raise RateLimited when over ``limit``."""
        now = time.time()
        window = int(now // self.window)
        key = f"{self.prefix}gd:intake:rate:{{{who}}}:{window}"
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.incrby(key, count)
            pipe.expire(key, self.window * 2)
            used, _ = await pipe.execute()
        except redis.RedisError as exc:
            metrics.REDIS_ERRORS.labels("rate_limit").inc()
            log.warning("rate limit not checked, Redis unavailable: %s", exc)
            return
        if int(used) > limit:
            retry = max(1, math.ceil((window + 1) * self.window - now))
            raise RateLimited(retry, limit)
