"""The timer benchmark's case records, its Redis and topic helpers, and its rebuild part.

Every record comes from ONE real case built by the engine's pure pipeline (``classify_data``
then ``on_classified``, and ``on_status`` for the accepted one), varied by byte substitution:
realistic size and shape (``origin`` with the whole report, terms, history, ``sla.timers``)
at a microsecond per record, where building a million cases through the pipeline would take
the whole time budget. The rebuild part is described in ``timers_bench``.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import KafkaException

from engine.cases.dispatch import on_classified, on_status
from engine.cases.duplicates import CaseStore
from engine.cases.records import CaseRecord, StatusUpdate
from engine.classify import classify_data
from engine.cli.stack import process, redis_server
from engine.contracts import Classified, to_json
from engine.rules import RuleSet
from engine.runtime import kafka, timer_plan
from engine.runtime.settings import Settings
from engine.runtime.timer_restore import rebuild
from engine.runtime.timer_store import TimerStore
from engine.runtime.topic_admin import apply, pending_changes
from engine.sla.timer_decisions import case_plan, case_timers
from tests.bench.harness import topics_served, wait_until
from tests.bench.reports import make_reports

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules"
REBUILD_CASES = 1_000_000
TARGET_REBUILD_S = 60.0
PIPELINE = 2000
PLANS = 1000  # distinct packed plans in the records' index headers
SEED = 20251124
READY_TIMEOUT = 90.0

Log = Callable[[str], None]


# --- one real case, varied cheaply --------------------------------------------------------


@dataclass(frozen=True)
class Templates:
    """A real dispatched case (both clocks running) and the same case once accepted (the
    resolution clock only: 5 timers), built by the engine's own pure pipeline."""

    dispatched: CaseRecord
    accepted: CaseRecord

    @property
    def dispatched_json(self) -> bytes:
        return to_json(self.dispatched)


# Cases open during office hours (10:17 on a Tuesday in Beijing), so every time on them has
# seconds and microseconds; ``STAMP`` is what each variant replaces to shift its times.
OPENED = datetime(2026, 11, 24, 2, 17, 23, 456789, UTC)
STAMP = b":23.456789"


def build_templates(ruleset: RuleSet) -> Templates:
    """The first seeded report that makes a normal-priority case on the default policy."""
    now = OPENED
    for report in make_reports(400, SEED, "T"):
        record = classify_data(ruleset, {**report, "reported_at": now.isoformat()}, now)
        if not isinstance(record, Classified) or record.priority != "normal":
            continue
        store = CaseStore()
        step = on_classified(ruleset, store, record, now)
        case = step.case
        if (step.outcome != "assigned" or case is None or case.sla is None
                or case.sla.terms.policy != "default" or len(case.sla.timers) != 10):
            continue
        update = StatusUpdate(case_id=case.case_id, department=case.lead, action="accepted",
                              at=now + timedelta(minutes=20))
        accepted = on_status(ruleset, store, update.model_dump_json(by_alias=True).encode(),
                             now + timedelta(minutes=20)).case
        assert accepted is not None and accepted.sla is not None
        return Templates(case, accepted)
    raise RuntimeError("no seeded report made a normal-priority default-policy case")


def scramble(n: int) -> int:
    """A bijection of 48-bit numbers that makes a counter look random (odd multiplier)."""
    return (n * 0x9E3779B97F4B + 0x5DEECE66D) % (1 << 48)


class CaseVariants:
    """Distinct ``cases`` records from one real record by byte substitution: the 12-hex tail
    of the case id, of the incident id and of every escalation id become a scrambled counter,
    and every time on the record moves by up to a minute (its seconds and microseconds), so
    ids differ, due times spread, and the size stays the original's."""

    def __init__(self, case: CaseRecord) -> None:
        raw = to_json(case)
        assert case.sla is not None
        self.times = raw.count(STAMP)
        assert self.times >= len(case.sla.timers) * 2, "the template's times lack STAMP"
        tail = case.case_id.split("-", 1)[1]
        spots = [tail.encode()] + [i.removeprefix("inc-")[:12].encode()
                                   for i in case.incident_ids]
        spots += [t.escalation_id[:12].encode() for t in case.sla.timers]
        raw = raw.replace(STAMP, b"\x01")
        for spot in spots:
            raw = raw.replace(spot, b"\x00")
        self.parts = [part.split(b"\x01") for part in raw.split(b"\x00")]
        self.prefix = case.case_id.split("-", 1)[0]
        self.size = len(to_json(case))
        self._plans: list[bytes] = []

    def index_header(self, n: int, value: bytes) -> bytes:
        """The ``timer-index`` header the route worker would have written on the variant:
        its own pairs (due times and escalation ids, from its JSON), and the packed plan of
        one of the first ``PLANS`` variants (deflate output cannot be varied by substitution,
        and packing a million plans would double the time to produce; to the rebuild the
        plan is opaque bytes of the same size)."""
        case = case_plan(value)
        assert case is not None
        if len(self._plans) < PLANS:
            self._plans.append(timer_plan.pack(case.timers, case.summary))
        return timer_plan.header(timer_plan.IndexEntry(
            case.version, timer_plan.pairs(
                case.dues_ms, [t["escalation_id"] for t in case.timers]), self._plans[n % PLANS]))

    def key_value(self, n: int) -> tuple[bytes, bytes]:
        mixed = scramble(n)
        tag = f"{mixed:012x}".encode()
        stamp = f":{mixed % 60:02d}.{(mixed >> 6) % 1_000_000:06d}".encode()
        value = tag.join(stamp.join(part) for part in self.parts)
        return f"{self.prefix}-{tag.decode()}".encode(), value


