"""The console's actions: a form in, records built by ``engine.console.actions``, published.

Each handler answers only after the broker acknowledged every record (``AckedProducer``), so
"已派遣" on the page means it is on Kafka; the route worker then does the rest, and the page
shows the result when the feed reads it back. A form that cannot become a record comes back
with the field named; Kafka being down is a 503 with nothing half-sent for a single record.
A manual dispatch sends the decision first and the ``Classified`` second: if the second
fails, the audit trail has the decision and the item stays in the queue until a case exists.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote

from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy
from pydantic import BaseModel

from connectors.console.context import Console, console_of, operator_of
from engine.cases.lifecycle import partition_key
from engine.cases.records import SCHEMA_STATUS, StatusAction
from engine.console.actions import (
    DispatchForm,
    FormError,
    manual_dispatch,
    reject_triage,
    status_update,
)
from engine.console.view import TriageItem
from engine.contracts import SCHEMA_CLASSIFIED, SCHEMA_TRIAGE_DECISION, to_json
from engine.runtime import metrics
from engine.runtime.kafka import KafkaUnavailable

CST = timezone(timedelta(hours=8))
ACTIONS: dict[str, StatusAction] = {
    "accept": "accepted", "return": "returned", "progress": "progress", "pause": "paused",
    "resume": "resumed", "resolve": "resolved", "verify": "verified",
    "supervise": "supervised", "redispatch": "redispatched", "extend": "extension_requested",
    "approve-extension": "extension_approved", "refuse-extension": "extension_refused",
    "unreachable": "callback_unreachable", "backlog": "backlog_requested",
    "approve-backlog": "backlog_approved", "refuse-backlog": "backlog_refused",
    "release-backlog": "backlog_released", "stage": "stage_completed"}


def now() -> datetime:
    return datetime.now(UTC)


async def _send(console: Console, topic: str, key: str, record: BaseModel,
                schema: str, as_department: str | None = None) -> None:
    """Send as the console, or as ``as_department`` (its own principal on a secure broker)."""
    if console.senders is None:
        raise KafkaUnavailable("this console was started read-only")
    producer = console.senders.own if as_department is None else \
        console.senders.for_department(as_department)
    await asyncio.get_running_loop().run_in_executor(
        None, lambda: producer.send(console.settings.topic(topic), key, to_json(record),
                                    headers=[("schema", schema.encode())]))


def _text(form: MultiDictProxy[str | bytes | bytearray | FileField], name: str) -> str:
    return str(form.get(name, "")).strip()


def _back(url: str, **params: str) -> web.HTTPFound:
    query = "&".join(f"{k}={quote(v)}" for k, v in params.items() if v)
    return web.HTTPFound(f"{url}?{query}" if query else url)


def _triaged(request: web.Request) -> tuple[str, TriageItem]:
    console = console_of(request)
    incident = request.match_info["incident_id"]
    with console.feed.lock:
        item = console.feed.view.triage.get(incident)
    if item is None:
        raise web.HTTPNotFound(text=f"没有这条待分拨的上报：{incident}")
    return incident, item


async def dispatch(request: web.Request) -> web.Response:
    console, operator = console_of(request), operator_of(request)
    incident, item = _triaged(request)
    form = await request.post()
    assist = [str(code).strip() for code in form.getall("assist", []) if str(code).strip()]
    override = bool(_text(form, "override"))  # else the routing rules choose the departments
    try:
        records = manual_dispatch(console.ruleset, item.triage, DispatchForm(
            matter_code=_text(form, "matter_code"), grid_code=_text(form, "grid_code") or None,
            division_code=_text(form, "division_code") or None,
            lead=(_text(form, "lead") or None) if override else None,
            assist=assist if override else None,
            override_reason=_text(form, "override_reason"),
            priority=_text(form, "priority") or None), operator, now())
    except FormError as exc:
        metrics.CONSOLE_ACTIONS.labels("dispatch", "refused").inc()
        if exc.field == "operator":
            raise web.HTTPForbidden(text=exc.message) from None
        raise _back(f"/triage/{incident}", error=f"{exc.field}: {exc.message}",
                    matter=_text(form, "matter_code")) from None
    try:
        await _send(console, "triage.decisions", incident, records.decision,
                    SCHEMA_TRIAGE_DECISION)
        await _send(console, "incidents.classified",
                    partition_key(records.classified.division_chain), records.classified,
                    SCHEMA_CLASSIFIED)
    except KafkaUnavailable as exc:
        metrics.CONSOLE_ACTIONS.labels("dispatch", "failed").inc()
        raise web.HTTPServiceUnavailable(text=f"Kafka 未确认，请稍后重试：{exc}") from None
    metrics.CONSOLE_ACTIONS.labels("dispatch", "sent").inc()
    raise _back("/triage", message=f"已派遣：{records.classified.matter_name}")


async def reject(request: web.Request) -> web.Response:
    console, operator = console_of(request), operator_of(request)
    incident, item = _triaged(request)
    form = await request.post()
    try:
        decision = reject_triage(item.triage, _text(form, "reason"), operator, now())
    except FormError as exc:
        metrics.CONSOLE_ACTIONS.labels("reject", "refused").inc()
        if exc.field == "operator":
            raise web.HTTPForbidden(text=exc.message) from None
        raise _back(f"/triage/{incident}", error=f"{exc.field}: {exc.message}") from None
    try:
        await _send(console, "triage.decisions", incident, decision, SCHEMA_TRIAGE_DECISION)
    except KafkaUnavailable as exc:
        metrics.CONSOLE_ACTIONS.labels("reject", "failed").inc()
        raise web.HTTPServiceUnavailable(text=f"Kafka 未确认，请稍后重试：{exc}") from None
    metrics.CONSOLE_ACTIONS.labels("reject", "sent").inc()
    raise _back("/triage", message="已作不予受理处理")


def _when(text: str, field: str) -> datetime | None:
    """``datetime-local`` fields carry no zone: the console's users are in China."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FormError(field, f"not a time: {text}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=CST)


