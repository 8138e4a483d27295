"""The console's Kafka reader: every record of the topics it shows, into one ``ConsoleView``.

A fresh consumer group each start (never committed) reads every topic from its beginning, so
each console process rebuilds the whole view from the truth: ``cases`` is compacted, the
incident topics keep 90 days, which is what a centre looks back on. The reader thread owns
the view's writes; pages read it under the same lock, and a page waiting for live updates
is woken by ``changed``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable

from engine.console.view import Change, ConsoleView
from engine.runtime import kafka
from engine.runtime.settings import Settings

TOPICS = ("incidents.triage", "triage.decisions", "cases", "escalations",
          "incidents.classified", "incidents.rejected")

log = logging.getLogger("griddispatch.console.feed")


class ConsoleFeed:
    def __init__(self, settings: Settings, view: ConsoleView | None = None) -> None:
        self.settings = settings
        self.view = view or ConsoleView()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-feed", daemon=True)
        self._listeners: list[Callable[[Change], None]] = []
        self._prefix = settings.topic("")

    def listen(self, listener: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``listener`` (from the reader thread) for every change; returns the undo."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        consumer = kafka.consumer(self.settings,
                                  f"griddispatch-console-{uuid.uuid4().hex[:12]}",
                                  **{"auto.offset.reset": "earliest", "log_level": 3})
        consumer.subscribe([self.settings.topic(t) for t in TOPICS])
        try:
            while not self._stop.is_set():
                messages = consumer.consume(500, 0.2)
                changes = []
                with self.lock:
                    for message in messages:
                        if message.error() is not None:
                            log.warning("console feed: %s", message.error())
                            continue
                        topic = (message.topic() or "")[len(self._prefix):]
                        change = self.view.apply(topic, message.value())
                        if change is not None:
                            changes.append(change)
                for change in changes:
                    for listener in list(self._listeners):
                        listener(change)
        finally:
            consumer.close()


def to_loop(loop: asyncio.AbstractEventLoop,
            queue: asyncio.Queue[Change]) -> Callable[[Change], None]:
    """A listener that hands changes from the reader thread to one page's event loop."""
    def put(change: Change) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, change)
    return put