# --- stack, topics, keys ---------------------------------------------------------------


@contextlib.contextmanager
def redis_url(workdir: Path, log: Log) -> Iterator[str]:
    """A private Redis on a free port (no persistence), or ``REDIS_URL``."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    layout = redis_server.layout(workdir / "redis")
    port = process.free_port()
    pid = redis_server.start(layout, port, persistent=False)
    log(f"redis on 127.0.0.1:{port} (pid {pid})")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.stop(layout.pid_file)


def make_topics(settings: Settings, names: Sequence[str]) -> None:
    """The named topics (unprefixed; department topics by full name) created as
    ``topics/topics.yaml`` specifies them, once every partition answers."""
    admin = kafka.admin_client(settings)
    desired, changes = pending_changes(settings, admin)
    wanted = {settings.topic(n) for n in names}
    desired = [t for t in desired if t.name in wanted]
    missing = wanted - {t.name for t in desired}
    if missing:
        raise RuntimeError(f"not in topics/topics.yaml: {sorted(missing)}")
    apply(admin, [c for c in changes if c.topic in wanted])
    wait_until(lambda: topics_served(admin, [t.name for t in desired]), READY_TIMEOUT,
               f"the {len(desired)} new topics to have leaders")


def delete_keys(client: redis.Redis[bytes], prefix: str) -> int:
    """Every key under ``prefix`` gone (UNLINK in batches); how many there were."""
    count = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            count += client.unlink(*batch)
            batch = []
    if batch:
        count += client.unlink(*batch)
    return count


def delete_topics(settings: Settings, prefixes: Sequence[str], log: Log) -> None:
    """Every topic whose name starts with one of ``prefixes`` deleted."""
    admin = kafka.admin_client(settings)
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(tuple(prefixes))]
    if not names:
        return
    for name, future in admin.delete_topics(names, operation_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:
            log(f"could not delete topic {name}: {exc}")
    log(f"deleted {len(names)} topics under {', '.join(prefixes)}")


def used_memory(client: redis.Redis[bytes]) -> int:
    """``used_memory`` once what UNLINK handed to the background is freed, after
    ``MEMORY PURGE`` (jemalloc returns dirty pages)."""
    deadline = time.monotonic() + 60
    while int(client.info("memory").get("lazyfree_pending_objects", 0)) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    client.execute_command("MEMORY", "PURGE")
    return int(client.info("memory")["used_memory"])


def redis_cpu(client: redis.Redis[bytes]) -> float:
    """CPU seconds (user + system) the Redis server has used so far (INFO cpu)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# --- 3. rebuild -----------------------------------------------------------------------------


@dataclass
class RebuildResult:
    cases: int
    record_bytes: int
    produce_seconds: float
    raw_read_seconds: list[float]
    parse_us: float  # case_plan per record, in memory
    parse_full_us: float  # case_timers (full parse, SlaTimer models) per record, for contrast
    rebuild_seconds: list[float]
    pending_after: int
    redis_used_bytes: int
    redis_cpu_seconds: float
    reader_cpu_seconds: float

    @property
    def rebuild_median_s(self) -> float:
        return statistics.median(self.rebuild_seconds)

    @property
    def raw_read_median_s(self) -> float:
        return statistics.median(self.raw_read_seconds)

    def as_json(self) -> dict[str, Any]:
        return {
            "cases": self.cases, "record_bytes": self.record_bytes,
            "topic_bytes": self.cases * self.record_bytes,
            "produce_seconds": round(self.produce_seconds, 1),
            "raw_read_seconds": [round(s, 2) for s in self.raw_read_seconds],
            "raw_read_records_per_s": round(self.cases / self.raw_read_median_s),
            "parse_case_plan_us_per_record": round(self.parse_us, 2),
            "parse_case_timers_us_per_record": round(self.parse_full_us, 2),
            "rebuild_seconds": [round(s, 2) for s in self.rebuild_seconds],
            "rebuild_median_seconds": round(self.rebuild_median_s, 2),
            "rebuild_records_per_s": round(self.cases / self.rebuild_median_s),
            "rebuild_over_raw_read": round(self.rebuild_median_s / self.raw_read_median_s, 2),
            "pending_timers_after": self.pending_after,
            "redis_used_memory_bytes": self.redis_used_bytes,
            "redis_cpu_seconds_per_rebuild": round(self.redis_cpu_seconds, 1),
            "reader_cpu_seconds_per_rebuild": round(self.reader_cpu_seconds, 1),
            "target_seconds": TARGET_REBUILD_S,
            "target_met": self.rebuild_median_s <= TARGET_REBUILD_S,
        }