async def case_action(request: web.Request) -> web.Response:
    console, operator = console_of(request), operator_of(request)
    case_id = request.match_info["case_id"]
    form = await request.post()
    verb = _text(form, "action")
    action = ACTIONS.get(verb)
    with console.feed.lock:
        seen = console.feed.view.visibility(operator, case_id)
        case = console.feed.view.cases.get(case_id)
    if seen == "missing" or case is None:
        raise web.HTTPNotFound(text=f"没有案件 {case_id}")
    if seen == "forbidden":
        raise web.HTTPForbidden(text="您无权处理此案件")
    if action is None:
        raise web.HTTPBadRequest(text=f"未知操作：{verb}")
    satisfied = {"yes": True, "no": False}.get(_text(form, "satisfied"))
    assist = [str(a).strip() for a in form.getall("assist", []) if str(a).strip()]
    try:
        update = status_update(case, operator, action, now(), note=_text(form, "note"),
                               satisfied=satisfied, lead=_text(form, "lead") or None,
                               assist=assist or None,
                               respond_by=_when(_text(form, "respond_by"), "respond_by"),
                               extend_by=_text(form, "extend_by") or None,
                               review_at=_when(_text(form, "review_at"), "review_at"),
                               stage=_text(form, "stage") or None)
    except FormError as exc:
        metrics.CONSOLE_ACTIONS.labels(action, "refused").inc()
        if exc.field in ("action", "operator"):
            raise web.HTTPForbidden(text=exc.message) from None
        raise _back(f"/cases/{case_id}", error=f"{exc.field}: {exc.message}") from None
    try:
        await _send(console, "assignments.status", case.partition_key, update, SCHEMA_STATUS,
                    update.department if operator.role == "department" else None)
    except KafkaUnavailable as exc:
        metrics.CONSOLE_ACTIONS.labels(action, "failed").inc()
        raise web.HTTPServiceUnavailable(text=f"Kafka 未确认，请稍后重试：{exc}") from None
    metrics.CONSOLE_ACTIONS.labels(action, "sent").inc()
    raise _back(f"/cases/{case_id}", message="已提交，等待路由处理")


def register(router: web.UrlDispatcher) -> None:
    router.add_post("/triage/{incident_id}/dispatch", dispatch)
    router.add_post("/triage/{incident_id}/reject", reject)
    router.add_post("/cases/{case_id}/action", case_action)
