"""Rebuild the Redis timer index from Kafka, the source of truth.

``cases`` (compacted) holds every open case with its timer plan; ``escalations`` holds what
already fired. The rebuild streams ``cases`` once and lets the store's version check keep the
newest record of each case, so it needs no memory per case beyond the fired ids. While it
runs, a lock stops every timer worker from firing: a half-rebuilt index could hold an older
plan of a case whose newer record (accepted, say) has not been read yet.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

from engine import kafka
from engine.settings import Settings
from engine.sla.store import TimerStore
from engine.sla.timers import case_timers, fired_ids

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

        def add_case(key: bytes | None, value: bytes | None) -> None:
            nonlocal records, pipe
            if value is None:  # a tombstone: the case is gone
                if key is not None:
                    store.forget(key.decode(), pipe)
                return
            case = case_timers(value)
            if case is None:
                return
            records += 1
            store.schedule(case.case_id, case.version, case.timers, case.summary,
                           fired.get(case.case_id, ()), pipe)
            if case.timers:
                open_cases.add(case.case_id)
            else:
                open_cases.discard(case.case_id)
            if len(pipe) >= BATCH:
                pipe.execute()
                pipe = store.pipeline()

        kafka.read_to_end(settings, settings.topic("cases"), add_case,
                          "griddispatch-timers-rebuild", timeout)
        pipe.execute()
        report = RestoreReport(records, len(open_cases), count, time.monotonic() - started)
        store.mark_built(f"{report.open_cases} open cases at {time.time():.0f}")
        return report
    finally:
        lock.release()


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
        case = case_timers(value)
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
