"""SLA policies, deadlines and timer plans as pure functions of the case record."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path

import pytest

from engine.calendar import SHANGHAI, WORKING_HOURS, WorkingHours
from engine.cases.dispatch import on_classified, on_status
from engine.cases.duplicates import CaseStore
from engine.cases.records import CaseRecord, StatusAction, StatusUpdate
from engine.classify import classify_data
from engine.contracts import Classified
from engine.reference.departments import DepartmentRegistry
from engine.rules import RuleSet
from engine.rules.load import load_rules
from engine.sla.model import LimitName, SlaTerms, SlaTimer
from engine.sla.plan import (
    ACCEPT_STATES,
    RESOLVE_STATES,
    deadline_after,
    deadlines_after,
)
from engine.sla.policy import limit_span
from engine.sla.timer_decisions import case_plan, case_timers, first_breach_ms
from engine.yamlfile import FileProblems
from tests.bench.reports import make_reports

RULES = Path(__file__).resolve().parents[2] / "rules"
YUHANG = "330110000000"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text + "+08:00")


@cache
def ruleset() -> RuleSet:
    return load_rules(RULES)


WUCHANG = {"lat": 30.2905, "lon": 120.0302}


def classified(description: str, address: str, reported: str) -> Classified:
    data = {"channel": "hotline", "channel_id": f"{description}{reported}",
            "reported_at": reported + "+08:00", "description": description, "address": address}
    if address == "五常街道":
        data["location"] = WUCHANG
    record = classify_data(ruleset(), data, at(reported))
    assert isinstance(record, Classified)
    return record


def open_at(description: str, address: str, when: str) -> tuple[CaseStore, CaseRecord]:
    store = CaseStore()
    result = on_classified(ruleset(), store, classified(description, address, when), at(when))
    assert result.outcome == "assigned" and result.case is not None
    return store, result.case


def answer(store: CaseStore, case: CaseRecord, action: StatusAction, when: str,
           department: str | None = None, **extra: object) -> CaseRecord:
    update = StatusUpdate(case_id=case.case_id, department=department or case.lead,
                          action=action, at=at(when), **extra)  # type: ignore[arg-type]
    result = on_status(ruleset(), store, update.model_dump_json(by_alias=True).encode(),
                       at(when))
    assert result.case is not None, result.outputs
    return result.case


def test_policy_terms_take_limits_from_the_catalogue_and_overrides() -> None:
    table = ruleset().sla_for(YUHANG)
    noise = ruleset().matters.by_code["010101"]
    normal = table.terms("default", noise, "normal", "r1")
    assert (normal.accept, normal.resolve, normal.unit) == ("1h", "7d", "working")
    urgent = table.terms("default", noise, "urgent", "r1")
    assert (urgent.accept, urgent.resolve, urgent.unit) == ("15m", "24h", "natural")
    # Yuhang's overlay replaces the provincial urgent ladder: the county hears at once.
    assert [s.to for s in table.terms("urgent", noise, "urgent", "r1").ladder] == [
        "supervisor", "county.zhzx", "county.zhzx"]
    assert table.terms("no-such-policy", noise, "normal", "r1").policy == "default"


def test_working_days_are_seven_working_hours_and_the_summer_hours_apply() -> None:
    terms = ruleset().sla_for(YUHANG).terms("services", ruleset().matters.by_code["010101"],
                                            "normal", "r1")
    hours = terms.hours.hours()
    assert limit_span("5d", "working", hours) == timedelta(hours=35)
    # Yuhang keeps summer afternoons 14:30-18:00 (July to September).
    assert deadline_after(at("2026-07-15T13:00"), timedelta(hours=1), terms) == at(
        "2026-07-15T15:30")
    assert deadline_after(at("2026-11-16T13:00"), timedelta(hours=1), terms) == at(
        "2026-11-16T15:00")


def test_a_pause_moves_the_deadline_by_the_working_time_it_held() -> None:
    terms = ruleset().sla_for(YUHANG).terms("services", ruleset().matters.by_code["010101"],
                                            "normal", "r1")
    start = at("2026-11-24T09:00")
    plain = deadline_after(start, timedelta(hours=2), terms)
    assert plain == at("2026-11-24T11:00")
    paused = deadline_after(start, timedelta(hours=2), terms,
                            [(at("2026-11-24T10:00"), at("2026-11-24T15:00"))])
    # 1 h counted before the pause; the pause held 2 h + 1 h of office time; 1 h after it.
    assert paused == at("2026-11-24T16:00")


def test_a_new_case_carries_frozen_terms_deadlines_and_ordered_timers() -> None:
    _, case = open_at("楼道里一股煤气味", "五常街道", "2026-11-24T10:00:00")
    assert case.sla is not None
    assert (case.sla.terms.policy, case.sla.terms.unit) == ("urgent", "natural")
    assert case.sla.terms.rules_revision == ruleset().revision
    assert case.sla.accept_by == at("2026-11-24T10:15:00")
    assert case.sla.resolve_by == at("2026-11-25T10:00:00")
    accept = [(t.step, t.percent, t.due, t.recipient) for t in case.sla.timers
              if t.limit == "accept"]
    assert accept == [
        ("warning", 50, at("2026-11-24T10:07:30"), "330110.xf"),
        ("warning", 80, at("2026-11-24T10:12:00"), "330110.xf"),
        ("breach", None, at("2026-11-24T10:15:00"), "330110.xf"),
        ("level1", None, at("2026-11-24T10:15:00"), "330110.zhzx"),   # the lead's supervisor
        ("level2", None, at("2026-11-24T10:15:00"), "330110.zhzx"),   # the county desk
        ("level3", None, at("2026-11-24T10:45:00"), "330110.zhzx")]
    dues = [t.due for t in case.sla.timers]
    assert dues == sorted(dues)


def test_working_time_policy_skips_the_night() -> None:
    _, case = open_at("小区门口有人占道摆摊卖水果", "仓前街道太炎社区", "2026-11-24T17:00:00")
    assert case.sla is not None and case.sla.terms.unit == "working"
    assert case.sla.accept_by == at("2026-11-25T09:00:00")  # 30 min tonight, 30 tomorrow


def test_acceptance_stops_the_accept_clock_and_keeps_its_deadline() -> None:
    store, case = open_at("楼道里一股煤气味", "五常街道", "2026-11-24T10:00:00")
    accepted = answer(store, case, "accepted", "2026-11-24T10:05:00")
    assert accepted.sla is not None
    assert {t.limit for t in accepted.sla.timers} == {"resolve"}
    assert accepted.sla.accept_by == at("2026-11-24T10:15:00")
    resolved = answer(store, accepted, "resolved", "2026-11-24T12:00:00", note="已处置")
    assert resolved.sla is not None  # only the closing of an unverified resolution is left
    assert [(t.limit, t.step) for t in resolved.sla.timers] == [("verify", "autoclose")]


def test_pause_holds_every_timer_and_resume_moves_the_deadlines() -> None:
    store, case = open_at("楼道里一股煤气味", "五常街道", "2026-11-24T10:00:00")
    paused = answer(store, case, "paused", "2026-11-24T10:05:00", note="等待报告人补充位置")
    assert paused.sla is not None and paused.sla.timers == []
    resumed = answer(store, paused, "resumed", "2026-11-24T11:05:00")
    assert resumed.sla is not None and resumed.sla.accept_by == at("2026-11-24T11:15:00")
    assert resumed.sla.pauses == [(at("2026-11-24T10:05:00"), at("2026-11-24T11:05:00"))]


def test_only_the_lead_pauses_and_only_a_paused_case_resumes() -> None:
    store, case = open_at("楼道里一股煤气味", "五常街道", "2026-11-24T10:00:00")
    update = StatusUpdate(case_id=case.case_id, department=case.lead, action="resumed",
                          at=at("2026-11-24T10:01:00"))
    refused = on_status(ruleset(), store, update.model_dump_json(by_alias=True).encode(),
                        at("2026-11-24T10:01:00"))
    assert refused.outcome == "rejected"
    assert "not paused" in refused.outputs[0].value.model_dump()["detail"]
    by_assist = StatusUpdate(case_id=case.case_id, department=case.assist[0], action="paused",
                             at=at("2026-11-24T10:01:00"))
    refused = on_status(ruleset(), store, by_assist.model_dump_json(by_alias=True).encode(),
                        at("2026-11-24T10:01:00"))
    assert refused.outputs[0].value.model_dump()["reason"] == "not_assigned"


def test_a_merged_report_keeps_the_escalation_ids() -> None:
    store, case = open_at("楼道里一股煤气味", "五常街道", "2026-11-24T10:00:00")
    again = classified("楼道里一股煤气味，很浓", "五常街道", "2026-11-24T10:03:00")
    merged = on_classified(ruleset(), store, again, at("2026-11-24T10:03:00"))
    assert merged.outcome == "merged" and merged.case is not None
    assert case.sla is not None and merged.case.sla is not None
    assert [t.escalation_id for t in merged.case.sla.timers] == [
        t.escalation_id for t in case.sla.timers]


def test_a_return_restarts_acceptance_for_the_new_lead() -> None:
    store, case = open_at("小区门口有人占道摆摊卖水果", "仓前街道太炎社区", "2026-11-24T09:00:00")
    moved = answer(store, case, "returned", "2026-11-24T10:00:00", note="不属于本单位")
    assert moved.lead != case.lead and moved.sla is not None
    assert moved.sla.accept_from == at("2026-11-24T10:00:00")
    assert {t.recipient for t in moved.sla.timers if t.step == "breach"} == {moved.lead}


def test_the_timer_view_reads_what_the_route_worker_wrote() -> None:
    _, case = open_at("楼道里一股煤气味", "五常街道", "2026-11-24T10:00:00")
    view = case_timers(case.model_dump_json(by_alias=True).encode())
    assert view is not None and case.sla is not None
    assert (view.case_id, view.version, view.timers) == (case.case_id, 1, case.sla.timers)
    assert view.summary["lead"] == case.lead and view.summary["policy"] == "urgent"
    assert case_timers(b"not json") is None
    assert case_timers(b'{"schema": "griddispatch.status/1"}') is None


def test_the_rebuild_view_agrees_with_the_timer_view_without_building_models() -> None:
    store, case = open_at("楼道里一股煤气味", "五常街道", "2026-11-24T10:00:00")
    accepted = answer(store, case, "accepted", "2026-11-24T10:05:00")
    counts = []
    for record in (case, accepted):
        raw = record.model_dump_json(by_alias=True).encode()
        full, plan = case_timers(raw), case_plan(raw)
        assert full is not None and plan is not None
        assert (plan.case_id, plan.version, plan.state, plan.summary) == (
            full.case_id, full.version, full.state, full.summary)
        assert [SlaTimer.model_validate(t) for t in plan.timers] == full.timers
        assert plan.dues_ms == [int(t.due.timestamp() * 1000) for t in full.timers]
        counts.append(len(plan.timers))
    assert counts[1] < counts[0]  # accepted: the acceptance clock's timers are gone
    # a staged limit's timer keeps its stage (it was dropped from every rebuilt timer)
    assert case.sla is not None
    stage_timer = case.sla.timers[0].model_copy(update={"limit": "stage", "stage": "停止施工"})
    staged = case.model_copy(update={"sla": case.sla.model_copy(update={"timers": [stage_timer]})})
    plan = case_plan(staged.model_dump_json(by_alias=True).encode())
    assert plan is not None and [SlaTimer.model_validate(t) for t in plan.timers] == [stage_timer]
    assert case_plan(b"not json") is None
    assert case_plan(b'{"schema": "griddispatch.status/1"}') is None
    first_due = b'"due":"' + raw.split(b'"due":"', 1)[1].split(b'"', 1)[0] + b'"'
    assert case_plan(raw.replace(first_due, b'"due":"soon"')) is None  # unparseable time


def test_a_case_is_breached_from_its_first_running_limits_deadline() -> None:
    """What the breached-cases gauge counts (the breach alert divides it by open cases)."""
    store, case = open_at("楼道里一股煤气味", "五常街道", "2026-11-24T10:00:00")
    assert case.sla is not None
    plan = case_plan(case.model_dump_json(by_alias=True).encode())
    assert plan is not None
    first = min(t.deadline for t in case.sla.timers if t.step == "breach")
    assert first_breach_ms(plan) == int(first.timestamp() * 1000)
    # accepted: the acceptance limit is met, so its breach no longer counts
    accepted = answer(store, case, "accepted", "2026-11-24T10:05:00")
    after = case_plan(accepted.model_dump_json(by_alias=True).encode())
    assert after is not None and accepted.sla is not None
    resolve_by = min(t.deadline for t in accepted.sla.timers if t.step == "breach")
    assert first_breach_ms(after) == int(resolve_by.timestamp() * 1000) > first_breach_ms(plan)


def test_rules_check_names_a_route_to_an_unknown_policy(tmp_path: Path) -> None:
    import shutil

    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    county = rules / "layers" / "330110-yuhang.yaml"
    county.write_text(county.read_text(encoding="utf-8").replace(
        "    sla: urgent\n", "    sla: hill-flood\n", 1), encoding="utf-8")
    with pytest.raises(FileProblems) as caught:
        load_rules(rules)
    message = str(caught.value.problems[0])
    assert "330110-yuhang.yaml" in message and "'hill-flood'" in message


def test_a_malformed_policy_is_refused_with_its_file_and_line(tmp_path: Path) -> None:
    import shutil

    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    county = rules / "layers" / "330110-yuhang.yaml"
    text = county.read_text(encoding="utf-8")
    county.write_text(text.replace("    accept: 15m\n", "    accept: 15 minutes\n", 1),
                      encoding="utf-8")
    with pytest.raises(FileProblems) as caught:
        load_rules(rules)
    problem = caught.value.problems[0]
    line = next(n for n, row in enumerate(county.read_text(encoding="utf-8").splitlines(), 1)
                if "15 minutes" in row)
    assert problem.file.endswith("330110-yuhang.yaml") and problem.line == line
    assert "not a duration" in problem.message


def test_a_resolved_case_nobody_verifies_is_planned_to_close() -> None:
    store, case = open_at("楼道里一股煤气味", "五常街道", "2026-11-24T10:00:00")
    accepted = answer(store, case, "accepted", "2026-11-24T10:05:00")
    resolved = answer(store, accepted, "resolved", "2026-11-24T11:00:00", note="已关阀")
    assert resolved.sla is not None
    [autoclose] = resolved.sla.timers
    assert (autoclose.limit, autoclose.step) == ("verify", "autoclose")
    assert autoclose.due == at("2026-11-27T11:00:00")  # Yuhang's urgent policy: 3 days
    centre = f"{resolved.partition_key}.zhzx"  # the township's command room verifies
    assert autoclose.recipient == centre
    # the rebuild's lean reading keeps it too (it once dropped limits other than accept and
    # resolve, and with them every resolved case)
    plan = case_plan(resolved.model_dump_json(by_alias=True).encode())
    assert plan is not None and [t["limit"] for t in plan.timers] == ["verify"]
    closed = answer(store, resolved, "verified", "2026-11-24T15:00:00", department=centre,
                    satisfied=True)
    assert closed.state == "closed" and closed.sla is not None and closed.sla.timers == []


# --- replan as it was before it shared one calendar walk between a clock's deadline and its
# warnings and hashed each clock's id prefix once: the reference the plan must still equal.

def _reference_escalation_id(case_id: str, limit: str, clock_start: datetime, step: str) -> str:
    text = f"{case_id}|{limit}|{clock_start.isoformat()}|{step}"
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:20]


def _reference_ladder(case: CaseRecord, terms: SlaTerms,
                      departments: DepartmentRegistry) -> list[tuple[str, timedelta, str]]:
    out, previous = [], case.lead
    hours = terms.hours.hours()
    for level, step in enumerate(terms.ladder, 1):
        if step.to == "supervisor":
            dept = departments.by_code.get(previous)
            recipient = dept.supervisor if dept else None
        else:
            recipient = departments.resolve(step.to, case.division_chain)
        if recipient is None:
            continue
        out.append((f"level{level}", limit_span(step.after, terms.unit, hours), recipient))
        previous = recipient
    return out


def _reference_clock_timers(case: CaseRecord, limit: LimitName, start: datetime,
                            span: timedelta, deadline: datetime,
                            ladder: list[tuple[str, timedelta, str]],
                            hours: WorkingHours, stage: str | None = None) -> list[SlaTimer]:
    sla = case.sla
    assert sla is not None
    terms = sla.terms

    def timer(step: str, due: datetime, recipient: str, percent: int | None = None) -> SlaTimer:
        key = f"{step}{percent}" if percent is not None else step
        clock = f"stage-{stage}" if stage else limit
        return SlaTimer(escalation_id=_reference_escalation_id(case.case_id, clock, start, key),
                        limit=limit, step=step, percent=percent, due=due, deadline=deadline,
                        recipient=recipient, stage=stage)

    warnings = deadlines_after(start, [span * p / 100 for p in terms.warn_at], terms,
                               sla.pauses, hours)
    timers = [timer("warning", due, case.lead, p)
              for p, due in zip(terms.warn_at, warnings, strict=True)]
    timers.append(timer("breach", deadline, case.lead))
    steps = deadlines_after(deadline, [delay for _, delay, _ in ladder], terms, (), hours)
    for (step, _, recipient), due in zip(ladder, steps, strict=True):
        timers.append(timer(step, due, recipient))
    return timers


def _reference_replan(case: CaseRecord, departments: DepartmentRegistry) -> CaseRecord:
    sla = case.sla
    if sla is None:
        return case
    terms = sla.terms
    hours = terms.hours.hours()
    accept_by, resolve_by = sla.accept_by, sla.resolve_by
    timers: list[SlaTimer] = []
    if sla.paused_since is None and case.state in RESOLVE_STATES:
        ladder = _reference_ladder(case, terms, departments)
        if case.state in ACCEPT_STATES and terms.accept and sla.accept_from is not None:
            span = limit_span(terms.accept, terms.unit, hours)
            accept_by = deadline_after(sla.accept_from, span, terms, sla.pauses, hours)
            timers += _reference_clock_timers(case, "accept", sla.accept_from, span, accept_by,
                                              ladder, hours)
        span = limit_span(terms.resolve, terms.unit, hours)
        resolve_by = deadline_after(sla.resolve_from, span, terms, sla.pauses, hours)
        timers += _reference_clock_timers(case, "resolve", sla.resolve_from, span, resolve_by,
                                          ladder, hours)
        done = {s.name for s in sla.stages_done}
        for stage in terms.stages:
            if stage.name not in done:
                span = limit_span(stage.within, terms.unit, hours)
                by = deadline_after(sla.resolve_from, span, terms, sla.pauses, hours)
                timers += _reference_clock_timers(case, "stage", sla.resolve_from, span, by,
                                                  ladder, hours, stage.name)
    elif case.state == "resolved" and terms.verify_within:
        due = case.updated_at + limit_span(terms.verify_within, "natural", WORKING_HOURS)
        verifier = (departments.resolve("township.zhzx", case.division_chain)
                    or departments.resolve("county.zhzx", case.division_chain) or case.lead)
        timers.append(SlaTimer(escalation_id=_reference_escalation_id(
            case.case_id, "verify", case.updated_at, "autoclose"), limit="verify",
            step="autoclose", due=due, deadline=due, recipient=verifier))
    timers.sort(key=lambda t: t.due)
    new = sla.model_copy(update={"accept_by": accept_by, "resolve_by": resolve_by,
                                 "timers": timers})
    return case.model_copy(update={"sla": new})


def _exact(case: CaseRecord) -> str:
    """Every value of the plan, datetimes with their tzinfo and fold (== alone ignores them)."""
    sla = case.sla
    assert sla is not None
    return repr((sla.accept_by, sla.resolve_by, sla.timers))


def test_the_plan_is_exactly_what_the_reference_replan_made() -> None:
    rng = random.Random(1001)
    departments = ruleset().departments
    checked = paused = 0
    seen: set[str] = set()
    for n, report in enumerate(make_reports(160, 5, "plan-eq")):
        day = date(2025, 1, 1) + timedelta(days=rng.randrange(730))
        when = datetime.combine(day, time(rng.randrange(24), rng.randrange(60),
                                          rng.randrange(60), rng.randrange(1_000_000)), SHANGHAI)
        when = when.astimezone(rng.choice([UTC, SHANGHAI]))
        record = classify_data(ruleset(), {**report, "reported_at": when.isoformat()}, when)
        if not isinstance(record, Classified):
            continue
        store = CaseStore()
        result = on_classified(ruleset(), store, record, when)
        if result.case is None or result.case.sla is None:
            continue
        cases = [result.case]
        later = when + timedelta(minutes=rng.randrange(1, 3000))
        for action in (["paused", "resumed"], ["accepted"], ["returned"], [])[n % 4]:
            update = StatusUpdate(case_id=cases[-1].case_id, department=cases[-1].lead,
                                  action=action, at=later, note="测试")
            moved = on_status(ruleset(), store,
                              update.model_dump_json(by_alias=True).encode(), later)
            if moved.case is not None:
                cases.append(moved.case)
            later += timedelta(minutes=rng.randrange(1, 3000))
        for case in cases:
            assert _exact(case) == _exact(_reference_replan(case, departments)), case.case_id
            checked += 1
            assert case.sla is not None
            seen.add(case.sla.terms.unit)
            paused += bool(case.sla.pauses)
    assert checked > 200 and seen == {"working", "natural"} and paused > 0
