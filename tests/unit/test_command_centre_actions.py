"""What a command centre does to cases, as records the route worker applies: a manual dispatch
of a triaged report (分拨), supervision (督办) and redispatch (改派)."""

from __future__ import annotations

import json
from datetime import timedelta

from engine.cases.dispatch import STATUS_REJECTED_TOPIC, on_classified, on_status
from engine.cases.duplicates import CaseStore
from engine.cases.events import Redispatch
from engine.cases.lifecycle import apply_status
from engine.cases.records import Assignment, CaseRecord, StatusRejected, StatusUpdate
from engine.contracts import Classified, ManualDispatch, TriageDecision, to_json
from tests.unit.test_case_lifecycle import (
    ASSIST,
    LEAD,
    NOW,
    OUTSIDER,
    accepted_case,
    gas_record,
    new_case,
    resolved_case,
    ruleset,
)

CENTRE = "330110005.zhzx"
OTHER_LEAD = "330110005.zhzf"


def centre_update(case: CaseRecord, action: str, minutes: int = 2, **fields: object
                  ) -> StatusUpdate:
    return StatusUpdate.model_validate({
        "case_id": case.case_id, "department": fields.pop("department", CENTRE),
        "action": action, "at": NOW + timedelta(minutes=minutes), "by": "wang.li", **fields})


def test_supervision_is_kept_on_the_case_until_the_lead_answers() -> None:
    case = accepted_case()
    due = NOW + timedelta(hours=4)
    supervised = apply_status(case, centre_update(case, "supervised", note="今天务必处理",
                                                  respond_by=due), NOW)
    assert isinstance(supervised, CaseRecord)
    assert supervised.supervision is not None
    assert (supervised.supervision.by, supervised.supervision.respond_by,
            supervised.supervision.answered_at) == (CENTRE, due, None)
    assert (supervised.history[-1].action, supervised.history[-1].by) == ("supervised", "wang.li")
    answer = StatusUpdate(case_id=case.case_id, department=LEAD, action="progress",
                          at=NOW + timedelta(minutes=30), note="已到场")
    answered = apply_status(supervised, answer, NOW)
    assert isinstance(answered, CaseRecord) and answered.supervision is not None
    assert answered.supervision.answered_at == answer.at


def test_supervision_needs_a_command_centre_a_note_and_a_deadline() -> None:
    case = accepted_case()
    due = NOW + timedelta(hours=1)
    assert apply_status(case, centre_update(case, "supervised", note="x", respond_by=due,
                                            department=LEAD), NOW).reason == "not_assigned"
    assert "respond_by" in apply_status(case, centre_update(case, "supervised", note="x"),
                                        NOW).detail
    assert "note" in apply_status(case, centre_update(case, "supervised", respond_by=due),
                                  NOW).detail
    assert apply_status(resolved_case(), centre_update(resolved_case(), "supervised", note="x",
                                                       respond_by=due),
                        NOW).reason == "illegal_transition"


def test_redispatch_moves_the_lead_restarts_acceptance_and_tells_the_new_lead() -> None:
    store = CaseStore()
    record = gas_record()
    opened = on_classified(ruleset(), store, record, NOW).case
    assert opened is not None and opened.lead == LEAD
    update = centre_update(opened, "redispatched", lead=OTHER_LEAD, note="属地处置")
    step = on_status(ruleset(), store, to_json(update), NOW + timedelta(minutes=3))
    assert step.outcome == "rerouted" and step.case is not None
    assert (step.case.state, step.case.lead) == ("dispatched", OTHER_LEAD)
    assert [e.action for e in step.case.history[-2:]] == ["redispatched", "reassigned"]
    leads = [o.value for o in step.outputs if isinstance(o.value, Assignment)
             and o.value.role == "lead"]
    assert [(a.department, a.kind) for a in leads] == [(OTHER_LEAD, "reassigned")]
    assert OTHER_LEAD not in step.case.assist and set(step.case.assist) == set(ASSIST)


