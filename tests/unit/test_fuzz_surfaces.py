"""Every surface that reads outside input, fuzzed: each input is accepted or rejected with a
reason, and nothing else happens (no other exception, no crash).

Surfaces: the JSON API's body and reports, Open311 forms, hotline work orders, grid-app
reports, MQTT alarm payloads, department status updates, and rule files. Inputs are either
arbitrary (bytes, any JSON) or a valid example with fields dropped, replaced by any JSON
value, or added (what reaches the deep code). ``tests/unit/test_intake_fuzz.py`` does the
same for the classify worker's input.

``GRIDDISPATCH_FUZZ_EXAMPLES`` sets the examples per test (default 300, what CI runs;
``make fuzz`` runs 5,000, ``make fuzz FUZZ_EXAMPLES=N`` any number), each run with fresh
random seeds. The README keeps the figures.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors.channels.gridapp import from_gridapp
from connectors.channels.hotline import from_hotline
from connectors.channels.sensors import DeviceRegistry, alarm_to_report
from connectors.errors import AdapterError
from connectors.intake.api_routes import items_of
from connectors.intake.open311 import Catalog, Open311Error, report_from_form
from connectors.intake.service import RequestRefused
from engine.cases.dispatch import on_classified, on_status
from engine.cases.duplicates import CaseStore
from engine.cases.records import CaseRecord, StatusRejected
from engine.classify import classify_data
from engine.contracts import Classified, IntakeReport
from engine.reference.channels import ChannelMaps
from engine.reference.departments import DepartmentRegistry
from engine.reference.holidays import load_holidays
from engine.rules import RuleSet
from engine.rules.layers import load_layers
from engine.rules.load import load_rules
from engine.yamlfile import FileProblems

RULES = Path(__file__).resolve().parents[2] / "rules"
REFERENCE = RULES / "reference"
NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
EXAMPLES = int(os.environ.get("GRIDDISPATCH_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@cache
def ruleset() -> RuleSet:
    return load_rules(RULES, with_model=False)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=10), children, max_size=4),
    max_leaves=12)


def mutated(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The valid example with up to three fields dropped or replaced by anything, and
    sometimes a key added: most inputs stay near valid, so they reach the deep code."""
    change = st.one_of(st.just(_DROP), json_values, st.text(max_size=40),
                       st.integers(-10**12, 10**13))
    return st.builds(
        lambda changes, extra: {**{k: changes.get(k, v) for k, v in base.items()
                                   if changes.get(k, v) is not _DROP}, **extra},
        st.dictionaries(st.sampled_from(sorted(base)), change, max_size=3),
        st.dictionaries(st.text(max_size=8), json_values, max_size=1))


_DROP = object()

REPORT = {"channel": "hotline", "channel_id": "F-1", "reported_at": "2026-11-24T09:30:00+08:00",
          "description": "小区门口垃圾成堆", "grid_code": "330110005001001",
          "location": {"lat": 30.3353, "lon": 120.016}, "address": "余杭区仓前街道太炎社区",
          "reporter": {"name": "王女士", "phone": "13912345678"}, "attachments": [],
          "attributes": {"k": "v"}, "matter_code": "100101", "division_code": "330110005"}
WORK_ORDER = {"工单编号": "ZJ12345-20261124-000187", "诉求内容": "井盖缺失，晚上很危险",
              "诉求分类": "城市管理-市政设施-井盖", "发生地址": "余杭区仓前街道太炎社区文一西路口",
              "来电时间": "2026-11-24 09:30:00", "来电人": "王女士", "联系电话": "13912345678",
              "经度": "119.9921", "纬度": 30.2912, "紧急程度": "紧急", "受理坐席": "A-017"}
APP_REPORT = {"report_id": "GA-330110005001-20261124-0003", "worker_id": "W-07",
              "grid_code": "330110005001001", "reported_at": "2026-11-24T10:05:00+08:00",
              "description": "小区东门垃圾乱堆放", "matter_code": "100101",
              "location": {"lat": 30.3353, "lon": 120.016}, "photos": ["https://x.cn/a.jpg"],
              "worker_name": "李网格"}
ALARM = {"alarm_id": "A-20261124-0001", "time": "2026-11-24T10:00:00+08:00", "type": "gas",
         "value": 25, "unit": "%LEL", "threshold": 20, "device_id": "yh-gas-009001001",
         "message": "浓度超标"}


# --- the JSON API, hotline and grid-app channels ----------------------------------------------

def convert_api(item: Any) -> IntakeReport:
    """What ``POST /api/v1/incidents`` does with each item of the body."""
    if not isinstance(item, dict):
        raise AdapterError("report", "a report is a JSON object")
    return IntakeReport.model_validate(item)


def converted(convert: Callable[[], IntakeReport],
              refused_as: str = "refused") -> IntakeReport | None:
    """The report, or None when refused with the field and the reason (nothing else)."""
    try:
        report = convert()
    except AdapterError as exc:
        assert exc.field and exc.reason
    except ValidationError as exc:
        assert exc.errors()[0]["msg"]
    else:
        assert isinstance(report, IntakeReport)
        event("accepted")
        return report
    event(refused_as)
    return None


