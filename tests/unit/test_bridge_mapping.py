"""Department systems' records -> intake reports by a YAML mapping (connectors.bridges.mapping)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from connectors.bridges.kafka import parse_and_map
from connectors.bridges.mapping import BridgeMapping, resolve
from connectors.deadletter import MalformedPayload, reason_for
from connectors.errors import AdapterError
from engine.yamlfile import FileProblems

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "rules" / "bridges" / "scjg-complaints.yaml"

COMPLAINT: dict[str, Any] = {
    "gdbh": "YH12315-20261124-000123",
    "slsj": "2026-11-24 09:30:12",
    "tslx": "投诉",
    "wtlb": "食品安全",
    "wtxl": "餐饮服务",
    "tsbt": "饭店后厨卫生差",
    "tsnr": "后厨老鼠乱窜，餐具不消毒",
    "bjdz": "余杭区仓前街道太炎社区文一西路1218号",
    "bjdx": {"mc": "某某饭店", "tyshxydm": "91330110MA2XXXXXX1"},
    "zb": {"jd": 119.75, "wd": 30.43},
    "tsr": {"xm": "王女士", "lxdh": "13800001111"},
    "fj": "https://files.example.gov.cn/1.jpg; https://files.example.gov.cn/2.jpg",
}


@pytest.fixture(scope="module")
def mapping() -> BridgeMapping:
    return BridgeMapping.load(EXAMPLE)


def complaint(**changes: Any) -> dict[str, Any]:
    record = copy.deepcopy(COMPLAINT)
    for key, value in changes.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    return record


def test_example_complaint_maps_onto_the_intake_contract(mapping: BridgeMapping) -> None:
    report = mapping.to_report(COMPLAINT)
    assert report.model_dump(mode="json", exclude_defaults=True) == {
        "channel": "dept:330110.scjg",
        "channel_id": "YH12315-20261124-000123",
        "reported_at": "2026-11-24T09:30:12+08:00",
        "description": "饭店后厨卫生差：后厨老鼠乱窜，餐具不消毒",
        "matter_code": "0401",
        "division_code": "330110",
        "location": {"lat": 30.43, "lon": 119.75},
        "address": "余杭区仓前街道太炎社区文一西路1218号",
        "reporter": {"name": "王女士", "phone": "13800001111"},
        "attachments": ["https://files.example.gov.cn/1.jpg",
                        "https://files.example.gov.cn/2.jpg"],
        "attributes": {"gdbh": "YH12315-20261124-000123", "tslx": "投诉", "wtlb": "食品安全",
                       "wtxl": "餐饮服务", "bjdx": "某某饭店",
                       "tyshxydm": "91330110MA2XXXXXX1"},
    }


def test_optional_fields_may_be_missing_and_unknown_categories_fall_back(
        mapping: BridgeMapping) -> None:
    report = mapping.to_report(complaint(zb=None, tsr=None, fj=None, bjdx=None, wtxl="其他"))
    assert report.location is None and report.reporter is None and report.attachments == []
    assert report.matter_code is None  # unmapped: default (null) -> keyword matching decides
    assert report.division_code == "330110"


def test_a_numeric_id_becomes_a_string_channel_id(mapping: BridgeMapping) -> None:
    assert mapping.to_report(complaint(gdbh=20261124000123)).channel_id == "20261124000123"


@pytest.mark.parametrize(("record", "field", "words"), [
    (complaint(gdbh=None), "gdbh", "required"),
    (complaint(slsj=None), "slsj", "required"),
    (complaint(slsj="2026/11/24 09:30"), "slsj", "%Y-%m-%d %H:%M:%S"),
    (complaint(tsbt=None, tsnr=None), "{tsbt}：{tsnr}", "required"),
    (complaint(zb={"jd": 119.75, "wd": "north"}), "zb.wd", "location.lat"),
    (complaint(zb={"jd": 119.75}), "zb.wd", "location.lat"),
    (complaint(fj="ftp://files.example.gov.cn/1.jpg"), "fj", "attachments.0"),
    (["not", "an", "object"], "(record)", "JSON object"),
])
def test_unmappable_records_name_the_source_field(mapping: BridgeMapping, record: Any,
                                                  field: str, words: str) -> None:
    with pytest.raises(AdapterError) as caught:
        mapping.to_report(record)
    assert caught.value.field == field
    assert words in caught.value.reason
    assert reason_for(caught.value, "unmappable") == "unmappable"


def test_bytes_that_are_not_json_are_malformed(mapping: BridgeMapping) -> None:
    with pytest.raises(MalformedPayload) as caught:
        parse_and_map(mapping, b"\x00garbage")
    assert reason_for(caught.value, "unmappable") == "malformed_json"
    assert parse_and_map(mapping, json.dumps(COMPLAINT).encode()).channel_id == COMPLAINT["gdbh"]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_value_maps_reject_unknown_values_unless_told_otherwise(tmp_path: Path) -> None:
    mapping = BridgeMapping.load(write(tmp_path, """
