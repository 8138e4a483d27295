"""The case state machine: every legal transition, and each illegal one refused with its reason."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import pytest

from engine.cases.lifecycle import (
    NeedsReroute,
    Refused,
    apply_status,
    assignments,
    case_id_for,
    open_case,
    partition_key,
    reassign,
)
from engine.cases.records import CaseRecord, StatusAction, StatusUpdate
from engine.classify import classify_data
from engine.contracts import Classified, Reporter
from engine.routing.decide import route
from engine.rules import RuleSet
from engine.rules.load import load_rules

RULES = Path(__file__).resolve().parents[2] / "rules"
NOW = datetime.fromisoformat("2026-11-24T10:00:05+08:00")
LEAD = "330110.xf"
ASSIST = ("330110005.zhzx", "330110005.yjgl")
OUTSIDER = "330110009.zhzf"


@cache
def ruleset() -> RuleSet:
    return load_rules(RULES)


@cache
def gas_record() -> Classified:
    record = classify_data(ruleset(), {
        "channel": "hotline", "channel_id": "LC-1", "reported_at": "2026-11-24T10:00:00+08:00",
        "description": "楼道里一股煤气味", "address": "五常街道",
        "reporter": {"name": "王女士", "phone": "13812345678"}}, NOW)
    assert isinstance(record, Classified)
    return record


def new_case() -> CaseRecord:
    record = gas_record()
    case = open_case(record, route(ruleset(), record), NOW)
    assert (case.state, case.lead, tuple(case.assist)) == ("dispatched", LEAD, ASSIST)
    return case


def update(case: CaseRecord, department: str, action: StatusAction, minutes: int = 1,
           note: str = "", satisfied: bool | None = None) -> StatusUpdate:
    return StatusUpdate(case_id=case.case_id, department=department, action=action,
                        at=NOW + timedelta(minutes=minutes), note=note, satisfied=satisfied)


def step(case: CaseRecord, department: str, action: StatusAction, note: str = "",
         satisfied: bool | None = None) -> CaseRecord:
    result = apply_status(case, update(case, department, action, note=note, satisfied=satisfied),
                          NOW + timedelta(minutes=5))
    assert isinstance(result, CaseRecord), result
    assert result.history[-1].action == action
    assert result.history[-1].department == department
    return result


def refused(case: CaseRecord, department: str, action: StatusAction,
            satisfied: bool | None = None) -> Refused:
    result = apply_status(case, update(case, department, action, satisfied=satisfied), NOW)
    assert isinstance(result, Refused), result
    return result


def accepted_case() -> CaseRecord:
    return step(new_case(), LEAD, "accepted")


def resolved_case() -> CaseRecord:
    return step(accepted_case(), LEAD, "resolved", note="已关阀通风，燃气公司已维修")


# --- opening ---------------------------------------------------------------------------------

def test_open_case_is_dispatched_with_a_deterministic_id() -> None:
    case = new_case()
    assert case.case_id == case_id_for(gas_record()) == new_case().case_id
    assert case.case_id.startswith("330110005-") and len(case.case_id) == len("330110005-") + 12
    assert case.partition_key == "330110005"
    assert case.incident_ids == [gas_record().incident_id]
    assert (case.priority, case.sla_policy, case.returns) == ("urgent", "urgent", 0)
    assert case.history[0].action == "dispatched"
    assert case.history[0].detail == "fire-gas-urgent-joint"


def test_partition_key_is_the_township_else_the_county() -> None:
    assert partition_key(["330000000000", "330100000000", "330110000000",
                          "330110005000", "330110005001"]) == "330110005"
    assert partition_key(["330000000000", "330100000000", "330110000000"]) == "330110"


# --- legal transitions -----------------------------------------------------------------------

def test_accept_progress_resolve_verify_closes_the_case() -> None:
    case = step(new_case(), LEAD, "accepted")
    assert case.state == "accepted"
    case = step(case, LEAD, "progress", note="已到场")
    assert case.state == "accepted"
    case = step(case, ASSIST[0], "progress", note="社区已疏散住户")
    assert case.state == "accepted"
    case = step(case, LEAD, "resolved", note="已处置")
    assert (case.state, case.resolution) == ("resolved", "已处置")
    case = step(case, "330110.zhzx", "verified", satisfied=True)
    assert (case.state, case.satisfied) == ("closed", True)
    assert [e.action for e in case.history] == [
        "dispatched", "accepted", "progress", "progress", "resolved", "verified"]
    assert case.updated_at == NOW + timedelta(minutes=5)


def test_verification_without_an_answer_closes_the_case() -> None:
    case = step(resolved_case(), "330110.zhzx", "verified")
    assert (case.state, case.satisfied) == ("closed", None)


def test_an_unsatisfied_verification_reopens_and_the_lead_accepts_again() -> None:
    case = step(resolved_case(), "330110.zhzx", "verified", satisfied=False)
    assert (case.state, case.satisfied) == ("reopened", False)
    case = step(case, ASSIST[1], "progress", note="复查中")
    assert case.state == "reopened"
    case = step(case, LEAD, "accepted")
    assert case.state == "accepted"
    case = step(case, LEAD, "resolved", note="二次处置")
    assert (case.state, case.resolution) == ("resolved", "二次处置")
    case = step(case, "330110.zhzx", "verified", satisfied=True)
    assert case.state == "closed"


def test_a_reopened_case_may_be_resolved_directly_by_the_lead() -> None:
    case = step(resolved_case(), "330110.zhzx", "verified", satisfied=False)
    assert step(case, LEAD, "resolved", note="补充处置").state == "resolved"


def test_resolving_without_a_note_leaves_no_resolution() -> None:
    assert step(accepted_case(), LEAD, "resolved").resolution is None


def test_return_before_accepting_needs_a_reroute() -> None:
    case = new_case()
    result = apply_status(case, update(case, LEAD, "returned", note="非我单位职责"), NOW)
    assert isinstance(result, NeedsReroute)
    returned = result.case
    assert (returned.returns, returned.returned_by) == (1, [LEAD])
    assert returned.state == "dispatched"
    assert returned.history[-1].action == "returned"
    assert returned.history[-1].detail == "非我单位职责"


def test_reroute_after_a_return_reassigns_without_the_returning_department() -> None:
    case = new_case()
    result = apply_status(case, update(case, LEAD, "returned"), NOW)
    assert isinstance(result, NeedsReroute)
    decision = route(ruleset(), case.origin, exclude=frozenset(result.case.returned_by),
                     returns=result.case.returns)
    assert decision.lead != LEAD
    moved = reassign(result.case, decision, NOW)
    assert (moved.state, moved.lead, moved.returns) == ("dispatched", decision.lead, 1)
    assert moved.history[-1].action == "reassigned"
    # the new lead may return it too; then the count reaches max_returns
    second = apply_status(moved, update(moved, moved.lead, "returned"), NOW)
    assert isinstance(second, NeedsReroute)
    assert second.case.returns == 2 and second.case.returned_by == [LEAD, moved.lead]
    final = route(ruleset(), case.origin, exclude=frozenset(second.case.returned_by),
                  returns=second.case.returns)
    assert final.lead == "330110.zhzx"
    # the old lead is no longer on the case
    assert refused(reassign(second.case, final, NOW), LEAD, "accepted").reason == "not_assigned"


# --- illegal transitions ---------------------------------------------------------------------

@pytest.mark.parametrize("action", ["accepted", "resolved", "returned", "progress"])
def test_an_uninvolved_department_is_not_assigned(action: StatusAction) -> None:
    for case in (new_case(), accepted_case()):
        assert refused(case, OUTSIDER, action).reason == "not_assigned"


@pytest.mark.parametrize("action", ["accepted", "resolved", "returned"])
def test_an_assisting_department_may_not_act_as_lead(action: StatusAction) -> None:
    for case in (new_case(), accepted_case()):
        result = refused(case, ASSIST[0], action)
        assert result.reason == "not_assigned"
        assert LEAD in result.detail


def test_the_refusal_names_the_verb() -> None:
    assert "may resolve case" in refused(accepted_case(), ASSIST[0], "resolved").detail


def test_the_refusal_names_accept_and_return() -> None:
    assert "may accept case" in refused(new_case(), ASSIST[0], "accepted").detail
    assert "may return case" in refused(new_case(), ASSIST[0], "returned").detail


def test_resolve_before_accept_is_illegal() -> None:
    result = refused(new_case(), LEAD, "resolved")
    assert result.reason == "illegal_transition"
    assert "dispatched" in result.detail


def test_return_after_accept_is_illegal() -> None:
    result = refused(accepted_case(), LEAD, "returned")
    assert result.reason == "illegal_transition"
    assert "return before accepting" in result.detail


@pytest.mark.parametrize("state", ["dispatched", "accepted", "reopened", "closed"])
def test_verify_before_resolve_is_illegal(state: str) -> None:
    case = new_case().model_copy(update={"state": state})
    for satisfied in (True, False, None):
        result = refused(case, "330110.zhzx", "verified", satisfied=satisfied)
        assert result.reason == "illegal_transition"


def test_accepting_twice_is_illegal() -> None:
    assert refused(accepted_case(), LEAD, "accepted").reason == "illegal_transition"


def test_progress_before_accept_is_illegal_even_for_the_lead() -> None:
    assert refused(new_case(), LEAD, "progress").reason == "illegal_transition"
    assert refused(new_case(), ASSIST[0], "progress").reason == "illegal_transition"


@pytest.mark.parametrize("action", ["accepted", "resolved", "returned", "progress"])
def test_nothing_but_verification_applies_to_a_resolved_case(action: StatusAction) -> None:
    assert refused(resolved_case(), LEAD, action).reason == "illegal_transition"


@pytest.mark.parametrize("action", ["accepted", "resolved", "returned", "progress", "verified"])
def test_a_closed_case_takes_no_more_updates(action: StatusAction) -> None:
    closed = step(resolved_case(), "330110.zhzx", "verified", satisfied=True)
    assert refused(closed, LEAD, action).reason == "illegal_transition"


def test_return_of_a_reopened_case_is_illegal() -> None:
    case = step(resolved_case(), "330110.zhzx", "verified", satisfied=False)
    assert refused(case, LEAD, "returned").reason == "illegal_transition"


def test_refusals_leave_the_case_unchanged() -> None:
    case = new_case()
    before = case.model_dump()
    refused(case, OUTSIDER, "accepted")
    refused(case, LEAD, "resolved")
    assert case.model_dump() == before


# --- the reporter's personal data ----------------------------------------------------------

def test_only_a_lead_that_must_contact_the_reporter_gets_the_name_and_phone() -> None:
    record, case = gas_record(), new_case()
    masked = Reporter(name="王**", phone="138****5678")
    for contact, lead_sees in ((True, Reporter(name="王女士", phone="13812345678")),
                               (False, masked)):
        sent = assignments(case, record, route(ruleset(), record), "new",
                           ruleset().departments, NOW, contact_reporter=contact)
        assert [(a.department, a.role) for a in sent] == [
            (LEAD, "lead"), (ASSIST[0], "assist"), (ASSIST[1], "assist")]
        assert sent[0].reporter == lead_sees
        # the township's command room assists here: centres always see the reporter
        assert sent[1].reporter == Reporter(name="王女士", phone="13812345678")
        assert sent[2].reporter == masked
        assert all(a.partition_key == "330110005" and a.case_id == case.case_id for a in sent)


def test_numbers_in_the_description_are_masked_for_those_without_the_grant() -> None:
    record = gas_record()
    text = record.report.description + "，请回电13812345678"
    record = record.model_copy(update={"report": record.report.model_copy(
        update={"description": text})})
    sent = assignments(new_case(), record, route(ruleset(), record), "new",
                       ruleset().departments, NOW, contact_reporter=True)
    assert sent[0].description == sent[1].description == text  # the lead, the command room
    assert sent[2].description.endswith("请回电138****5678")


def test_the_lead_cannot_verify_its_own_work() -> None:
    refusal = refused(resolved_case(), LEAD, "verified", satisfied=True)
    assert refusal.reason == "not_assigned" and "command centre" in refusal.detail


def test_a_township_command_room_may_verify() -> None:
    assert step(resolved_case(), "330110005.zhzx", "verified", satisfied=True).state == "closed"
