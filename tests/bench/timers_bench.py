"""SLA timers at scale on a real Redis and a real broker (issue #5).

Three questions, each answered against a baseline measured in the same run (this 2-core
machine is shared, so absolute figures drift; ratios less so):

1. **Memory.** 1,000,000 pending timers: 200,000 accepted cases x the 5 timers of their
   resolution clock (taken from a real case, ids scrambled, each case shifted to a different
   moment of the coming week), scheduled through ``TimerStore.schedule`` in pipelines. Redis
   ``used_memory`` after minus before (``MEMORY PURGE`` first, background frees waited for),
   per timer; target <= 250 bytes. Baseline: the same 1,000,000 sorted-set members and scores
   ZADDed raw, nothing else. ``MEMORY USAGE`` of the shard sorted sets and of 1,000 case keys
   says where the bytes go.
2. **Fire lateness.** With those 1,000,000 timers still pending (days ahead), 30,000 timers
   fall due at 1,000/s over ``FIRE_SECONDS``: 6,000 cases of 5, each case's 5 spread over the
   window, so one second's fires come from many cases, as in life. A real
   ``griddispatch worker timers`` process (its own loop, ``POLL_SECONDS`` and claim batch)
   claims, resolves, publishes to ``escalations`` and ``escalations.<recipient>`` and
   acknowledges. Lateness = ``fired_at - due`` of the ``escalations`` records read back (the
   worker stamps ``fired_at`` when it claims, as its histogram does); the record's Kafka
   CreateTime minus ``due`` is reported too, which includes resolving and publishing. Target
   p99 <= 1 s; median of rounds.
3. **Rebuild.** 1,000,000 open cases on a ``cases`` topic created as ``topics/topics.yaml``
   says (``timers_rebuild``: records varied from ONE real case by byte substitution; full
   size with ``origin`` and ``sla.timers``; by default the case just dispatched, both clocks
   running, 10 timers), then ``engine.runtime.timer_restore.rebuild()`` into an empty key prefix;
   target <= 60 s. Baselines on the same topic: a read by the same code with no parsing
   (``kafka.read_to_end`` with a no-op), and the parse alone (``case_plan``, and the full
   ``case_timers`` for contrast) over the same bytes in memory. The CPU seconds of this
   process and of Redis (``INFO cpu``) during the rebuild say where the time goes.

The bench starts its own broker and Redis on free ports in a temporary folder (or uses
``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL``), uses its own topic and key prefixes, and
deletes its keys at the end. About four minutes on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from engine.cases.records import CaseRecord
from engine.contracts import to_json
from engine.rules.load import load_rules
from engine.runtime import kafka
from engine.runtime.settings import Settings
from engine.runtime.timer_plan import CASE_KEY
from engine.runtime.timer_store import SHARDS, TimerStore, shard_of
from engine.runtime.workers.timers import BATCH as WORKER_BATCH
from engine.runtime.workers.timers import POLL_SECONDS
from engine.sla.model import SlaTimer
from engine.sla.timer_decisions import case_timers
from tests.bench.harness import Processes, broker, cpu_seconds
from tests.bench.timers_rebuild import (
    OPENED,
    PIPELINE,
    READY_TIMEOUT,
    REBUILD_CASES,
    REPO,
    RULES,
    TARGET_REBUILD_S,
    CaseVariants,
    Log,
    RebuildResult,
    Templates,
    build_templates,
    delete_keys,
    delete_topics,
    make_topics,
    measure_rebuild,
    redis_cpu,
    redis_url,
    scramble,
    used_memory,
)

PARTS = ("memory", "lateness", "rebuild")
TIMER_CASES = 200_000  # x 5 timers
FIRE_RATE, FIRE_SECONDS, FIRE_ROUNDS, FIRE_LEAD_SECONDS = 1000, 30.0, 3, 4.0
TARGET_BYTES_PER_TIMER = 250
TARGET_P99_S = 1.0


# --- 1. memory ------------------------------------------------------------------------------


@dataclass
class MemoryResult:
    timers: int
    cases: int
    baseline_bytes: int  # raw ZADD of the same members and scores, nothing else
    store_bytes: int  # TimerStore.schedule of the same timers
    schedule_seconds: float
    zset_bytes_per_member: float  # MEMORY USAGE of the shard sorted sets
    case_key_bytes: float  # MEMORY USAGE of a case key, mean over a sample
    case_key_sample: int
    case_encoding: str
    allocator: str
    fragmentation: float
    listpack_limits: dict[str, str]

    @property
    def per_timer(self) -> float:
        return self.store_bytes / self.timers

    @property
    def baseline_per_timer(self) -> float:
        return self.baseline_bytes / self.timers

    def as_json(self) -> dict[str, Any]:
        return {
            "timers": self.timers, "cases": self.cases,
            "bytes_per_timer": round(self.per_timer, 1),
            "baseline_raw_zadd_bytes_per_member": round(self.baseline_per_timer, 1),
            "ratio_over_baseline": round(self.per_timer / self.baseline_per_timer, 2),
            "used_memory_delta_bytes": self.store_bytes,
            "schedule_seconds": round(self.schedule_seconds, 1),
            "schedule_timers_per_s": round(self.timers / self.schedule_seconds),
            "where": {"shard_zset_bytes_per_member": round(self.zset_bytes_per_member, 1),
                      "case_key_bytes": round(self.case_key_bytes, 1),
                      "case_key_bytes_per_timer": round(
                          self.case_key_bytes * self.cases / self.timers, 1),
                      "case_key_sample": self.case_key_sample,
                      "case_key_encoding": self.case_encoding},
            "allocator": self.allocator, "mem_fragmentation_ratio": self.fragmentation,
            "server_listpack_limits": self.listpack_limits,
            "target_bytes_per_timer": TARGET_BYTES_PER_TIMER,
            "target_met": self.per_timer <= TARGET_BYTES_PER_TIMER,
        }


def spread_cases(template: CaseRecord, count: int) -> Iterator[tuple[str, list[SlaTimer]]]:
    """``count`` open cases like ``template`` (case id, timers): ids scrambled, each case's
    times shifted alike so that it was accepted at some moment of the coming week: every
    timer is pending (days ahead), and due times spread as they do in life."""
    assert template.sla is not None
    prefix = template.case_id.split("-", 1)[0]
    base = template.sla.timers
    now = datetime.now(UTC)
    for n in range(count):
        mixed = scramble(n)
        shift = now - OPENED + timedelta(milliseconds=mixed % (7 * 24 * 3600 * 1000))
        tag = f"{mixed:012x}"
        yield f"{prefix}-{tag}", [t.model_copy(update={
            "escalation_id": tag + t.escalation_id[12:], "due": t.due + shift,
            "deadline": t.deadline + shift}) for t in base]


def measure_memory(client: redis.Redis[bytes], store: TimerStore, templates: Templates,
                   cases: int, log: Log) -> MemoryResult:
    """Memory of ``cases`` x 5 pending timers, against raw ZADDs of the same members."""
    summary = case_timers(to_json(templates.accepted))
    assert summary is not None
    timers = 0
    # Baseline: the sorted-set members alone, same names, scores and shards, no Lua.
    before = used_memory(client)
    pipe = client.pipeline(transaction=False)
    for case_id, plan in spread_cases(templates.accepted, cases):
        members: dict[str | bytes, bytes | float | int | str] = {
            f"{case_id}|{summary.version}|{k}": int(t.due.timestamp() * 1000)
            for k, t in enumerate(plan)}
        pipe.zadd(f"{store.prefix}raw:{{t{shard_of(case_id)}}}", members)
        timers += len(plan)
        if len(pipe) >= PIPELINE:
            pipe.execute()
    pipe.execute()
    baseline = used_memory(client) - before
    delete_keys(client, f"{store.prefix}raw:")
    log(f"[memory] baseline: {timers:,} members ZADDed raw: {baseline / timers:.1f} bytes each")

    before = used_memory(client)
    started = time.monotonic()
    pipe = store.pipeline()
    for case_id, plan in spread_cases(templates.accepted, cases):
        store.schedule(case_id, summary.version, plan, summary.summary, (), pipe)
        if len(pipe) >= PIPELINE:
            pipe.execute()
            pipe = store.pipeline()
    pipe.execute()
    seconds = time.monotonic() - started
    store_bytes = used_memory(client) - before
    pending = store.pending()
    if pending != cases:  # one index entry per case (engine/runtime/timer_store.py)
        raise RuntimeError(f"{pending:,} cases pending after scheduling {cases:,}")

    zset_bytes = sum(int(client.memory_usage(store._due(s), samples=0) or 0)
                     for s in range(SHARDS))
    sample = [f"{store.prefix}gd:{{t{shard_of(c)}}}:{CASE_KEY}:{c}"
              for c, _ in spread_cases(templates.accepted, 1000)]
    sizes = [int(client.memory_usage(key, samples=0) or 0) for key in sample]
    info = client.info("memory")
    limits = {k: str(v) for k, v in client.config_get("*-listpack-*").items()
              if k.startswith(("hash", "zset"))}
    result = MemoryResult(
        timers, cases, baseline, store_bytes, seconds, zset_bytes / timers,
        statistics.mean(sizes), len(sizes),
        client.object("encoding", sample[0]).decode(), str(info.get("mem_allocator")),
        float(info.get("mem_fragmentation_ratio", 0.0)), limits)
    ratio = result.per_timer / result.baseline_per_timer
    log(f"[memory] TimerStore: {timers:,} timers of {cases:,} cases scheduled in "
        f"{seconds:.1f}s: {result.per_timer:.1f} bytes/timer ({ratio:.2f}x the raw members); "
        f"shard zsets {result.zset_bytes_per_member:.1f} B/timer, case key "
        f"{result.case_key_bytes:.0f} B ({result.case_encoding})")
    return result


# --- 2. fire lateness -----------------------------------------------------------------------


@dataclass
class FireRound:
    scheduled: int
    seen: int
    lateness_s: list[float]  # fired_at - due, as the worker stamped it
    published_s: list[float]  # Kafka CreateTime of the record - due
    worker_cpu_seconds: float
    redis_cpu_seconds: float
    seconds: float

    @staticmethod
    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    def as_json(self) -> dict[str, Any]:
        return {"scheduled": self.scheduled, "escalations_seen": self.seen,
                "lateness_p50_s": round(self.pct(self.lateness_s, 0.5), 3),
                "lateness_p99_s": round(self.pct(self.lateness_s, 0.99), 3),
                "lateness_max_s": round(max(self.lateness_s, default=float("nan")), 3),
                "published_p50_s": round(self.pct(self.published_s, 0.5), 3),
                "published_p99_s": round(self.pct(self.published_s, 0.99), 3),
                "worker_cpu_seconds": round(self.worker_cpu_seconds, 1),
                "redis_cpu_seconds": round(self.redis_cpu_seconds, 1),
                "seconds": round(self.seconds, 1)}


class EscalationReader:
    """Every ``escalations`` record from now on, kept raw with its CreateTime (parsed after
    the round, so the bench takes no CPU from the worker while it fires)."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = kafka.consumer(settings, f"bench-lateness-{uuid.uuid4().hex[:6]}",
                                       **{"auto.offset.reset": "latest"})
        self.topic = settings.topic("escalations")
        self.records: list[tuple[int, bytes]] = []
        self.consumer.subscribe([self.topic])

    def poll(self, seconds: float) -> None:
        for message in self.consumer.consume(1000, seconds):
            if message.error() is None and message.value() is not None:
                self.records.append((message.timestamp()[1], message.value() or b""))

    def ready(self, timeout: float) -> None:
        """Wait until the group has its partitions (records from before would be missed)."""
        deadline = time.monotonic() + timeout
        while not self.consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError("the escalations reader got no partitions")
            self.poll(0.2)

    def close(self) -> None:
        self.consumer.close()


