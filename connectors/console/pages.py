"""The console's pages: each reads the view under the feed's lock and renders a template.

Scope is applied here by the view's queries (``engine.console.view``) and the operator's
rules (``engine.console.access``): a department user asking for another department's case
gets 403, not the page.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from connectors.console.context import console_of, operator_of, render
from connectors.console.feed import to_loop
from engine.console.actions import default_route
from engine.console.view import CaseFilter, Change
from engine.contracts import Location
from engine.rules import RuleSet
from engine.runtime import metrics

# The map shows open work, and what was closed in the last day (so a centre sees the day's
# results where they happened) in the "done" colour.
RECENTLY_CLOSED = timedelta(days=1)


def now() -> datetime:
    return datetime.now(UTC)


async def home(request: web.Request) -> web.Response:
    raise web.HTTPFound("/triage" if operator_of(request).is_centre else "/cases")


def _queue(request: web.Request) -> dict[str, Any]:
    console, operator = console_of(request), operator_of(request)
    with console.feed.lock:
        items = console.feed.view.triage_queue(operator)
        waiting = [i for i in console.feed.view.triage.values() if i.waiting]
    for urgent in (True, False):
        metrics.CONSOLE_TRIAGE_WAITING.labels(str(urgent).lower()).set(
            sum(1 for i in waiting if i.triage.urgent is urgent))
    return {"items": items, "now": now()}


async def triage(request: web.Request) -> web.Response:
    return render(request, "triage.html", **_queue(request))


async def triage_rows(request: web.Request) -> web.Response:
    return render(request, "triage_rows.html", **_queue(request))


async def triage_item(request: web.Request) -> web.Response:
    console, operator = console_of(request), operator_of(request)
    incident = request.match_info["incident_id"]
    with console.feed.lock:
        item = console.feed.view.triage.get(incident)
    if item is None:
        raise web.HTTPNotFound(text=f"没有这条待分拨的上报：{incident}")
    if not operator.sees_triage(item.triage):
        raise web.HTTPForbidden(text="这条上报不在您的辖区")
    suggestion = item.triage.suggestions[0].matter_code if item.triage.suggestions else None
    chosen = request.query.get("matter") or request.query.get("matter_code") or suggestion
    route = default_route(console.ruleset, item.triage, chosen, operator, now()) \
        if chosen else None
    reporter = operator.reporter(item.triage.report.reporter, None)
    return render(request, "triage_item.html", item=item, chosen=chosen, route=route,
                  reporter=reporter,
                  departments=sorted(console.ruleset.departments, key=lambda d: d.code))


def _filters(request: web.Request) -> CaseFilter:
    query = request.query
    return CaseFilter(**{name: query.get(name) or None
                         for name in ("township", "department", "platform", "state", "sla")})


async def cases(request: web.Request) -> web.Response:
    console, operator = console_of(request), operator_of(request)
    where = _filters(request)
    with console.feed.lock:
        rows = console.feed.view.case_rows(operator, now(), where)
    return render(request, "cases.html", rows=rows, where=where, now=now(),
                  partial="HX-Request" in request.headers)


async def case_page(request: web.Request) -> web.Response:
    console, operator = console_of(request), operator_of(request)
    case_id = request.match_info["case_id"]
    view = console.feed.view
    with console.feed.lock:
        seen = view.visibility(operator, case_id)
        case = view.cases.get(case_id)
        fired = list(view.escalations.get(case_id, []))
    if seen == "missing" or case is None:
        raise web.HTTPNotFound(text=f"没有案件 {case_id}")
    if seen == "forbidden":
        raise web.HTTPForbidden(text="您无权查看此案件")
    matter = console.ruleset.matters.by_code.get(case.matter_code)
    reporter = operator.reporter(case.origin.report.reporter, case,
                                 contact_reporter=matter is not None and matter.contact_reporter)
    return render(request, "case.html", case=case, escalations=fired, reporter=reporter,
                  now=now(), departments=sorted(console.ruleset.departments, key=lambda d: d.code))


async def supervision(request: web.Request) -> web.Response:
    console, operator = console_of(request), operator_of(request)
    with console.feed.lock:
        supervised = console.feed.view.supervised(operator)
    return render(request, "supervision.html", cases=supervised, now=now())


async def numbers(request: web.Request) -> web.Response:
    console, operator = console_of(request), operator_of(request)
    with console.feed.lock:
        day = console.feed.view.numbers(operator, now())
    return render(request, "numbers.html", day=day)


async def map_page(request: web.Request) -> web.Response:
    return render(request, "map.html")


async def grids_geojson(request: web.Request) -> web.Response:
    """The grid polygons of the rules (the project's own GeoJSON): the map needs no tiles."""
    console = console_of(request)
    features = [{"type": "Feature", "properties": {"code": g.code, "name": g.name},
                 "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in g.ring]]}}
                for g in console.ruleset.jurisdiction.grids.values()]
    return _geojson(features)


async def cases_geojson(request: web.Request) -> web.Response:
    console, operator = console_of(request), operator_of(request)
    since = now() - RECENTLY_CLOSED
    with console.feed.lock:
        rows = [row for row in console.feed.view.case_rows(operator, now(), open_only=False)
                if row.case.state != "closed" or row.case.updated_at >= since]
    features = []
    for row in rows:
        case = row.case
        point = _point(console.ruleset, case.location, case.grid_code, case.division_chain)
        if point is None:
            continue
        features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": point},
                         "properties": {"case_id": case.case_id, "sla": row.sla,
                                        "state": case.state,
                                        "matter": case.origin.matter_name}})
    return _geojson(features)


