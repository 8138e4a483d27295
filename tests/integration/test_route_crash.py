"""kill -9 the route worker while incidents stream through; restart it; count by incident id.

The guarantee "no accepted incident is lost or duplicated" (docs/design.md "Guarantees") for
the route stage: every incident must end in exactly one lead assignment (a ``new`` one when it
opened a case, an ``update`` when it joined one), as a read_committed department consumer sees
it. The same count with read_uncommitted is logged to show what the transactions hide (records
of the killed worker's open transaction, aborted when the restarted instance fences it).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from engine.cases.lifecycle import partition_key
from engine.classify import classify_data
from engine.contracts import Classified, to_json
from engine.rules.load import load_rules
from engine.runtime import kafka
from engine.runtime.settings import Settings
from tests.integration.workers import apply_topics, scrape, start_worker, stop, tail, wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INCIDENTS = 3000
DESCRIPTIONS = ("路边垃圾成堆没人清", "小区门口有人占道经营摆摊卖水果", "路灯坏了晚上很黑",
                "井盖缺失很危险")


def classified_records() -> list[Classified]:
    """Reports five hours apart (longer than any merge window), spread over every grid."""
    ruleset = load_rules(REPO / "rules")
    # the grids in force from the start date on (the sample data retires one in 2025)
    grids = [f["properties"]["grid_code"] for f in json.loads(
        (REPO / "rules" / "reference" / "grids.geojson").read_text(encoding="utf-8"))["features"]
        if "valid_to" not in f["properties"]]
    base = datetime(2025, 1, 2, tzinfo=UTC)
    out = []
    for i in range(INCIDENTS):
        record = classify_data(ruleset, {
            "channel": "test", "channel_id": f"crash-{i}", "description": DESCRIPTIONS[i % 4],
            "reported_at": (base + timedelta(hours=5 * i)).isoformat(),
            "grid_code": grids[i % len(grids)]}, base)
        assert isinstance(record, Classified), record
        out.append(record)
    return out


def end_offsets(admin: AdminClient, topic: str) -> tuple[int, int]:
    """Sum over partitions of (last stable offset, high watermark): they differ while a
    transaction is open."""
    meta = admin.list_topics(topic, timeout=10).topics[topic]
    sums = []
    for isolation in (IsolationLevel.READ_COMMITTED, IsolationLevel.READ_UNCOMMITTED):
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        futures = admin.list_offsets({TopicPartition(topic, p): latest for p in meta.partitions},
                                     isolation_level=isolation, request_timeout=10)
        sums.append(sum(f.result().offset for f in futures.values()))
    return sums[0], sums[1]


def wait_mid_transaction(admin: AdminClient, topic: str, at_least: int,
                         proc: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    """Until ``topic`` holds ``at_least`` offsets and a transaction has records on it (True);
    False if none was seen in the 10 s after ``at_least`` (the worker had caught up)."""
    deadline, reached = time.monotonic() + timeout, None
    while time.monotonic() < deadline and proc.poll() is None:
        stable, high = end_offsets(admin, topic)
        if high >= at_least:
            if high > stable:
                return True
            reached = reached or time.monotonic()
            if time.monotonic() - reached > 10:
                return False
        time.sleep(0.01)
    raise AssertionError(f"{topic} never reached {at_least} offsets (worker exit code "
                         f"{proc.poll()})")


def lead_assignments(settings: Settings, isolation: str, expected: set[str],
                     timeout: float) -> Counter[str]:
    """incident id → lead assignments (new or update) on every department topic."""
    pattern = "^" + re.escape(settings.topic_prefix) + r"assignments\.[0-9].*"
    consumer = kafka.consumer(settings, f"test-crash-{uuid.uuid4().hex[:8]}",
                              **{"isolation.level": isolation,
                                 "topic.metadata.refresh.interval.ms": 1000})
    consumer.subscribe([pattern])
    counts: Counter[str] = Counter()
    deadline, quiet_since = time.monotonic() + timeout, time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(1000, 0.5)
            for message in batch:
                if message.error() is not None:
                    continue
                value = json.loads(message.value() or b"null")
                if value["role"] == "lead" and value["kind"] in ("new", "update"):
                    counts[value["incident_id"]] += 1
            if batch:
                quiet_since = time.monotonic()
            if expected <= set(counts) and time.monotonic() - quiet_since > 3:
                break
    finally:
        consumer.close()
    return counts


def test_kill_9_mid_stream_loses_and_duplicates_no_assignment(
        kafka_settings: Settings, tmp_path: Path) -> None:
    settings = kafka_settings
    apply_topics(settings)
    records = classified_records()
    expected = {r.incident_id for r in records}
    log = tmp_path / "route.log"
    producer = kafka.producer(settings)
    admin, cases = kafka.admin_client(settings), settings.topic("cases")

    # The feed pauses at a gate until the kill before it happened, so the worker is always
    # still busy with the stream when it is killed, however fast this machine is.
    killed = [threading.Event(), threading.Event()]
    gates = {INCIDENTS // 2: killed[0], 5 * INCIDENTS // 6: killed[1]}

    def stream() -> None:  # ~1,000 incidents a second: the worker is busy, batches are open
        for i, record in enumerate(records):
            if i in gates:
                producer.flush(30)
                gates[i].wait(120)
            producer.produce(settings.topic("incidents.classified"),
                             key=partition_key(record.division_chain).encode(),
                             value=to_json(record))
            if i % 250 == 249:
                producer.poll(0)
                time.sleep(0.25)
        producer.flush(30)

    proc, port = start_worker(settings, "route", log)
    feeder = threading.Thread(target=stream, daemon=True)
    try:
        wait_for(lambda: scrape(port) is not None, 60, "the route worker's /metrics")
        wait_for(lambda: "case store rebuilt" in log.read_text(), 60, "the first assignment")
        feeder.start()
        for kill in (1, 2):  # at a third and at two thirds, with a transaction open
            mid = wait_mid_transaction(admin, cases, kill * INCIDENTS // 3, proc)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed[kill - 1].set()
            print(f"kill -9 {'mid-transaction' if mid else 'between transactions'}: "
                  f"(stable, high) offsets on cases {end_offsets(admin, cases)}")
            proc, port = start_worker(settings, "route", log)
        feeder.join(60)
        assert not feeder.is_alive()
        committed = lead_assignments(settings, "read_committed", expected, timeout=90)
        assert proc.poll() is None, tail(log)
    finally:
        stop(proc, log)
    missing = expected - set(committed)
    duplicated = {i: n for i, n in committed.items() if n > 1}
    assert not missing, f"{len(missing)} incidents without an assignment"
    assert not duplicated, f"{len(duplicated)} incidents assigned twice: {list(duplicated)[:5]}"
    assert set(committed) == expected
    uncommitted = lead_assignments(settings, "read_uncommitted", expected, timeout=30)
    extra = sum(uncommitted.values()) - len(uncommitted)
    print(f"read_uncommitted sees {extra} duplicate lead assignments from aborted transactions")
    assert "case store rebuilt" in log.read_text()
