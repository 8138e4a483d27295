"""A department system's own records onto the intake contract, by a YAML mapping (pure).

Every department system (market supervision's complaint system, the housing bureau's
property hotline, ...) has its own JSON; instead of a connector per system, an operator
writes one mapping file per system and ``griddispatch connect kafka`` applies it.

```yaml
name: scjg-complaints             # names dead letters and the default consumer group
department: "330110.scjg"         # channel = dept:330110.scjg
channel_id: gdbh                  # source field whose value is the system's own id
fields:                           # intake field: source path, or a spec
  reported_at: {path: slsj, time_format: "%Y-%m-%d %H:%M:%S", timezone: Asia/Shanghai}
  description: {template: "{tsbt}：{tsnr}"}
  matter_code: {path: tslb, map: {食品安全: "04", 价格: "0601"}, unmapped: default}
  location.lat: zb.wd             # nested source fields with dots, list items with [0]
  reporter.phone: tsr.lxdh
  attributes.gdbh: gdbh           # attributes.<name>: anything kept for the department
constants:                        # fixed intake values (fields win when they give a value)
  division_code: "330110"
```

A spec: ``path`` or ``template`` (``{path}`` placeholders), ``required`` (missing is an
error, else the field is left out), ``default``, ``map`` (source value -> intake value) with
``unmapped: reject | keep | default``, ``time_format`` (strptime, ``epoch_s``, ``epoch_ms``;
ISO 8601 when absent), ``timezone`` (for times without an offset), ``split`` (a separator
that turns a string into a list, for ``attachments``). Errors name the source field.
"""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from connectors.errors import AdapterError
from engine.contracts import IntakeReport
from engine.reference.departments import DEPARTMENT_CODE
from engine.yamlfile import FileProblem, FileProblems, load_yaml, validate

_TOP = {"reported_at", "description", "matter_code", "grid_code", "division_code", "address",
        "channel_category", "attachments"}
_NESTED = {"location.lat", "location.lon", "reporter.name", "reporter.phone"}
_STRINGS = {"description", "matter_code", "grid_code", "division_code", "address",
            "channel_category", "reporter.name", "reporter.phone"}
_PATH_TOKEN = re.compile(r"[^.\[\]]+|\[\d+\]")
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(default=None, min_length=1)
    template: str | None = Field(default=None, min_length=1)
    required: bool = False
    default: Any = None
    map: dict[str, Any] | None = None
    unmapped: Literal["reject", "keep", "default"] = "reject"
    time_format: str | None = None
    timezone: str | None = None
    split: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        if (self.path is None) == (self.template is None):
            raise ValueError("give exactly one of 'path' or 'template'")
        return self

    @property
    def source(self) -> str:
        return self.path or self.template or ""


class MappingFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    department: str = Field(pattern=DEPARTMENT_CODE)
    description: str | None = None
    # The department system's own topic, as named on its cluster (never prefixed): the
    # default of ``connect kafka --source``, and what ``acl apply`` lets the bridge read.
    source_topic: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,249}$")
    channel_id: str | FieldSpec
    fields: dict[str, str | FieldSpec]
    constants: dict[str, Any] = Field(default_factory=dict)


class BridgeMapping:
    """A checked mapping file: every target is an intake field, every zone exists."""

    def __init__(self, parsed: MappingFile) -> None:
        self.name = parsed.name
        self.department = parsed.department
        self.source_topic = parsed.source_topic
        self.channel = f"dept:{parsed.department}"
        self.channel_id = _spec(parsed.channel_id)
        self.fields = {target: _spec(spec) for target, spec in parsed.fields.items()}
        self.constants = dict(parsed.constants)

    @classmethod
    def load(cls, path: Path) -> BridgeMapping:
        doc = load_yaml(path)
        parsed = validate(doc, MappingFile)
        problems: list[FileProblem] = []
        for section, targets in (("fields", parsed.fields), ("constants", parsed.constants)):
            for target in targets:
                if not _known_target(target):
                    problems.append(doc.problem((section, target), f"'{target}' is not an "
                                                "intake field; use one of " + ", ".join(
                                                    sorted(_TOP | _NESTED)) + " or attributes."
                                                "<name>"))
        for target in ("reported_at", "description"):
            if target not in parsed.fields and target not in parsed.constants:
                problems.append(doc.problem(("fields",), f"the intake field '{target}' is "
                                                         "required: map it under fields"))
        for target, raw in parsed.fields.items():
            spec = _spec(raw)
            if spec.timezone is not None:
                try:
                    _zone(spec.timezone)
                except ValueError as exc:
                    problems.append(doc.problem(("fields", target, "timezone"), str(exc)))
            if spec.unmapped != "reject" and spec.map is None:
                problems.append(doc.problem(("fields", target, "unmapped"),
                                            "'unmapped' needs a 'map'"))
        if problems:
            raise FileProblems(problems)
        return cls(parsed)

    def to_report(self, record: Any) -> IntakeReport:
        """One source record (parsed JSON) -> an intake report, or AdapterError(source field)."""
        if not isinstance(record, dict):
            raise AdapterError("(record)", "must be a JSON object")
        channel_id = _value(self.channel_id, record, "channel_id")
        if channel_id is None or isinstance(channel_id, dict | list | bool):
            raise AdapterError(self.channel_id.source, "the channel id is missing or not a "
                                                       "string or number")
        data: dict[str, Any] = {"channel": self.channel, "channel_id": str(channel_id)}
        # Errors name the source field an intake field comes from, even when it is absent.
        provenance = {target: spec.source for target, spec in self.fields.items()}
        for target, value in self.constants.items():
            _put(data, target, value)
        for target, spec in self.fields.items():
            value = _value(spec, record, target)
            if value is not None:
                _put(data, target, value)
        try:
            return IntakeReport.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            target = ".".join(str(p) for p in error["loc"]) or "(report)"
            source = provenance.get(target) or provenance.get(target.split(".")[0]) or target
            raise AdapterError(source, f"intake field '{target}': {error['msg']}") from None


