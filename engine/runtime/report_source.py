"""The report's one Kafka read: the latest record of every case on the compacted ``cases`` topic.

Read to the end offsets of the moment with a fresh reader (a unique group id, partitions
assigned, nothing committed), so the report never moves any group's offsets and two reports
can run at once. Compaction may not have run yet, so several records of one case can be on
the topic: the last one read per key wins (one key is always on one partition, read in
order). A record that does not parse as a ``CaseRecord`` is counted and skipped, never fatal.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pydantic import ValidationError

from engine.cases.records import CaseRecord
from engine.runtime import kafka
from engine.runtime.settings import Settings

CASES = "cases"


@dataclass(frozen=True)
class CasesRead:
    cases: list[CaseRecord]
    unreadable: int


def parse_latest(latest: dict[bytes, bytes | None]) -> CasesRead:
    """Case records from the last value of each key; tombstones (None) are deleted cases."""
    cases, unreadable = [], 0
    for value in latest.values():
        if value is None:
            continue
        try:
            cases.append(CaseRecord.model_validate_json(value))
        except ValidationError:
            unreadable += 1
    return CasesRead(cases, unreadable)


def read_cases(settings: Settings, timeout: float = 120.0) -> CasesRead:
    latest: dict[bytes, bytes | None] = {}

    def add(key: bytes | None, value: bytes | None) -> None:
        latest[key if key is not None else b"#%d" % len(latest)] = value  # never keyless

    kafka.read_to_end(settings, settings.topic(CASES), add,
                      f"griddispatch-report-{uuid.uuid4().hex[:12]}", timeout)
    return parse_latest(latest)
