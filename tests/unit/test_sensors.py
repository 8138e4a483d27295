"""Sensor alarms -> intake reports (connectors.channels.sensors) and the device registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.channels.sensors import (
    DeviceRegistry,
    UnknownDevice,
    alarm_to_report,
    device_from_topic,
)
from connectors.deadletter import MalformedPayload, reason_for
from connectors.errors import AdapterError
from engine.classify import classify_report
from engine.contracts import Classified
from engine.reference.channels import ChannelMaps
from engine.rules.load import load_rules
from engine.yamlfile import FileProblems

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "rules" / "reference"
GAS = "yh-gas-009001001"  # 东风农贸市场熟食区, grid 330110009001001
ELEVATOR = "yh-elevator-trapped-009002001"
CST = timezone(timedelta(hours=8))


@pytest.fixture(scope="module")
def registry() -> DeviceRegistry:
    return DeviceRegistry.load(REFERENCE / "devices.yaml",
                               ChannelMaps.load(REFERENCE / "channels.yaml"))


def payload(**fields: Any) -> bytes:
    base: dict[str, Any] = {"alarm_id": "A-20261124-0001", "time": "2026-11-24T10:00:00+08:00"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


def test_gas_alarm_becomes_a_placed_sensor_report(registry: DeviceRegistry) -> None:
    report = alarm_to_report(GAS, payload(value=25, unit="%LEL", threshold=20), registry)
    assert report.model_dump(mode="json", exclude_defaults=True) == {
        "channel": "sensor",
        "channel_id": "yh-gas-009001001:A-20261124-0001",
        "reported_at": "2026-11-24T10:00:00+08:00",
        "description": "可燃气体报警：余杭区仁和街道和宸社区仁和大道2号东风农贸市场熟食区，"
                       "可燃气体浓度 25%LEL（阈值 20%LEL），设备 yh-gas-009001001",
        "grid_code": "330110009001001",
        "location": {"lat": 30.476382, "lon": 120.097376},
        "address": "余杭区仁和街道和宸社区仁和大道2号东风农贸市场熟食区",
        "channel_category": "gas",
        "reporter": {"name": "东风农贸市场管理处", "phone": "0571-89201395"},
        "attributes": {"device_id": GAS, "device_type": "gas", "alarm_id": "A-20261124-0001",
                       "alarm_type": "gas", "value": 25.0, "unit": "%LEL", "threshold": 20.0},
    }


def test_a_resent_alarm_is_the_same_incident_and_another_alarm_is_not(
        registry: DeviceRegistry) -> None:
    first = alarm_to_report(GAS, payload(value=25), registry)
    resent = alarm_to_report(GAS, payload(value=26, time="2026-11-24T10:00:05+08:00"), registry)
    other = alarm_to_report(GAS, payload(alarm_id="A-20261124-0002"), registry)
    assert first.incident_id == resent.incident_id != other.incident_id


def test_unix_seconds_and_milliseconds_are_accepted_as_alarm_time(
        registry: DeviceRegistry) -> None:
    when = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    for stamp in (when.timestamp(), int(when.timestamp() * 1000)):
        assert alarm_to_report(GAS, payload(time=stamp), registry).reported_at == when


def test_a_device_may_raise_its_other_declared_alarm_types(registry: DeviceRegistry) -> None:
    report = alarm_to_report(ELEVATOR, payload(type="elevator-fault"), registry)
    assert report.channel_category == "elevator-fault"
    assert report.description.startswith("电梯故障报警：余杭区仁和街道芳甸社区安置小区7幢1号电梯")
    with pytest.raises(AdapterError) as caught:
        alarm_to_report(GAS, payload(type="smoke"), registry)
    assert caught.value.field == "type"


def test_the_device_message_is_appended_and_kept_short(registry: DeviceRegistry) -> None:
    report = alarm_to_report(GAS, payload(message="探头3" * 400), registry)
    assert report.description.endswith("。设备信息：" + ("探头3" * 400)[:500])


@pytest.mark.parametrize(("device", "raw", "field", "reason"), [
    (GAS, b"{not json", "(payload)", "malformed_json"),
    (GAS, b"[1, 2]", "(payload)", "malformed_json"),
    (GAS, b"\xff\xfe", "(payload)", "malformed_json"),
    ("yh-nobody-000", payload(), "device_id", "unknown_device"),
    (GAS, payload(alarm_id=None), "alarm_id", "invalid_payload"),
    (GAS, payload(time=None), "time", "invalid_payload"),
    (GAS, payload(time="2026-11-24 10:00:00"), "time", "invalid_payload"),
    (GAS, payload(time="yesterday"), "time", "invalid_payload"),
    (GAS, payload(value="high"), "value", "invalid_payload"),
    (GAS, payload(device_id="yh-gas-other"), "device_id", "invalid_payload"),
])
def test_bad_alarms_name_the_field_and_their_dead_letter_reason(
        registry: DeviceRegistry, device: str, raw: bytes, field: str, reason: str) -> None:
    with pytest.raises(AdapterError) as caught:
        alarm_to_report(device, raw, registry)
    assert caught.value.field == field
    assert reason_for(caught.value, "invalid_payload") == reason
    assert isinstance(caught.value, MalformedPayload) == (reason == "malformed_json")
    assert isinstance(caught.value, UnknownDevice) == (reason == "unknown_device")


def test_topic_scheme() -> None:
    assert device_from_topic("griddispatch/sensors/yh-gas-009001001/alarm") == GAS
    for bad in ("griddispatch/sensors/a/b/alarm", "griddispatch/sensors//alarm",
                "other/sensors/x/alarm", "griddispatch/sensors/x/status"):
        with pytest.raises(AdapterError) as caught:
            device_from_topic(bad)
        assert caught.value.field == "topic"


def test_every_device_sits_inside_its_grid(registry: DeviceRegistry) -> None:
    ruleset = load_rules(REPO / "rules")
    assert len(registry.devices) >= 20
    for device_id, device in registry.devices.items():
        grid = ruleset.jurisdiction.grid_at(device.location.lon, device.location.lat,
                                            datetime(2026, 11, 24, tzinfo=CST))
        assert grid is not None and grid.code == device.grid_code, device_id


def test_every_device_type_classifies_through_the_sensor_channel_map(
        registry: DeviceRegistry) -> None:
    ruleset = load_rules(REPO / "rules")
    for device_id, device in registry.devices.items():
        report = alarm_to_report(device_id, payload(), registry)
        record = classify_report(ruleset, report, datetime(2026, 11, 24, 10, 1, tzinfo=CST))
        assert isinstance(record, Classified), (device_id, record)
        expected = ruleset.channels.lookup("sensor", device.type)
        assert expected is not None
        assert (record.matter_code, record.classified_by, record.grid_code) == (
            expected.matter, "channel_category", device.grid_code), device_id


def test_registry_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "devices.yaml"
    path.write_text("devices:\n"
                    "  ok-1:\n"
                    "    type: gas\n"
                    '    grid_code: "330110009001001"\n'
                    "    location: {lat: 30.312808, lon: 120.04169}\n"
                    "    address: 某地\n"
                    "    owner: {name: 某单位}\n"
                    "  bad/2:\n"
                    "    type: volcano\n"
                    '    grid_code: "330110009001001"\n'
                    "    location: {lat: 30.312808, lon: 120.04169}\n"
                    "    address: 某地\n"
                    "    owner: {name: 某单位}\n", encoding="utf-8")
    with pytest.raises(FileProblems) as caught:
        DeviceRegistry.load(path, ChannelMaps.load(REFERENCE / "channels.yaml"))
    text = str(caught.value)
    assert f"{path}:8: device id 'bad/2'" in text
    assert f"{path}:9: alarm type 'volcano'" in text
