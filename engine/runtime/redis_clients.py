"""Every Redis client griddispatch makes, with the same timeouts: one place to change them.

Redis holds what can be rebuilt from Kafka (timer index, read model) or lost without harm
(seen reports, rate counters), so a slow or absent Redis must fail a call quickly rather
than hang a worker: connecting gives up after 2 s and a reply after 5 s; callers already
treat ``redis.RedisError`` as "retry later" or "rebuild".

A Redis Cluster is named by its scheme: ``redis+cluster://host:port/0`` (or
``rediss+cluster://``), any node; the client learns the others and follows the slots. Why
not find out by asking the server: a worker that starts while Redis is down would guess
"single server" and then fail on every moved slot once Redis is back. Every key griddispatch
writes carries a hash tag, so each script and transaction stays in one slot.
"""

from __future__ import annotations

import math
import time
from typing import Any, TypeAlias, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

CONNECT_TIMEOUT_SECONDS = 2.0
REPLY_TIMEOUT_SECONDS = 5.0
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_ADDRESS = ("host", "port", "db", "username", "password", "path")

# A cluster client answers every command griddispatch sends, with the same replies, but the
# type stubs (types-redis, written for redis-py 4) lack most of them on ``RedisCluster``:
# typed as the single-server client, proven on a real cluster by the tests.
RedisClient: TypeAlias = "redis.Redis[Any]"
RedisPipeline: TypeAlias = "redis.client.Pipeline[Any]"
AsyncRedisClient: TypeAlias = "aioredis.Redis[Any]"


def cluster_url(url: str) -> str | None:
    """The plain URL of a ``redis+cluster://`` URL; None when ``url`` names one server."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower())
    return f"{plain}{sep}{rest}" if plain and sep else None


def redis_client(url: str) -> RedisClient:
    if (plain := cluster_url(url)) is not None:
        return cast(RedisClient, RedisCluster.from_url(
            plain, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=REPLY_TIMEOUT_SECONDS))
    return redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
                                socket_timeout=REPLY_TIMEOUT_SECONDS)


def async_redis_client(url: str) -> AsyncRedisClient:
    """For the intake's event loop: bind it on the loop that will use it."""
    if (plain := cluster_url(url)) is not None:
        return cast(AsyncRedisClient, AsyncRedisCluster.from_url(
            plain, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=REPLY_TIMEOUT_SECONDS))
    return aioredis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
                                   socket_timeout=REPLY_TIMEOUT_SECONDS)


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, RedisCluster)


class ClusterScripts:
    """Lua scripts that a cluster's pipelines will call.

    A single Redis's pipeline loads its scripts itself; a cluster's does not (it would have
    to reach every primary), so on a cluster ``ensure`` loads them on every primary now and
    then: a new primary after a failover answers NOSCRIPT, and the caller's retry after the
    next load succeeds. On a single Redis it does nothing."""

    CHECK_SECONDS = 30.0

    def __init__(self, client: RedisClient, *sources: str) -> None:
        self.client, self.sources = client, sources
        self._checked = -self.CHECK_SECONDS if is_cluster(client) else math.inf

    def ensure(self) -> None:
        if time.monotonic() - self._checked > self.CHECK_SECONDS:
            for source in self.sources:
                self.client.script_load(source)  # type: ignore[no-untyped-call]
            self._checked = time.monotonic()


def address_of(client: RedisClient) -> dict[str, Any]:
    """How another process reaches the same Redis: the address and credentials only (the
    client's pool holds locks and helpers that do not cross processes)."""
    if isinstance(client, RedisCluster):
        node = client.get_default_node()
        assert node is not None, "a cluster client knows at least the node it was given"
        kwargs = client.nodes_manager.connection_kwargs
        return {"cluster": True, "host": node.host, "port": node.port,
                **{k: kwargs[k] for k in ("username", "password") if kwargs.get(k)}}
    return {k: v for k, v in client.connection_pool.connection_kwargs.items() if k in _ADDRESS}


def redis_client_from(address: dict[str, Any]) -> RedisClient:
    """From ``address_of``, in another process."""
    kwargs = dict(address)
    kwargs.setdefault("socket_connect_timeout", CONNECT_TIMEOUT_SECONDS)
    kwargs.setdefault("socket_timeout", REPLY_TIMEOUT_SECONDS)
    if kwargs.pop("cluster", False):
        return cast(RedisClient, RedisCluster(**kwargs))
    if "path" in kwargs:  # a unix socket
        kwargs["unix_socket_path"] = kwargs.pop("path")
    return redis.Redis(**kwargs)
