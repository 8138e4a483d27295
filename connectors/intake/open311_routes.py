"""Open311 GeoReport v2 endpoints under ``/open311/v2/`` and discovery under ``/open311/``.

Every resource answers in the format its extension names (``.xml``, the spec's required
format, or ``.json``). Service requests are created in realtime: the ``service_request_id``
(our incident id) is returned at once, so no token is needed; ``GET tokens/{token}`` still
answers, with the request id for a token that is one.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from connectors.intake import render
from connectors.intake.open311 import (
    MAX_REQUESTS,
    Open311Error,
    RequestQuery,
    parse_query,
    report_from_form,
)
from connectors.intake.requests_view import request_view
from connectors.intake.service import MAX_FORM_BYTES, RequestRefused, count, intake_of, read_body
from engine.contracts import MAX_REPORT_BYTES, to_json

FMT = "{fmt:(json|xml)}"
ENTRY = "open311"
STARTED = datetime.now(UTC).replace(microsecond=0)


def respond(request: web.Request, root: str, document: Any, status: int = 200) -> web.Response:
    body, content_type = render.render(request.match_info["fmt"], root, document)
    return web.Response(status=status, body=body, content_type=content_type.split(";")[0],
                        charset="utf-8")


def refuse(error: Open311Error, result: str | None = None) -> RequestRefused:
    return RequestRefused(error.code, result, error.description)


async def discovery(request: web.Request) -> web.Response:
    from connectors.intake.open311 import discovery as document

    base = f"{request.scheme}://{request.host}"
    return respond(request, "discovery", document(base, STARTED))


async def services(request: web.Request) -> web.Response:
    return respond(request, "services", intake_of(request).catalog.service_list())


async def service_definition(request: web.Request) -> web.Response:
    try:
        definition = intake_of(request).catalog.definition(request.match_info["code"])
    except Open311Error as exc:
        raise refuse(exc) from None
    return respond(request, "service_definition", definition)


async def create_request(request: web.Request) -> web.Response:
    started = time.monotonic()
    intake = intake_of(request)
    body = await read_body(request, MAX_FORM_BYTES, ENTRY)
    if request.content_type not in ("application/x-www-form-urlencoded",
                                    "application/octet-stream"):
        raise RequestRefused(400, "invalid",
                             "POST requests takes application/x-www-form-urlencoded "
                             f"(GeoReport v2), not {request.content_type}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestRefused(400, "invalid", "the form is not UTF-8") from None
    pairs = parse_qsl(request.query_string, keep_blank_values=True) + \
        parse_qsl(text, keep_blank_values=True)
    form = dict(reversed(pairs))
    client = intake.authorize(form.get("api_key"), ENTRY)
    try:
        report, service = report_from_form(pairs, intake.catalog, datetime.now(UTC),
                                           client=client.name,
                                           idempotency_key=request.headers.get("Idempotency-Key"))
    except Open311Error as exc:
        raise refuse(exc, "invalid") from None
    size = len(to_json(report))
    if size > MAX_REPORT_BYTES:
        count(ENTRY, "too_large")
        raise RequestRefused(413, None, f"the request makes a report of {size} bytes; the limit is "
                                 f"{MAX_REPORT_BYTES}")
    [submitted] = await intake.submit(ENTRY, client, [report], started)
    answer = [{"service_request_id": submitted.incident_id, "service_notice": service.notice,
               "account_id": form.get("account_id") or None}]
    return respond(request, "service_requests", answer, status=201)


def _token(request: web.Request) -> str:
    return request.match_info["token"]


async def token(request: web.Request) -> web.Response:
    incident = _token(request)
    if await intake_of(request).store.get(incident) is None:
        raise RequestRefused(404, None, f"token '{incident}' not found")
    return respond(request, "service_requests",
                   [{"service_request_id": incident, "token": incident}])


def _matches(query: RequestQuery, view: dict[str, Any]) -> bool:
    return ((not query.codes or view["service_code"] in query.codes)
            and (not query.statuses or view["status"] in query.statuses))


async def list_requests(request: web.Request) -> web.Response:
    intake = intake_of(request)
    try:
        query = parse_query(dict(request.query), datetime.now(UTC))
    except Open311Error as exc:
        raise refuse(exc) from None
    store = intake.store
    if query.ids:
        rows = await store.many(list(query.ids))
        views = [request_view(i, f, intake.catalog) for i, f in rows]
    else:
        assert query.start is not None and query.end is not None
        views = []

        def keep(incident: str, fields: dict[str, str]) -> bool:
            # The public list shows what was reported through Open311 only: a 12345 call or
            # a grid worker's report may carry personal details in its text. Any request
            # is still readable by its id, which only its reporter was given.
            if fields.get("channel") != "open311":
                return False
            view = request_view(incident, fields, intake.catalog)
            if _matches(query, view):
                views.append(view)
                return True
            return False

        await store.between(query.start.timestamp(), query.end.timestamp(), keep, MAX_REQUESTS)
        views = views[:MAX_REQUESTS]
    return respond(request, "service_requests", views)


async def get_request(request: web.Request) -> web.Response:
    intake = intake_of(request)
    incident = request.match_info["id"]
    fields = await intake.store.get(incident)
    if fields is None:
        raise RequestRefused(404, None, f"service_request_id '{incident}' not found")
    return respond(request, "service_requests", [request_view(incident, fields, intake.catalog)])


def register(router: web.UrlDispatcher) -> None:
    router.add_get(f"/open311/discovery.{FMT}", discovery)
    base = "/open311/v2"
    router.add_get(f"{base}/services.{FMT}", services)
    router.add_get(f"{base}/services/{{code:[^/.]+}}.{FMT}", service_definition)
    router.add_post(f"{base}/requests.{FMT}", create_request)
    router.add_get(f"{base}/requests.{FMT}", list_requests)
    router.add_get(f"{base}/requests/{{id:[^/.]+}}.{FMT}", get_request)
    router.add_get(f"{base}/tokens/{{token:[^/.]+}}.{FMT}", token)