def test_redispatch_to_an_unknown_department_is_refused_with_its_code() -> None:
    store = CaseStore()
    opened = on_classified(ruleset(), store, gas_record(), NOW).case
    assert opened is not None
    update = centre_update(opened, "redispatched", lead="330110005.nosuch")
    step = on_status(ruleset(), store, to_json(update), NOW)
    assert step.outcome == "rejected"
    out = step.outputs[0]  # then the sender's verdict
    assert out.topic == STATUS_REJECTED_TOPIC and isinstance(out.value, StatusRejected)
    assert "330110005.nosuch" in out.value.detail


def test_only_a_command_centre_redispatches() -> None:
    case = new_case()
    result = apply_status(case, centre_update(case, "redispatched", lead=OTHER_LEAD,
                                              department=OUTSIDER), NOW)
    assert not isinstance(result, (CaseRecord, Redispatch))
    assert result.reason == "not_assigned"


def manual(record: Classified, **choice: object) -> Classified:
    return record.model_copy(update={"classified_by": "operator", "dispatched_by": ManualDispatch(
        operator="wang.li", decided_at=NOW, triage_reason="uncertain", **choice)})


def test_a_manual_dispatch_with_chosen_departments_overrides_the_routing_rules() -> None:
    record = manual(gas_record(), lead=OTHER_LEAD, assist=[CENTRE], override_reason="夜间值班")
    step = on_classified(ruleset(), CaseStore(), record, NOW)
    assert step.case is not None
    assert (step.case.lead, step.case.assist) == (OTHER_LEAD, [CENTRE])
    # the record as it travels: the route worker reads it back the same
    again = Classified.model_validate(json.loads(to_json(record)))
    assert again.dispatched_by == record.dispatched_by


def test_a_manual_dispatch_without_departments_is_routed_by_the_rules() -> None:
    step = on_classified(ruleset(), CaseStore(), manual(gas_record()), NOW)
    assert step.case is not None and (step.case.lead, tuple(step.case.assist)) == (LEAD, ASSIST)


def test_a_chosen_lead_that_no_longer_exists_leaves_the_rules_choice() -> None:
    step = on_classified(ruleset(), CaseStore(), manual(gas_record(), lead="330110005.gone"),
                         NOW)
    assert step.case is not None and step.case.lead == LEAD


def test_a_triage_decision_round_trips_with_chinese_text() -> None:
    decision = TriageDecision(incident_id="inc-1", decision="rejected", operator="wang.li",
                              decided_at=NOW, triage_reason="unclassified",
                              description="测试：不是事件", channel="hotline",
                              reason="咨询类来电，非事件")
    wire = to_json(decision)
    assert "咨询类来电".encode() in wire and b'"schema":"griddispatch.triage-decision/1"' in wire
    assert TriageDecision.model_validate(json.loads(wire)) == decision


# --- extension (延期) ------------------------------------------------------------------------


def extension_update(case: CaseRecord, action: str, department: str, minutes: int = 3,
                     **fields: object) -> bytes:
    return to_json(StatusUpdate.model_validate({
        "case_id": case.case_id, "department": department, "action": action,
        "at": NOW + timedelta(minutes=minutes), **fields}))


