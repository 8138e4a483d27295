"""The classifier inside the classify worker, on a real broker: triage records carry the
suggestions and urgency, and a changed example set retrains and swaps the model atomically
while reports keep flowing."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.contracts import incident_id
from engine.rules.load import load_rules, revision_of
from engine.runtime import kafka
from engine.runtime.settings import Settings
from tests.integration.test_classify_worker import Outputs, encode, report
from tests.integration.workers import REPO, apply_topics, running, sample, wait_for

pytestmark = pytest.mark.integration


def test_triage_records_carry_suggestions_and_urgency(kafka_settings: Settings,
                                                      tmp_path: Path) -> None:
    apply_topics(kafka_settings)
    producer = kafka.producer(kafka_settings)
    topic = kafka_settings.topic("incidents.reported")
    # Danger to life with no place: triage (unplaced), urgent, the matter suggested.
    producer.produce(topic, value=encode(report("U-1", grid_code=None,
                                                description="燃气泄露了快来人，楼道里全是味道")))
    # 广场舞 in Yuhang: recognised, but the county's layer switches the item off.
    producer.produce(topic, value=encode(report("U-2", description="小区广场舞音响太吵了，"
                                                                   "每天晚上跳到十点")))
    assert producer.flush(30) == 0
    outputs = Outputs(kafka_settings)
    with running(kafka_settings, "classify", tmp_path / "worker.log") as (_proc, port):
        try:
            outputs.until(lambda rs: len(rs) >= 2, 120)
        finally:
            outputs.close()
        by_id = {r["value"]["channel_id"]: r for r in outputs.records}
        urgent, dancing = by_id["U-1"], by_id["U-2"]
        assert urgent["topic"] == dancing["topic"] == "incidents.triage"
        assert (urgent["value"]["reason"], urgent["value"]["urgent"]) == ("unplaced", True)
        assert urgent["value"]["matter_code"] == "030201"
        assert urgent["value"]["suggestions"][0]["matter_code"] == "030201"
        assert (dancing["value"]["reason"], dancing["value"]["urgent"]) == ("uncertain", False)
        first = dancing["value"]["suggestions"][0]
        assert (first["matter_code"], first["matter_name"], first["platform"]) == (
            "110103", "广场舞噪音", "enforcement")
        assert len(dancing["value"]["suggestions"]) == 3
        wait_for(lambda: sample(port, "griddispatch_triage_urgent_total",
                                reason="unplaced") == 1.0, 10, "the urgent triage metric")
        assert sample(port, "griddispatch_triage_urgent_total", reason="uncertain") in (None,
                                                                                       0.0)


def test_a_changed_example_set_swaps_the_model_atomically_under_load(
        kafka_settings: Settings, tmp_path: Path) -> None:
    apply_topics(kafka_settings)
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    # Two folds: the worker retrains in about half the time, and the test stays short.
    settings_file = rules / "reference" / "classifier.yaml"
    settings_file.write_text(settings_file.read_text(encoding="utf-8").replace(
        "folds: 5", "folds: 2"), encoding="utf-8")
    before = load_rules(rules)  # trained here once, so the worker starts from the cache
    assert before.model is not None
    producer = kafka.producer(kafka_settings)
    topic = kafka_settings.topic("incidents.reported")
    outputs = Outputs(kafka_settings)
    sent: list[str] = []
    stop = threading.Event()

    def produce_load() -> None:
        n = 0
        while not stop.is_set():
            channel_id = f"M-{n:05d}"
            producer.produce(topic, value=encode(report(channel_id,
                                                        description=f"路上有个大坑，第{n}次了")))
            sent.append(incident_id("hotline", channel_id))
            producer.poll(0)
            n += 1
            time.sleep(0.05)
        producer.flush(30)

    with running(kafka_settings, "classify", tmp_path / "worker.log", rules_dir=rules) as (
            proc, port):
        load = threading.Thread(target=produce_load)
        load.start()
        try:
            outputs.until(lambda rs: len(rs) >= 20, 90)
            # Texts new to every run: the worker must train, not find the model in the cache.
            run = uuid.uuid4().hex[:6]
            extra = {"items": {"120101": {"colloquial": [
                f"马路中间塌了个洞，车开过去咣当一下，第{i}回了（{run}）" for i in range(5)]}}}
            (rules / "examples" / "zz-operator.yaml").write_text(
                yaml.safe_dump(extra, allow_unicode=True), encoding="utf-8")
            after = revision_of(rules)
            assert after != before.revision
            wait_for(lambda: sample(port, "griddispatch_rules_revision_info",
                                    revision=after) == 1.0, 300, "the retrained rule set")
            time.sleep(3)  # some reports under the new model too
        finally:
            stop.set()
            load.join(60)
        try:
            outputs.until(lambda rs: {r["value"]["incident_id"] for r in rs} >= set(sent), 120)
        finally:
            outputs.close()
        assert proc.poll() is None, "the worker died while retraining"
    records = [r for r in outputs.records if r["value"]["incident_id"] in set(sent)]
    ids = [r["value"]["incident_id"] for r in records]
    assert len(ids) == len(set(ids)) == len(sent), "lost or duplicated reports"
    revisions = {r["value"]["rules_revision"] for r in records}
    assert revisions == {before.revision, after}
    # Per partition, in the order the worker wrote them: the old revision, then the new,
    # never interleaved (the swap is atomic).
    per_partition: dict[Any, list[str]] = defaultdict(list)
    for r in records:
        per_partition[r["key"]].append(r["value"]["rules_revision"])
    for sequence in per_partition.values():
        switched = sequence.index(after) if after in sequence else len(sequence)
        assert set(sequence[switched:]) <= {after}, sequence
    # The new revision's decisions name the new model.
    models = {r["value"]["rules_revision"]: {m["rule"] for m in r["value"]["matched_rules"]
                                             if m["rule"].startswith("model:")}
              for r in records if r["topic"] == "incidents.classified"}
    assert models[before.revision] and models[after]
    assert models[before.revision] != models[after]