def _spec(raw: str | FieldSpec) -> FieldSpec:
    return FieldSpec(path=raw) if isinstance(raw, str) else raw


def _known_target(target: str) -> bool:
    return target in _TOP or target in _NESTED or (
        target.startswith("attributes.") and len(target) > len("attributes."))


def _zone(name: str) -> tzinfo:
    match = _OFFSET.match(name)
    if match:
        sign = 1 if match.group(1) == "+" else -1
        return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{name}'; use an IANA name (Asia/Shanghai) or an "
                         "offset (+08:00)") from None


def resolve(record: Any, path: str) -> Any:
    """``a.b[0].c`` in a parsed JSON record; None when any step is missing."""
    current = record
    for token in _PATH_TOKEN.findall(path):
        if token.startswith("["):
            index = int(token[1:-1])
            if not isinstance(current, list) or index >= len(current):
                return None
            current = current[index]
        else:
            if not isinstance(current, dict) or token not in current:
                return None
            current = current[token]
    return current


def _fill(template: str, record: Any) -> str | None:
    parts: list[str] = []
    found = False
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        if name:
            value = resolve(record, name)
            if value not in (None, ""):
                found = True
                parts.append(str(value))
    return "".join(parts).strip() if found else None


def _value(spec: FieldSpec, record: Any, target: str) -> Any:
    value = _fill(spec.template, record) if spec.template else resolve(record, spec.path or "")
    if value is None or value == "":
        if spec.required:
            raise AdapterError(spec.source, "required but missing or empty")
        value = spec.default
    elif spec.map is not None:
        key = str(value).strip()
        if key in spec.map:
            value = spec.map[key]
        elif spec.unmapped == "default":
            value = spec.default
        elif spec.unmapped == "reject":
            raise AdapterError(spec.source, f"value '{key[:100]}' is not in the mapping's map "
                                            f"(known: {', '.join(list(spec.map)[:20])})")
    if value is None:
        return None
    if spec.time_format is not None or target == "reported_at":
        return _time(value, spec)
    if spec.split is not None and isinstance(value, str):
        return [part.strip() for part in value.split(spec.split) if part.strip()]
    if target in _STRINGS and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _time(value: Any, spec: FieldSpec) -> datetime:
    fmt = spec.time_format
    try:
        if fmt in ("epoch_s", "epoch_ms"):
            number = float(value)
            return datetime.fromtimestamp(number / 1000 if fmt == "epoch_ms" else number, UTC)
        text = str(value).strip()
        parsed = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)
    except (TypeError, ValueError, OverflowError, OSError):
        expected = fmt or "ISO 8601"
        raise AdapterError(spec.source, f"'{str(value)[:50]}' is not a time in the form "
                                        f"{expected}") from None
    if parsed.tzinfo is None:
        if spec.timezone is None:
            raise AdapterError(spec.source, f"'{str(value)[:50]}' has no UTC offset and the "
                                            "mapping gives no timezone")
        parsed = parsed.replace(tzinfo=_zone(spec.timezone))
    return parsed


def _put(data: dict[str, Any], target: str, value: Any) -> None:
    head, _, rest = target.partition(".")
    if not rest:
        data[head] = value
    else:
        data.setdefault(head, {})[rest] = value
