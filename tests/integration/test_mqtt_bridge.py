"""Sensor alarms through the real Mosquitto and the real Kafka (``griddispatch connect mqtt``)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from engine.runtime.settings import Settings
from tests.integration.connector_helpers import griddispatch
from tests.integration.intake_helpers import records
from tests.integration.workers import apply_topics, sample, wait_for

pytestmark = pytest.mark.integration

GAS = "yh-gas-009001001"


def publish(mqtt_url: str, messages: list[tuple[str, bytes]]) -> None:
    """QoS 1 publishes, each confirmed by the broker (PUBACK) before returning."""
    url = urlsplit(mqtt_url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sensor-{uuid.uuid4().hex[:8]}")
    client.connect(url.hostname or "127.0.0.1", url.port or 1883)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def alarm(alarm_id: str, **extra: object) -> bytes:
    return json.dumps({"alarm_id": alarm_id, "time": "2026-11-24T10:00:00+08:00", "value": 25,
                       "unit": "%LEL", "threshold": 20, **extra}).encode()


def handled(port: int) -> float:
    return sum(sample(port, "griddispatch_connector_messages_total", connector="mqtt",
                      result=result) or 0 for result in ("accepted", "duplicate", "deadletter"))


def test_a_resent_alarm_is_one_record_and_bad_ones_are_dead_lettered(
        kafka_settings: Settings, redis_url: str, mqtt_url: str, tmp_path: Path) -> None:
    apply_topics(kafka_settings)
    first, later = f"A-{uuid.uuid4().hex[:8]}", f"A-{uuid.uuid4().hex[:8]}"
    client_id = f"bridge-{uuid.uuid4().hex[:8]}"
    command = ("connect", "mqtt", "--url", mqtt_url, "--client-id", client_id)
    gas_topic = f"griddispatch/sensors/{GAS}/alarm"
    with griddispatch(kafka_settings, redis_url, tmp_path / "mqtt.log", *command) as (_, port):
        wait_for(lambda: sample(port, "griddispatch_connector_connected", connector="mqtt") == 1,
                 30, "the bridge's subscription")
        publish(mqtt_url, [(gas_topic, alarm(first)), (gas_topic, alarm(first)),
                           ("griddispatch/sensors/yh-nobody-404/alarm", alarm("X-1")),
                           (gas_topic, b"{garbage")])
        wait_for(lambda: handled(port) == 4, 30, "four messages handled")
        assert [sample(port, "griddispatch_connector_messages_total", connector="mqtt",
                       result=r) for r in ("accepted", "duplicate", "deadletter")] == [1, 1, 2]
        assert sample(port, "griddispatch_dead_letters_total", topic="intake.deadletter",
                      reason="unknown_device") == 1
    # an alarm sent while the bridge is down waits in its persistent session
    publish(mqtt_url, [(gas_topic, alarm(later))])
    with griddispatch(kafka_settings, redis_url, tmp_path / "mqtt2.log", *command) as (_, port):
        wait_for(lambda: handled(port) == 1, 30, "the alarm queued while the bridge was down")

    # partitions interleave in any order: compare sorted
    reported = sorted((value for _, value in records(kafka_settings, "incidents.reported")),
                      key=lambda r: r["channel_id"] != f"{GAS}:{first}")
    assert [(r["channel"], r["channel_id"]) for r in reported] == [
        ("sensor", f"{GAS}:{first}"), ("sensor", f"{GAS}:{later}")], reported
    assert (reported[0]["grid_code"], reported[0]["channel_category"]) == ("330110009001001",
                                                                            "gas")
    assert reported[0]["description"].startswith("可燃气体报警：余杭区仁和街道")

    dead = records(kafka_settings, "intake.deadletter")
    assert sorted((key, d["reason"], d["field"]) for key, d in dead) == [
        (f"mqtt:{gas_topic}", "malformed_json", "(payload)"),
        ("mqtt:griddispatch/sensors/yh-nobody-404/alarm", "unknown_device", "device_id")]
    raws = {d["reason"]: d["raw"] for _, d in dead}
    assert raws == {"unknown_device": alarm("X-1").decode(), "malformed_json": "{garbage"}