def accepted_or_refused(convert: Any, item: Any) -> None:
    report = converted(lambda: convert(item))
    if report is None:
        return
    # Accepted at the door: the classify stage then classifies, triages or rejects it.
    outcome = classify_data(ruleset(), report.model_dump(mode="json", by_alias=True), NOW)
    assert outcome is not None


@FUZZ
@given(st.one_of(st.binary(max_size=300),
                 json_values.map(lambda v: json.dumps(v).encode()),
                 st.lists(mutated(REPORT), max_size=3).map(
                     lambda items: json.dumps(items, ensure_ascii=False).encode())))
def test_api_bodies_are_split_or_refused(body: bytes) -> None:
    try:
        items, _ = items_of(body, "api")
    except RequestRefused as exc:
        assert exc.status in (400, 413) and str(exc)
        event("body refused")
        return
    for item in items:
        accepted_or_refused(convert_api, item)


@FUZZ
@given(st.one_of(mutated(REPORT), json_values))
def test_api_reports_are_accepted_or_refused_with_the_field(item: Any) -> None:
    accepted_or_refused(convert_api, item)


@FUZZ
@given(st.one_of(mutated(WORK_ORDER), json_values))
def test_hotline_work_orders_are_accepted_or_refused_with_the_field(item: Any) -> None:
    categories = ruleset().channels.maps["hotline"]
    accepted_or_refused(lambda payload: from_hotline(payload, categories)
                        if isinstance(payload, dict) else from_hotline({}, categories), item)


@FUZZ
@given(st.one_of(mutated(APP_REPORT), json_values))
def test_grid_app_reports_are_accepted_or_refused_with_the_field(item: Any) -> None:
    accepted_or_refused(lambda payload: from_gridapp(payload if isinstance(payload, dict)
                                                     else {}), item)


# --- Open311 forms ---------------------------------------------------------------------------

@cache
def catalog() -> Catalog:
    return Catalog.load(RULES)


FORM_KEYS = ["service_code", "lat", "long", "address_string", "address_id", "description",
             "first_name", "last_name", "phone", "email", "media_url", "device_id",
             "account_id", "attribute[urgency]", "attribute[x]", "jurisdiction_id"]


FORM = [("service_code", "streetlight"), ("lat", "30.29"), ("long", "119.99"),
        ("description", "路灯不亮"), ("last_name", "李"), ("phone", "13900001111")]
form_pairs = st.lists(st.tuples(st.sampled_from(FORM_KEYS) | st.text(max_size=12),
                                st.sampled_from(["streetlight", "pothole", "30.29", "119.99",
                                                 "", "nan", "1e999", "-91"])
                                | st.text(max_size=40)), max_size=6)


@FUZZ
@given(st.one_of(form_pairs, st.builds(lambda keep, extra: [p for p, k in zip(FORM, keep,
                                                                              strict=True)
                                                            if k] + extra,
                                       st.lists(st.booleans(), min_size=len(FORM),
                                                max_size=len(FORM)), form_pairs)))
def test_open311_forms_become_reports_or_a_400_naming_the_problem(
        pairs: list[tuple[str, str]]) -> None:
    try:
        report, service = report_from_form(pairs, catalog(), NOW, client="fuzz")
    except Open311Error as exc:
        assert exc.code in (400, 404) and exc.description
        event("refused")
        return
    except ValidationError as exc:  # the intake route answers these as 400 with the field
        assert exc.errors()[0]["msg"]
        event("refused")
        return
    assert isinstance(report, IntakeReport) and service.code
    event("accepted")


# --- MQTT alarms -----------------------------------------------------------------------------

@cache
def devices() -> DeviceRegistry:
    return DeviceRegistry.load(REFERENCE / "devices.yaml", ruleset().channels)


@FUZZ
@given(st.sampled_from(["yh-gas-009001001", "no-such-device", ""]),
       st.one_of(st.binary(max_size=200),
                 mutated(ALARM).map(lambda d: json.dumps(d, ensure_ascii=False).encode())))
def test_mqtt_alarms_become_reports_or_dead_letters_with_the_field(device: str,
                                                                   raw: bytes) -> None:
    # refused: dead-lettered with the field and the reason
    report = converted(lambda: alarm_to_report(device, raw, devices()), "dead-lettered")
    assert report is None or report.channel == "sensor"


# --- department status updates ---------------------------------------------------------------

@cache
def open_case() -> CaseRecord:
    record = classify_data(ruleset(), {
        "channel": "hotline", "channel_id": "FZ-1", "reported_at": "2026-11-24T10:00:00+08:00",
        "description": "楼道里一股煤气味", "address": "五常街道"}, NOW)
    assert isinstance(record, Classified)
    result = on_classified(ruleset(), CaseStore(), record, NOW)
    assert result.case is not None
    return result.case