def fire_round(store: TimerStore, reader: EscalationReader, templates: Templates,
               worker_pid: int, round_no: int, log: Log) -> FireRound:
    """Timers due at FIRE_RATE/s over FIRE_SECONDS from FIRE_LEAD_SECONDS ahead; wait until
    the worker has published every one; lateness from the records read back."""
    summary = case_timers(to_json(templates.accepted))
    assert summary is not None and templates.accepted.sla is not None
    base = templates.accepted.sla.timers
    total = int(FIRE_RATE * FIRE_SECONDS)
    cases = total // len(base)
    prefix = templates.accepted.case_id.split("-", 1)[0]
    start_ms = int((time.time() + FIRE_LEAD_SECONDS) * 1000)
    ids: set[str] = set()
    pipe = store.pipeline()
    for c in range(cases):
        tag = f"{scramble((round_no + 1) * 10_000_000 + c):012x}"  # not a pending case's
        case_id = f"{prefix}-{tag}"
        ids.add(case_id)
        plan = []
        for k, t in enumerate(base):
            due = datetime.fromtimestamp((start_ms + (k * cases + c) * 1000 // FIRE_RATE)
                                         / 1000, UTC)
            plan.append(t.model_copy(update={"escalation_id": tag + t.escalation_id[12:],
                                             "due": due}))
        store.schedule(case_id, summary.version, plan, summary.summary, (), pipe)
        if len(pipe) >= PIPELINE:
            pipe.execute()
            pipe = store.pipeline()
    pipe.execute()
    if time.time() * 1000 > start_ms:
        log("[lateness] warning: scheduling took longer than the lead time")
    cpu0, redis0 = cpu_seconds(worker_pid), redis_cpu(store.redis)
    started = time.monotonic()
    first = len(reader.records)
    # Nothing else falls due meanwhile (the pending timers are days ahead): counting records
    # is enough to know when the round is over; they are parsed once it is.
    deadline = started + FIRE_LEAD_SECONDS + FIRE_SECONDS + 60
    while len(reader.records) - first < total and time.monotonic() < deadline:
        reader.poll(0.5)
    cpu, redis_used = cpu_seconds(worker_pid) - cpu0, redis_cpu(store.redis) - redis0
    lateness, published = [], []
    for ts, raw in reader.records[first:]:
        record = json.loads(raw)
        if record["case_id"] not in ids:
            continue
        due = datetime.fromisoformat(record["due"])
        lateness.append((datetime.fromisoformat(record["fired_at"]) - due).total_seconds())
        published.append(ts / 1000 - due.timestamp())
    result = FireRound(total, len(lateness), lateness, published, cpu, redis_used,
                       time.monotonic() - started)
    log(f"[lateness] round {round_no + 1}: {len(lateness):,}/{total:,} escalations; "
        f"fired_at - due p50 {result.pct(lateness, 0.5):.3f}s p99 "
        f"{result.pct(lateness, 0.99):.3f}s max {max(lateness, default=0):.3f}s; "
        f"CreateTime - due p50 {result.pct(published, 0.5):.3f}s p99 "
        f"{result.pct(published, 0.99):.3f}s; worker cpu {cpu:.1f}s, redis cpu "
        f"{redis_used:.1f}s")
    if len(lateness) < total:
        raise RuntimeError(f"only {len(lateness):,} of {total:,} escalations published")
    return result


# --- the whole benchmark ----------------------------------------------------------------------


@dataclass
class TimersReport:
    memory: MemoryResult | None
    rounds: list[FireRound]
    rebuild: RebuildResult | None
    broker: str
    redis: str
    worker_constants: dict[str, float]

    def lateness_median(self, key: str) -> float:
        return float(statistics.median(r.as_json()[key] for r in self.rounds))

    def as_json(self) -> dict[str, Any]:
        lateness: dict[str, Any] = {}
        if self.rounds:
            p99 = self.lateness_median("lateness_p99_s")
            lateness = {"rate_per_s": FIRE_RATE, "seconds": FIRE_SECONDS,
                        "rounds": [r.as_json() for r in self.rounds],
                        "median_p50_s": self.lateness_median("lateness_p50_s"),
                        "median_p99_s": p99,
                        "median_published_p99_s": self.lateness_median("published_p99_s"),
                        "worker_constants": self.worker_constants,
                        "target_p99_s": TARGET_P99_S, "target_met": p99 <= TARGET_P99_S}
        return {"memory": self.memory.as_json() if self.memory else None,
                "lateness": lateness or None,
                "rebuild": self.rebuild.as_json() if self.rebuild else None,
                "broker": self.broker, "redis": self.redis}


def run(parts: Sequence[str] = PARTS, cases: int = TIMER_CASES,
        rounds: int = FIRE_ROUNDS, rebuild_cases: int = REBUILD_CASES,
        rebuild_record: str = "dispatched", log: Log = print) -> TimersReport:
    """Every part on one private broker and Redis; nothing of ours is left when it returns."""
    ruleset = load_rules(RULES)
    templates = build_templates(ruleset)
    workdir = Path(tempfile.mkdtemp(prefix="griddispatch-timers-bench-"))
    memory: MemoryResult | None = None
    fired: list[FireRound] = []
    rebuilt: RebuildResult | None = None
    try:
        with broker(workdir, log) as (bootstrap, broker_pid), \
                redis_url(workdir, log) as url:
            client: redis.Redis[bytes] = redis.Redis.from_url(url)
            tag = uuid.uuid4().hex[:6]
            settings = Settings(kafka_bootstrap=bootstrap, redis_url=url,
                                topic_prefix=f"tb{tag}.", rules_dir=RULES,
                                topics_dir=REPO / "topics")
            store = TimerStore(client, settings.topic_prefix)
            try:
                if "memory" in parts or "lateness" in parts:  # lateness runs on this index
                    memory = measure_memory(client, store, templates, cases, log)
                if "lateness" in parts:
                    fired = measure_lateness(settings, store, templates, rounds, workdir, log)
                delete_keys(client, settings.topic_prefix)
                if "rebuild" in parts:
                    record = (templates.dispatched if rebuild_record == "dispatched"
                              else templates.accepted)
                    rebuild_settings = settings.with_(topic_prefix=f"tb{tag}r.")
                    rebuilt = measure_rebuild(rebuild_settings, client, CaseVariants(record),
                                              rebuild_cases, log)
            finally:
                for prefix in (settings.topic_prefix, f"tb{tag}r."):
                    gone = delete_keys(client, prefix)
                    if gone:
                        log(f"deleted {gone:,} Redis keys under {prefix}")
                if broker_pid is None:  # a shared broker: gigabytes of ours must not stay
                    delete_topics(settings, (settings.topic_prefix, f"tb{tag}r."), log)
            result = TimersReport(
                memory if "memory" in parts else None, fired, rebuilt,
                "private" if broker_pid else "KAFKA_BOOTSTRAP_SERVERS",
                "REDIS_URL" if os.environ.get("REDIS_URL") else "private",
                {"POLL_SECONDS": POLL_SECONDS, "BATCH": WORKER_BATCH})
    except BaseException:
        log(f"failed: the broker's and worker's logs are kept in {workdir}")
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def measure_lateness(settings: Settings, store: TimerStore, templates: Templates,
                     rounds: int, workdir: Path, log: Log) -> list[FireRound]:
    """Run a real ``worker timers`` process on the index (with whatever is pending in it)
    for ``rounds`` rounds of FIRE_RATE fires per second."""
    assert templates.accepted.sla is not None
    recipients = sorted({t.recipient for t in templates.accepted.sla.timers})
    make_topics(settings, ["cases", "escalations", *[f"escalations.{r}" for r in recipients]])
    store.mark_built("bench: the index is whole")  # no rebuild at start: nothing on Kafka
    procs = Processes(workdir)
    reader = EscalationReader(settings)
    try:
        reader.ready(READY_TIMEOUT)
        worker = procs.start("timers", [
            sys.executable, "-m", "engine", "--bootstrap", settings.kafka_bootstrap,
            "--redis", settings.redis_url, "--topic-prefix", settings.topic_prefix, "worker",
            "timers", "--rules-dir", str(RULES), "--metrics-port", "0",
            "--audit-every", "3600"])
        time.sleep(3.0)  # imports, rules, Kafka clients
        procs.check_alive()
        out = []
        for n in range(rounds):
            out.append(fire_round(store, reader, templates, worker.popen.pid, n, log))
            procs.check_alive()
        return out
    finally:
        reader.close()
        procs.stop_all()


def table(report: TimersReport) -> str:
    rows = []
    m = report.memory
    if m is not None:
        rows.append(f"memory: {m.timers:,} pending timers ({m.cases:,} cases x "
                    f"{m.timers // m.cases}): {m.per_timer:.1f} bytes/timer "
                    f"(target <= {TARGET_BYTES_PER_TIMER}: "
                    f"{'MET' if m.per_timer <= TARGET_BYTES_PER_TIMER else 'NOT MET'}); "
                    f"raw ZADD of the same members {m.baseline_per_timer:.1f} bytes "
                    f"(ratio {m.per_timer / m.baseline_per_timer:.2f})")
        rows.append(f"  where: shard sorted sets {m.zset_bytes_per_member:.1f} B/timer, case "
                    f"keys {m.case_key_bytes:.0f} B/case = "
                    f"{m.case_key_bytes * m.cases / m.timers:.1f} B/timer ({m.case_encoding}); "
                    f"allocator {m.allocator}, fragmentation {m.fragmentation}")
    if report.rounds:
        p50 = report.lateness_median("lateness_p50_s")
        p99 = report.lateness_median("lateness_p99_s")
        rows.append(f"lateness at {FIRE_RATE:,} fires/s over {FIRE_SECONDS:.0f}s, median of "
                    f"{len(report.rounds)} rounds: fired_at - due p50 {p50:.3f}s p99 {p99:.3f}s"
                    f" (target p99 <= {TARGET_P99_S:.0f}s: "
                    f"{'MET' if p99 <= TARGET_P99_S else 'NOT MET'}); CreateTime - due p99 "
                    f"{report.lateness_median('published_p99_s'):.3f}s; rounds p99 "
                    + " ".join(f"{r.pct(r.lateness_s, 0.99):.3f}" for r in report.rounds))
    r = report.rebuild
    if r is not None:
        rows.append(f"rebuild: {r.cases:,} open cases ({r.record_bytes:,}-byte records, "
                    f"{r.cases * r.record_bytes / 1e9:.1f} GB) in {r.rebuild_median_s:.1f}s = "
                    f"{r.cases / r.rebuild_median_s:,.0f} records/s (target <= "
                    f"{TARGET_REBUILD_S:.0f}s: "
                    f"{'MET' if r.rebuild_median_s <= TARGET_REBUILD_S else 'NOT MET'}); "
                    f"raw read of the same topic {r.raw_read_median_s:.1f}s (rebuild / read "
                    f"{r.rebuild_median_s / r.raw_read_median_s:.1f}x)")
        rows.append(f"  where: parse {r.parse_us:.1f} µs/record (full models "
                    f"{r.parse_full_us:.1f}); cpu during the rebuild: reader processes "
                    f"{r.reader_cpu_seconds:.1f}s, redis {r.redis_cpu_seconds:.1f}s; "
                    f"{r.pending_after:,} index entries, redis memory "
                    f"{r.redis_used_bytes / 1e6:,.0f} MB")
    return "\n".join(rows)
