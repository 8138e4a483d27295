"""The case state machine, as pure functions over ``CaseRecord``.

intake → dispatched (派遣: clocks start) → accepted (签收) → resolved (办结, with a result) →
closed (结案) after verification (核查/回访); an unsatisfied reporter reopens it. A lead that
returns a case (回退) has it re-routed without that department (改派). Only the lead may
accept, return or resolve; assisting departments may report progress. Anything else is a
``Refused`` transition that the worker records on ``assignments.status.rejected``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from engine import privacy
from engine.cases import exception_paths
from engine.cases.events import (
    VERIFIER_ROLE,
    Redispatch,
    Refused,
    record_event,
)
from engine.cases.records import (
    Assignment,
    AssignmentKind,
    CaseEvent,
    CaseRecord,
    StatusUpdate,
)
from engine.contracts import Classified
from engine.reference.departments import DepartmentRegistry
from engine.routing.decide import RouteDecision
from engine.sla.model import SlaTerms
from engine.sla.plan import open_sla, pause, restart_accept, restart_all, resume


@dataclass(frozen=True)
class NeedsReroute:
    """The lead returned the case: route again without it, then call ``reassign``."""

    case: CaseRecord


def partition_key(division_chain: list[str]) -> str:
    """The township code (9 digits), or the county's (6) when the township is unknown."""
    return division_chain[3][:9] if len(division_chain) > 3 else division_chain[2][:6]


def case_id_for(record: Classified) -> str:
    """Deterministic: the same first incident always opens the same case id."""
    digest = hashlib.sha1(record.incident_id.encode(), usedforsecurity=False).hexdigest()[:12]
    return f"{partition_key(record.division_chain)}-{digest}"


def open_case(record: Classified, decision: RouteDecision, now: datetime,
              terms: SlaTerms | None = None) -> CaseRecord:
    """A new case; ``terms`` (the SLA policy in force) are frozen on it with clocks started."""
    return CaseRecord(
        case_id=case_id_for(record), partition_key=partition_key(record.division_chain),
        state="dispatched", lead=decision.lead, assist=list(decision.assist),
        incident_ids=[record.incident_id], matter_code=record.matter_code,
        platform=record.platform, priority=decision.priority, sla_policy=decision.sla,
        grid_code=record.grid_code, division_chain=record.division_chain,
        location=record.report.location, reported_at=record.reported_at, opened_at=now,
        last_report_at=record.reported_at, updated_at=now,
        rules_revision=decision.revision or record.rules_revision,
        history=[CaseEvent(at=now, action="dispatched", department=decision.lead,
                           detail=", ".join(m.rule for m in decision.matched))],
        origin=record, sla=open_sla(terms, now) if terms else None)


def merge_report(case: CaseRecord, record: Classified, now: datetime) -> CaseRecord:
    """A duplicate report joins the open case: linked and counted, not dispatched again."""
    return case.model_copy(update={
        "incident_ids": [*case.incident_ids, record.incident_id],
        "last_report_at": max(case.last_report_at, record.reported_at), "updated_at": now,
        "history": [*case.history, CaseEvent(at=now, action="merged",
                                             detail=record.incident_id)]})


