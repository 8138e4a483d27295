"""The transactional fan-out passthrough: the ceiling the route worker is measured against.

Issue 18, item 1: a plain consume→produce passthrough copies bytes with no transactions and
no fan-out, while the route worker must write, exactly once, each report's records to its
departments' own topics and to ``cases``. This baseline does that write and nothing else:
it consumes ``incidents.classified`` and, for each record, produces the very records the
route worker produced for it (looked up by the SHA-1 of the input's bytes in a plan worked
out beforehand with the engine's pure route step, outside the timed window) to the same
``assignments.<dept>`` topics and ``cases``, in transactions of the route worker's size
(greedy batches up to 500), with the input offsets inside each transaction. What is left
between it and the route worker is the worker's own work: parsing, routing, SLA planning,
the case store.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from engine.cases.dispatch import on_classified
from engine.cases.duplicates import CaseStore
from engine.cases.lifecycle import partition_key
from engine.classify import classify_data
from engine.contracts import Classified, to_json
from engine.rules.load import load_rules
from engine.runtime import kafka
from engine.runtime.settings import Settings
from engine.runtime.workers.route_state import headers_for
from tests.bench.dispatch_bench import DRAIN_TIMEOUT
from tests.bench.dispatch_report import Drain
from tests.bench.harness import (
    RULES,
    Log,
    Processes,
    cpu_by_kind,
    delta,
    end_offsets,
    prepare,
    produce_burst,
    read_back,
    stop_on_signal,
    wait_until,
)
from tests.bench.latency import Fixed, Latency, LatencyPlan, measure_latency

Header = tuple[str, str | bytes | None]  # confluent-kafka's header type
Plan = dict[bytes, list[tuple[str, bytes, bytes, list[Header]]]]  # sha1(input) -> records
GROUP = "bench-fanout"


def plan_for(records: Sequence[tuple[bytes | None, bytes]]) -> tuple[Plan, int]:
    """What the route worker writes for each classified record, by the pure step, in order
    (so merges and duplicates come out as they do in the worker), with the headers it adds
    (the case records' timer index entry among them); and how many ``cases`` records that
    is."""
    ruleset, store, plan, cases = load_rules(RULES), CaseStore(), {}, 0
    now = datetime.now(UTC)
    for _key, value in records:
        step = on_classified(ruleset, store, Classified.model_validate_json(value), now)
        outs: list[tuple[str, bytes, bytes, list[Header]]] = [
            (o.topic, o.key.encode(), to_json(o.value),
             [(name, raw) for name, raw in headers_for(o.value, ruleset.revision)
              if isinstance(raw, bytes)]) for o in step.outputs]
        cases += sum(1 for topic, *_ in outs if topic == "cases")
        plan[hashlib.sha1(value, usedforsecurity=False).digest()] = outs
    return plan, cases


def start(procs: Processes, settings: Settings, n: int, plan_file: Path) -> None:
    """One passthrough process per partition of ``incidents.classified``, as route workers."""
    for partition in range(n):
        procs.start("fanout", [sys.executable, "-m", "tests.bench.fanout",
                               settings.kafka_bootstrap, settings.topic_prefix, str(plan_file),
                               str(partition)])


def run_fanout(bootstrap: str, broker_pid: int | None, workdir: Path, n: int,
               records: Sequence[tuple[bytes | None, bytes]], log: Log) -> Drain:
    """The baseline on ``n`` partitions, fed the classified records of the engine run;
    outputs timed by Kafka (first to last ``cases`` record), as every other drain."""
    plan, expected = plan_for(records)
    plan_file = workdir / f"fanout-plan-{uuid.uuid4().hex[:6]}.pickle"
    plan_file.write_bytes(pickle.dumps(plan))
    settings = prepare(bootstrap, workdir, n, "fanout")
    procs = Processes(workdir)
    try:
        produce_s = produce_burst(settings, list(records), "incidents.classified")
        cpu_before = cpu_by_kind(procs, broker_pid)
        started = time.monotonic()
        start(procs, settings, n, plan_file)
        # Done when its committed input offsets reach the ends (the outputs' end offsets
        # would count transaction markers too).
        probe = kafka.consumer(settings, GROUP)
        source = [TopicPartition(settings.topic("incidents.classified"), p) for p in range(n)]
        ends = end_offsets(probe, [settings.topic("incidents.classified")])
        try:
            wait_until(lambda: all(tp.offset >= ends[(tp.topic, tp.partition)]
                                   for tp in probe.committed(source, timeout=10)),
                       DRAIN_TIMEOUT, "the fan-out passthrough to drain", procs)
        finally:
            probe.close()
        ready = time.monotonic() - started
        cpu = delta(cpu_by_kind(procs, broker_pid), cpu_before)
    finally:
        procs.stop_all()
        plan_file.unlink(missing_ok=True)
    read = read_back(settings, ["cases"])
    seconds = (max(read.timestamps) - min(read.timestamps)) / 1000 if read.timestamps else 0.0
    drain = Drain("fan-out passthrough", n, len(read.timestamps), expected, seconds, ready,
                  produce_s, cpu, read.per_partition)
    log(f"[fan-out passthrough N={n}] {drain.records:,} cases records in {drain.seconds:.2f}s "
        f"= {drain.per_s:,.0f}/s; cpu {cpu}")
    return drain


def run_fanout_latency(bootstrap: str, broker_pid: int | None, workdir: Path,
                       plans: Sequence[LatencyPlan], log: Log) -> list[Latency]:
    """The baseline's latency at each plan's rate (N = 1): its reports classified here, by
    the pure step, before the window; each classified record offered as the classify worker
    would have written it, timed to its lead assignment, as the engine's are."""
    ruleset = load_rules(RULES)
    offered: list[Fixed] = []
    for latency_plan in plans:
        fixed: Fixed = []
        for report in latency_plan.reports.reports:
            record = classify_data(ruleset, {**report, "reported_at": datetime.now(
                UTC).isoformat()}, datetime.now(UTC))
            if isinstance(record, Classified):
                fixed.append((partition_key(record.division_chain).encode(), to_json(record),
                              record.incident_id))
        offered.append(fixed)
    plan, _ = plan_for([(key, value) for fixed in offered for key, value, _ in fixed])
    plan_file = workdir / f"fanout-plan-{uuid.uuid4().hex[:6]}.pickle"
    plan_file.write_bytes(pickle.dumps(plan))
    settings = prepare(bootstrap, workdir, 1, "fanout-latency")
    procs = Processes(workdir)
    results = []
    try:
        start(procs, settings, 1, plan_file)
        time.sleep(5)  # its transactional id registered, its partition assigned
        for latency_plan, fixed in zip(plans, offered, strict=True):
            results.append(measure_latency(settings, latency_plan, procs, broker_pid, log,
                                           fixed))
    finally:
        procs.stop_all()
        plan_file.unlink(missing_ok=True)
    return results


def fanout_main(bootstrap: str, prefix: str, plan_file: Path, partition: int) -> int:
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    plan: Plan = pickle.loads(plan_file.read_bytes())
    stopping = stop_on_signal()
    consumer = kafka.consumer(settings, GROUP)
    producer = kafka.transactional_producer(settings,
                                            settings.topic(f"bench-fanout-{partition}"))
    producer.init_transactions(30)
    source = settings.topic("incidents.classified")
    consumer.assign([TopicPartition(source, partition, OFFSET_BEGINNING)])
    offsets_thread = ThreadPoolExecutor(1)
    try:
        while not stopping.is_set():
            first = consumer.poll(0.1)
            if first is None:
                continue
            batch = [m for m in (first, *consumer.consume(499, 0)) if m.error() is None]
            if not batch:
                continue
            producer.begin_transaction()
            # the offsets join the transaction from a helper thread while this one
            # produces, as the route worker does
            last = batch[-1]
            adding = offsets_thread.submit(
                producer.send_offsets_to_transaction,
                [TopicPartition(source, partition, int(last.offset() or 0) + 1)],
                consumer.consumer_group_metadata(), 30)
            for m in batch:
                for topic, key, value, headers in plan[hashlib.sha1(
                        m.value() or b"", usedforsecurity=False).digest()]:
                    while True:
                        try:
                            producer.produce(settings.topic(topic), key=key, value=value,
                                             headers=headers)
                            break
                        except BufferError:
                            producer.poll(0.05)
            adding.result()
            producer.commit_transaction(30)
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5:
        raise SystemExit(fanout_main(sys.argv[1], sys.argv[2], Path(sys.argv[3]),
                                     int(sys.argv[4])))
    raise SystemExit("usage: python -m tests.bench.fanout BOOTSTRAP PREFIX PLAN_FILE PARTITION "
                     "(the benchmark: python -m tests.bench --only dispatch)")
