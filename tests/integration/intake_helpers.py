"""Helpers for the intake tests: count what reached a topic, read it back by key."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from engine.runtime import kafka
from engine.runtime.settings import Settings


def _end(consumer: Any, partition: TopicPartition, timeout: float) -> int:
    """The high watermark, retried while a fresh topic's leader is still being elected."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(consumer.get_watermark_offsets(partition, timeout=timeout)[1])
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def records(settings: Settings, topic: str, timeout: float = 10.0) -> list[tuple[str, Any]]:
    """Every record on the (prefixed) topic as (key, decoded JSON value), up to its end now."""
    consumer = kafka.consumer(settings, f"test-read-{uuid.uuid4().hex[:8]}")
    name = settings.topic(topic)
    try:
        metadata = consumer.list_topics(name, timeout=timeout)
        partitions = list(metadata.topics[name].partitions)
        ends = {p: _end(consumer, TopicPartition(name, p), timeout) for p in partitions}
        wanted = {p: end for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(name, p, 0) for p in wanted])
        found: list[tuple[str, Any]] = []
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(done) < len(wanted) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            found.append(((message.key() or b"").decode(), json.loads(message.value() or b"null")))
            if message.offset() + 1 >= wanted[message.partition()]:
                done.add(message.partition())
        return found
    finally:
        consumer.close()


class RunningIntake:
    """``griddispatch intake`` in this process: its own event loop in a thread, real broker
    and Redis, a free port; ``url`` is the server root."""

    def __init__(self, intake: Any, host: str = "127.0.0.1") -> None:
        import asyncio
        import threading

        from connectors.intake.server import start
        from engine.cli.stack.process import free_port

        self.intake = intake
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.runner = self.loop.run_until_complete(start(intake, host, self.port))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.intake.close()
        self.loop.close()


def http(method: str, url: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one plain HTTP request; 4xx/5xx are answers, not errors."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def form(url: str, fields: dict[str, str] | list[tuple[str, str]],
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    from urllib.parse import urlencode

    return http("POST", url, urlencode(fields).encode(),
                {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
