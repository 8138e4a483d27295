"""Every Redis client griddispatch makes, with the same timeouts: one place to change them.

Redis holds what can be rebuilt from Kafka (timer index, read model) or lost without harm
(seen reports, rate counters), so a slow or absent Redis must fail a call quickly rather
than hang a worker: connecting gives up after 2 s and a reply after 5 s; callers already
treat ``redis.RedisError`` as "retry later" or "rebuild".
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis

CONNECT_TIMEOUT_SECONDS = 2.0
REPLY_TIMEOUT_SECONDS = 5.0


def redis_client(url: str) -> redis.Redis[Any]:
    return redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
                                socket_timeout=REPLY_TIMEOUT_SECONDS)


def async_redis_client(url: str) -> aioredis.Redis[Any]:
    """For the intake's event loop: bind it on the loop that will use it."""
    return aioredis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
                                   socket_timeout=REPLY_TIMEOUT_SECONDS)


def redis_client_from(kwargs: dict[str, Any]) -> redis.Redis[Any]:
    """From a client's ``connection_pool.connection_kwargs`` (handed to another process)."""
    kwargs = dict(kwargs)
    if "path" in kwargs:  # a unix socket
        kwargs["unix_socket_path"] = kwargs.pop("path")
    kwargs.setdefault("socket_connect_timeout", CONNECT_TIMEOUT_SECONDS)
    kwargs.setdefault("socket_timeout", REPLY_TIMEOUT_SECONDS)
    return redis.Redis(**kwargs)
