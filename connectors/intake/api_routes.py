"""The native JSON API and the channel endpoints of the hotline and the grid app.

``POST /api/v1/incidents`` takes intake reports as they are (docs/design.md "Intake contract"):
one object, or an array of up to 100. ``POST /api/v1/channels/hotline`` and
``.../gridapp`` take the channel's own payloads (one or an array) and map them with the
pure adapters. A batch is all or nothing at validation: one bad item refuses the batch with
its ``index`` and ``field``, before anything is published; at publishing, items already on
the broker stay there and a retry of the whole batch answers them as duplicates.

The key travels in ``X-API-Key`` (or ``Authorization: Bearer <key>``, or ``?api_key=``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from connectors.channels.fields import field_name
from connectors.channels.gridapp import from_gridapp
from connectors.channels.hotline import from_hotline
from connectors.errors import AdapterError
from connectors.intake.publish import Submitted
from connectors.intake.requests_view import incident_view
from connectors.intake.service import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ITEMS,
    Intake,
    RequestRefused,
    count,
    intake_of,
    read_body,
)
from engine.contracts import MAX_REPORT_BYTES, IntakeReport

API = "api"


def presented_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("X-API-Key") or request.query.get("api_key")


def items_of(body: bytes, entry: str) -> tuple[list[Any], bool]:
    """(items, was it a batch); 400 for bad JSON, 413 for too many or too large items."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise RequestRefused(400, "invalid", f"the body is not JSON: {exc}") from None
    batch = isinstance(data, list)
    items = data if batch else [data]
    if batch and not items:
        raise RequestRefused(400, "invalid", "an empty batch")
    if len(items) > MAX_BATCH_ITEMS:
        count(entry, "too_large")
        raise RequestRefused(413, None, f"a batch of {len(items)} reports; the limit is "
                                 f"{MAX_BATCH_ITEMS}")
    for index, item in enumerate(items):
        size = len(json.dumps(item, ensure_ascii=False).encode("utf-8"))
        if size > MAX_REPORT_BYTES:
            count(entry, "too_large")
            raise RequestRefused(413, None,
                                 f"report is {size} bytes; the limit is {MAX_REPORT_BYTES}",
                                 index=index if batch else None)
    return items, batch


def answer(results: list[Submitted], batch: bool) -> web.Response:
    rows = [{"incident_id": r.incident_id, "duplicate": r.duplicate,
             "accepted_at": r.accepted_at.isoformat()} for r in results]
    return web.json_response(rows if batch else rows[0], status=202)


async def take(request: web.Request, entry: str, channel: str | None,
               convert: Callable[[Any], IntakeReport]) -> web.Response:
    started = time.monotonic()
    intake: Intake = intake_of(request)
    client = intake.authorize(presented_key(request), channel)
    items, batch = items_of(await read_body(request, MAX_BATCH_BYTES, entry), entry)
    reports: list[IntakeReport] = []
    for index, item in enumerate(items):
        where = index if batch else None
        try:
            report = convert(item)
        except AdapterError as exc:
            raise RequestRefused(400, "invalid", exc.reason, field=exc.field, index=where) from None
        except ValidationError as exc:
            error = exc.errors()[0]
            raise RequestRefused(400, "invalid", str(error["msg"]), field=field_name(error["loc"]),
                                 index=where) from None
        if not client.may(report.channel):
            raise RequestRefused(403, "unauthorized", f"this api_key may not submit on channel "
                                               f"'{report.channel}'", field="channel",
                          index=where)
        reports.append(report)
    return answer(await intake.submit(entry, client, reports, started), batch)


async def post_incidents(request: web.Request) -> web.Response:
    def convert(item: Any) -> IntakeReport:
        if not isinstance(item, dict):
            raise AdapterError("report", "a report is a JSON object")
        return IntakeReport.model_validate(item)

    return await take(request, API, None, convert)


async def post_channel(request: web.Request) -> web.Response:
    intake = intake_of(request)
    entry = request.match_info["entry"]
    if entry == "hotline":
        categories = intake.hotline_categories
        return await take(request, entry, entry, lambda item: from_hotline(item, categories))
    return await take(request, entry, entry, from_gridapp)


async def get_incident(request: web.Request) -> web.Response:
    intake = intake_of(request)
    incident = request.match_info["id"]
    fields = await intake.store.get(incident)
    if fields is None:
        raise RequestRefused(404, None, f"no incident {incident}")
    return web.json_response(incident_view(incident, fields, intake.catalog),
                             dumps=lambda d: json.dumps(d, ensure_ascii=False))


def register(router: web.UrlDispatcher) -> None:
    router.add_post("/api/v1/incidents", post_incidents)
    router.add_get("/api/v1/incidents/{id}", get_incident)
    router.add_post("/api/v1/channels/{entry:(hotline|gridapp)}", post_channel)
