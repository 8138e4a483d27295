"""The intake's guarantees on the real broker and Redis: once per report, limits, back-pressure.

The native JSON API, the hotline and grid-app channel endpoints, API keys (403), size (413)
and rate (429) limits, and a broker that is down (503, nothing acknowledged, nothing marked),
then back (the retry succeeds and exactly one record exists).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.intake.keys import Client, Keys, hash_key
from connectors.intake.open311 import Catalog
from connectors.intake.service import Intake
from engine.cli.stack.process import free_port
from engine.contracts import MAX_REPORT_BYTES, IntakeReport, incident_id
from engine.runtime.settings import Settings
from tests.integration.intake_helpers import RunningIntake, form, http, records
from tests.integration.workers import REPO

pytestmark = pytest.mark.integration

CATALOG = Catalog.load(REPO / "rules")
ALL, HOTLINE, SLOW = "key-all", "key-hotline", "key-slow"
KEYS = Keys({hash_key(ALL): Client("all", frozenset({"*"}), 1000),
             hash_key(HOTLINE): Client("hotline-centre", frozenset({"hotline"}), 1000),
             hash_key(SLOW): Client("slow", frozenset({"*"}), 3)})


@pytest.fixture
def server(intake_settings: Settings) -> Iterator[RunningIntake]:
    intake = Intake.build(intake_settings, CATALOG, KEYS, read_model=False, ack_timeout=10,
                          hotline_categories=frozenset(
                              CATALOG_CHANNELS.maps["hotline"]))
    running_intake = RunningIntake(intake)
    try:
        yield running_intake
    finally:
        running_intake.close()


def _channel_maps() -> Any:
    from engine.reference.channels import ChannelMaps

    return ChannelMaps.load(REPO / "rules/reference/channels.yaml")


CATALOG_CHANNELS = _channel_maps()


def post(server: RunningIntake, path: str, document: Any, key: str | None = ALL,
         raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["X-API-Key"] = key
    body = raw if raw is not None else json.dumps(document, ensure_ascii=False).encode()
    status, answer_headers, answer = http("POST", f"{server.url}{path}", body, headers)
    return status, answer_headers, json.loads(answer)


def report(**change: Any) -> dict[str, Any]:
    return {"channel": "sensor", "channel_id": f"s-{uuid.uuid4().hex[:8]}",
            "reported_at": "2026-11-24T09:30:00+08:00", "description": "井盖位移报警",
            "location": {"lat": 30.2912, "lon": 119.9921}, **change}


def test_native_api_single_batch_and_errors(server: RunningIntake,
                                            intake_settings: Settings) -> None:
    one = report()
    status, _, answer = post(server, "/api/v1/incidents", one)
    assert status == 202
    assert answer["incident_id"] == incident_id("sensor", one["channel_id"])
    assert answer["duplicate"] is False
    batch = [report(), report(), one]
    status, _, answers = post(server, "/api/v1/incidents", batch)
    assert status == 202
    assert [a["duplicate"] for a in answers] == [False, False, True]
    assert answers[2]["accepted_at"] == answer["accepted_at"]
    keys = [key for key, _ in records(intake_settings, "incidents.reported")]
    assert sorted(keys) == sorted(a["incident_id"] for a in answers)
    # 400 naming the field (pydantic loc) and, in a batch, the index; nothing published
    status, _, answer = post(server, "/api/v1/incidents",
                             [report(), report(location={"lat": 130, "lon": 120})])
    assert status == 400
    assert answer["errors"][0]["field"] == "location.lat"
    assert answer["errors"][0]["index"] == 1
    status, _, answer = post(server, "/api/v1/incidents", report(colour="red"))
    assert status == 400 and answer["errors"][0]["field"] == "colour"
    assert "index" not in answer["errors"][0]
    status, _, answer = post(server, "/api/v1/incidents", None, raw=b"{not json")
    assert status == 400 and "JSON" in answer["errors"][0]["description"]
    assert len(records(intake_settings, "incidents.reported")) == 3


def test_hotline_and_gridapp_channel_endpoints(server: RunningIntake,
                                               intake_settings: Settings) -> None:
    order = {"工单编号": f"ZJ-{uuid.uuid4().hex[:8]}", "诉求内容": "路灯不亮",
             "诉求分类": "城市管理-市政设施-路灯-不亮", "来电时间": "2026-11-24 09:30:00",
             "发生地址": "余杭区仓前街道太炎社区", "联系电话": "13912345678"}
    status, _, answer = post(server, "/api/v1/channels/hotline", order, key=HOTLINE)
    assert status == 202 and answer["incident_id"] == incident_id("hotline", order["工单编号"])
    app = {"report_id": f"GA-{uuid.uuid4().hex[:8]}", "worker_id": "W-07",
           "grid_code": "330110005001001", "reported_at": "2026-11-24T10:05:00+08:00",
           "description": "垃圾乱堆放", "photos": ["https://oss.example.cn/a.jpg"]}
    status, _, answers = post(server, "/api/v1/channels/gridapp", [app])
    assert status == 202 and answers[0]["duplicate"] is False
    published = dict(records(intake_settings, "incidents.reported"))
    hotline = IntakeReport.model_validate(published[incident_id("hotline", order["工单编号"])])
    assert hotline.channel_category == "城市管理/市政设施/路灯"
    assert hotline.reported_at.isoformat() == "2026-11-24T09:30:00+08:00"
    grid = IntakeReport.model_validate(published[incident_id("gridapp", app["report_id"])])
    assert grid.attributes == {"grid_worker_id": "W-07"}
    assert grid.attachments == ["https://oss.example.cn/a.jpg"]
    # malformed payloads: 400 naming the channel's own field (and the index in a batch)
    status, _, answer = post(server, "/api/v1/channels/hotline", {**order, "来电时间": "昨天"},
                             key=HOTLINE)
    assert status == 400 and answer["errors"][0]["field"] == "来电时间"
    status, _, answer = post(server, "/api/v1/channels/gridapp",
                             [app, {**app, "photos": ["ftp://x/y.jpg"]}])
    assert status == 400 and answer["errors"][0] == {
        "code": 400, "description": "must be an http(s) URL of an uploaded photo",
        "field": "photos[0]", "index": 1}
    # 403: the hotline's key is for the hotline only
    status, _, answer = post(server, "/api/v1/channels/gridapp", app, key=HOTLINE)
    assert status == 403 and "gridapp" in answer["errors"][0]["description"]
    status, _, answer = post(server, "/api/v1/incidents", report(), key=HOTLINE)
    assert status == 403 and answer["errors"][0]["field"] == "channel"
    status, _, answer = post(server, "/api/v1/incidents", report(), key="nope")
    assert status == 403


@pytest.mark.parametrize("intake_settings", ["single", "cluster"], indirect=True)
def test_open311_same_report_twice_is_one_record(server: RunningIntake,
                                                 intake_settings: Settings) -> None:
    fields = {"api_key": ALL, "service_code": "pothole", "lat": "30.538706", "long": "119.721506",
              "description": f"路面塌陷 {uuid.uuid4().hex[:6]}"}
    url = f"{server.url}/open311/v2/requests.json"
    answers = [json.loads(form(url, fields)[2]) for _ in range(2)]
    assert answers[0] == answers[1]
    keyed = [json.loads(form(url, {**fields, "description": "另一条"},
                             {"Idempotency-Key": "retry-1"})[2]) for _ in range(2)]
    assert keyed[0] == keyed[1] != answers[0]
    keys = [key for key, _ in records(intake_settings, "incidents.reported")]
    assert sorted(keys) == sorted([answers[0][0]["service_request_id"],
                                   keyed[0][0]["service_request_id"]])


def _counted(channel: str, result: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("griddispatch_intake_requests_total",
                                     {"channel": channel, "result": result}) or 0.0


@pytest.mark.parametrize("intake_settings", ["single", "cluster"], indirect=True)
def test_size_rate_and_key_refusals(server: RunningIntake) -> None:
    results = ("accepted", "unauthorized", "rate_limited", "too_large")
    before = {result: _counted("api", result) for result in results}
    huge = report(description="很" * 3000, attributes={"blob": "x" * MAX_REPORT_BYTES})
    status, _, answer = post(server, "/api/v1/incidents", huge)
    assert status == 413 and "limit" in answer["errors"][0]["description"]
    status, _, answer = post(server, "/api/v1/incidents", [report() for _ in range(101)])
    assert status == 413 and "100" in answer["errors"][0]["description"]
    status, _, body = form(f"{server.url}/open311/v2/requests.xml",
                           {"api_key": ALL, "description": "x" * (4 * MAX_REPORT_BYTES)})
    assert status == 413 and b"<errors>" in body
    status, _, body = form(f"{server.url}/open311/v2/requests.json",
                           {"api_key": ALL, "service_code": "streetlight", "lat": "30.29",
                            "long": "119.99", "attribute[pole_number]": "x" * 100_000})
    assert status == 413 and "65536" in json.loads(body)[0]["description"]
    status, _, answer = post(server, "/api/v1/incidents", report(), key=None)
    assert status == 403 and answer["errors"][0]["field"] == "api_key"
    # 429 after three reports a minute, with Retry-After; counts reports, not requests
    assert post(server, "/api/v1/incidents", [report(), report()], key=SLOW)[0] == 202
    assert post(server, "/api/v1/incidents", report(), key=SLOW)[0] == 202
    status, headers, answer = post(server, "/api/v1/incidents", report(), key=SLOW)
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 60
    assert "rate limit" in answer["errors"][0]["description"]
    # the counters saw every refusal, and /metrics serves them
    assert {r: _counted("api", r) - before[r] for r in results} == {
        "accepted": 3, "unauthorized": 1, "rate_limited": 1, "too_large": 2}
    assert _counted("open311", "too_large") >= 1
    text = http("GET", f"{server.url}/metrics")[2].decode()
    assert 'griddispatch_intake_requests_total{channel="api",result="rate_limited"}' in text
    assert "griddispatch_intake_seconds_bucket" in text


def test_broker_down_503_then_retry_succeeds_once(intake_settings: Settings) -> None:
    down = intake_settings.with_(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    one = report()
    intake = Intake.build(down, CATALOG, KEYS, read_model=False, ack_timeout=1.0)
    server = RunningIntake(intake)
    try:
        assert http("GET", f"{server.url}/healthz")[0] == 200
        status, _, body = http("GET", f"{server.url}/readyz")
        assert status == 503 and json.loads(body)["redis"] == "ok"
        status, headers, answer = post(server, "/api/v1/incidents", one)
        assert status == 503 and int(headers["Retry-After"]) > 0
        assert "retry" in answer["errors"][0]["description"]
        status, headers, body = form(f"{server.url}/open311/v2/requests.xml",
                                     {"api_key": ALL, "service_code": "pothole",
                                      "address_string": "余杭区仓前街道"})
        assert status == 503 and b"<code>503</code>" in body and "Retry-After" in headers
    finally:
        server.close()
    assert records(intake_settings, "incidents.reported") == []
    intake = Intake.build(intake_settings, CATALOG, KEYS, read_model=False)
    server = RunningIntake(intake)
    try:
        assert http("GET", f"{server.url}/readyz")[0] == 200
        status, _, answer = post(server, "/api/v1/incidents", one)
        assert status == 202 and answer["duplicate"] is False
    finally:
        server.close()
    assert [key for key, _ in records(intake_settings, "incidents.reported")] == [
        incident_id("sensor", one["channel_id"])]
