"""``griddispatch replay`` and ``griddispatch connect kafka`` on the real broker and Redis."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from engine.cli import main
from engine.runtime import kafka
from engine.runtime.settings import Settings
from tests.integration.connector_helpers import griddispatch, produce
from tests.integration.intake_helpers import records
from tests.integration.workers import REPO, apply_topics, sample, wait_for

pytestmark = pytest.mark.integration


def report_line(channel_id: str, **changes: object) -> str:
    report = {"channel": "hotline", "channel_id": channel_id,
              "reported_at": "2026-11-24T10:00:00+08:00", "description": "楼道里一股煤气味",
              "address": "余杭区仓前街道太炎社区", **changes}
    return json.dumps(report, ensure_ascii=False)


def test_replay_sends_good_lines_names_the_bad_one_and_exits_1(
        kafka_settings: Settings, redis_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    apply_topics(kafka_settings)
    run = uuid.uuid4().hex[:8]
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join([
        report_line(f"{run}-1"),
        report_line(f"{run}-2", channel="gridapp"),
        report_line(f"{run}-3", location={"lat": 30.4, "lon": "east"}),
        report_line(f"{run}-1"),  # the same report again: a duplicate, not a second record
        report_line(f"{run}-4"),
    ]) + "\n", encoding="utf-8")
    code = main(["--bootstrap", kafka_settings.kafka_bootstrap, "--redis", redis_url,
                 "--topic-prefix", kafka_settings.topic_prefix, "replay", str(path),
                 "--rate", "200/s"])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"error: {path}:line 3: location.lon: " in err
    assert "accepted 3, duplicates 1, invalid 1" in out
    sent = sorted((value["channel"], value["channel_id"])
                  for _, value in records(kafka_settings, "incidents.reported"))
    assert sent == [("gridapp", f"{run}-2"), ("hotline", f"{run}-1"), ("hotline", f"{run}-4")]


COMPLAINT: dict[str, Any] = {
    "gdbh": "", "slsj": "2026-11-24 09:30:12", "wtxl": "餐饮服务", "tsbt": "饭店后厨卫生差",
    "tsnr": "后厨老鼠乱窜", "bjdz": "余杭区仓前街道太炎社区文一西路1218号",
    "zb": {"jd": 119.9845, "wd": 30.339}}


def complaint(number: str, **changes: object) -> bytes:
    record = copy.deepcopy(COMPLAINT)
    record.update(gdbh=number, **changes)
    return json.dumps(record, ensure_ascii=False).encode()


def test_kafka_bridge_maps_dedups_dead_letters_and_commits(
        kafka_settings: Settings, redis_url: str, tmp_path: Path) -> None:
    apply_topics(kafka_settings)
    source = kafka_settings.topic("scjg.complaints")  # the department's own topic
    admin = kafka.admin_client(kafka_settings)
    for future in admin.create_topics([NewTopic(source, 1, 1)]).values():
        future.result(10)
    run = uuid.uuid4().hex[:8]
    produce(kafka_settings, "scjg.complaints", [
        complaint(f"YH-{run}-1"), complaint(f"YH-{run}-2", wtxl="价格"),
        complaint(f"YH-{run}-3", slsj="24/11/2026"), complaint(f"YH-{run}-1"), b"\x00oops"])
    group = f"bridge-{run}"
    with griddispatch(kafka_settings, redis_url, tmp_path / "bridge.log", "connect", "kafka",
                      "--source", source, "--mapping",
                      str(REPO / "rules/bridges/scjg-complaints.yaml"), "--group", group
                      ) as (_, port):
        def count(result: str) -> float:
            return sample(port, "griddispatch_connector_messages_total", connector="kafka",
                          result=result) or 0

        wait_for(lambda: sum(count(r) for r in ("accepted", "duplicate", "deadletter")) == 5,
                 30, "five source records handled")
        assert [count(r) for r in ("accepted", "duplicate", "deadletter")] == [2, 1, 2]
    reported = sorted((v for _, v in records(kafka_settings, "incidents.reported")),
                      key=lambda v: v["channel_id"])
    assert [(v["channel"], v["channel_id"], v["matter_code"]) for v in reported] == [
        ("dept:330110.scjg", f"YH-{run}-1", "0401"), ("dept:330110.scjg", f"YH-{run}-2", "0601")]
    dead = sorted((v["reason"], v["field"], v["source"]) for k, v in
                  records(kafka_settings, "intake.deadletter") if k == f"kafka:{source}")
    assert dead == [("malformed_json", "(record)", f"kafka:{source}/0@4"),
                    ("unmappable", "slsj", f"kafka:{source}/0@2")]
    consumer = kafka.consumer(kafka_settings, group)
    try:
        [committed] = consumer.committed([TopicPartition(source, 0)], timeout=10)
    finally:
        consumer.close()
    assert committed.offset == 5
