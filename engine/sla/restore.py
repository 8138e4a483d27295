"""Rebuild the Redis timer index from Kafka, the source of truth.

``cases`` (compacted) holds every open case with its timer plan; ``escalations`` holds what
already fired. The rebuild streams ``cases`` once and lets the store's version check keep the
newest record of each case, so it needs no memory per case beyond the fired ids. While it
runs, a lock stops every timer worker from firing: a half-rebuilt index could hold an older
plan of a case whose newer record (accepted, say) has not been read yet.

Speed (issue #5: a million open cases in under a minute): records are read with
``case_plan`` (only the fields the index needs, timers left in their wire form), and full
pipelines go to Redis from a second thread, so Redis runs one batch's scripts while this
thread parses the next.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import redis

from engine import kafka
from engine.settings import Settings
from engine.sla.store import TimerStore
from engine.sla.timers import case_plan, fired_ids

log = logging.getLogger("griddispatch.timers")
BATCH = 2000


@dataclass(frozen=True)
class RestoreReport:
    records: int
    open_cases: int
    fired: int
    seconds: float


def rebuild(settings: Settings, store: TimerStore, timeout: float = 600.0,
            force: bool = False) -> RestoreReport | None:
    """Restore every open case's timers; None when another worker rebuilt meanwhile."""
    started = time.monotonic()
    lock = store.lock_rebuild(ttl_s=timeout)
    try:
        if store.is_built() and not force:
            return None
        fired: dict[str, list[str]] = defaultdict(list)
        count = 0

        def add_fired(_key: bytes | None, value: bytes | None) -> None:
            nonlocal count
            found = fired_ids(value) if value else None
            if found:
                fired[found[0]].append(found[1])
                count += 1

        kafka.read_to_end(settings, settings.topic("escalations"), add_fired,
                          "griddispatch-timers-rebuild", timeout)
        records = 0
        open_cases: set[str] = set()
        pipe = store.pipeline()
        sender = _Sender()

        def add_case(key: bytes | None, value: bytes | None) -> None:
            nonlocal records, pipe
            if value is None:  # a tombstone: the case is gone
                if key is not None:
                    store.forget(key.decode(), pipe)
                return
            case = case_plan(value)
            if case is None:
                return
            records += 1
            store.schedule_wire(case.case_id, case.version, case.timers, case.dues_ms,
                                case.summary, fired.get(case.case_id, ()), pipe)
            if case.timers:
                open_cases.add(case.case_id)
            else:
                open_cases.discard(case.case_id)
            if len(pipe) >= BATCH:
                sender.send(pipe)
                pipe = store.pipeline()

        try:
            kafka.read_to_end(settings, settings.topic("cases"), add_case,
                              "griddispatch-timers-rebuild", timeout)
            sender.send(pipe)
        finally:
            sender.close()
        report = RestoreReport(records, len(open_cases), count, time.monotonic() - started)
        store.mark_built(f"{report.open_cases} open cases at {time.time():.0f}")
        return report
    finally:
        lock.release()


class _Sender:
    """Executes pipelines on its own thread, in order, at most one waiting: the reader
    thread parses the next batch meanwhile. An error stops the rebuild at the next send."""

    def __init__(self) -> None:
        self._queue: queue.Queue[redis.client.Pipeline[bytes] | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="timers-rebuild-redis",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (pipe := self._queue.get()) is not None:
            if self._error is None:
                try:
                    pipe.execute()
                except BaseException as exc:  # handed to the reader thread
                    self._error = exc

    def send(self, pipe: redis.client.Pipeline[bytes]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(pipe)

    def close(self) -> None:
        """Wait for every pipeline sent; raise the first error any of them met."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def audit(settings: Settings, store: TimerStore,
          timeout: float = 600.0) -> tuple[int, Counter[tuple[str, str]]]:
    """Check every open case on the topic against the index; rebuild when any is missing.

    Returns how many open cases had missing or outdated timers, and the open cases by
    (lead, state) for the gauge. Reading the topic once and comparing versions in batches
    keeps memory at one small entry per open case.
    """
    latest: dict[str, tuple[int, str, str]] = {}

    def add_case(key: bytes | None, value: bytes | None) -> None:
        if value is None:
            if key is not None:
                latest.pop(key.decode(), None)
            return
        case = case_plan(value)
        if case is None:
            return
        if case.timers:
            latest[case.case_id] = (case.version, str(case.summary.get("lead")), case.state)
        else:
            latest.pop(case.case_id, None)

    kafka.read_to_end(settings, settings.topic("cases"), add_case, "griddispatch-timers-audit",
                      timeout)
    missing = 0
    ids = list(latest)
    for start in range(0, len(ids), BATCH):
        chunk = ids[start:start + BATCH]
        for case_id, have in zip(chunk, store.version_of(chunk), strict=True):
            if have is None or have < latest[case_id][0]:
                missing += 1
    if missing:
        rebuild(settings, store, timeout, force=True)
    return missing, Counter((lead, state) for _, lead, state in latest.values())
