"""Latency of dispatch at an offered rate: a rate-limited producer of reports, a
read_committed reader of every department topic, and the figures per window."""

from __future__ import annotations

import gc
import json
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    TopicPartition,
)

from engine.runtime import kafka
from engine.runtime.settings import Settings
from tests.bench.harness import (
    Processes,
    classified_count,
    cpu_by_kind,
    cpu_text,
    delta,
    end_offsets,
    open_case_count,
    read_back,
    route_counters,
    routed_count,
)
from tests.bench.reports import ReportSet, encode

Log = Callable[[str], None]
LATENCY_DRAIN_TIMEOUT = 30.0


@dataclass(frozen=True)
class LatencyPlan:
    rate: int
    seconds: float
    reports: ReportSet
    warmup: bool = False  # offered, recorded, never judged


@dataclass
class Latency:
    offered_rate: int
    sent: int
    send_seconds: float
    expected: int
    seen: int
    kafka_ms: list[float]
    visible_ms: list[float]  # in the order the reports were sent
    cpu_seconds: dict[str, float]
    classify_hop_ms: list[float]  # intake → incidents.classified, Kafka timestamps
    open_cases_at_start: float  # in the route workers' stores (their gauge)
    route_counters_at_end: dict[str, float]  # cumulative since the workers started
    route_batches: dict[str, float] = field(default_factory=dict)  # during this run
    warmup: bool = False

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.send_seconds if self.send_seconds else 0.0

    @staticmethod
    def _pct(values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    def summary(self, values: list[float]) -> dict[str, float]:
        """Percentiles, plus the median of the first and the last third of the reports
        sent: a last third far above the first means the engine fell behind the offered
        rate (a queue growing), not a steady latency."""
        third = len(values) // 3
        return {"p50_ms": round(self._pct(values, 0.50), 1),
                "p99_ms": round(self._pct(values, 0.99), 1),
                "max_ms": round(max(values), 1) if values else float("nan"),
                "mean_ms": round(statistics.fmean(values), 1) if values else float("nan"),
                "p50_first_third_ms": round(self._pct(values[:third], 0.5), 1),
                "p50_last_third_ms": round(self._pct(values[-third:], 0.5), 1)}

    def by_second(self) -> list[list[float]]:
        """[p50, max] of the visible latency per second of sending: shows whether a high
        p99 is a steady tail or one stall (a start-up second, a long transaction)."""
        step = max(1, self.offered_rate)
        return [[round(self._pct(chunk, 0.5)), round(max(chunk))]
                for chunk in (self.visible_ms[i:i + step]
                              for i in range(0, len(self.visible_ms), step)) if chunk]

    def as_json(self) -> dict[str, Any]:
        return {"offered_rate": self.offered_rate, "sent": self.sent,
                "send_seconds": round(self.send_seconds, 2),
                "achieved_rate": round(self.achieved_rate, 1),
                "expected_lead_assignments": self.expected, "seen": self.seen,
                "kafka_timestamps": self.summary(self.kafka_ms),
                "visible_to_reader": self.summary(self.visible_ms),
                "classify_hop_kafka_timestamps": self.summary(self.classify_hop_ms),
                "cpu_seconds": {k: round(v, 2) for k, v in self.cpu_seconds.items()},
                "visible_by_second": self.by_second(),
                "open_cases_in_route_store_at_start": round(self.open_cases_at_start),
                "route_counters_at_end": self.route_counters_at_end,
                "route_batches": self.route_batches, "warmup": self.warmup}


class AssignmentWatcher:
    """A read_committed reader of every ``assignments.<dept>`` topic, in a thread, noting
    when each record arrived; contents are parsed only after the run (no CPU taken from
    the workers while they are measured)."""

    def __init__(self, settings: Settings) -> None:
        # A department's reader: the broker answers a fetch as soon as committed data is
        # there, so fetch.wait.max.ms only bounds idle fetches (5 ms made ~200 idle fetches
        # a second over every department partition: broker CPU taken from the engine).
        self.consumer = kafka.consumer(settings, f"bench-watch-{uuid.uuid4().hex[:8]}",
                                       **{"fetch.wait.max.ms": 100})
        meta = self.consumer.list_topics(timeout=30).topics
        prefix = settings.topic("assignments.")
        names = [t for t in meta if t.startswith(prefix)
                 and t not in (settings.topic("assignments.status"),
                               settings.topic("assignments.status.rejected"))]
        ends = end_offsets(self.consumer, names)
        self.consumer.assign([TopicPartition(t, p, o) for (t, p), o in ends.items()])
        self.seen: list[tuple[float, int, bytes | None]] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="assignment-watcher", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        # Greedy: wait for one record, then take what is already queued. consume(1000,
        # 0.05) waited up to 50 ms for a batch a trickle never fills, and that wait was
        # counted as the engine's latency.
        while not self.stopping:
            first = self.consumer.poll(0.05)
            if first is None:
                continue
            arrived = time.time()
            for m in (first, *self.consumer.consume(1000, 0)):
                if m.error() is None:
                    self.seen.append((arrived, m.timestamp()[1], m.value()))

    def close(self) -> None:
        self.stopping = True
        self.thread.join(5)
        self.consumer.close()


# (key, value, incident id) of a record offered as it is: the fan-out baseline's classified
# records, whose bytes its plan is keyed by (a report is stamped when sent instead).
Fixed = list[tuple[bytes, bytes, str]]


def measure_latency(settings: Settings, plan: LatencyPlan, procs: Processes,
                    broker_pid: int | None, log: Log, fixed: Fixed | None = None) -> Latency:
    """Offer ``plan.rate`` reports/s for ``plan.seconds`` to warmed workers; time each
    report to its lead assignment. With ``fixed``, offer those records to
    ``incidents.classified`` instead (the fan-out baseline: no route worker to count, so
    wait until the watcher has seen the lead assignments)."""
    watcher = AssignmentWatcher(settings)
    producer = kafka.producer(settings)  # the connectors' settings (linger 5 ms)
    topic = settings.topic("incidents.reported" if fixed is None else "incidents.classified")
    sent = Sent()
    sent_wall, sent_ts = sent.wall, sent.ts
    total = min(len(plan.reports.reports) if fixed is None else len(fixed),
                int(plan.rate * plan.seconds))
    try:
        _settle()
        routed_before = routed_count(procs)
        counters_before = route_counters(procs)
        open_cases = open_case_count(procs)
        cpu_before = cpu_by_kind(procs, broker_pid)
        send_seconds = _offer(producer, topic, plan, total, fixed, sent)
        producer.flush(30)
        expected = plan.reports.expected_assigned
        deadline = time.monotonic() + LATENCY_DRAIN_TIMEOUT
        # Wait on the route workers' counters (cheap), not by parsing what the watcher got:
        # parsing in this process while the workers catch up would take CPU from them.
        while (fixed is None and routed_count(procs) - routed_before < expected
               and time.monotonic() < deadline):
            procs.check_alive()
            time.sleep(0.5)
        found: list[tuple[float, int, dict[str, Any]]] = []
        parsed = 0
        while True:
            seen = watcher.seen[parsed:]
            parsed += len(seen)
            for wall, ts, raw in seen:
                record = json.loads(raw or b"{}")
                if record.get("role") == "lead" and record.get("incident_id") in sent_wall:
                    found.append((wall, ts, record))
            if len(found) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        cpu = delta(cpu_by_kind(procs, broker_pid), cpu_before)
        counters = route_counters(procs)
        batches = batch_means(delta(counters, counters_before))
    finally:
        watcher.close()
    # The first hop alone: when classify wrote each report (its CreateTime), to split the
    # end-to-end figure between the two workers.
    classified_at = (_classified_at(settings, min(sent_ts.values(), default=0))
                     if fixed is None else {})
    hop_ms = sorted(((sent_wall[iid], float(ts - sent_ts[iid]))
                     for iid, ts in classified_at.items() if iid in sent_ts))
    kafka_ms, visible_ms = [], []
    for wall, ts, record in sorted(found, key=lambda f: sent_wall[f[2]["incident_id"]]):
        iid = record["incident_id"]
        if iid in sent_ts:
            kafka_ms.append(float(ts - sent_ts[iid]))
        visible_ms.append((wall - sent_wall[iid]) * 1000)
    lat = Latency(plan.rate, total, send_seconds, expected, len(found), kafka_ms, visible_ms,
                  cpu, [ms for _, ms in hop_ms], open_cases, counters, batches, plan.warmup)
    log(f"[latency{' warm-up' if plan.warmup else ''}] {open_cases:,.0f} open cases in the "
        "route store at the start; "
        f"offered {plan.rate}/s, achieved {lat.achieved_rate:,.0f}/s over "
        f"{send_seconds:.1f}s; {len(found):,}/{expected:,} lead assignments; kafka "
        f"{lat.summary(kafka_ms)}; visible {lat.summary(visible_ms)}; classify hop "
        f"{lat.summary(lat.classify_hop_ms)}; cpu {cpu_text(cpu)}; route batches {batches}")
    return lat


def _settle() -> None:
    """Hygiene, so the window measures the engine at this rate and nothing else: the drain
    before left ~150 MB of dirty pages that the kernel would write back inside the window,
    and this process holds the drain's records (its own full collections would delay the
    watcher's clock, not the engine)."""
    os.sync()
    gc.collect()
    gc.freeze()
    time.sleep(1.0)  # let the readers' first fetches go out


class Sent:
    """When each offered record was sent (wall clock) and its Kafka timestamp, by incident."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.ts: dict[str, int] = {}

    def delivered(self, err: Any, msg: Any, incident: str) -> None:
        if err is None:
            self.ts[incident] = msg.timestamp()[1]


def _offer(producer: Any, topic: str, plan: LatencyPlan, total: int, fixed: Fixed | None,
           sent: Sent) -> float:
    """Send ``total`` records at ``plan.rate`` a second; the seconds it took."""
    reports = plan.reports.reports
    start = time.perf_counter()
    i = 0
    while i < total:
        due = min(total, int((time.perf_counter() - start) * plan.rate) + 1)
        while i < due:
            if fixed is None:
                key, value = encode(reports[i], datetime.now(UTC))
                incident = key.decode()
            else:
                key, value, incident = fixed[i]
            sent.wall[incident] = time.time()
            producer.produce(topic, key=key, value=value,
                             on_delivery=lambda err, msg, iid=incident: sent.delivered(err, msg,
                                                                                        iid))
            i += 1
        producer.poll(0)
        time.sleep(0.001)
    return time.perf_counter() - start


def _classified_at(settings: Settings, first_sent: int) -> dict[str, int]:
    """When classify wrote each report (the output's CreateTime), by incident id."""
    out: dict[str, int] = {}
    for _topic, ts, _key, raw in read_back(settings, ["incidents.classified"], keep=True).records:
        if ts >= first_sent:
            out[json.loads(raw or b"{}").get("incident_id", "")] = ts
    return out


def measure_classify_hop(settings: Settings, plan: LatencyPlan, procs: Processes,
                         broker_pid: int | None, log: Log) -> Latency:
    """The classify worker alone at ``plan.rate``: each report's hop from the intake topic to
    ``incidents.classified`` (Kafka timestamps), and the CPU it took. Issue 18, item 3: does
    the classify stage keep up at the offered rate, with what margin, when it has the
    machine to itself and the broker?"""
    producer = kafka.producer(settings)
    sent = Sent()
    sent_wall, sent_ts = sent.wall, sent.ts
    total = min(len(plan.reports.reports), int(plan.rate * plan.seconds))
    _settle()
    before = classified_count(procs)
    cpu_before = cpu_by_kind(procs, broker_pid)
    send_seconds = _offer(producer, settings.topic("incidents.reported"), plan, total, None,
                          sent)
    producer.flush(30)
    deadline = time.monotonic() + LATENCY_DRAIN_TIMEOUT
    while classified_count(procs) - before < total and time.monotonic() < deadline:
        procs.check_alive()
        time.sleep(0.2)
    cpu = delta(cpu_by_kind(procs, broker_pid), cpu_before)
    done = classified_count(procs) - before
    at = _classified_at(settings, min(sent_ts.values(), default=0))
    hop = [float(at[iid] - sent_ts[iid]) for iid in sorted(sent_ts, key=sent_wall.__getitem__)
           if iid in at]
    lat = Latency(plan.rate, total, send_seconds, total, int(done), [], [], cpu, hop, 0.0, {},
                  {}, plan.warmup)
    log(f"[classify alone{' warm-up' if plan.warmup else ''}] offered {plan.rate}/s, achieved "
        f"{lat.achieved_rate:,.0f}/s over {send_seconds:.1f}s; {done:,.0f}/{total:,} "
        f"classified; hop {lat.summary(hop)}; cpu {cpu_text(cpu)} "
        f"({1000 * cpu.get('classify', 0.0) / max(1, done):.2f} ms of classify CPU a report)")
    return lat


def batch_means(during: dict[str, float]) -> dict[str, float]:
    """Mean records per route transaction and mean ms per phase, from the route workers'
    histograms over one latency run: where a record's wait inside the route worker goes."""
    def total(name: str) -> float:
        return sum(v for k, v in during.items() if k.startswith(name))

    count = total("route_transactions_total{outcome=committed}")
    out = {"transactions": count,
           "records_per_batch": round(total("route_batch_records_sum") / count, 1)
           if count else 0.0}
    for phase in ("process", "offsets", "commit"):
        n = during.get(f"route_batch_seconds_count{{phase={phase}}}", 0.0)
        sum_s = during.get(f"route_batch_seconds_sum{{phase={phase}}}", 0.0)
        out[f"{phase}_ms_mean"] = round(sum_s / n * 1000, 2) if n else 0.0
    return out
