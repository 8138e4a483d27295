"""Grid workers' app reports (网格员上报) → intake reports.

The app is ours, so its payload is strict like the intake contract: unknown fields are
refused by name (an app release that sends something new is caught in testing, not
silently dropped). A grid worker always knows the grid they walk, so ``grid_code`` is
required; the worker's id goes to ``attributes["grid_worker_id"]``, the key the assessment
report (网格员考核) counts by.

=================  ===============================  =========================================
field              intake contract                   notes
=================  ===============================  =========================================
``report_id``      ``channel_id`` (required)         the app's own id; retries reuse it
``worker_id``      ``attributes.grid_worker_id``     required
``grid_code``      ``grid_code`` (required)          15 digits (一格一码)
``reported_at``    ``reported_at`` (required)        ISO 8601; no offset means China time
``description``    ``description`` (required)
``matter_code``    ``matter_code``                   optional: the worker's pick (一事一码)
``category``       ``channel_category``              optional: the app's own category list
``location``       ``location``                      optional ``{lat, lon}``, WGS-84
``address``        ``address``                       optional
``photos``         ``attachments``                   http(s) URLs of uploaded photos, ≤ 20
``worker_name``    ``reporter.name``                 optional
``worker_phone``   ``reporter.phone``                optional
=================  ===============================  =========================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.channels.fields import build_report, channel_time, number, text
from connectors.errors import AdapterError
from engine.contracts import IntakeReport

CHANNEL = "gridapp"
FIELDS = ("report_id", "worker_id", "grid_code", "reported_at", "description", "matter_code",
          "category", "location", "address", "photos", "worker_name", "worker_phone")
NAMES = {"channel_id": "report_id", "attachments": "photos", "channel_category": "category",
         "attributes.grid_worker_id": "worker_id", "reporter.name": "worker_name",
         "reporter.phone": "worker_phone"}


def from_gridapp(payload: Mapping[str, Any]) -> IntakeReport:
    """One app report → an intake report, or ``AdapterError`` naming the app's field."""
    if not isinstance(payload, Mapping):
        raise AdapterError("report", "a grid app report is a JSON object")
    unknown = sorted(set(payload) - set(FIELDS))
    if unknown:
        raise AdapterError(unknown[0], f"unknown field; the grid app sends {', '.join(FIELDS)}")
    data: dict[str, Any] = {
        "channel": CHANNEL,
        "channel_id": text(payload, "report_id", required=True),
        "grid_code": text(payload, "grid_code", required=True),
        "reported_at": channel_time(payload.get("reported_at"), "reported_at"),
        "description": text(payload, "description", required=True),
        "attributes": {"grid_worker_id": text(payload, "worker_id", required=True)},
    }
    for field, target in (("matter_code", "matter_code"), ("category", "channel_category"),
                          ("address", "address")):
        value = text(payload, field)
        if value:
            data[target] = value
    location = payload.get("location")
    if location is not None:
        if not isinstance(location, Mapping) or set(location) != {"lat", "lon"}:
            raise AdapterError("location", "must be {\"lat\": .., \"lon\": ..} (WGS-84)")
        data["location"] = {"lat": number(location["lat"], "location.lat"),
                            "lon": number(location["lon"], "location.lon")}
    photos = payload.get("photos")
    if photos is not None:
        if not isinstance(photos, list):
            raise AdapterError("photos", "must be a list of http(s) URLs")
        for i, url in enumerate(photos):
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise AdapterError(f"photos[{i}]", "must be an http(s) URL of an uploaded photo")
        data["attachments"] = photos
    name, phone = text(payload, "worker_name"), text(payload, "worker_phone")
    if name or phone:
        data["reporter"] = {"name": name, "phone": phone}
    return build_report(data, NAMES)
