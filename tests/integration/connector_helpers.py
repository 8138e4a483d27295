"""Helpers for the connector and webhook tests: run a ``griddispatch`` command as its own
process, a small HTTP receiver that can be told to fail, and a plain producer."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from connectors.outgoing.webhooks.delivery import Rejected, verify
from engine.runtime import kafka
from engine.runtime.settings import Settings
from tests.integration.workers import serving, start_command


@contextmanager
def griddispatch(settings: Settings, redis_url: str, log: Path,
                 *argv: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``griddispatch ARGV --metrics-port P`` until the block ends; waits for /metrics."""
    with serving(start_command(settings, log, *argv, redis_url=redis_url), log,
                 " ".join(argv[:2])) as proc_port:
        yield proc_port


def produce(settings: Settings, topic: str, values: list[bytes], key: str = "k") -> None:
    """Plain records onto a (prefixed) topic, acknowledged."""
    producer = kafka.producer(settings)
    for value in values:
        producer.produce(settings.topic(topic), key=key.encode(), value=value)
    assert producer.flush(10) == 0


class Receiver:
    """A department's webhook endpoint on 127.0.0.1: answers ``fail_status`` to the first
    ``fail_first`` POSTs (all of them while ``always_fail``), 200 afterwards, and applies each
    delivery's effect once (keyed by X-Griddispatch-Delivery), as receivers should."""

    def __init__(self, secret: bytes, fail_first: int = 0, fail_status: int = 500) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.always_fail = False
        self.posts: list[dict[str, str]] = []  # every POST: path, delivery, topic, signature ok
        self.effects: dict[str, bytes] = {}  # delivery id -> body, applied once
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                delivery = self.headers.get("X-Griddispatch-Delivery", "")
                with receiver.lock:
                    receiver.posts.append({
                        "path": self.path, "delivery": delivery,
                        "topic": self.headers.get("X-Griddispatch-Topic", ""),
                        "signed": str(signed(receiver.secret, body, dict(self.headers)))})
                    failing = receiver.always_fail or receiver.fail_first > 0
                    if failing:
                        receiver.fail_first -= 1
                    else:
                        receiver.effects.setdefault(delivery, body)
                self.send_response(receiver.fail_status if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def signed(secret: bytes, body: bytes, request_headers: dict[str, str]) -> bool:
    """The receiver helper's verdict, as the receiver records it."""
    try:
        verify(secret, body, request_headers, now=time.time())
    except Rejected:
        return False
    return True
