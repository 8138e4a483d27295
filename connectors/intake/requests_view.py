"""The request read model, pure: records of the flow → what a reporter sees of their report.

Sources (any order, any number of times): the intake's own submissions and
``incidents.reported`` (what was reported), ``incidents.triage`` and ``incidents.rejected``
(the rules stage's other answers) and the compacted ``cases`` topic (dispatch and the
workflow after it). Each becomes a ``Projection`` onto one hash per incident:

* ``report`` fields describe the report and never change: they are written only where
  absent, so whichever source comes first fills them.
* ``status`` fields are replaced as a whole, guarded by ``rank`` (stage, then the record's
  own time): a replayed or late older record never overwrites a newer state, so several
  intake instances may feed the same Redis, and a restart may replay, without harm.

A case record projects onto every incident it holds: the first is the case's own request;
the others are merged duplicates, reported ``closed`` with notes naming the case they joined
(docs/design.md "Intake contract"). ``expected_datetime`` is the case's
``sla.resolve_by`` when the record carries one (read defensively: older records have no
``sla``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from connectors.channels.fields import SHANGHAI
from connectors.intake.open311 import Catalog
from engine import privacy
from engine.contracts import IntakeReport

STATUS_FIELDS = ("state", "case_id", "lead", "matter_code", "note", "updated_at", "expected_at")
OPEN = {"received", "triage", "dispatched", "accepted", "resolved", "reopened"}


@dataclass(frozen=True)
class Projection:
    incident_id: str
    report: dict[str, str]
    status: dict[str, str]
    rank: str
    requested_at: float | None  # unix time of reported_at, for the time index; None: unknown


def _utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=SHANGHAI)).astimezone(UTC)


def _rank(stage: int, at: datetime | None) -> str:
    """Sortable as a string: stage first, then the time (fixed width, UTC)."""
    stamp = at.strftime("%Y%m%dT%H%M%S.%f") if at else "00000000T000000.000000"
    return f"{stage}|{stamp}"


def _status(state: str, at: datetime | None, **fields: str | None) -> dict[str, str]:
    status = {name: "" for name in STATUS_FIELDS}
    status.update({k: v for k, v in fields.items() if v is not None})
    status["state"] = state
    status["updated_at"] = at.isoformat() if at else ""
    return status


def report_fields(report: IntakeReport) -> tuple[dict[str, str], float]:
    fields = {"channel": report.channel, "channel_id": report.channel_id,
              "description": report.description,
              "requested_at": report.reported_at.astimezone(UTC).isoformat()}
    if report.channel == "open311" and report.channel_category:
        fields["service_code"] = report.channel_category
    if report.address:
        fields["address"] = report.address
    if report.location:
        fields["lat"], fields["long"] = str(report.location.lat), str(report.location.lon)
    if report.attachments:
        fields["media_url"] = report.attachments[0]
    return fields, report.reported_at.timestamp()


def from_report(report: IntakeReport, accepted_at: datetime) -> Projection:
    """A report as accepted: open, waiting for the rules stage."""
    fields, when = report_fields(report)
    return Projection(report.incident_id, fields,
                      _status("received", accepted_at, matter_code=report.matter_code),
                      _rank(0, accepted_at), when)


def _report_in(data: Any) -> IntakeReport | None:
    try:
        return IntakeReport.model_validate(data)
    except ValidationError:
        return None


def from_reported(data: dict[str, Any], at: datetime) -> list[Projection]:
    report = _report_in(data)
    return [from_report(report, at)] if report else []


def from_triage(data: dict[str, Any]) -> list[Projection]:
    report = _report_in(data.get("report"))
    incident = data.get("incident_id")
    if not isinstance(incident, str):
        return []
    at = _utc(data.get("received_at"))
    fields, when = report_fields(report) if report else ({}, None)
    detail = str(data.get("detail") or data.get("reason") or "")
    return [Projection(incident, fields, _status("triage", at, note=detail,
                                                 matter_code=data.get("matter_code")),
                       _rank(1, at), when)]


def from_rejected(data: dict[str, Any]) -> list[Projection]:
    incident = data.get("incident_id")
    if not isinstance(incident, str):
        return []  # no id could be derived: no reporter can ask about it either
    at = _utc(data.get("received_at"))
    note = str(data.get("detail") or data.get("reason") or "")
    return [Projection(incident, {}, _status("rejected", at, note=note), _rank(1, at), None)]


def from_triage_decision(data: dict[str, Any]) -> list[Projection]:
    """A command centre found a triaged report is no incident: the reporter sees why. A
    dispatch needs nothing here: the case it opens says the rest."""
    incident = data.get("incident_id")
    if data.get("decision") != "rejected" or not isinstance(incident, str):
        return []
    at = _utc(data.get("decided_at"))
    return [Projection(incident, {}, _status("rejected", at, note=str(data.get("reason") or "")),
                       _rank(1, at), None)]


def from_case(data: dict[str, Any]) -> list[Projection]:
    case_id, incidents = data.get("case_id"), data.get("incident_ids")
    if not isinstance(case_id, str) or not isinstance(incidents, list) or not incidents:
        return []
    at = _utc(data.get("updated_at"))
    sla = data.get("sla") if isinstance(data.get("sla"), dict) else {}
    resolve_by = _utc(sla.get("resolve_by")) if sla else None
    common = {"case_id": case_id, "lead": str(data.get("lead") or ""),
              "matter_code": str(data.get("matter_code") or "")}
    origin = data.get("origin") if isinstance(data.get("origin"), dict) else {}
    report = _report_in(origin.get("report")) if origin else None
    fields, when = report_fields(report) if report else ({}, None)
    state = str(data.get("state") or "dispatched")
    out = [Projection(str(incidents[0]), fields, _status(
        state, at, note=str(data.get("resolution") or ""),
        expected_at=resolve_by.isoformat() if resolve_by else None, **common),
        _rank(1, at), when)]
    for incident in incidents[1:]:
        out.append(Projection(str(incident), {}, _status("merged", at, **common),
                              _rank(1, at), None))
    return out


def project(topic: str, value: bytes | None, timestamp: float | None = None) -> list[Projection]:
    """One record of a source topic (name without the environment prefix) → projections.
    Anything unreadable projects onto nothing: the read model never stops on data."""
    try:
        data = json.loads(value or b"null")
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    if topic == "cases":
        return from_case(data)
    if topic == "incidents.triage":
        return from_triage(data)
    if topic == "incidents.rejected":
        return from_rejected(data)
    if topic == "triage.decisions":
        return from_triage_decision(data)
    if topic == "incidents.reported":
        at = datetime.fromtimestamp(timestamp, UTC) if timestamp else datetime.now(UTC)
        return from_reported(data, at)
    return []


def _shanghai(value: str | None) -> str | None:
    moment = _utc(value)
    return moment.astimezone(SHANGHAI).isoformat(timespec="seconds") if moment else None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def notes(fields: dict[str, str], catalog: Catalog) -> tuple[str, str]:
    """(Open311 status, status notes in Chinese) for the stored state."""
    state, note = fields.get("state", "received"), fields.get("note", "")
    lead = catalog.department_name(fields["lead"]) if fields.get("lead") else ""
    text = {
        "received": "已受理，等待分类派遣",
        "triage": f"人工分拣中：{note}",
        "rejected": f"未受理：{note}",
        "dispatched": f"已派遣至{lead}",
        "accepted": f"{lead}已签收，正在处置",
        "resolved": f"{lead}已办结，待核查" + (f"：{note}" if note else ""),
        "closed": "已结案" + (f"：{note}" if note else ""),
        "reopened": f"核查不满意，已退回{lead}重新办理",
        "merged": f"已并入案件 {fields.get('case_id', '')}（同一事件的重复报告），"
                  "办理进度请查询该案件",
    }.get(state, state)
    return ("open" if state in OPEN else "closed"), text


def request_view(incident_id: str, fields: dict[str, str], catalog: Catalog) -> dict[str, Any]:
    """A GeoReport v2 service request, in the spec's field order.

    Public: whoever holds the id may read it, so numbers a resident wrote into the
    description or address are masked (``engine.privacy``); the name and phone given
    with the report are never in it."""
    status, status_notes = notes(fields, catalog)
    code, name = catalog.service_of(fields.get("service_code", ""),
                                    fields.get("matter_code", ""))
    lead = fields.get("lead")
    return {
        "service_request_id": incident_id, "status": status, "status_notes": status_notes,
        "service_name": name or None, "service_code": code or None,
        "description": _masked(fields.get("description")),
        "agency_responsible": catalog.department_name(lead) if lead else None,
        "service_notice": None,
        "requested_datetime": _shanghai(fields.get("requested_at")),
        "updated_datetime": _shanghai(fields.get("updated_at")),
        "expected_datetime": _shanghai(fields.get("expected_at")),
        "address": _masked(fields.get("address")), "address_id": None, "zipcode": None,
        "lat": _float(fields.get("lat")), "long": _float(fields.get("long")),
        "media_url": fields.get("media_url"),
    }


def _masked(text: str | None) -> str | None:
    return privacy.mask_text(text) if text else text


def incident_view(incident_id: str, fields: dict[str, str], catalog: Catalog) -> dict[str, Any]:
    """The native API's view: the Open311 request plus our own codes."""
    return {"incident_id": incident_id, "channel": fields.get("channel"),
            "channel_id": fields.get("channel_id"), "state": fields.get("state"),
            "case_id": fields.get("case_id") or None, "matter_code":
                fields.get("matter_code") or None, "lead": fields.get("lead") or None,
            **request_view(incident_id, fields, catalog)}
