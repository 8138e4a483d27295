"""The route worker's state: pure bookkeeping (unit-tested without Kafka) and ``load_case_state``.

- ``partition_for``: the partition a key lands on with Kafka's default (murmur2) partitioner,
  the one ``engine.runtime.kafka.producer`` and Faust use, so the worker knows which townships the
  partitions it was assigned hold.
- ``CaseLoader``: rebuilds a ``CaseStore`` from the records of the compacted ``cases`` topic.
- ``next_offsets``: what to commit for a batch (the offset after the last record of each
  partition, Kafka's convention).
- ``BatchTally``: a batch's outcomes, applied to the metrics only once its transaction
  committed, so an aborted batch that is processed again is not counted twice.
- ``load_case_state``: the one Kafka read here, feeding a ``CaseLoader`` from the topic.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json

from engine.cases.dispatch import StepResult
from engine.cases.duplicates import DUPLICATE_MEMORY, CaseStore
from engine.cases.records import Assignment, CaseRecord
from engine.runtime import kafka, timer_plan
from engine.runtime.settings import Settings
from engine.sla.timer_decisions import timers_of_case

log = logging.getLogger("griddispatch.route")
kafka_log = logging.getLogger("griddispatch.route.kafka")  # librdkafka's own lines
CASES = "cases"
REBUILD_TIMEOUT = 120.0


class WorkerStopped(RuntimeError):
    """The worker cannot go on (fenced by another instance, cluster gone): exit 1."""


# Every state a case in the store can be in (closed cases leave the live set).
LIVE_STATES = ("dispatched", "accepted", "resolved", "reopened")


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as unsigned 32 bits."""
    m, length = 0x5BD1E995, len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = (int.from_bytes(data[i:i + 4], "little") * m) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    rest = data[whole:]
    if len(rest) >= 3:
        h ^= rest[2] << 16
    if len(rest) >= 2:
        h ^= rest[1] << 8
    if rest:
        h = ((h ^ rest[0]) * m) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


def partition_for(key: str, partitions: int) -> int:
    """The partition of ``key`` under the murmur2 partitioner (Java's ``toPositive(h) % n``)."""
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


@dataclass
class CaseLoader:
    """Latest record per case from the ``cases`` topic, for the townships this worker owns.

    ``owned`` are partitions of ``incidents.classified`` (whose key is the case's
    ``partition_key``); ``None`` keeps every case. Records arrive in offset order per
    partition and a case always lands on one partition (key: case id), so the last record
    seen for a case is its latest state. Only that one is parsed, and only for owned
    townships: the key (``<partition_key>-<digest>``, ``engine.cases.lifecycle.case_id_for``)
    tells both without parsing the value, which costs most of a rebuild. A record that does
    not parse is counted and skipped: this worker cannot have written it, and refusing to
    start over it would stop dispatch for the whole county.
    """

    owned: frozenset[int] | None
    partitions: int
    raw: dict[str, bytes] = field(default_factory=dict)
    bad: int = 0
    seen: int = 0

    def add(self, key: bytes | None, value: bytes | None) -> None:
        self.seen += 1
        if key is None:  # not written by us: parse it to learn the case
            try:
                case = CaseRecord.model_validate_json(value or b"")
            except ValidationError as exc:
                self._bad(exc)
                return
            key = case.case_id.encode()
        case_id = key.decode("utf-8", errors="replace")
        if not self._mine(case_id.split("-", 1)[0]):
            return
        if value is None:  # a tombstone: the case is gone
            self.raw.pop(case_id, None)
        else:
            self.raw[case_id] = value

    def _mine(self, partition_key: str) -> bool:
        return self.owned is None or partition_for(partition_key, self.partitions) in self.owned

    def _bad(self, exc: ValidationError) -> None:
        self.bad += 1
        log.error("skipped an unreadable record on the cases topic: %s", str(exc)[:300])

    def store(self, now: datetime | None = None) -> CaseStore:
        """The store: live cases whole; closed ones only by their incidents, and only those
        closed within ``DUPLICATE_MEMORY`` (full validation is for what can still change)."""
        store = CaseStore()
        cutoff = (now or datetime.now(UTC)) - DUPLICATE_MEMORY
        for value in self.raw.values():
            closed = _closed_view(value)
            if closed is not None:
                case_id, incidents, closed_at = closed
                if closed_at >= cutoff:
                    store.remember_closed(case_id, incidents, closed_at)
                continue
            try:
                store.put(CaseRecord.model_validate_json(value))
            except ValidationError as exc:
                self._bad(exc)
        return store


def _closed_view(value: bytes) -> tuple[str, list[str], datetime] | None:
    """(case id, incident ids, closed at) of a closed case record, else None."""
    try:
        data = from_json(value)
        if data.get("state") != "closed":
            return None
        return (str(data["case_id"]), [str(i) for i in data["incident_ids"]],
                datetime.fromisoformat(data["updated_at"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # let full validation say what is wrong with it


def next_offsets(messages: Iterable[tuple[str, int, int]]) -> dict[tuple[str, int], int]:
    """(topic, partition, offset) of processed records → the offset to commit per partition."""
    out: dict[tuple[str, int], int] = {}
    for topic, partition, offset in messages:
        key = (topic, partition)
        out[key] = max(out.get(key, 0), offset + 1)
    return out


Header = tuple[str, str | bytes | None]  # confluent-kafka's header type


def headers_for(value: BaseModel, serving_revision: str) -> list[Header]:
    """``schema`` and ``rules-revision`` headers, so consumers can refuse or route unparsed;
    on a case record also the timer index's entry (``timer_plan``), so that the timer worker
    and a rebuild schedule it without parsing the record.

    The revision is the one written in the record when it has one (frozen on the decision),
    else the serving rule set's (status rejections).
    """
    schema = str(getattr(value, "schema_", ""))
    revision = str(getattr(value, "rules_revision", None) or serving_revision)
    headers: list[Header] = [("schema", schema.encode()), ("rules-revision", revision.encode())]
    if isinstance(value, CaseRecord):  # the timer index's entry, made once here
        headers.append((timer_plan.INDEX_HEADER,
                        timer_plan.header(timer_plan.entry_of(timers_of_case(value)))))
    return headers


def state_counts(store: CaseStore) -> dict[str, int]:
    counts = dict.fromkeys(LIVE_STATES, 0)
    counts.update(store.states)
    return counts


@dataclass
class BatchTally:
    """What one batch did, for the metrics once (and only if) its transaction commits."""

    outcomes: Counter[str] = field(default_factory=Counter)
    assignments: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # by stage: records skipped

    def add(self, result: StepResult, reported_at: datetime | None = None) -> None:
        self.outcomes[result.outcome] += 1
        for output in result.outputs:
            if isinstance(output.value, Assignment):
                self.assignments[(output.value.platform, output.value.department)] += 1
        if result.outcome == "assigned" and result.case is not None and reported_at:
            self.latencies.append((result.case.opened_at - reported_at).total_seconds())


def load_case_state(settings: Settings, loader: CaseLoader,
                    timeout: float = REBUILD_TIMEOUT) -> None:
    """Feed ``loader`` every committed record of ``cases`` up to the end offsets of now."""
    try:
        kafka.read_to_end(settings, settings.topic(CASES), loader.add,
                          "griddispatch-route-rebuild", timeout)
    except kafka.KafkaUnavailable as exc:
        raise WorkerStopped(str(exc)) from exc
