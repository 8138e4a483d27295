"""Helpers every adapter needs: channel times, coordinates, and contract errors by field.

Channels write times their own way (``2026-11-24 09:30:00`` in the hotline's local time,
ISO 8601 elsewhere); the intake contract wants an offset on every time, so a time without
one is read as China Standard Time (Asia/Shanghai, +08:00), which is what every channel we
serve means by it. Contract violations are reported in the channel's own field names, so an
integrator can find the field in their payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from connectors.errors import AdapterError
from engine.contracts import IntakeReport

SHANGHAI = ZoneInfo("Asia/Shanghai")
_LOCAL_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M")


def channel_time(value: Any, field: str) -> datetime:
    """ISO 8601 (offset kept; none means +08:00) or ``YYYY-MM-DD HH:MM[:SS]`` local time."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=SHANGHAI)
    if not isinstance(value, str) or not value.strip():
        raise AdapterError(field, "a time is required, e.g. '2026-11-24 09:30:00' or "
                                  "'2026-11-24T09:30:00+08:00'")
    text = value.strip()
    for form in _LOCAL_FORMATS:
        try:
            return datetime.strptime(text, form).replace(tzinfo=SHANGHAI)
        except ValueError:
            pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AdapterError(field, f"'{text[:40]}' is not a time; use '2026-11-24 09:30:00' "
                                  "(China time) or ISO 8601 with an offset") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=SHANGHAI)


def number(value: Any, field: str) -> float:
    """A coordinate as a JSON number or a numeric string (many systems send strings)."""
    if isinstance(value, bool):
        raise AdapterError(field, "must be a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise AdapterError(field, f"must be a number, got {str(value)[:40]!r}") from None


def text(payload: Mapping[str, Any], field: str, *, required: bool = False) -> str | None:
    """A string field; numbers are accepted as text (ids often arrive as numbers)."""
    value = payload.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise AdapterError(field, "is required")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise AdapterError(field, "must be text")
    return str(value).strip()


def build_report(data: dict[str, Any], names: Mapping[str, str]) -> IntakeReport:
    """Validate against the intake contract; an error names the channel's field (``names``
    maps a contract field to it), else the contract's own dotted location."""
    try:
        return IntakeReport.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise AdapterError(field_name(error["loc"], names), str(error["msg"])) from None


def field_name(loc: tuple[int | str, ...], names: Mapping[str, str] | None = None) -> str:
    """A pydantic error location as the sender wrote it: ``photos[2]``, ``location.lat``."""
    names = names or {}
    dotted = ".".join(str(part) for part in loc)
    if dotted in names or not loc:
        return names.get(dotted, "report")
    head, rest = str(loc[0]), loc[1:]
    out = names.get(head, head)
    for part in rest:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out or '""'
