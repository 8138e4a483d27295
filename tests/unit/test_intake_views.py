"""The request read model's pure projection, and the Open311 view of it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.intake.open311 import Catalog
from connectors.intake.requests_view import (
    Projection,
    from_report,
    incident_view,
    project,
    request_view,
)
from engine.contracts import IntakeReport, incident_id

REPO = Path(__file__).resolve().parents[2]
CATALOG = Catalog.load(REPO / "rules")
T0 = datetime(2026, 11, 24, 1, 30, tzinfo=UTC)
REPORT = IntakeReport(channel="open311", channel_id="d-1", reported_at=T0,
                      description="路灯不亮", channel_category="streetlight",
                      location={"lat": 30.29, "lon": 119.99},
                      attachments=["https://img.example.cn/1.jpg"])
FIRST, SECOND = REPORT.incident_id, incident_id("hotline", "ZJ-2")
LEAD = "330110005.zhzf"


def case(**change: Any) -> dict[str, Any]:
    """A case record as the route worker writes it (only what the projection reads)."""
    return {"schema": "griddispatch.case/1", "case_id": "330110005-abc", "state": "dispatched",
            "lead": LEAD, "assist": [], "incident_ids": [FIRST, SECOND],
            "matter_code": "120301", "updated_at": (T0 + timedelta(minutes=5)).isoformat(),
            "origin": {"report": json.loads(REPORT.model_dump_json())}, **change}


def apply(rows: list[Projection], store: dict[str, dict[str, str]] | None = None
          ) -> dict[str, dict[str, str]]:
    """What the Redis script does, in Python: report fields once, status by rank."""
    store = {} if store is None else store
    for p in rows:
        fields = store.setdefault(p.incident_id, {})
        for name, value in p.report.items():
            fields.setdefault(name, value)
        if fields.get("rank", "") <= p.rank:
            fields.update(p.status, rank=p.rank)
    return store


def raw(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def test_received_report_is_open_with_spec_fields() -> None:
    store = apply([from_report(REPORT, T0 + timedelta(seconds=1))])
    view = request_view(FIRST, store[FIRST], CATALOG)
    assert view == {
        "service_request_id": FIRST, "status": "open", "status_notes": "已受理，等待分类派遣",
        "service_name": "路灯故障", "service_code": "streetlight", "description": "路灯不亮",
        "agency_responsible": None, "service_notice": None,
        "requested_datetime": "2026-11-24T09:30:00+08:00",
        "updated_datetime": "2026-11-24T09:30:01+08:00", "expected_datetime": None,
        "address": None, "address_id": None, "zipcode": None, "lat": 30.29, "long": 119.99,
        "media_url": "https://img.example.cn/1.jpg"}


def test_case_projects_lead_sla_and_merged_duplicates() -> None:
    resolve_by = "2026-11-29T09:30:00+00:00"
    store = apply(project("cases", raw(case(sla={"accept_by": None,
                                                 "resolve_by": resolve_by}))))
    lead_name = CATALOG.department_name(LEAD)
    view = request_view(FIRST, store[FIRST], CATALOG)
    assert view["status"] == "open" and view["agency_responsible"] == lead_name
    assert view["status_notes"] == f"已派遣至{lead_name}"
    assert view["expected_datetime"] == "2026-11-29T17:30:00+08:00"
    assert view["requested_datetime"] == "2026-11-24T09:30:00+08:00"  # from the origin
    merged = request_view(SECOND, store[SECOND], CATALOG)
    assert merged["status"] == "closed" and "330110005-abc" in merged["status_notes"]
    assert merged["service_code"] == "streetlight"  # by matter: the service offering 120301
    native = incident_view(SECOND, store[SECOND], CATALOG)
    assert native["state"] == "merged" and native["case_id"] == "330110005-abc"


def test_without_sla_there_is_no_expected_time() -> None:
    store = apply(project("cases", raw(case())))
    assert request_view(FIRST, store[FIRST], CATALOG)["expected_datetime"] is None


def test_an_older_record_never_overwrites_a_newer_state() -> None:
    later = (T0 + timedelta(hours=2)).isoformat()
    closed = case(state="closed", resolution="已更换灯泡", updated_at=later)
    store = apply(project("cases", raw(closed)))
    apply(project("cases", raw(case())), store)  # replayed from the start of the topic
    apply([from_report(REPORT, T0 + timedelta(days=1))], store)  # a late own submission
    view = request_view(FIRST, store[FIRST], CATALOG)
    assert (view["status"], view["status_notes"]) == ("closed", "已结案：已更换灯泡")
    assert store[FIRST]["description"] == "路灯不亮"


def test_states_map_onto_open_and_closed() -> None:
    expected = {"dispatched": "open", "accepted": "open", "resolved": "open",
                "reopened": "open", "closed": "closed"}
    for state, status in expected.items():
        store = apply(project("cases", raw(case(state=state))))
        assert request_view(FIRST, store[FIRST], CATALOG)["status"] == status, state


def test_triage_and_rejected() -> None:
    triage = {"schema": "griddispatch.triage/1", "incident_id": FIRST, "reason": "unplaced",
              "detail": "坐标不在任何网格内", "received_at": T0.isoformat(),
              "report": json.loads(REPORT.model_dump_json())}
    store = apply(project("incidents.triage", raw(triage)))
    assert notes(store, FIRST) == ("open", "人工分拣中：坐标不在任何网格内")
    rejected = {"schema": "griddispatch.rejected/1", "reason": "unknown_grid_code",
                "detail": "grid code 330110999999999 is unknown", "incident_id": SECOND,
                "received_at": T0.isoformat(), "raw": "{}"}
    store = apply(project("incidents.rejected", raw(rejected)))
    assert notes(store, SECOND) == ("closed", "未受理：grid code 330110999999999 is unknown")
    no_id = {**rejected, "incident_id": None, "reason": "malformed_json"}
    assert project("incidents.rejected", raw(no_id)) == []


def test_a_triaged_report_the_console_rejected_is_closed_with_the_reason() -> None:
    triage = {"schema": "griddispatch.triage/1", "incident_id": FIRST, "reason": "unclassified",
              "detail": "nothing matched", "received_at": T0.isoformat(),
              "report": json.loads(REPORT.model_dump_json())}
    decided = {"schema": "griddispatch.triage-decision/1", "incident_id": FIRST,
               "decision": "rejected", "operator": "zhang", "triage_reason": "unclassified",
               "decided_at": (T0 + timedelta(minutes=3)).isoformat(), "description": "路灯不亮",
               "channel": "open311", "reason": "咨询类来电，非事件"}
    store = apply(project("incidents.triage", raw(triage)))
    store = apply(project("triage.decisions", raw(decided)), store)
    assert notes(store, FIRST) == ("closed", "未受理：咨询类来电，非事件")
    assert project("triage.decisions", raw({**decided, "decision": "dispatched"})) == []


def notes(store: dict[str, dict[str, str]], incident: str) -> tuple[str, str]:
    view = request_view(incident, store[incident], CATALOG)
    return view["status"], view["status_notes"]


def test_garbage_projects_onto_nothing() -> None:
    for topic, value in [("cases", b"{oops"), ("cases", b"[1]"), ("cases", b"null"),
                         ("cases", raw({"case_id": "x"})), ("incidents.triage", raw({})),
                         ("incidents.reported", raw({"channel": "x"})), ("other", b"{}")]:
        assert project(topic, value) == [], (topic, value)
    reported = project("incidents.reported", REPORT.model_dump_json().encode(), T0.timestamp())
    assert [p.incident_id for p in reported] == [FIRST]
