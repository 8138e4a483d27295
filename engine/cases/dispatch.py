"""One step of the route worker, pure: a record in, the records to publish out.

Both the Kafka worker and ``griddispatch simulate`` call these, so what operators try on
history is exactly what production does. The store is updated in place; the worker rebuilds
it from the ``cases`` topic whenever a transaction aborts, so it never holds uncommitted
state for long.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime

from pydantic import BaseModel, ValidationError

from engine.cases.duplicates import CaseStore
from engine.cases.events import Redispatch, Refused
from engine.cases.lifecycle import (
    NeedsReroute,
    apply_status,
    assignments,
    merge_report,
    open_case,
    partition_key,
    reassign,
)
from engine.cases.records import (
    Assignment,
    AssignmentKind,
    CaseRecord,
    RejectReason,
    StatusRejected,
    StatusUpdate,
    StatusVerdict,
)
from engine.contracts import Classified
from engine.routing.decide import RouteDecision, route
from engine.rules import RuleSet
from engine.sla.plan import replan

STATUS_REJECTED_TOPIC = "assignments.status.rejected"
VERDICTS_TOPIC = "verdicts.{department}"


@dataclass(frozen=True)
class Output:
    topic: str  # without the environment's prefix
    key: str
    value: BaseModel


@dataclass(frozen=True)
class StepResult:
    outcome: str  # assigned | merged | duplicate | updated | rerouted | rejected
    outputs: list[Output]
    case: CaseRecord | None = None


def _case_out(case: CaseRecord) -> Output:
    return Output("cases", case.case_id, case)


def on_classified(ruleset: RuleSet, store: CaseStore, record: Classified,
                  now: datetime) -> StepResult:
    known = store.case_of_incident.get(record.incident_id)
    if known is not None:  # a replayed or re-sent report: its case exists already
        return StepResult("duplicate", [], store.get(partition_key(record.division_chain),
                                                     known))
    key = partition_key(record.division_chain)
    county = record.division_chain[2] if len(record.division_chain) > 2 else None
    table = ruleset.routing_for(county)
    rule = table.merge_rule(record.matter_code)
    existing = store.find_duplicate(key, record, rule) if rule else None
    if existing is not None:
        case = replan(merge_report(existing, record, now), ruleset.departments, existing)
        store.put(case)
        decision = route(ruleset, record)  # for the update's trace; recipients stay the case's
        outs = [Output(f"assignments.{a.department}", case.case_id, a)
                for a in _assignments(ruleset, case, record, decision, "update", now)]
        return StepResult("merged", [*outs, _case_out(case)], case)
    decision = _chosen(ruleset, record, route(ruleset, record))
    terms = ruleset.sla_for(county).terms(decision.sla, ruleset.matters.by_code[record.matter_code],
                                          decision.priority, decision.revision or ruleset.revision)
    case = replan(open_case(record, decision, now, terms), ruleset.departments)
    store.put(case)
    outs = [Output(f"assignments.{a.department}", case.case_id, a)
            for a in _assignments(ruleset, case, record, decision, "new", now)]
    return StepResult("assigned", [*outs, _case_out(case)], case)


def _assignments(ruleset: RuleSet, case: CaseRecord, record: Classified,
                 decision: RouteDecision, kind: AssignmentKind, now: datetime) -> list[Assignment]:
    matter = ruleset.matters.by_code.get(record.matter_code)
    return assignments(case, record, decision, kind, ruleset.departments, now,
                       contact_reporter=matter is not None and matter.contact_reporter)


def _chosen(ruleset: RuleSet, record: Classified, decision: RouteDecision) -> RouteDecision:
    """A command centre's choice of departments, made by hand, wins over the routing rules
    (the console checked the codes; one that is gone by now leaves the rules' choice)."""
    manual = record.dispatched_by
    if manual is None or manual.lead is None or manual.lead not in ruleset.departments:
        return decision
    assist = decision.assist if manual.assist is None else tuple(
        a for a in manual.assist if a in ruleset.departments)
    return replace(decision, lead=manual.lead,
                   assist=tuple(a for a in assist if a != manual.lead))


def _reject(raw: str, reason: RejectReason, detail: str, case_id: str | None,
            now: datetime) -> StepResult:
    rejected = StatusRejected(reason=reason, detail=detail, case_id=case_id,
                              raw=raw[:65536], received_at=now)
    return StepResult("rejected", [Output(STATUS_REJECTED_TOPIC, case_id or "unknown",
                                          rejected)])


def _answered(ruleset: RuleSet, update: StatusUpdate, step: StepResult,
              now: datetime) -> StepResult:
    """``step`` with its verdict for the sender's own topic (none for an unknown sender: it
    has no topic, and ``assignments.status.rejected`` keeps the update)."""
    if update.department not in ruleset.departments:
        return step
    if step.outcome == "rejected":
        refused = step.outputs[0].value
        assert isinstance(refused, StatusRejected)
        verdict = StatusVerdict(case_id=update.case_id, department=update.department,
                                action=update.action, at=update.at, outcome="refused",
                                reason=refused.reason, detail=refused.detail, decided_at=now)
    else:
        assert step.case is not None
        verdict = StatusVerdict(case_id=update.case_id, department=update.department,
                                action=update.action, at=update.at, outcome="applied",
                                state=step.case.state, lead=step.case.lead, decided_at=now)
    topic = VERDICTS_TOPIC.format(department=update.department)
    return replace(step, outputs=[*step.outputs, Output(topic, update.case_id, verdict)])


def on_status(ruleset: RuleSet, store: CaseStore, raw: bytes, now: datetime) -> StepResult:
    """Apply a department's status update; bad ones become StatusRejected records. Either
    way the sender gets a verdict on its own topic."""
    text = raw.decode("utf-8", errors="replace")
    try:
        update = StatusUpdate.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        return _reject(text, "malformed", f"not a status update: {str(exc)[:300]}", None, now)
    return _answered(ruleset, update, _apply(ruleset, store, update, text, now), now)


def _apply(ruleset: RuleSet, store: CaseStore, update: StatusUpdate, text: str,
           now: datetime) -> StepResult:
    case = store.get(update.case_id.split("-", 1)[0], update.case_id)
    if case is None:
        return _reject(text, "unknown_case", f"no live case {update.case_id}", update.case_id,
                       now)
    lead = ruleset.departments.by_code.get(case.lead)
    result = apply_status(case, update, now, lead.supervisor if lead is not None else None)
    if isinstance(result, Refused):
        return _reject(text, result.reason, result.detail, update.case_id, now)
    if isinstance(result, NeedsReroute):
        record = case.origin
        decision = route(ruleset, record, exclude=frozenset(result.case.returned_by),
                         returns=result.case.returns)
        moved = replan(reassign(result.case, decision, now), ruleset.departments)
        store.put(moved)
        outs = [Output(f"assignments.{a.department}", moved.case_id, a)
                for a in _assignments(ruleset, moved, record, decision, "reassigned", now)]
        return StepResult("rerouted", [*outs, _case_out(moved)], moved)
    if isinstance(result, Redispatch):
        unknown = [d for d in [result.lead, *(result.assist or [])]
                   if d not in ruleset.departments]
        if unknown:
            return _reject(text, "illegal_transition", f"no such department: "
                                                       f"{', '.join(unknown)}", update.case_id,
                           now)
        assist = case.assist if result.assist is None else result.assist
        decision = RouteDecision(result.lead, tuple(a for a in assist if a != result.lead),
                                 case.sla_policy, case.priority, revision=ruleset.revision)
        moved = replan(reassign(result.case, decision, now), ruleset.departments)
        store.put(moved)
        outs = [Output(f"assignments.{a.department}", moved.case_id, a)
                for a in _assignments(ruleset, moved, case.origin, decision, "reassigned",
                                      now)]
        return StepResult("rerouted", [*outs, _case_out(moved)], moved)
    case = replan(result, ruleset.departments, before=case)
    store.put(case)
    return StepResult("updated", [_case_out(case)], case)