name: t
department: "330110.scjg"
channel_id: id
fields:
  reported_at: {path: t, time_format: epoch_ms}
  description: text
  matter_code: {path: kind, map: {a: "0401"}}
"""))
    record = {"id": 7, "t": 1795500000000, "text": "x", "kind": "a"}
    report = mapping.to_report(record)
    assert report.matter_code == "0401"
    assert report.reported_at.utcoffset() is not None
    with pytest.raises(AdapterError) as caught:
        mapping.to_report({**record, "kind": "b"})
    assert (caught.value.field, "'b' is not in the mapping's map" in caught.value.reason) == (
        "kind", True)


def test_times_without_offset_need_a_timezone(tmp_path: Path) -> None:
    mapping = BridgeMapping.load(write(tmp_path, """
name: t
department: "330110.scjg"
channel_id: id
fields: {reported_at: when, description: text}
"""))
    assert mapping.to_report({"id": "1", "when": "2026-11-24T09:00:00+08:00", "text": "x"})
    with pytest.raises(AdapterError) as caught:
        mapping.to_report({"id": "1", "when": "2026-11-24T09:00:00", "text": "x"})
    assert caught.value.field == "when" and "no UTC offset" in caught.value.reason


def test_mapping_file_errors_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, """name: t
department: "330110.scjg"
channel_id: id
fields:
  description: text
  reportd_at: when
  location.lat: {path: y, timezone: Mars/Olympus}
  matter_code: {path: k, unmapped: keep}
""")
    with pytest.raises(FileProblems) as caught:
        BridgeMapping.load(path)
    text = str(caught.value)
    assert f"{path}:6: 'reportd_at' is not an intake field" in text
    assert "the intake field 'reported_at' is required" in text
    assert f"{path}:7: unknown time zone 'Mars/Olympus'" in text
    assert f"{path}:8: 'unmapped' needs a 'map'" in text


def test_paths_reach_into_objects_and_lists() -> None:
    record = {"a": {"b": [{"c": 1}, {"c": 2}]}, "中文": {"键": "值"}}
    assert resolve(record, "a.b[1].c") == 2
    assert resolve(record, "中文.键") == "值"
    assert resolve(record, "a.b[5].c") is None
    assert resolve(record, "a.x") is None


def test_connect_kafka_reads_the_source_topic_from_the_mapping_or_asks_for_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    assert BridgeMapping.load(EXAMPLE).source_topic == "scjg.complaints.12315"
    bare = tmp_path / "bare.yaml"
    bare.write_text("\n".join(line for line in EXAMPLE.read_text(encoding="utf-8").splitlines()
                              if not line.startswith("source_topic:")), encoding="utf-8")
    assert main(["--bootstrap", "127.0.0.1:1", "connect", "kafka", "--mapping", str(bare)]) == 2
    assert "names no source_topic: give the department system's topic with --source" in (
        capsys.readouterr().err)