def test_an_approved_extension_moves_the_resolution_deadline_and_replans() -> None:
    store = CaseStore()
    opened = on_classified(ruleset(), store, gas_record(), NOW).case
    assert opened is not None and opened.sla is not None
    before = opened.sla.resolve_by
    assert before is not None
    accept = on_status(ruleset(), store, extension_update(opened, "accepted", LEAD, 1), NOW)
    asked = on_status(ruleset(), store, extension_update(
        opened, "extension_requested", LEAD, 2, extend_by="1d", note="需协调燃气公司更换管道"),
        NOW + timedelta(minutes=2))
    assert accept.outcome == "updated" and asked.outcome == "updated", asked
    assert asked.case is not None and asked.case.extension is not None
    assert asked.case.sla is not None and asked.case.sla.resolve_by == before  # not yet
    supervisor = ruleset().departments.by_code[LEAD].supervisor
    assert supervisor is not None
    granted = on_status(ruleset(), store, extension_update(
        opened, "extension_approved", supervisor, 5), NOW + timedelta(minutes=5))
    assert granted.outcome == "updated" and granted.case is not None
    sla = granted.case.sla
    assert sla is not None and granted.case.extension is None
    assert [e.extend_by for e in sla.extensions] == ["1d"]
    assert sla.resolve_by is not None and sla.resolve_by > before
    breach = [t for t in sla.timers if t.limit == "resolve" and t.step == "breach"]
    assert breach and breach[0].due == sla.resolve_by
    from engine.report.assess import case_tally

    assert case_tally(granted.case, NOW).extended == 1


def test_extension_refusals_name_the_rule() -> None:
    store = CaseStore()
    opened = on_classified(ruleset(), store, gas_record(), NOW).case
    assert opened is not None
    on_status(ruleset(), store, extension_update(opened, "accepted", LEAD, 1), NOW)

    def refused(raw: bytes) -> str:
        step = on_status(ruleset(), store, raw, NOW + timedelta(minutes=10))
        assert step.outcome == "rejected", step
        value = step.outputs[0].value
        assert isinstance(value, StatusRejected)
        return value.detail

    assert "only the lead" in refused(extension_update(
        opened, "extension_requested", ASSIST[1], extend_by="1d", note="x"))
    assert "reason" in refused(extension_update(opened, "extension_requested", LEAD,
                                                extend_by="1d"))
    assert "not a duration" in refused(extension_update(
        opened, "extension_requested", LEAD, extend_by="soon", note="x"))
    assert "add up to" in refused(extension_update(
        opened, "extension_requested", LEAD, extend_by="30d", note="x"))
    assert "no extension request" in refused(extension_update(
        opened, "extension_approved", CENTRE))
    on_status(ruleset(), store, extension_update(
        opened, "extension_requested", LEAD, 4, extend_by="2d", note="等待法院裁定"), NOW)
    assert "already waiting" in refused(extension_update(
        opened, "extension_requested", LEAD, extend_by="1d", note="x"))
    assert "supervisor" in refused(extension_update(opened, "extension_approved", OUTSIDER))
    decided = on_status(ruleset(), store, extension_update(
        opened, "extension_refused", CENTRE, 6, note="证据不足"), NOW)
    assert decided.case is not None and decided.case.extension is None
    assert decided.case.sla is not None and decided.case.sla.extensions == []
    assert decided.case.history[-1].action == "extension_refused"


# --- call-back (回访) --------------------------------------------------------------------------


def test_call_backs_that_reach_nobody_close_the_case_as_unreachable() -> None:
    from engine.report.assess import case_tally

    case = resolved_case()
    attempts = case.sla.terms.callback_attempts if case.sla else 3
    for n in range(1, attempts + 1):
        assert case.state == "resolved"
        result = apply_status(case, centre_update(case, "callback_unreachable", minutes=n), NOW)
        assert isinstance(result, CaseRecord), result
        case = result
        assert case.unreachable_callbacks == n
    assert (case.state, case.closed_as, case.satisfied) == ("closed", "unreachable", None)
    tally = case_tally(case, NOW)
    assert (tally.unreachable, tally.answered) == (1, 0)  # out of the satisfaction rate


def test_only_a_centre_calls_back_and_only_after_resolution() -> None:
    assert apply_status(resolved_case(), centre_update(
        resolved_case(), "callback_unreachable", department=LEAD), NOW).reason == "not_assigned"
    assert apply_status(accepted_case(), centre_update(
        accepted_case(), "callback_unreachable"), NOW).reason == "illegal_transition"


