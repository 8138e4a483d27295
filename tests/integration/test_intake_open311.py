"""Open311 GeoReport v2 conformance of ``griddispatch intake``, walking the spec.

Reads go through ``georeport`` (an independent PyPI client of the spec) in both formats;
creates are plain form posts, as the spec defines them. The server runs in this process on
a free port against the real broker and Redis; request states are fed through the real
topics (a case record on ``cases``, a triage record on ``incidents.triage``) or, in the end
to end test, by the real classify and route workers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import xmltodict
from georeport import GeoReport

from connectors.intake.keys import Client, Keys, hash_key
from connectors.intake.open311 import Catalog
from connectors.intake.service import Intake
from engine.runtime import kafka
from engine.runtime.settings import Settings
from tests.integration.intake_helpers import RunningIntake, form, http, records
from tests.integration.workers import REPO, running, wait_for

pytestmark = pytest.mark.integration

KEY = "test-open311-key"
CATALOG = Catalog.load(REPO / "rules")


def _keys() -> Keys:
    return Keys({hash_key(KEY): Client("conformance", frozenset({"open311"}), 1000)})


@pytest.fixture
def server(intake_settings: Settings) -> Iterator[RunningIntake]:
    intake = Intake.build(intake_settings, CATALOG, _keys(), ack_timeout=10)
    running_intake = RunningIntake(intake)
    try:
        yield running_intake
    finally:
        running_intake.close()


def clients(server: RunningIntake) -> dict[str, GeoReport]:
    root = f"{server.url}/open311/v2"
    return {fmt: GeoReport(root, output_format=fmt) for fmt in ("json", "xml")}


def create(server: RunningIntake, fmt: str = "json", **fields: str) -> tuple[int, Any]:
    data = {"api_key": KEY, "service_code": "streetlight", "lat": "30.2912",
            "long": "119.9921", "description": f"路灯不亮 {uuid.uuid4().hex[:6]}", **fields}
    status, headers, body = form(f"{server.url}/open311/v2/requests.{fmt}",
                                 {k: v for k, v in data.items() if v is not None})
    if fmt == "xml":
        assert headers["Content-Type"].startswith("text/xml")
        assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
        return status, xmltodict.parse(body)
    assert headers["Content-Type"].startswith("application/json")
    return status, json.loads(body)


def test_discovery_both_formats(server: RunningIntake) -> None:
    status, _, body = http("GET", f"{server.url}/open311/discovery.json")
    assert status == 200
    document = json.loads(body)
    [endpoint] = document["endpoints"]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"] == f"{server.url}/open311/v2"
    assert set(endpoint["formats"]) == {"text/xml", "application/json"}
    status, _, body = http("GET", f"{server.url}/open311/discovery.xml")
    xml = xmltodict.parse(body)["discovery"]
    assert xml["endpoints"]["endpoint"]["formats"]["format"] == ["text/xml", "application/json"]
    assert datetime.fromisoformat(xml["changeset"]).utcoffset() is not None


def test_services_and_definitions(server: RunningIntake) -> None:
    json_client, xml_client = clients(server).values()
    services = json_client.get_service_list()
    by_code = {s["service_code"]: s for s in services}
    assert by_code["streetlight"] == {
        "service_code": "streetlight", "service_name": "路灯故障",
        "description": "路灯不亮、闪烁或白天常亮", "metadata": True, "type": "realtime",
        "keywords": by_code["streetlight"]["keywords"], "group": "综合执法"}
    assert by_code["pothole"]["metadata"] is False
    assert by_code["elevator-fault"]["group"] == "市场监管"
    xml_services = xml_client.get_service_list()
    assert [s["service_code"] for s in xml_services] == list(by_code)
    assert xml_services[0]["metadata"] in ("true", "false")
    assert xml_services[0]["type"] == "realtime"

    definition = json_client.get_service_definition("manhole-cover")
    [attribute] = definition["attributes"]
    assert attribute["code"] == "cover_state" and attribute["required"] is True
    assert attribute["datatype"] == "singlevaluelist" and attribute["variable"] is True
    assert {"key": "missing", "name": "缺失"} in attribute["values"]
    xml_definition = xml_client.get_service_definition("streetlight")
    attributes = xml_definition["attributes"]["attribute"]
    assert [a["code"] for a in attributes] == ["pole_number", "symptoms"]
    assert [v["key"] for v in attributes[1]["values"]["value"]] == ["dark", "flicker", "daytime"]


def test_errors_in_both_formats(server: RunningIntake) -> None:
    for fmt in ("json", "xml"):
        # 404: unknown service code, unknown request, unknown token
        for path in ("services/no-such-service", "requests/inc-0000", "tokens/inc-0000"):
            status, _, body = http("GET", f"{server.url}/open311/v2/{path}.{fmt}")
            assert status == 404, (path, body)
            assert _errors(fmt, body)[0]["code"] == "404"
        # 403: no key, a wrong key
        for key in (None, "wrong"):
            status, error = create(server, fmt, api_key=key)  # type: ignore[arg-type]
            assert status == 403
            assert "api_key" in _first_error(fmt, error)["description"]
        # 400: no location, unknown service, bad lat, required attribute, bad list value
        cases: list[dict[str, Any]] = [
            {"lat": None, "long": None},
            {"service_code": "teleport"},
            {"lat": "北纬"},
            {"service_code": "manhole-cover"},
            {"service_code": "manhole-cover", "attribute[cover_state]": "stolen"},
            {"attribute[colour]": "red"},
        ]
        for change in cases:
            status, error = create(server, fmt, **change)
            assert status == 400, change
            assert _first_error(fmt, error)["description"], change
        status, _, body = http("GET", f"{server.url}/open311/v2/requests.{fmt}?status=pending")
        assert status == 400 and _errors(fmt, body)[0]["code"] == "400"
        status, _, body = http("GET", f"{server.url}/open311/v2/requests.{fmt}"
                                      "?start_date=2026-01-01T00:00:00Z"
                                      "&end_date=2026-06-01T00:00:00Z")
        assert status == 400 and "90 days" in _errors(fmt, body)[0]["description"]


def _errors(fmt: str, body: bytes) -> list[dict[str, Any]]:
    if fmt == "json":
        return [{k: str(v) for k, v in e.items()} for e in json.loads(body)]
    errors = xmltodict.parse(body)["errors"]["error"]
    return errors if isinstance(errors, list) else [errors]


def _first_error(fmt: str, document: Any) -> dict[str, Any]:
    if fmt == "json":
        return dict(document[0])
    error = document["errors"]["error"]
    return dict(error[0] if isinstance(error, list) else error)


RULES = None


def _ruleset() -> Any:
    global RULES
    if RULES is None:
        from engine.rules.load import load_rules

        RULES = load_rules(REPO / "rules")
    return RULES


def _produce(settings: Settings, topic: str, key: str, value: dict[str, Any],
             partition: int = -1) -> None:
    producer = kafka.producer(settings)
    producer.produce(settings.topic(topic), key=key.encode(), partition=partition,
                     value=json.dumps(value, ensure_ascii=False).encode())
    assert producer.flush(10) == 0


def _reported(settings: Settings, incident: str) -> Any:
    from engine.contracts import IntakeReport

    found = [value for key, value in records(settings, "incidents.reported") if key == incident]
    assert len(found) == 1, found
    return IntakeReport.model_validate(found[0])


def _view(client: GeoReport, incident: str, **expect: Any) -> dict[str, Any]:
    """Poll GET requests/{id} until the read model shows what is expected."""
    seen: dict[str, Any] = {}

    def ok() -> bool:
        nonlocal seen
        try:
            seen = client.get_service_request(incident)
        except Exception:  # 404 until the view exists
            return False
        return all(seen.get(k) == v for k, v in expect.items())

    wait_for(ok, 20, f"request {incident} with {expect}, last seen {seen}")
    return seen


@pytest.mark.parametrize("intake_settings", ["single", "cluster"], indirect=True)
def test_request_lifecycle_fed_from_the_topics(server: RunningIntake,
                                               intake_settings: Settings) -> None:
    from engine.cases.dispatch import on_classified
    from engine.cases.duplicates import CaseStore
    from engine.classify import classify_report
    from engine.contracts import Rejected, Triage, to_json

    json_client, xml_client = clients(server).values()
    # create: the service_request_id is the incident id; both formats
    status, created = create(server, "json", **{"attribute[symptoms]": "dark",
                                                 "media_url": "https://img.example.cn/1.jpg"})
    assert status == 201
    first = created[0]["service_request_id"]
    assert first.startswith("inc-") and created[0]["service_notice"]
    status, created = create(server, "xml", lat="30.29121", long="119.99211",
                             first_name="小明", last_name="李", phone="13800001111")
    assert status == 201
    second = created["service_requests"]["request"]["service_request_id"]
    view = _view(json_client, first, status="open")
    assert view["status_notes"] == "已受理，等待分类派遣"
    assert view["service_code"] == "streetlight" and view["service_name"] == "路灯故障"
    assert view["media_url"] == "https://img.example.cn/1.jpg"
    assert view["lat"] == 30.2912 and view["long"] == 119.9921
    assert datetime.fromisoformat(view["requested_datetime"]).utcoffset() == timedelta(hours=8)
    assert view["requested_datetime"].endswith("+08:00")
    assert _view(xml_client, first)["status"] == "open"
    # tokens: a token is the request id
    token = json.loads(http("GET", f"{server.url}/open311/v2/tokens/{first}.json")[2])
    assert token == [{"service_request_id": first, "token": first}]
    token_xml = xmltodict.parse(http("GET", f"{server.url}/open311/v2/tokens/{first}.xml")[2])
    assert token_xml["service_requests"]["request"]["token"] == first

    # the route worker's answer on the cases topic: one case, the second report merged
    ruleset, store = _ruleset(), CaseStore()
    now = datetime.now(UTC)
    outcomes = [on_classified(ruleset, store, classify_report(
        ruleset, _reported(intake_settings, incident), now), now)
        for incident in (first, second)]
    assert [o.outcome for o in outcomes] == ["assigned", "merged"]
    case = outcomes[-1].case
    assert case is not None and case.incident_ids == [first, second]
    resolve_by = now + timedelta(days=5)
    record = json.loads(to_json(case))
    record["sla"] = {"accept_by": (now + timedelta(hours=1)).isoformat(),
                     "resolve_by": resolve_by.isoformat()}
    _produce(intake_settings, "cases", case.case_id, record)
    lead_name = ruleset.departments.by_code[case.lead].name
    view = _view(json_client, first, agency_responsible=lead_name)
    assert view["status"] == "open" and lead_name in view["status_notes"]
    assert datetime.fromisoformat(view["expected_datetime"]) == resolve_by.replace(
        microsecond=0)
    assert view["expected_datetime"].endswith("+08:00")
    merged = _view(xml_client, second, status="closed")
    assert case.case_id in merged["status_notes"]
    assert merged["agency_responsible"] == lead_name

    # later states: an older record replayed never overwrites a newer one
    closed = {**record, "state": "closed", "resolution": "已更换灯泡",
              "updated_at": (now + timedelta(hours=3)).isoformat()}
    marker = {**record, "case_id": "marker", "incident_ids": ["inc-marker"]}
    for value in (closed, record, marker):  # one partition: read in this order
        _produce(intake_settings, "cases", value["case_id"], value, partition=0)
    _view(json_client, "inc-marker", status="open")
    assert _view(json_client, first)["status_notes"] == "已结案：已更换灯泡"
    # triage and rejected answers of the rules stage
    status, created = create(server, "json", service_code="pothole")
    third = created[0]["service_request_id"]
    status, created = create(server, "json", service_code="pothole", lat="30.3")
    fourth = created[0]["service_request_id"]
    report = _reported(intake_settings, third)
    triage = Triage(incident_id=third, channel="open311", channel_id=report.channel_id,
                    reported_at=report.reported_at, received_at=now, rules_revision="r",
                    reason="unplaced", detail="坐标不在任何网格内", report=report)
    _produce(intake_settings, "incidents.triage", third, json.loads(to_json(triage)))
    rejected = Rejected(reason="unknown_grid_code", detail="grid code 330110999999999 is unknown",
                        field="grid_code", incident_id=fourth, received_at=now,
                        rules_revision="r", raw="{}")
    _produce(intake_settings, "incidents.rejected", fourth, json.loads(to_json(rejected)))
    _view(json_client, third, status="open", status_notes="人工分拣中：坐标不在任何网格内")
    assert "330110999999999" in _view(json_client, fourth, status="closed")["status_notes"]

    # GET requests: ids override filters; code and status filters; date window; both formats
    both = json_client.get_service_requests(service_request_id=f"{first},{second}",
                                            status="open")
    assert {r["service_request_id"] for r in both} == {first, second}
    closed_ids = {r["service_request_id"] for r in json_client.get_service_requests(
        service_code="streetlight", status="closed")}
    assert closed_ids == {first, second}
    potholes = xml_client.get_service_requests(service_code="pothole")
    assert {r["service_request_id"] for r in potholes} == {third, fourth}
    # a 12345 call: readable by its id, never in the public list (its text may be personal)
    from engine.contracts import IntakeReport

    call = IntakeReport(channel="hotline", channel_id="ZJ12345-LIST", reported_at=now,
                        description="我家楼上漏水，电话13800001111", address="五常街道")
    _produce(intake_settings, "incidents.reported", call.incident_id,
             call.model_dump(mode="json", exclude_none=True))
    _view(json_client, call.incident_id, status="open")
    everything = {r["service_request_id"] for r in json_client.get_service_requests()}
    assert everything == {first, second, third, fourth, "inc-marker"}
    future = (now + timedelta(days=1)).isoformat()
    assert json_client.get_service_requests(start_date=future) == []
    status, _, body = http("GET", f"{server.url}/open311/v2/requests.xml?start_date="
                                  f"{future.replace('+', '%2B')}")
    assert status == 200 and ElementTree.fromstring(body).tag == "service_requests"
    assert len(ElementTree.fromstring(body)) == 0
    # the native API's view of the same request
    native = json.loads(http("GET", f"{server.url}/api/v1/incidents/{second}")[2])
    assert native["state"] == "merged" and native["case_id"] == case.case_id


def test_report_through_the_real_workers_shows_the_agency(server: RunningIntake,
                                                          intake_settings: Settings,
                                                          tmp_path: Path) -> None:
    """report → classify worker → route worker → cases → GET requests/{id}."""
    json_client = clients(server)["json"]
    with running(intake_settings, "classify", tmp_path / "classify.log"), \
            running(intake_settings, "route", tmp_path / "route.log"):
        status, created = create(server, "json", service_code="manhole-cover",
                                 **{"attribute[cover_state]": "missing"},
                                 address_string="余杭区仓前街道太炎社区")
        assert status == 201
        incident = created[0]["service_request_id"]
        view = _view(json_client, incident, status="open")
        wait_for(lambda: bool(_view(json_client, incident).get("agency_responsible")), 60,
                 "the route worker's case on the request")
    view = _view(json_client, incident)
    departments = {d.name for d in _ruleset().departments}
    assert view["agency_responsible"] in departments
    assert view["agency_responsible"] in view["status_notes"]
    assert view["service_code"] == "manhole-cover"
