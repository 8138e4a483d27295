"""The console's view and actions, pure: records in, queues, scope and records out."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import pytest

from engine.cases.dispatch import on_classified, on_status
from engine.cases.duplicates import CaseStore
from engine.cases.records import CaseRecord
from engine.classify import classify_data
from engine.console.access import Operator
from engine.console.actions import (
    DispatchForm,
    FormError,
    default_route,
    manual_dispatch,
    reject_triage,
    status_update,
)
from engine.console.view import CaseFilter, ConsoleView, sla_state
from engine.contracts import Classified, Triage, to_json
from engine.rules import RuleSet
from engine.rules.load import load_rules

RULES = Path(__file__).resolve().parents[2] / "rules"
NOW = datetime.fromisoformat("2026-12-07T10:00:00+08:00")
COUNTY = Operator("zhang", "张主任", "county", None)
TOWNSHIP = Operator("li", "李队长", "township", "330110005")
OTHER_TOWNSHIP = Operator("zhao", "赵队长", "township", "330110009")
VIEWER = Operator("guest", "领导", "viewer", None)


@cache
def ruleset() -> RuleSet:
    return load_rules(RULES)


def triage(text: str = "小区里有人在卖东西", channel_id: str = "T1", urgent_text: bool = False,
           address: str = "余杭区五常街道") -> Triage:
    record = classify_data(ruleset(), {
        "channel": "hotline", "channel_id": channel_id,
        "reported_at": "2026-12-07T09:59:00+08:00",
        "description": "救命啊快来人" if urgent_text else text, "address": address,
        "reporter": {"name": "李先生", "phone": "13900001111"}}, NOW)
    assert isinstance(record, Triage), record
    return record


def dispatched(item: Triage, operator: Operator = COUNTY) -> tuple[Classified, CaseRecord]:
    records = manual_dispatch(ruleset(), item, DispatchForm(matter_code="090101"), operator, NOW)
    step = on_classified(ruleset(), CaseStore(), records.classified, NOW)
    assert step.case is not None
    return records.classified, step.case


def department(case: CaseRecord, code: str | None = None) -> Operator:
    return Operator("dept", "执法中队", "department", code or case.lead)


def test_the_queue_shows_urgent_first_and_only_what_is_in_scope() -> None:
    view = ConsoleView()
    calm, urgent = triage(channel_id="A"), triage(channel_id="B", urgent_text=True)
    assert urgent.urgent and not calm.urgent
    view.apply("incidents.triage", to_json(calm))
    view.apply("incidents.triage", to_json(urgent))
    assert [i.triage.incident_id for i in view.triage_queue(COUNTY)] == [urgent.incident_id,
                                                                        calm.incident_id]
    assert len(view.triage_queue(TOWNSHIP)) == 2
    assert view.triage_queue(OTHER_TOWNSHIP) == []
    assert view.triage_queue(department(dispatched(calm)[1])) == []


def test_a_decision_or_a_case_takes_the_item_out_of_the_queue() -> None:
    view = ConsoleView()
    first, second = triage(channel_id="A"), triage(channel_id="B")
    for item in (first, second):
        view.apply("incidents.triage", to_json(item))
    view.apply("triage.decisions", to_json(reject_triage(first, "咨询，非事件", COUNTY, NOW)))
    _, case = dispatched(second)
    view.apply("cases", to_json(case))
    assert view.triage_queue(COUNTY) == []
    assert view.triage[second.incident_id].case_id == case.case_id


def test_unreadable_records_are_counted_not_fatal() -> None:
    view = ConsoleView()
    assert view.apply("cases", b"{not json") is None
    assert view.apply("incidents.triage", json.dumps({"schema": "x"}).encode()) is None
    assert view.unreadable == {"cases": 1, "incidents.triage": 1}


def test_a_manual_dispatch_is_a_classified_record_the_route_worker_dispatches() -> None:
    item = triage()
    records = manual_dispatch(ruleset(), item, DispatchForm(matter_code="090101"), TOWNSHIP, NOW)
    assert records.classified.classified_by == "operator"
    assert records.classified.dispatched_by is not None
    assert records.classified.dispatched_by.operator == "li"
    assert records.classified.incident_id == item.incident_id
    assert (records.decision.decision, records.decision.matter_code) == ("dispatched", "090101")
    assert records.decision.suggested == [s.matter_code for s in item.suggestions]
    route = default_route(ruleset(), item, "090101", TOWNSHIP, NOW)
    assert route is not None
    step = on_classified(ruleset(), CaseStore(), records.classified, NOW)
    assert step.outcome == "assigned" and step.case is not None and step.case.lead == route.lead


@pytest.mark.parametrize("form, field", [
    (DispatchForm(matter_code="999999"), "matter_code"),
    (DispatchForm(matter_code="090101", grid_code="330110005999999"), "grid_code"),
    (DispatchForm(matter_code="090101", lead="330110005.nosuch", override_reason="x"), "lead"),
    (DispatchForm(matter_code="090101", lead="330110005.zhzx"), "override_reason"),
    (DispatchForm(matter_code="090101", priority="asap"), "priority"),
])
def test_a_form_that_cannot_become_a_record_names_its_field(form: DispatchForm,
                                                           field: str) -> None:
    with pytest.raises(FormError) as error:
        manual_dispatch(ruleset(), triage(), form, COUNTY, NOW)
    assert error.value.field == field


def test_only_centres_in_scope_sort_triage() -> None:
    for operator in (OTHER_TOWNSHIP, VIEWER):
        with pytest.raises(FormError):
            manual_dispatch(ruleset(), triage(), DispatchForm(matter_code="090101"), operator,
                            NOW)
        with pytest.raises(FormError):
            reject_triage(triage(), "非事件", operator, NOW)


def test_departments_see_their_cases_and_answer_as_themselves() -> None:
    _, case = dispatched(triage())
    lead = department(case)
    assert lead.sees_case(case) and not department(case, "330110009.zhzf").sees_case(case)
    update = status_update(case, lead, "accepted", NOW)
    assert (update.department, update.by) == (case.lead, "dept")
    with pytest.raises(FormError):
        status_update(case, lead, "verified", NOW)
    with pytest.raises(FormError):
        status_update(case, lead, "resolved", NOW)  # a result note is required
    with pytest.raises(FormError):
        status_update(case, TOWNSHIP, "accepted", NOW)  # a centre does not answer for one


def test_centres_act_as_their_command_room() -> None:
    _, case = dispatched(triage())
    supervise = status_update(case, TOWNSHIP, "supervised", NOW, note="今日处理",
                              respond_by=NOW + timedelta(hours=2))
    assert supervise.department == "330110005.zhzx"
    assert status_update(case, COUNTY, "verified", NOW, satisfied=True).department == \
        "330110.zhzx"
    with pytest.raises(FormError):
        status_update(case, TOWNSHIP, "supervised", NOW, note="x", respond_by=NOW)
    with pytest.raises(FormError):
        status_update(case, TOWNSHIP, "redispatched", NOW)


def test_the_reporter_is_for_centres_and_a_lead_that_must_contact_them() -> None:
    _, case = dispatched(triage())
    reporter = case.origin.report.reporter
    assert reporter is not None and reporter.name
    assert TOWNSHIP.reporter(reporter, case) == reporter
    assert department(case).reporter(reporter, case, contact_reporter=True) == reporter
    for masked, contact in ((VIEWER, True), (department(case, "330110005.yjgl"), True),
                            (department(case), False)):
        shown = masked.reporter(reporter, case, contact_reporter=contact)
        assert shown is not None and shown.phone == "139****1111"
        assert shown.name == reporter.name[0] + "*" * (len(reporter.name) - 1)


def test_sla_state_and_the_overdue_order() -> None:
    store = CaseStore()
    _, case = dispatched(triage())
    store.put(case)
    assert case.sla is not None and case.sla.accept_by is not None
    assert sla_state(case, NOW) == "on_time"
    assert sla_state(case, case.sla.accept_by + timedelta(seconds=1)) == "breached"
    warnings = [t for t in case.sla.timers if t.step == "warning"]
    if warnings:
        assert sla_state(case, warnings[0].due + timedelta(seconds=1)) == "warned"
    accept = status_update(case, department(case), "accepted", NOW + timedelta(minutes=1))
    step = on_status(ruleset(), store, to_json(accept), NOW + timedelta(minutes=1))
    assert step.case is not None and step.case.state == "accepted"
    view = ConsoleView()
    view.apply("cases", to_json(step.case))
    late = NOW + timedelta(days=60)
    rows = view.case_rows(COUNTY, late, CaseFilter(sla="breached"))
    assert [r.case.case_id for r in rows] == [case.case_id]
    assert view.case_rows(COUNTY, late, CaseFilter(sla="on_time")) == []


def test_the_days_numbers() -> None:
    view = ConsoleView()
    item = triage()
    view.apply("incidents.triage", to_json(item))
    automatic = classify_data(ruleset(), {
        "channel": "gridapp", "channel_id": "G1", "reported_at": "2026-12-07T09:00:00+08:00",
        "description": "路边有个坑", "address": "余杭区五常街道"}, NOW)
    assert isinstance(automatic, Classified)
    view.apply("incidents.classified", to_json(automatic))
    manual, _ = dispatched(item)
    view.apply("incidents.classified", to_json(manual))  # not counted twice
    day = view.numbers(COUNTY, NOW + timedelta(minutes=5))
    assert day.intake_by_channel == {"gridapp": 1, "hotline": 1}
    assert (day.automatic, day.triaged, day.backlog) == (1, 1, 1)
    assert day.automatic_rate == 0.5
    assert day.oldest_waiting == timedelta(minutes=5)


def test_harvest_writes_reviewable_candidates_in_the_examples_format() -> None:
    import yaml

    from engine.console.harvest import harvest
    from engine.reference.examples import ExampleFile

    first, second = triage(channel_id="H1"), triage("这边有点问题，好几天了没人管", "H2")
    dispatch = manual_dispatch(ruleset(), first, DispatchForm(matter_code="090101"), COUNTY,
                               NOW).decision
    rejected = reject_triage(second, "咨询来电，非事件", COUNTY, NOW)
    later = reject_triage(first, "重复", COUNTY, NOW - timedelta(hours=1))  # older: loses
    known = dispatch.model_copy(update={"incident_id": "inc-known",
                                        "description": ruleset().examples.examples[0].text})
    text, count = harvest([dispatch, rejected, later, known], ruleset().matters,
                          ruleset().examples)
    assert count == 2
    parsed = ExampleFile.model_validate(yaml.safe_load(text))
    assert parsed.items == {"090101": {"hotline": ["小区里有人在卖东西"]}}
    assert parsed.none == {"hotline": ["这边有点问题，好几天了没人管"]}
    assert "# 占道经营" in text and "zhang" in text and "咨询来电" in text
    again, none_left = harvest([dispatch], ruleset().matters, ruleset().examples,
                               since=NOW + timedelta(minutes=1))
    assert none_left == 0 and again.strip().endswith("{}")