def test_a_reached_reporter_closes_the_case_as_verified() -> None:
    case = resolved_case()
    once = apply_status(case, centre_update(case, "callback_unreachable"), NOW)
    assert isinstance(once, CaseRecord)
    verified = apply_status(once, centre_update(once, "verified", minutes=5, satisfied=True),
                            NOW)
    assert isinstance(verified, CaseRecord)
    assert (verified.state, verified.closed_as, verified.satisfied) == ("closed", "verified",
                                                                        True)


# --- backlog (挂账) ----------------------------------------------------------------------------


def test_a_backlogged_case_stops_its_clock_is_reviewed_and_runs_again_when_released() -> None:
    from engine.console.view import sla_state
    from engine.report.assess import case_tally

    store = CaseStore()
    opened = on_classified(ruleset(), store, gas_record(), NOW).case
    assert opened is not None and opened.sla is not None
    on_status(ruleset(), store, extension_update(opened, "accepted", LEAD, 1), NOW)
    review = NOW + timedelta(days=30)
    asked = on_status(ruleset(), store, extension_update(
        opened, "backlog_requested", LEAD, 2, note="需区财政追加预算后更换整栋燃气立管",
        review_at=review.isoformat()), NOW + timedelta(minutes=2))
    assert asked.case is not None and asked.case.backlog is not None
    assert asked.case.sla is not None and asked.case.sla.paused_since is None  # not yet
    approved = on_status(ruleset(), store, extension_update(opened, "backlog_approved", CENTRE,
                                                            3), NOW + timedelta(minutes=3))
    case = approved.case
    assert case is not None and case.backlog is not None and case.sla is not None
    assert case.backlog.approved_by == CENTRE and case.sla.paused_since is not None
    assert [(t.limit, t.step, t.due) for t in case.sla.timers] == [("backlog", "review", review)]
    assert sla_state(case, NOW + timedelta(days=40)) == "backlog"
    assert case_tally(case, NOW).backlogged == 1
    resumed = on_status(ruleset(), store, extension_update(opened, "resumed", LEAD, 4), NOW)
    assert resumed.outcome == "rejected"
    released = on_status(ruleset(), store, extension_update(opened, "backlog_released", LEAD,
                                                            60), NOW + timedelta(hours=1))
    case = released.case
    assert case is not None and case.backlog is None and case.sla is not None
    assert case.sla.paused_since is None and len(case.sla.pauses) == 1
    assert any(t.limit == "resolve" and t.step == "breach" for t in case.sla.timers)


def test_backlog_refusals() -> None:
    store = CaseStore()
    opened = on_classified(ruleset(), store, gas_record(), NOW).case
    assert opened is not None

    def detail(raw: bytes) -> str:
        step = on_status(ruleset(), store, raw, NOW + timedelta(minutes=10))
        assert step.outcome == "rejected", step
        value = step.outputs[0].value
        assert isinstance(value, StatusRejected)
        return value.detail

    later = (NOW + timedelta(days=5)).isoformat()
    assert "only the lead" in detail(extension_update(
        opened, "backlog_requested", CENTRE, note="x", review_at=later))
    assert "review date" in detail(extension_update(opened, "backlog_requested", LEAD,
                                                    note="x"))
    assert "no backlog request" in detail(extension_update(opened, "backlog_approved", CENTRE))
    on_status(ruleset(), store, extension_update(
        opened, "backlog_requested", LEAD, 4, note="等待法院判决", review_at=later), NOW)
    assert "command centre" in detail(extension_update(opened, "backlog_approved", LEAD))
    assert "not on the backlog" in detail(extension_update(opened, "backlog_released", CENTRE))
    refused = on_status(ruleset(), store, extension_update(
        opened, "backlog_refused", CENTRE, 6, note="可先行处置"), NOW)
    assert refused.case is not None and refused.case.backlog is None
