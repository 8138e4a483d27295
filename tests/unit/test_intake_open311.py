"""Open311 pure parts: form → report, query parsing, XML documents, API keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree

import pytest

from connectors.intake import render
from connectors.intake.keys import DEV_KEY, KeyRefused, Keys, hash_key, is_loopback
from connectors.intake.open311 import Catalog, Open311Error, parse_query, report_from_form
from engine.cli import main
from engine.yamlfile import FileProblems

REPO = Path(__file__).resolve().parents[2]
CATALOG = Catalog.load(REPO / "rules")
NOW = datetime(2026, 11, 24, 1, 30, tzinfo=UTC)
FORM = [("api_key", "k"), ("service_code", "streetlight"), ("lat", "30.29"),
        ("long", "119.99"), ("description", "路灯不亮"), ("attribute[pole_number]", "YH-0117"),
        ("attribute[symptoms][]", "dark"), ("attribute[symptoms][]", "flicker"),
        ("first_name", "小明"), ("last_name", "李"), ("phone", "13800001111"),
        ("email", "li@example.cn"), ("media_url", "https://img.example.cn/1.jpg"),
        ("jurisdiction_id", "330110")]


def test_form_becomes_an_intake_report() -> None:
    report, service = report_from_form(FORM, CATALOG, NOW, client="app")
    assert service.code == "streetlight"
    assert report.channel == "open311" and report.channel_category == "streetlight"
    assert report.reported_at.isoformat() == "2026-11-24T09:30:00+08:00"
    assert report.location is not None and report.location.lat == 30.29
    assert report.reporter is not None and report.reporter.name == "李小明"
    assert report.attachments == ["https://img.example.cn/1.jpg"]
    assert report.attributes == {"pole_number": "YH-0117", "symptoms": ["dark", "flicker"],
                                 "open311": {"email": "li@example.cn",
                                             "jurisdiction_id": "330110"}}


def test_channel_id_is_stable_per_day_and_per_idempotency_key() -> None:
    def cid(pairs: list[tuple[str, str]], now: datetime = NOW, key: str | None = None) -> str:
        return report_from_form(pairs, CATALOG, now, client="app",
                                idempotency_key=key)[0].channel_id

    assert cid(FORM) == cid(list(reversed(FORM)))  # same content, same id
    assert cid(FORM) == cid([("api_key", "other"), *FORM[1:]])  # the key is not content
    assert cid(FORM) != cid(FORM, NOW + timedelta(days=1))
    assert cid(FORM, key="a") == cid(FORM[:5], key="a") != cid(FORM, key="b")


@pytest.mark.parametrize(("change", "words"), [
    ({"service_code": ""}, "service_code is required"),
    ({"service_code": "teleport"}, "'teleport'"),
    ({"lat": "", "long": ""}, "a location is required"),
    ({"long": ""}, "lat and long"),
    ({"lat": "95"}, "lat:"),
    ({"media_url": "ftp://x"}, "media_url"),
    ({"attribute[colour]": "red"}, "attribute[colour]"),
    ({"phone": "1" * 50}, "phone"),
])
def test_bad_forms_are_400_naming_the_field(change: dict[str, str], words: str) -> None:
    pairs = [(k, change.get(k, v)) for k, v in FORM] + [
        (k, v) for k, v in change.items() if k not in dict(FORM)]
    with pytest.raises(Open311Error) as caught:
        report_from_form(pairs, CATALOG, NOW, client="app")
    assert caught.value.code == 400 and words in caught.value.description


def test_service_attributes_are_checked() -> None:
    base = [("service_code", "manhole-cover"), ("address_string", "余杭区仓前街道")]
    with pytest.raises(Open311Error, match=r"cover_state.*required"):
        report_from_form(base, CATALOG, NOW, client="app")
    with pytest.raises(Open311Error, match="not one of"):
        report_from_form([*base, ("attribute[cover_state]", "stolen")], CATALOG, NOW, client="a")
    report, _ = report_from_form([*base, ("attribute[cover_state]", "missing")], CATALOG, NOW,
                                 client="app")
    assert report.attributes == {"cover_state": "missing"}
    assert report.description == "井盖缺失破损"  # no description: the service's name
    with pytest.raises(Open311Error, match="number"):
        report_from_form([("service_code", "illegal-building"), ("address_id", "A-1"),
                          ("attribute[construction_stage]", "built"),
                          ("attribute[floor_area]", "很大")], CATALOG, NOW, client="app")


def test_query_defaults_and_limits() -> None:
    query = parse_query({}, NOW)
    assert (query.start, query.end) == (NOW - timedelta(days=90), NOW)
    query = parse_query({"start_date": "2026-11-01T00:00:00Z", "status": "open,closed",
                         "service_code": "pothole,streetlight"}, NOW)
    assert query.end == datetime(2027, 1, 30, tzinfo=UTC)
    assert query.codes == ("pothole", "streetlight") and query.statuses == ("open", "closed")
    assert parse_query({"service_request_id": "a, b", "status": "bogus"}, NOW).ids == ("a", "b")
    for bad in ({"status": "pending"}, {"start_date": "yesterday"},
                {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"},
                {"start_date": "2026-06-01T00:00:00Z", "end_date": "2026-01-01T00:00:00Z"}):
        with pytest.raises(Open311Error):
            parse_query(bad, NOW)


def test_xml_documents_follow_the_spec() -> None:
    body, content_type = render.render("xml", "services", CATALOG.service_list()[:2])
    assert content_type == "text/xml; charset=utf-8"
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<services><service>')
    root = ElementTree.fromstring(body)
    assert [child.tag for child in root[0]] == ["service_code", "service_name", "description",
                                                "metadata", "type", "keywords", "group"]
    assert root[0].findtext("metadata") == "true" and root[0].findtext("group") == "综合执法"
    definition = ElementTree.fromstring(render.to_xml("service_definition",
                                                      CATALOG.definition("streetlight")))
    values = definition.findall("attributes/attribute/values/value")
    assert [v.findtext("key") for v in values] == ["dark", "flicker", "daytime"]
    errors = ElementTree.fromstring(render.to_xml("errors", render.errors(403, "bad key")))
    assert (errors[0].tag, errors[0].findtext("code")) == ("error", "403")
    empty = ElementTree.fromstring(render.to_xml("service_requests",
                                                 [{"service_request_id": "x", "lat": None}]))
    assert empty.find("request/lat") is not None and empty.findtext("request/lat") == ""


def test_keys_and_the_development_key(tmp_path: Path) -> None:
    keys = Keys.for_server(None, "127.0.0.1")
    assert keys.development and keys.check(DEV_KEY, "open311").name == "development"
    with pytest.raises(KeyRefused, match="channel 'hotline'"):
        keys.check(DEV_KEY, "hotline")
    with pytest.raises(KeyRefused, match="required"):
        keys.check(None, "open311")
    with pytest.raises(ValueError, match=r"refusing to serve on 0\.0\.0\.0"):
        Keys.for_server(None, "0.0.0.0")
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("10.0.0.1")
    path = tmp_path / "keys.yaml"
    path.write_text(f"keys:\n  - name: yuhang-app\n    sha256: {hash_key('s3cret')}\n"
                    "    channels: [open311, hotline]\n    rate_per_minute: 30\n")
    keys = Keys.for_server(path, "0.0.0.0")
    client = keys.check("s3cret", "hotline")
    assert (client.name, client.rate_per_minute) == ("yuhang-app", 30)
    with pytest.raises(KeyRefused, match="not valid"):
        keys.check(DEV_KEY, "open311")  # a key file turns the development key off
    path.write_text("keys:\n  - name: x\n    sha256: not-a-hash\n    channels: [open311]\n")
    with pytest.raises(FileProblems) as caught:
        Keys.load(path)
    assert "sha256" in str(caught.value.problems[0]) and ":3:" in str(caught.value.problems[0])


def test_hash_key_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["intake", "hash-key", "s3cret"]) == 0
    assert capsys.readouterr().out.strip() == f"sha256: {hash_key('s3cret')}"
    assert main(["intake", "hash-key"]) == 0
    key_line, hash_line = capsys.readouterr().out.strip().splitlines()
    assert hash_line.endswith(hash_key(key_line.split()[1]))
    assert main(["intake", "--host", "0.0.0.0"]) == 1
    assert "refusing to serve" in capsys.readouterr().err


def test_control_characters_in_a_description_leave_the_xml_readable() -> None:
    document = [{"service_request_id": "r1",
                 "description": "路灯不亮\x00\x07\x1b[0m，\t第二行\n\ud800结束\uffff"}]
    body = render.to_xml("service_requests", document)
    parsed = ElementTree.fromstring(body)  # raised on \x00 and \x07 before
    assert parsed.find("request/description").text == "路灯不亮[0m，\t第二行\n结束"
    # JSON keeps the control characters (it escapes them).
    assert "\\u0000" in render.json_document([{"description": "a\x00b"}]).decode("utf-8")
