"""The route worker behind the classify worker, on a real broker, as departments see it.

Both workers run as subprocesses (killed in a ``finally``); reports go in on
incidents.reported, departments read their own ``assignments.<dept>`` topic with a plain
read_committed consumer and answer on ``assignments.status`` keyed by the case's
``partition_key``, as ``griddispatch dept`` and outside programs do.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.cases.records import StatusUpdate
from engine.contracts import incident_id, to_json
from engine.rules.load import load_rules
from engine.runtime import kafka
from engine.runtime.settings import Settings
from tests.integration.workers import REPO, apply_topics, running, sample, wait_for

pytestmark = pytest.mark.integration

ZHZF, ZHZX = "330110005.zhzf", "330110005.zhzx"
STATUS = "assignments.status"
Record = dict[str, Any]


class Watcher:
    """A plain read_committed consumer on the given topics, as a department would run."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        self.consumer = kafka.consumer(settings, f"test-watch-{uuid.uuid4().hex[:8]}")
        self.consumer.subscribe([settings.topic(t) for t in topics])
        self.prefix = settings.topic_prefix
        self.records: list[Record] = []

    def until(self, what: str, test: Callable[[Record], bool], timeout: float = 60) -> Record:
        deadline = time.monotonic() + timeout
        while True:
            found = next((r for r in self.records if test(r)), None)
            if found is not None:
                return found
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.records}"
            message = self.consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            self.records.append({"topic": str(message.topic()).removeprefix(self.prefix),
                                 "key": message.key(), "headers": dict(message.headers() or []),
                                 "value": json.loads(message.value() or b"null")})

    def on(self, topic: str, **fields: Any) -> Callable[[Record], bool]:
        return lambda r: r["topic"] == topic and all(r["value"].get(k) == v
                                                     for k, v in fields.items())


def report(channel: str, channel_id: str, description: str, lat: float,
           reported_at: str) -> bytes:
    return json.dumps({"channel": channel, "channel_id": channel_id, "description": description,
                       "reported_at": reported_at, "location": {"lat": lat, "lon": 120.016},
                       "reporter": {"name": "张三", "phone": "13812345678"}},
                      ensure_ascii=False).encode()


def test_assign_merge_return_reassign_close_and_reject_bad_status(
        kafka_settings: Settings, tmp_path: Path) -> None:
    settings = kafka_settings
    apply_topics(settings)
    revision = load_rules(REPO / "rules").revision
    producer = kafka.producer(settings)
    watcher = Watcher(settings, [f"assignments.{ZHZF}", f"assignments.{ZHZX}", "cases",
                                 "assignments.status.rejected"])

    def status(case: Record, department: str, action: str, **extra: Any) -> None:
        update = StatusUpdate(case_id=case["case_id"], department=department,
                              action=action, at=datetime.now(UTC), **extra)
        send(STATUS, case["partition_key"].encode(), to_json(update))

    def send(topic: str, key: bytes | None, value: bytes) -> None:
        producer.produce(settings.topic(topic), key=key, value=value)
        assert producer.flush(30) == 0

    first, second = incident_id("hotline", "RW-1"), incident_id("gridapp", "RW-2")
    with running(settings, "classify", tmp_path / "classify.log"), \
            running(settings, "route", tmp_path / "route.log") as (route, port):
        send("incidents.reported", None,
             report("hotline", "RW-1", "路边垃圾成堆没人清", 30.3353, "2026-11-24T09:30:00+08:00"))
        new = watcher.until("the new assignment",
                            watcher.on(f"assignments.{ZHZF}", kind="new", incident_id=first),
                            timeout=90)
        case = new["value"]
        assert case["role"] == "lead" and case["partition_key"] == "330110005"
        assert new["key"] == case["case_id"].encode()
        assert new["headers"] == {"schema": b"griddispatch.assignment/1",
                                  "rules-revision": revision.encode()}
        # refuse is handled at the place: its lead sees the reporter masked (engine/privacy.py)
        assert case["reporter"] == {"name": "张*", "phone": "138****5678"}

        # ten metres away, ten minutes later, another channel: the same heap of refuse
        send("incidents.reported", None,
             report("gridapp", "RW-2", "这里垃圾乱堆", 30.33539, "2026-11-24T09:40:00+08:00"))
        watcher.until("the merged report",
                      watcher.on(f"assignments.{ZHZF}", kind="update", incident_id=second))
        merged = watcher.until("the case with both reports",
                               watcher.on("cases", incident_ids=[first, second]))
        assert merged["key"] == case["case_id"].encode()
        assert merged["headers"]["schema"] == b"griddispatch.case/1"
        assert merged["value"]["state"] == "dispatched"

        status(case, ZHZF, "returned", note="不属于本部门")
        again = watcher.until("the reassignment", watcher.on(f"assignments.{ZHZX}",
                                                             kind="reassigned"))
        assert again["value"]["case_id"] == case["case_id"] and again["value"]["role"] == "lead"

        # garbage, an unknown case, an illegal transition (resolve before accepting)
        send(STATUS, b"330110005", b"\xff{not json")
        send(STATUS, b"330110005", to_json(StatusUpdate(
            case_id="330110005-000000000000", department=ZHZX, action="accepted",
            at=datetime.now(UTC))))
        status(case, ZHZX, "resolved", note="已清理")
        for reason in ("malformed", "unknown_case", "illegal_transition"):
            rejected = watcher.until(reason, watcher.on("assignments.status.rejected",
                                                        reason=reason))
            assert rejected["headers"]["schema"] == b"griddispatch.status-rejected/1"
        assert route.poll() is None, "the route worker died on bad input"

        status(case, ZHZX, "accepted")
        watcher.until("accepted", watcher.on("cases", case_id=case["case_id"], state="accepted"))
        status(case, ZHZX, "resolved", note="已清理")
        watcher.until("resolved", watcher.on("cases", case_id=case["case_id"], state="resolved"))
        status(case, "330110.zhzx", "verified", satisfied=True)
        closed = watcher.until("closed", watcher.on("cases", case_id=case["case_id"],
                                                    state="closed"))
        assert closed["value"]["satisfied"] is True
        assert closed["value"]["lead"] == ZHZX and closed["value"]["returned_by"] == [ZHZF]
        news = [r for r in watcher.records
                if r["topic"].startswith("assignments.3") and r["value"]["kind"] == "new"]
        assert len(news) == 1, news

        wait_for(lambda: sample(port, "griddispatch_route_records_total",
                                outcome="rejected") == 3.0, 10, "3 rejections in /metrics")
        for outcome, n in (("assigned", 1), ("merged", 1), ("rerouted", 1), ("updated", 3)):
            assert sample(port, "griddispatch_route_records_total", outcome=outcome) == n, outcome
        assert sample(port, "griddispatch_assignments_total", platform=case["platform"],
                      department=ZHZF) == 2.0
        assert (sample(port, "griddispatch_route_transactions_total", outcome="committed")
                or 0) >= 5
        assert sample(port, "griddispatch_open_cases", state="dispatched") == 0.0
        assert route.poll() is None
    watcher.consumer.close()
    assert route.returncode == 0, "SIGTERM must end the route worker cleanly"
    assert "route worker stopped cleanly after a signal" in (tmp_path / "route.log").read_text()