def status_base() -> dict[str, Any]:
    case = open_case()
    return {"schema": "griddispatch.status/1", "case_id": case.case_id,
            "department": case.lead, "action": "accepted", "at": "2026-11-24T10:05:00+08:00",
            "note": "已签收", "satisfied": None, "lead": case.lead, "assist": case.assist,
            "respond_by": "2026-11-25T10:00:00+08:00", "stage": "stop_work",
            "review_at": "2026-12-24T10:00:00+08:00", "extend_by": "2d", "by": "张三"}


ACTIONS = ["accepted", "returned", "progress", "paused", "resumed", "resolved", "verified",
           "redispatched", "supervised", "extension_requested", "extension_approved",
           "extension_refused", "callback_unreachable", "backlog_requested",
           "backlog_approved", "backlog_refused", "backlog_released", "stage_completed"]


@FUZZ
@given(st.one_of(
    st.binary(max_size=200),
    mutated(status_base()).map(lambda d: json.dumps(d, ensure_ascii=False).encode()),
    st.builds(lambda base, action, department: {**base, "action": action,
                                                "department": department},
              st.just(status_base()), st.sampled_from(ACTIONS),
              st.sampled_from([open_case().lead, *open_case().assist, "330110.zhzx",
                               "330110005.zhzx", "330110009.zhzf", "nobody"]))
    .map(lambda d: json.dumps(d, ensure_ascii=False).encode())))
def test_status_updates_apply_or_are_rejected_with_a_reason(raw: bytes) -> None:
    store = CaseStore()
    store.put(open_case())
    result = on_status(ruleset(), store, raw, NOW + timedelta(minutes=5))
    rejected = [o.value for o in result.outputs if isinstance(o.value, StatusRejected)]
    if result.outcome == "rejected":
        assert len(rejected) == 1 and rejected[0].reason and rejected[0].detail
        event(f"rejected: {rejected[0].reason}")
    else:
        assert not rejected and result.case is not None
        event(f"applied: {result.outcome}")


# --- rule files ------------------------------------------------------------------------------

def edits(text: str) -> st.SearchStrategy[str]:
    """A rule file with one or two operator-like mistakes: a line dropped, doubled, or
    re-indented; a value replaced by any text; stray YAML pasted in."""
    lines = text.splitlines()

    def apply(ops: list[tuple[str, int, str]]) -> str:
        out = list(lines)
        for op, at, junk in ops:
            i = at % max(len(out), 1)
            if op == "drop" and out:
                del out[i]
            elif op == "double" and out:
                out.insert(i, out[i])
            elif op == "indent" and out:
                out[i] = "  " + out[i]
            elif op == "value" and out and ":" in out[i]:
                out[i] = out[i].split(":", 1)[0] + ": " + junk
            else:
                out.insert(i, junk)
        return "\n".join(out) + "\n"

    return st.lists(st.tuples(st.sampled_from(["drop", "double", "indent", "value", "paste"]),
                              st.integers(0, 10_000),
                              st.sampled_from(["", "[", "{a: 1", "- x", "&a b", "*a", "<<: *a",
                                               "!!python/object:os.system ls", "~", "3d",
                                               "-1h", "999999999999", "\"\\ud800\"", "\t",
                                               "330110005.zhzf"]) | st.text(max_size=20)),
                    min_size=1, max_size=2).map(apply)


RULE_FILES = {
    "layers/330110-yuhang.yaml": lambda d: load_layers(d / "layers"),
    "reference/holidays.yaml": lambda d: load_holidays(d / "reference" / "holidays.yaml"),
    "reference/channels.yaml": lambda d: ChannelMaps.load(d / "reference" / "channels.yaml"),
    "reference/departments.yaml": lambda d: DepartmentRegistry.load(
        d / "reference" / "departments.yaml"),
}


@FUZZ
@given(st.data())
def test_edited_rule_files_load_or_name_their_problems(tmp_path_factory: Any,
                                                      data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(RULE_FILES)))
    text = (RULES / name).read_text(encoding="utf-8")
    edited = data.draw(edits(text))
    root = tmp_path_factory.mktemp("rules")
    for part in ("layers", "reference"):
        (root / part).mkdir()
    shutil.copy(RULES / name, root / name)
    (root / name).write_text(edited, encoding="utf-8")
    try:
        RULE_FILES[name](root)
    except FileProblems as exc:
        assert exc.problems and all(p.message for p in exc.problems)
        event("problems named")
        return
    event("loaded")


def test_a_yaml_tag_is_a_named_problem_not_a_crash() -> None:
    """Found by the fuzzer: the safe loader refuses ``!!python/...`` tags (good), but the
    refusal escaped as a YAML exception instead of a problem with the line."""
    from engine.yamlfile import parse_yaml

    try:
        parse_yaml("version: 1\nroute: !!python/object:os.system ls\n", "layer.yaml")
    except FileProblems as exc:
        assert [(p.line, "without tags" in p.message) for p in exc.problems] == [(2, True)]
    else:
        raise AssertionError("a tagged value was accepted")
