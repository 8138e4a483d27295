"""Staged limits: illegal building is handled in stages, each with its deadline, warnings and
ladder; the lead reports each stage done and its timers stop (rules/tests/sla.yaml has the
deadlines of the shipped illegal-building policy)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

from engine.cases.dispatch import STATUS_REJECTED_TOPIC, on_classified, on_status
from engine.cases.duplicates import CaseStore
from engine.cases.records import StatusRejected, StatusUpdate
from engine.classify import classify_data
from engine.contracts import Classified, to_json
from engine.rules import RuleSet
from engine.rules.load import load_rules

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.fromisoformat("2026-11-24T10:00:00+08:00")


@cache
def ruleset() -> RuleSet:
    return load_rules(REPO / "rules")


def opened(store: CaseStore) -> tuple[str, str]:
    record = classify_data(ruleset(), {
        "channel": "gridapp", "channel_id": "ST-1", "reported_at": NOW.isoformat(),
        "description": "楼顶有人违章搭建", "grid_code": "330110005001001"}, NOW)
    assert isinstance(record, Classified) and record.matter_code == "080101"
    step = on_classified(ruleset(), store, record, NOW)
    assert step.case is not None and step.case.sla is not None
    assert step.case.sla.terms.policy == "illegal-building"
    return step.case.case_id, step.case.lead


def update(case_id: str, lead: str, action: str, minutes: int, **fields: object) -> bytes:
    return to_json(StatusUpdate.model_validate({
        "case_id": case_id, "department": lead, "action": action,
        "at": NOW + timedelta(minutes=minutes), **fields}))


def test_each_stage_has_its_timers_until_the_lead_reports_it_done() -> None:
    store = CaseStore()
    case_id, lead = opened(store)
    case = store.get(case_id.split("-")[0], case_id)
    assert case is not None and case.sla is not None
    stages = {t.stage for t in case.sla.timers if t.limit == "stage"}
    assert stages == {"stop_work", "penalty", "demolition"}
    stop = [t for t in case.sla.timers if t.stage == "stop_work" and t.step == "breach"]
    assert stop and stop[0].due == datetime.fromisoformat("2026-11-24T16:00:00+08:00")
    on_status(ruleset(), store, update(case_id, lead, "accepted", 5), NOW)
    done = on_status(ruleset(), store, update(case_id, lead, "stage_completed", 90,
                                              stage="stop_work", note="已责令停工并贴封条"), NOW)
    assert done.case is not None and done.case.sla is not None
    sla = done.case.sla
    assert [s.name for s in sla.stages_done] == ["stop_work"]
    assert {t.stage for t in sla.timers if t.limit == "stage"} == {"penalty", "demolition"}
    assert set(sla.stage_deadlines) == {"penalty", "demolition"}
    assert any(t.limit == "resolve" for t in sla.timers)  # resolution still runs


def test_stage_reports_are_checked() -> None:
    store = CaseStore()
    case_id, lead = opened(store)

    def refused(raw: bytes) -> str:
        step = on_status(ruleset(), store, raw, NOW)
        assert step.outcome == "rejected"
        out = step.outputs[0]  # then the sender's verdict
        assert out.topic == STATUS_REJECTED_TOPIC and isinstance(out.value, StatusRejected)
        return out.value.detail

    assert "accepted case" in refused(update(case_id, lead, "stage_completed", 1,
                                             stage="stop_work"))
    on_status(ruleset(), store, update(case_id, lead, "accepted", 2), NOW)
    assert "no stage 'pour_concrete'" in refused(update(case_id, lead, "stage_completed", 3,
                                                        stage="pour_concrete"))
    assert "only the lead" in refused(update(case_id, "330110005.zhzx", "stage_completed", 3,
                                             stage="stop_work"))
    on_status(ruleset(), store, update(case_id, lead, "stage_completed", 4, stage="stop_work"),
              NOW)
    assert "already done" in refused(update(case_id, lead, "stage_completed", 5,
                                            stage="stop_work"))


def test_the_escalation_names_its_stage() -> None:
    from engine.sla.timer_decisions import escalation_for, timers_of_case

    store = CaseStore()
    case_id, _ = opened(store)
    case = store.get(case_id.split("-")[0], case_id)
    assert case is not None and case.sla is not None
    timer = next(t for t in case.sla.timers if t.stage == "penalty" and t.step == "breach")
    view = timers_of_case(case)
    record = escalation_for(case_id, view.version, timer, view.summary, ruleset().departments,
                            NOW)
    assert json.loads(to_json(record))["stage"] == "penalty"
