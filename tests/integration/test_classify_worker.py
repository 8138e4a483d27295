"""The classify worker as operators run it: a process on a real broker, fed raw reports.

Each test applies the real topic specs under its own prefix, starts ``griddispatch worker
classify`` as a subprocess (killed in a ``finally``), produces raw bytes onto
incidents.reported and reads the three output topics with a plain consumer. Waits are
deadlines on observed facts, never fixed sleeps: the first Faust rebalance takes seconds.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from engine.contracts import incident_id
from engine.rules.load import load_rules
from engine.runtime import kafka
from engine.runtime.settings import Settings
from tests.integration.workers import REPO, apply_topics, running, sample, wait_for

pytestmark = pytest.mark.integration

OUTPUTS = ("incidents.classified", "incidents.triage", "incidents.rejected")
FIRST_GRID = json.loads((REPO / "rules" / "reference" / "grids.geojson").read_text(
    encoding="utf-8"))["features"][0]["properties"]["grid_code"]


def report(channel_id: str, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"channel": "hotline", "channel_id": channel_id,
                            "reported_at": "2026-11-24T09:30:00+08:00",
                            "description": "小区门口有人占道经营摆摊卖水果",
                            "grid_code": FIRST_GRID}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


@contextmanager
def running_worker(settings: Settings, rules_dir: Path, log: Path) -> Iterator[
        tuple[subprocess.Popen[bytes], int]]:
    with running(settings, "classify", log, rules_dir=rules_dir) as worker:
        yield worker


class Outputs:
    """Everything the worker wrote on the three output topics, read by one consumer."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = kafka.consumer(settings, f"test-out-{uuid.uuid4().hex[:8]}")
        self.consumer.subscribe([settings.topic(name) for name in OUTPUTS])
        self.prefix = settings.topic_prefix
        self.records: list[dict[str, Any]] = []

    def until(self, done: Callable[[list[dict[str, Any]]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done(self.records):
            assert time.monotonic() < deadline, (
                f"timed out after {timeout:.0f}s with {len(self.records)} records")
            message = self.consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            self.records.append({"topic": str(message.topic()).removeprefix(self.prefix),
                                 "key": message.key(),
                                 "headers": dict(message.headers() or []),
                                 "value": json.loads(message.value() or b"null")})

    def close(self) -> None:
        self.consumer.close()


def find(records: list[dict[str, Any]], topic: str,
         test: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    return next((r for r in records if r["topic"] == topic and test(r["value"])), None)


def test_each_report_lands_on_its_topic_and_the_worker_survives_bad_input(
        kafka_settings: Settings, tmp_path: Path) -> None:
    apply_topics(kafka_settings)
    revision = load_rules(REPO / "rules").revision
    producer = kafka.producer(kafka_settings)
    topic = kafka_settings.topic("incidents.reported")
    for value in (encode(report("T-1")), b'{"channel": "hotline", "channel_id": ',
                  encode(report("T-2", priority="urgent")),
                  encode(report("T-3", grid_code=None))):
        producer.produce(topic, value=value)
    assert producer.flush(30) == 0
    outputs = Outputs(kafka_settings)
    with running_worker(kafka_settings, REPO / "rules", tmp_path / "worker.log") as (proc, port):
        checks: dict[str, Callable[[list[dict[str, Any]]], dict[str, Any] | None]] = {
            "classified": lambda rs: find(rs, "incidents.classified",
                                          lambda v: v["channel_id"] == "T-1"),
            "malformed": lambda rs: find(rs, "incidents.rejected",
                                         lambda v: v["reason"] == "malformed_json"),
            "unknown field": lambda rs: find(rs, "incidents.rejected",
                                             lambda v: v["reason"] == "unknown_field"),
            "triage": lambda rs: find(rs, "incidents.triage",
                                      lambda v: v["channel_id"] == "T-3"),
        }
        try:
            outputs.until(lambda rs: all(check(rs) for check in checks.values()), 90)
        finally:
            outputs.close()
        found = {name: check(outputs.records) for name, check in checks.items()}
        assert found["unknown field"] and found["unknown field"]["value"]["field"] == "priority"
        assert found["triage"] and found["triage"]["value"]["reason"] == "unplaced"
        for name, record in found.items():
            assert record is not None, name
            assert record["headers"]["schema"] == record["value"]["schema"].encode(), name
            assert record["headers"]["rules-revision"] == revision.encode(), name
        assert found["classified"]
        # keyed by township, so the route worker that owns the place gets every report of it
        assert found["classified"]["key"] == found["classified"]["value"]["division_chain"][3][
            :9].encode()
        assert found["classified"]["value"]["incident_id"] == incident_id("hotline", "T-1")
        assert found["malformed"] and found["malformed"]["key"] == b"unknown"
        assert len(outputs.records) == 4, outputs.records
        assert proc.poll() is None, "the worker died on bad input"
        wait_for(lambda: sample(port, "griddispatch_classify_records_total",
                                outcome="rejected") == 2.0, 10, "rejected == 2 in /metrics")
        assert sample(port, "griddispatch_classify_records_total", outcome="classified") == 1.0
        assert sample(port, "griddispatch_rejected_total", reason="malformed_json") == 1.0
        assert sample(port, "griddispatch_triage_total", reason="unplaced") == 1.0
        assert sample(port, "griddispatch_rules_revision_info", revision=revision) == 1.0


def test_a_broken_rules_edit_under_load_loses_nothing_and_keeps_the_old_revision(
        kafka_settings: Settings, tmp_path: Path) -> None:
    apply_topics(kafka_settings)
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    revision = load_rules(rules).revision
    producer = kafka.producer(kafka_settings)
    topic = kafka_settings.topic("incidents.reported")
    outputs = Outputs(kafka_settings)
    with running_worker(kafka_settings, rules, tmp_path / "worker.log") as (proc, port):
        # one record through first, so the load below meets a worker that is consuming
        producer.produce(topic, value=encode(report("warm-up")))
        producer.flush(30)
        outputs.until(lambda rs: len(rs) >= 1, 90)

        expected = {incident_id("hotline", f"L-{i:03d}") for i in range(200)}

        def produce_load() -> None:
            for i in range(200):
                producer.produce(topic, key=incident_id("hotline", f"L-{i:03d}").encode(),
                                 value=encode(report(f"L-{i:03d}")))
                producer.poll(0)
                time.sleep(0.03)
            producer.flush(30)

        load = threading.Thread(target=produce_load)
        started = time.monotonic()
        load.start()
        wait_for(lambda: time.monotonic() - started > 2.0, 5, "the load to run for 2 s")
        with (rules / "reference" / "departments.yaml").open("a", encoding="utf-8") as f:
            f.write("\n: : :\n")
        wait_for(lambda: sample(port, "griddispatch_rules_reload_success") == 0.0, 30,
                 "the timer to notice the broken edit")
        proc.send_signal(signal.SIGHUP)
        load.join(60)
        assert not load.is_alive()

        def seen(records: list[dict[str, Any]]) -> set[str]:
            return {r["value"]["incident_id"] for r in records} & expected

        try:
            outputs.until(lambda rs: len(seen(rs)) == 200, 90)
        finally:
            outputs.close()
        load_records = [r for r in outputs.records if r["value"]["incident_id"] in expected]
        assert len(seen(outputs.records)) == 200
        assert {r["value"]["rules_revision"] for r in load_records} == {revision}
        assert {r["headers"]["rules-revision"] for r in load_records} == {revision.encode()}
        assert proc.poll() is None
        wait_for(lambda: (sample(port, "griddispatch_rules_reload_total", outcome="failure")
                          or 0) >= 2, 10, "the SIGHUP reload to fail too")
        assert sample(port, "griddispatch_rules_reload_success") == 0.0
        assert sample(port, "griddispatch_rules_revision_info", revision=revision) == 1.0
    assert "rules reload failed" in (tmp_path / "worker.log").read_text(errors="replace")