def produce_cases(settings: Settings, variants: CaseVariants, count: int, log: Log) -> float:
    """``count`` distinct case records on the prefixed ``cases`` topic; seconds it took."""
    producer = kafka.producer(settings, **{"linger.ms": 50, "batch.size": 1_000_000,
                                           "queue.buffering.max.kbytes": 512 * 1024})
    topic = settings.topic("cases")
    started = time.monotonic()
    for n in range(count):
        key, value = variants.key_value(n)
        headers: list[tuple[str, str | bytes | None]] = [
            (timer_plan.INDEX_HEADER, variants.index_header(n, value))]
        while True:
            try:
                producer.produce(topic, value, key, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
        if n % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left:
        raise RuntimeError(f"{left} case records not delivered")
    seconds = time.monotonic() - started
    log(f"[rebuild] produced {count:,} case records of {variants.size:,} bytes "
        f"({count * variants.size / 1e9:.1f} GB) in {seconds:.1f}s")
    return seconds


def raw_read(settings: Settings) -> tuple[int, float]:
    """The baseline: the same topic read to its end by the same code path, doing nothing."""
    seen = 0

    def add(_key: bytes | None, _value: bytes | None) -> None:
        nonlocal seen
        seen += 1

    started = time.monotonic()
    kafka.read_to_end(settings, settings.topic("cases"), add, "bench-raw-read", 600)
    return seen, time.monotonic() - started


def parse_cost(variants: CaseVariants, sample: int = 20_000) -> tuple[float, float]:
    """µs per record of ``case_plan`` and of ``case_timers`` over the same bytes, in memory."""
    values = [variants.key_value(n)[1] for n in range(sample)]
    started = time.perf_counter()
    for value in values:
        case_plan(value)
    plan_us = (time.perf_counter() - started) / sample * 1e6
    started = time.perf_counter()
    for value in values:
        case_timers(value)
    return plan_us, (time.perf_counter() - started) / sample * 1e6


def measure_rebuild(settings: Settings, client: redis.Redis[bytes], variants: CaseVariants,
                    cases: int, log: Log) -> RebuildResult:
    """Produce ``cases`` records, time the baselines, then ``rebuild()`` into empty keys."""
    make_topics(settings, ["cases", "escalations"])
    produce_seconds = produce_cases(settings, variants, cases, log)
    reads = []
    for _ in range(2):
        seen, seconds = raw_read(settings)
        if seen != cases:
            raise RuntimeError(f"read {seen:,} case records, produced {cases:,}")
        reads.append(seconds)
        log(f"[rebuild] baseline: read {seen:,} records, no parsing: {seconds:.1f}s "
            f"({seen / seconds:,.0f}/s)")
    parse_us, parse_full_us = parse_cost(variants)
    log(f"[rebuild] parse alone: case_plan {parse_us:.1f} µs/record, case_timers (models) "
        f"{parse_full_us:.1f} µs/record")
    store = TimerStore(client, settings.topic_prefix)
    before, redis0 = used_memory(client), redis_cpu(client)
    reader0 = _reader_cpu()
    report = rebuild(settings, store, timeout=600, force=True)
    assert report is not None
    reader_cpu, redis_used = _reader_cpu() - reader0, redis_cpu(client) - redis0
    memory = used_memory(client) - before
    pending = store.pending()
    rate = report.records / report.seconds
    log(f"[rebuild] {report.records:,} records -> {report.open_cases:,} open cases "
        f"({pending:,} index entries) in {report.seconds:.1f}s ({rate:,.0f}/s); cpu: "
        f"readers {reader_cpu:.1f}s, redis {redis_used:.1f}s; redis memory "
        f"{memory / 1e6:,.0f} MB")
    if report.open_cases != cases:
        raise RuntimeError(f"rebuilt {report.open_cases:,} open cases of {cases:,}")
    return RebuildResult(cases, variants.size, produce_seconds, reads, parse_us,
                         parse_full_us, [report.seconds], pending, memory, redis_used,
                         reader_cpu)


def _reader_cpu() -> float:
    """CPU of this process and of its finished children: the rebuild's reader processes
    (they end with the rebuild; the broker and Redis are still running, so not counted)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
