"""``griddispatch report`` on a real ``cases`` topic: latest record per case, committed only.

The topic gets what the route worker writes (case records keyed by case id, inside
transactions), plus what a compacted topic may hold before compaction (an older version of
a case), a tombstone, a record that is not a case, and an aborted transaction.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic

from engine.cli import main
from engine.runtime import kafka
from engine.runtime.settings import Settings
from tests.integration.workers import wait_for
from tests.unit.test_report import NAMES, ZHZF, ZHZX, answer, case, served, well_formed

pytestmark = pytest.mark.integration


def test_report_reads_the_latest_committed_record_of_each_case(
        kafka_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = kafka_settings
    topic = settings.topic("cases")
    admin = kafka.admin_client(settings)
    for future in admin.create_topics([NewTopic(topic, 3, 1, config={
            "cleanup.policy": "compact"})]).values():
        future.result(30)
    wait_for(lambda: topic in admin.list_topics(timeout=5).topics, 30, "the cases topic")

    opened = case("RC-1", worker="GW-9")
    done = served("RC-1", worker="GW-9")  # the same case, later: accepted, resolved, closed
    other = served("RC-2", worker="GW-9").model_copy(update={"lead": ZHZX})
    gone = answer(case("RC-3"), ZHZF, "accepted", 5)
    producer = kafka.transactional_producer(settings, f"test-report-{uuid.uuid4().hex[:8]}")
    producer.init_transactions(30)

    def write(records: list[tuple[bytes, bytes | None]], commit: bool = True) -> None:
        producer.begin_transaction()
        for key, value in records:
            producer.produce(topic, key=key, value=value)
        (producer.commit_transaction if commit else producer.abort_transaction)(30)

    def record(c: object) -> bytes:
        return c.model_dump_json(by_alias=True).encode()  # type: ignore[attr-defined]

    write([(opened.case_id.encode(), record(opened)), (gone.case_id.encode(), record(gone))])
    write([(done.case_id.encode(), record(done)), (other.case_id.encode(), record(other)),
           (gone.case_id.encode(), None), (b"junk", b"{not a case")])
    aborted = served("RC-4").model_copy(update={"lead": "330110.scjg"})
    write([(aborted.case_id.encode(), record(aborted))], commit=False)

    page = tmp_path / "report.html"
    code = main(["--bootstrap", settings.kafka_bootstrap, "--topic-prefix", settings.topic_prefix,
                 "report", "--html", str(page), "--timeout", "60"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "skipped 1 records of the cases topic" in err
    assert "2 cases" in out  # RC-1 once (its latest record), RC-2; not the deleted, not aborted
    rows = {line.split()[0]: line for line in out.splitlines() if "330110" in line}
    assert set(rows) == {NAMES[ZHZF], NAMES[ZHZX]}
    assert "100% (1)" in rows[NAMES[ZHZF]]  # RC-1 as closed, not as merely opened
    assert "330110.scjg" not in out
    assert "GW-9" in out
    root = well_formed(page.read_text(encoding="utf-8"))
    assert NAMES[ZHZF] in "".join(root.itertext())
