"""12345 hotline work orders (工单) → intake reports.

The provincial 12345 system hands over work orders with Chinese field names. The mapping
(also in the README's intake section):

=============  ======================================  ==========================================
field          intake contract                          notes
=============  ======================================  ==========================================
工单编号        ``channel_id`` (required)               with channel ``hotline``: idempotency key
诉求内容        ``description`` (required)
诉求分类        ``channel_category``                    separators normalised to ``/``; trimmed
                                                        to the longest path the hotline map knows
发生地址        ``address``
来电时间        ``reported_at`` (required)              ``2026-11-24 09:30:00`` = China time; ISO
来电人          ``reporter.name``
联系电话        ``reporter.phone``
经度 / 纬度      ``location.lon`` / ``location.lat``      both or neither; WGS-84
紧急程度        ``attributes.urgency``                  as written (一般, 紧急, 特急)
=============  ======================================  ==========================================

Other fields of the work order (seat number, handling deadline, ...) are ignored: the
hotline system stays the record of the call; we carry what dispatch needs.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from connectors.channels.fields import build_report, channel_time, number, text
from connectors.errors import AdapterError
from engine.contracts import IntakeReport

CHANNEL = "hotline"
# Contract field → work-order field, so contract errors name the field the hotline sent.
NAMES = {"channel_id": "工单编号", "description": "诉求内容", "channel_category": "诉求分类",
         "address": "发生地址", "reported_at": "来电时间", "reporter.name": "来电人",
         "reporter.phone": "联系电话", "location.lat": "纬度", "location.lon": "经度",
         "location": "经度", "attributes.urgency": "紧急程度"}
_SEPARATORS = re.compile(r"\s*[/／\\>＞→\-－—]+\s*")


def category_path(value: str, known: Collection[str] | None = None) -> str:
    """``城市管理－市政设施＞井盖`` → ``城市管理/市政设施/井盖``; with ``known`` (the hotline
    map's categories) a deeper path than the map has is cut to its longest known prefix, so
    a new third-level category still classifies by its second level."""
    path = "/".join(part for part in _SEPARATORS.split(value.strip()) if part)
    if not known or path in known:
        return path
    parts = path.split("/")
    for end in range(len(parts) - 1, 0, -1):
        prefix = "/".join(parts[:end])
        if prefix in known:
            return prefix
    return path


def from_hotline(payload: Mapping[str, Any],
                 categories: Collection[str] | None = None) -> IntakeReport:
    """One work order → an intake report, or ``AdapterError`` naming the work-order field."""
    if not isinstance(payload, Mapping):
        raise AdapterError("工单", "a work order is a JSON object")
    data: dict[str, Any] = {
        "channel": CHANNEL,
        "channel_id": text(payload, "工单编号", required=True),
        "description": text(payload, "诉求内容", required=True),
        "reported_at": channel_time(payload.get("来电时间"), "来电时间"),
    }
    attributes: dict[str, Any] = {}
    category = text(payload, "诉求分类")
    if category:
        data["channel_category"] = category_path(category, categories)
        if data["channel_category"] != category:
            attributes["hotline_category"] = category
    address = text(payload, "发生地址")
    if address:
        data["address"] = address
    name, phone = text(payload, "来电人"), text(payload, "联系电话")
    if name or phone:
        data["reporter"] = {"name": name, "phone": phone}
    lon, lat = payload.get("经度"), payload.get("纬度")
    if (lon in (None, "")) != (lat in (None, "")):
        raise AdapterError("经度" if lon in (None, "") else "纬度",
                           "经度 and 纬度 come together or not at all")
    if lon not in (None, ""):
        data["location"] = {"lat": number(lat, "纬度"), "lon": number(lon, "经度")}
    urgency = text(payload, "紧急程度")
    if urgency:
        attributes["urgency"] = urgency
    data["attributes"] = attributes
    return build_report(data, NAMES)