def _point(ruleset: RuleSet, location: Location | None, grid_code: str | None,
           chain: list[str]) -> list[float] | None:
    """Where to draw a case: its coordinates, else its grid's middle, else the middle of the
    grids of the smallest division it is placed in (a hotline address names a township)."""
    if location is not None:
        return [location.lon, location.lat]
    grids = ruleset.jurisdiction.grids
    if grid_code in grids:
        rings = [grids[grid_code].ring]
    else:
        prefix = chain[-1].rstrip("0") if chain else ""
        rings = [g.ring for g in grids.values() if prefix and g.community.startswith(prefix)]
    points = [p for ring in rings for p in ring]
    if not points:
        return None
    return [sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)]


def _geojson(features: list[dict[str, Any]]) -> web.Response:
    return web.Response(text=json.dumps({"type": "FeatureCollection", "features": features},
                                        ensure_ascii=False),
                        content_type="application/geo+json", charset="utf-8")


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one named event per change the page may care about; the page
    re-fetches its own part (htmx ``hx-trigger="sse:…"``), so no data is pushed twice.

    ``since`` is the view's version the page was rendered at: what changed between the
    render and this connection (a form's own result, often) is announced at once, else a
    page that loaded a moment before the route worker answered would never hear of it."""
    console = console_of(request)
    try:
        since = int(request.query.get("since", "-1"))
    except ValueError:
        since = -1
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=1000)
    undo = console.feed.listen(to_loop(asyncio.get_running_loop(), queue))
    try:
        await response.write(b": connected\n\n")
        if 0 <= since < console.feed.view.version:
            for name in ("triage", "decision", "case", "escalation", "count"):
                await response.write(f"event: {name}\ndata: *\n\n".encode())
        while True:
            try:
                change = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            names = [change.kind, *(["urgent"] if change.urgent else []),
                     *(["breach"] if change.breach else [])]
            for name in names:
                await response.write(f"event: {name}\ndata: {change.key}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        undo()
    return response


PAGES = {"/": home, "/triage": triage, "/triage/rows": triage_rows,
         "/triage/{incident_id}": triage_item, "/cases": cases, "/cases/{case_id}": case_page,
         "/supervision": supervision, "/numbers": numbers, "/map": map_page,
         "/map/grids.geojson": grids_geojson, "/map/cases.geojson": cases_geojson,
         "/events": events}


def register(router: web.UrlDispatcher) -> None:
    for path, handler in PAGES.items():
        router.add_get(path, handler)
