"""Sensor alarms onto the intake contract (pure: no MQTT, no Kafka).

A smoke detector or a manhole-cover tilt sensor knows only its own id, the alarm's id, the
time and a reading. Everything a department needs to act (where it is, which grid, whom to
call) comes from the device registry (``rules/reference/devices.yaml``), and the alarm type
is the ``sensor`` category of ``channels.yaml``, which decides the matter code.

MQTT topic scheme: ``griddispatch/sensors/<device id>/alarm``, QoS 1. Payload, UTF-8 JSON::

    {"alarm_id": "A-20261124-0001",        # the device's own id for this alarm (required)
     "time": "2026-11-24T10:00:00+08:00",  # ISO 8601 with offset, or Unix seconds / ms
     "type": "gas",                        # optional: default is the device's type
     "value": 25, "unit": "%LEL", "threshold": 20,   # optional reading
     "message": "..."}                     # optional text from the device platform

The idempotency key is ``(sensor, "<device id>:<alarm id>")``: a sensor that resends the
same alarm (as QoS 1 devices do after a lost PUBACK) reports the same incident.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from connectors.deadletter import DeadLetterReason, MalformedPayload
from connectors.errors import AdapterError
from engine.contracts import IntakeReport, Location
from engine.reference.channels import ChannelMaps
from engine.yamlfile import FileProblem, FileProblems, load_yaml, validate

CHANNEL = "sensor"
TOPIC_PREFIX = "griddispatch/sensors/"
TOPIC_FILTER = TOPIC_PREFIX + "+/alarm"
DEVICE_ID = r"^[A-Za-z0-9_-]{1,64}$"
_DEVICE_TOPIC = re.compile(r"^griddispatch/sensors/([A-Za-z0-9_-]{1,64})/alarm$")
_MESSAGE_CHARS = 500

# What the reading of each alarm type measures, for the description a person reads.
MEASURES: dict[str, str] = {
    "smoke": "烟雾浓度", "gas": "可燃气体浓度", "water-level": "水位", "road-ponding": "积水深度",
    "manhole-cover": "井盖倾角", "electrical-fire": "剩余电流", "fire-hydrant-pressure": "水压",
    "noise-level": "噪声", "dust": "PM10浓度", "cooking-fume": "油烟浓度",
    "water-meter-idle": "未用水时长", "tilt": "倾角",
}


class UnknownDevice(AdapterError):
    """The device id is not in the registry."""

    dead_letter_reason: DeadLetterReason = "unknown_device"


class Owner(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    phone: str | None = Field(default=None, max_length=40)


class Device(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(min_length=1)
    alarms: list[str] = Field(default_factory=list,
                              description="alarm types it may raise (default: [type])")
    grid_code: str = Field(pattern=r"^\d{15}$")
    location: Location
    address: str = Field(min_length=1, max_length=500)
    owner: Owner

    @model_validator(mode="after")
    def _type_is_raised(self) -> Device:
        if self.alarms and self.type not in self.alarms:
            raise ValueError(f"alarms must include the device's type '{self.type}'")
        return self

    @property
    def raises(self) -> list[str]:
        return self.alarms or [self.type]


class DeviceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    devices: dict[str, Device]


class DeviceRegistry:
    """Devices by id, each alarm type checked against the ``sensor`` channel map."""

    def __init__(self, devices: dict[str, Device], alarm_names: dict[str, str]):
        self.devices = devices
        self.alarm_names = alarm_names  # alarm type -> its Chinese name (烟感报警, ...)

    def get(self, device_id: str) -> Device | None:
        return self.devices.get(device_id)

    @classmethod
    def load(cls, path: Path, channels: ChannelMaps) -> DeviceRegistry:
        doc = load_yaml(path)
        parsed = validate(doc, DeviceFile)
        names = {m.category: m.name or m.category for m in channels.maps.get(CHANNEL, {}).values()}
        problems: list[FileProblem] = []
        for device_id, device in parsed.devices.items():
            if not re.fullmatch(DEVICE_ID, device_id):
                problems.append(doc.problem(("devices", device_id), f"device id '{device_id}' "
                                            "may use only letters, digits, '-' and '_' (it is "
                                            "part of an MQTT topic)"))
            for i, alarm in enumerate(device.raises):
                if alarm not in names:
                    where = (("devices", device_id, "alarms", i) if device.alarms
                             else ("devices", device_id, "type"))
                    problems.append(doc.problem(where, f"alarm type '{alarm}' of device "
                                                f"'{device_id}' is not a sensor category in "
                                                "channels.yaml; known: " + ", ".join(names)))
        if problems:
            raise FileProblems(problems)
        return cls(parsed.devices, names)


def device_from_topic(topic: str) -> str:
    """``griddispatch/sensors/<device id>/alarm`` -> the device id."""
    match = _DEVICE_TOPIC.match(topic)
    if not match:
        raise AdapterError("topic", f"'{topic[:200]}' is not griddispatch/sensors/<device id>/"
                                    "alarm")
    return match.group(1)


def _alarm_time(value: Any) -> datetime:
    if isinstance(value, bool) or value is None:
        raise AdapterError("time", "required: ISO 8601 with offset, or Unix seconds")
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value  # milliseconds since the epoch
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise AdapterError("time", f"{value} is not a plausible Unix time") from None
    if not isinstance(value, str):
        raise AdapterError("time", "must be an ISO 8601 string or a number of Unix seconds")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise AdapterError("time", f"'{value[:50]}' is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise AdapterError("time", f"'{value[:50]}' has no UTC offset; add one (+08:00) or "
                                   "send Unix seconds")
    return parsed


def _number(payload: dict[str, Any], key: str) -> float | None:
    value = payload.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AdapterError(key, f"must be a number, got {json.dumps(value, ensure_ascii=False)}")
    return float(value)


def _text(payload: dict[str, Any], key: str, max_chars: int, required: bool = False) -> str | None:
    value = payload.get(key)
    if value is None or value == "":
        if required:
            raise AdapterError(key, "required")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise AdapterError(key, "must be a string")
    if len(value) > max_chars:
        raise AdapterError(key, f"longer than {max_chars} characters")
    return value


def describe(alarm_name: str, alarm_type: str, device_id: str, device: Device,
             value: float | None, unit: str | None, threshold: float | None,
             message: str | None) -> str:
    """The description a dispatcher reads, e.g. ``可燃气体报警：<address>，可燃气体浓度 25%LEL
    （阈值 20%LEL），设备 yh-gas-…``."""
    unit = unit or ""
    parts = [f"{alarm_name}：{device.address}"]
    if value is not None:
        reading = f"{MEASURES.get(alarm_type, '读数')} {value:g}{unit}"
        if threshold is not None:
            reading += f"（阈值 {threshold:g}{unit}）"
        parts.append(reading)
    parts.append(f"设备 {device_id}")
    text = "，".join(parts)
    return text + (f"。设备信息：{message}" if message else "")


def alarm_to_report(device_id: str, raw: bytes, registry: DeviceRegistry) -> IntakeReport:
    """One alarm message -> one intake report, or an ``AdapterError`` naming the field."""
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedPayload("(payload)", f"not UTF-8 JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise MalformedPayload("(payload)", "must be a JSON object")
    device = registry.get(device_id)
    if device is None:
        raise UnknownDevice("device_id", f"device '{device_id}' is not in the device registry")
    claimed = payload.get("device_id")
    if claimed is not None and claimed != device_id:
        raise AdapterError("device_id", f"'{claimed}' differs from the topic's '{device_id}'")
    alarm_id = _text(payload, "alarm_id", 100, required=True)
    alarm_type = _text(payload, "type", 100) or device.type
    if alarm_type not in device.raises:
        raise AdapterError("type", f"device '{device_id}' raises {', '.join(device.raises)}, "
                                   f"not '{alarm_type}'")
    value, threshold = _number(payload, "value"), _number(payload, "threshold")
    unit = _text(payload, "unit", 20)
    message = (_text(payload, "message", 10_000) or "")[:_MESSAGE_CHARS] or None
    reported_at = _alarm_time(payload.get("time"))
    alarm_name = registry.alarm_names.get(alarm_type, alarm_type)
    attributes: dict[str, Any] = {"device_id": device_id, "device_type": device.type,
                                  "alarm_id": alarm_id, "alarm_type": alarm_type}
    attributes.update({k: v for k, v in (("value", value), ("unit", unit),
                                         ("threshold", threshold)) if v is not None})
    try:
        return IntakeReport(
            channel=CHANNEL, channel_id=f"{device_id}:{alarm_id}", reported_at=reported_at,
            description=describe(alarm_name, alarm_type, device_id, device, value, unit,
                                 threshold, message),
            grid_code=device.grid_code, location=device.location, address=device.address,
            channel_category=alarm_type,
            reporter={"name": device.owner.name, "phone": device.owner.phone},
            attributes=attributes)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "(report)"
        raise AdapterError(field, f"the report would be invalid: {error['msg']}") from None
