"""Rebuild the Redis timer index from Kafka, the source of truth.

``cases`` (compacted) holds every open case with its timer plan; ``escalations`` holds what
already fired. The rebuild streams ``cases`` once and lets the store's version check keep the
newest record of each case, so it needs no memory per case beyond the fired ids. While it
runs, a lock stops every timer worker from firing: a half-rebuilt index could hold an older
plan of a case whose newer record (accepted, say) has not been read yet.

Speed (issue #5: a million open cases in under a minute; issue #18: within 8x a plain read
of the topic): each record's index entry is taken from its ``timer-index`` header
(``timer_plan``), so nothing of the 5 KB JSON is parsed; a record without one is read with
``case_plan`` (only the fields the index needs). One reader process per CPU takes a share of
the partitions, and full pipelines go to Redis from a second thread, so Redis runs one
batch's scripts while the reader takes the next.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from confluent_kafka import Message

from engine.runtime import kafka
from engine.runtime import timer_plan as plan
from engine.runtime.redis_clients import RedisPipeline, address_of, redis_client_from
from engine.runtime.settings import Settings
from engine.runtime.timer_store import TimerStore
from engine.sla.timer_decisions import case_plan, fired_ids, first_breach_ms

log = logging.getLogger("griddispatch.timers")
BATCH = 2000


@dataclass(frozen=True)
class RestoreReport:
    records: int
    open_cases: int
    fired: int
    seconds: float


class Mirrored(NamedTuple):
    case_id: str
    open: bool  # it has timers left


def mirror(store: TimerStore, message: Message, pipe: RedisPipeline,
           fired: dict[str, list[str]] | None = None) -> Mirrored | None:
    """One ``cases`` record into the index, as the live worker and the rebuild both do: a
    tombstone forgets the case, a case record replaces its plan (``fired``: escalations
    already published, by case). The index entry comes from the record's header when the
    route worker wrote one (``timer_plan``), else from its JSON. Returns the case mirrored;
    None for a tombstone or a record that is not a case."""
    key, value = message.key(), message.value()
    if value is None:  # a tombstone: the case is gone
        if key is not None:
            store.forget(key.decode(), pipe)
        return None
    entry = plan.from_headers(message.headers()) if key is not None else None
    if entry is not None and key is not None:
        case_id = key.decode()
    else:
        case = case_plan(value)
        if case is None:
            return None
        case_id = case.case_id
        entry = plan.entry(case.version, case.timers, case.dues_ms, case.summary)
    store.schedule_entry(case_id, entry, (fired or {}).get(case_id, ()), pipe)
    return Mirrored(case_id, bool(entry.pairs))


def rebuild(settings: Settings, store: TimerStore, timeout: float = 600.0,
            force: bool = False, processes: int | None = None) -> RestoreReport | None:
    """Restore every open case's timers; None when another worker rebuilt meanwhile.

    The ``cases`` partitions are shared among ``processes`` reader processes (default: one
    per CPU, at most one per partition): parsing a million records is the rebuild's cost, and
    a case always lies in one partition, so the readers never meet.
    """
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
        topic = settings.topic("cases")
        partitions = sorted(kafka.end_offsets(settings, topic, time.monotonic() + timeout))
        n = max(1, min(processes or os.cpu_count() or 1, len(partitions)))
        groups = [partitions[i::n] for i in range(n)]
        redis_kwargs = address_of(store.redis)
        if n == 1:
            results = [_rebuild_partitions(settings, redis_kwargs, store.prefix, groups[0],
                                           dict(fired), timeout)]
        else:
            spawn = multiprocessing.get_context("spawn")  # no fork of librdkafka's threads
            with ProcessPoolExecutor(n, mp_context=spawn,
                                     initializer=die_with_parent) as pool:
                results = list(pool.map(_rebuild_partitions, [settings] * n,
                                        [redis_kwargs] * n, [store.prefix] * n, groups,
                                        [dict(fired)] * n, [timeout] * n))
        report = RestoreReport(sum(r[0] for r in results), sum(r[1] for r in results), count,
                               time.monotonic() - started)
        store.mark_built(f"{report.open_cases} open cases at {time.time():.0f}")
        return report
    finally:
        lock.release()


def die_with_parent() -> None:
    """A rebuild reader must not outlive its timer worker. Killed with -9 mid-rebuild, the
    worker left its readers running (found as orphans after the chaos and alert tests):
    writing plans to Redis beside the next worker's own rebuild, then idle for good. Linux
    sends them SIGKILL when the worker dies (PR_SET_PDEATHSIG); elsewhere they end with
    their partitions. The signal comes when the *thread* that started them ends: every caller
    (the timer worker's loop, its audit, ``timers rebuild``) rebuilds on its main thread."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the worker died before the line above took effect
        os._exit(1)


def _rebuild_partitions(settings: Settings, redis_kwargs: dict[str, Any], prefix: str,
                        partitions: list[int], fired: dict[str, list[str]],
                        timeout: float) -> tuple[int, int]:
    """One reader: (records read, open cases) of ``partitions`` of ``cases``, into Redis."""
    store = TimerStore(redis_client_from(redis_kwargs), prefix)
    records = 0
    open_cases: set[str] = set()
    pipe = store.pipeline()
    sender = _Sender()

    def add_case(message: Message) -> None:
        nonlocal records, pipe
        case = mirror(store, message, pipe, fired)
        if case is None:
            return
        records += 1
        if case.open:
            open_cases.add(case.case_id)
        else:
            open_cases.discard(case.case_id)
        if len(pipe) >= BATCH:
            sender.send(pipe)
            pipe = store.pipeline()

    try:
        kafka.read_messages_to_end(settings, settings.topic("cases"), add_case,
                                   "griddispatch-timers-rebuild", timeout, partitions)
        sender.send(pipe)
    finally:
        sender.close()
    return records, len(open_cases)


class _Sender:
    """Executes pipelines on its own thread, in order, at most one waiting: the reader
    thread parses the next batch meanwhile. An error stops the rebuild at the next send."""

    def __init__(self) -> None:
        self._queue: queue.Queue[RedisPipeline | None] = queue.Queue(maxsize=1)
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

    def send(self, pipe: RedisPipeline) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(pipe)

    def close(self) -> None:
        """Wait for every pipeline sent; raise the first error any of them met."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


class AuditResult(NamedTuple):
    missing: int  # open cases whose timers were missing or outdated (and were rebuilt)
    open_by: Counter[tuple[str, str]]  # open cases by (lead, state)
    breached_by: Counter[tuple[str, str]]  # those past a running limit, by (lead, state)


def audit(settings: Settings, store: TimerStore, timeout: float = 600.0,
          now: datetime | None = None) -> AuditResult:
    """Check every open case on the topic against the index; rebuild when any is missing.

    Also counts open and breached cases by (lead, state) for the gauges that the breach-rate
    alert divides (a share of cases, never above 100 %). Reading the topic once and comparing
    versions in batches keeps memory at one small entry per open case.
    """
    latest: dict[str, tuple[int, str, str, int | None]] = {}

    def add_case(key: bytes | None, value: bytes | None) -> None:
        if value is None:
            if key is not None:
                latest.pop(key.decode(), None)
            return
        case = case_plan(value)
        if case is None:
            return
        if case.timers:
            latest[case.case_id] = (case.version, str(case.summary.get("lead")), case.state,
                                    first_breach_ms(case))
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
    now_ms = int((now or datetime.now(UTC)).timestamp() * 1000)
    return AuditResult(
        missing, Counter((lead, state) for _, lead, state, _ in latest.values()),
        Counter((lead, state) for _, lead, state, breach in latest.values()
                if breach is not None and breach <= now_ms))