def apply_status(case: CaseRecord, update: StatusUpdate, now: datetime,
                 supervisor: str | None = None
                 ) -> CaseRecord | NeedsReroute | Redispatch | Refused:
    """``supervisor``: the lead's supervisor in the department registry, who (besides a
    command centre) decides on the lead's extension requests."""
    dept, action, state = update.department, update.action, case.state
    involved = dept == case.lead or dept in case.assist
    if action in ("supervised", "redispatched"):
        return exception_paths.command_centre(case, update, now)
    if action == "extension_requested":
        return exception_paths.request_extension(case, update, now)
    if action in ("extension_approved", "extension_refused"):
        return exception_paths.decide_extension(case, update, now, supervisor)
    if action == "stage_completed":
        return exception_paths.complete_stage(case, update, now)
    if action.startswith("backlog_"):
        return exception_paths.backlog(case, update, now)
    if action == "callback_unreachable":
        return exception_paths.unreachable(case, update, now)
    if action == "verified":
        if state != "resolved":
            return Refused("illegal_transition", f"cannot verify a case that is {state}")
        if not dept.endswith(f".{VERIFIER_ROLE}"):
            return Refused("not_assigned", f"verification (回访) is recorded by a command "
                                           f"centre (*.{VERIFIER_ROLE}), not {dept}")
        if update.satisfied is not False:
            return record_event(case, now, update, state="closed", satisfied=update.satisfied,
                          closed_as="verified")
        return record_event(case, now, update, state="reopened", satisfied=False,
                      sla=case.sla and restart_all(case.sla, now))
    if not involved:
        return Refused("not_assigned", f"{dept} is not assigned to case {case.case_id}")
    if action == "progress":
        if state not in ("accepted", "reopened"):
            return Refused("illegal_transition", f"progress on a case that is {state}")
        return record_event(case, now, update)
    if dept != case.lead:
        verb = {"accepted": "accept", "returned": "return", "resolved": "resolve",
                "paused": "pause", "resumed": "resume"}[action]
        return Refused("not_assigned", f"only the lead ({case.lead}) may {verb} "
                                       f"case {case.case_id}")
    if action in ("paused", "resumed"):
        return _pause_or_resume(case, update, now)
    if action == "accepted":
        if state not in ("dispatched", "reopened"):
            return Refused("illegal_transition", f"cannot accept a case that is {state}")
        return record_event(case, now, update, state="accepted")
    if action == "returned":
        if state != "dispatched":
            return Refused("illegal_transition", f"cannot return a case that is {state}: "
                                                 "return before accepting")
        returned = record_event(case, now, update, returns=case.returns + 1,
                          returned_by=[*case.returned_by, dept])
        return NeedsReroute(returned)
    # resolved
    if state not in ("accepted", "reopened"):
        return Refused("illegal_transition", f"cannot resolve a case that is {state}")
    return record_event(case, now, update, state="resolved", resolution=update.note or None,
                  unreachable_callbacks=0)


def _pause_or_resume(case: CaseRecord, update: StatusUpdate,
                     now: datetime) -> CaseRecord | Refused:
    """Waiting on the reporter (待补充材料) stops the clocks; resuming restarts them."""
    if case.sla is None:
        return Refused("illegal_transition", f"case {case.case_id} has no time limits to "
                                             "pause or resume")
    if case.state not in ("dispatched", "accepted", "reopened"):
        return Refused("illegal_transition", f"cannot {update.action[:-1]} a case that is "
                                             f"{case.state}")
    if case.backlog is not None and case.backlog.approved_by is not None:
        return Refused("illegal_transition", f"case {case.case_id} is on the backlog (挂账): "
                                             "its clock runs again when it is released")
    paused = case.sla.paused_since is not None
    if update.action == "paused":
        if paused:
            return Refused("illegal_transition", f"case {case.case_id} is already paused")
        return record_event(case, now, update, sla=pause(case.sla, now))
    if not paused:
        return Refused("illegal_transition", f"case {case.case_id} is not paused")
    return record_event(case, now, update, sla=resume(case.sla, now))


def reassign(case: CaseRecord, decision: RouteDecision, now: datetime) -> CaseRecord:
    return case.model_copy(update={
        "sla": case.sla and restart_accept(case.sla, now),
        "state": "dispatched", "lead": decision.lead, "assist": list(decision.assist),
        "updated_at": now,
        "history": [*case.history, CaseEvent(at=now, action="reassigned",
                                             department=decision.lead,
                                             detail=", ".join(m.rule for m in decision.matched))]})


def assignments(case: CaseRecord, record: Classified, decision: RouteDecision,
                kind: AssignmentKind, departments: DepartmentRegistry,
                now: datetime, contact_reporter: bool = False) -> list[Assignment]:
    """One assignment per recipient, lead first. The reporter's name and phone, and numbers
    written into the description, go as given only to recipients ``engine.privacy`` grants
    them."""
    out = []
    for role, dept in [("lead", case.lead), *(("assist", a) for a in case.assist)]:
        report = record.report
        granted = privacy.sees_reporter(departments.by_code[dept].role, role, contact_reporter)
        out.append(Assignment(
            case_id=case.case_id, partition_key=case.partition_key, kind=kind,
            role=role,
            department=dept, department_name=departments.by_code[dept].name,
            incident_id=record.incident_id, matter_code=record.matter_code,
            matter_name=record.matter_name, platform=record.platform, priority=case.priority,
            sla_policy=case.sla_policy, grid_code=record.grid_code,
            division_chain=record.division_chain, location=report.location,
            address=report.address,
            description=report.description if granted else privacy.mask_text(
                report.description),
            reporter=report.reporter if granted else privacy.masked(report.reporter),
            attachments=report.attachments, reported_at=record.reported_at, assigned_at=now,
            merged_reports=len(case.incident_ids) - 1,
            rules_revision=decision.revision or record.rules_revision,
            classification_revision=record.rules_revision,
            matched_rules=[*record.matched_rules, *decision.matched]))
    return out
