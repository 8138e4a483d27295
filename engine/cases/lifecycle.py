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
from datetime import datetime, timedelta
from typing import Literal

from engine.calendar import WORKING_HOURS
from engine.cases.records import (
    Assignment,
    AssignmentKind,
    CaseEvent,
    CaseRecord,
    ExtensionRequest,
    StatusUpdate,
    Supervision,
)
from engine.contracts import Classified, Reporter
from engine.reference.departments import DepartmentRegistry
from engine.routing.decide import RouteDecision
from engine.sla.model import Extension, SlaTerms
from engine.sla.plan import open_sla, pause, restart_accept, restart_all, resume
from engine.sla.policy import limit_span

# The command centres call reporters back (回访) and record the verification: not the
# department whose own work is being verified.
VERIFIER_ROLE = "zhzx"


@dataclass(frozen=True)
class Refused:
    reason: Literal["not_assigned", "illegal_transition"]
    detail: str


@dataclass(frozen=True)
class NeedsReroute:
    """The lead returned the case: route again without it, then call ``reassign``."""

    case: CaseRecord


@dataclass(frozen=True)
class Redispatch:
    """A command centre moves the case (改派) to ``lead`` (and ``assist``, when given):
    the caller checks the departments exist, then calls ``reassign``."""

    case: CaseRecord
    lead: str
    assist: list[str] | None


OPEN_STATES = ("dispatched", "accepted", "reopened")


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
        return _command_centre(case, update, now)
    if action == "extension_requested":
        return _request_extension(case, update, now)
    if action in ("extension_approved", "extension_refused"):
        return _decide_extension(case, update, now, supervisor)
    if action == "callback_unreachable":
        return _unreachable(case, update, now)
    if action == "verified":
        if state != "resolved":
            return Refused("illegal_transition", f"cannot verify a case that is {state}")
        if not dept.endswith(f".{VERIFIER_ROLE}"):
            return Refused("not_assigned", f"verification (回访) is recorded by a command "
                                           f"centre (*.{VERIFIER_ROLE}), not {dept}")
        if update.satisfied is not False:
            return _event(case, now, update, state="closed", satisfied=update.satisfied,
                          closed_as="verified")
        return _event(case, now, update, state="reopened", satisfied=False,
                      sla=case.sla and restart_all(case.sla, now))
    if not involved:
        return Refused("not_assigned", f"{dept} is not assigned to case {case.case_id}")
    if action == "progress":
        if state not in ("accepted", "reopened"):
            return Refused("illegal_transition", f"progress on a case that is {state}")
        return _event(case, now, update)
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
        return _event(case, now, update, state="accepted")
    if action == "returned":
        if state != "dispatched":
            return Refused("illegal_transition", f"cannot return a case that is {state}: "
                                                 "return before accepting")
        returned = _event(case, now, update, returns=case.returns + 1,
                          returned_by=[*case.returned_by, dept])
        return NeedsReroute(returned)
    # resolved
    if state not in ("accepted", "reopened"):
        return Refused("illegal_transition", f"cannot resolve a case that is {state}")
    return _event(case, now, update, state="resolved", resolution=update.note or None,
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
    paused = case.sla.paused_since is not None
    if update.action == "paused":
        if paused:
            return Refused("illegal_transition", f"case {case.case_id} is already paused")
        return _event(case, now, update, sla=pause(case.sla, now))
    if not paused:
        return Refused("illegal_transition", f"case {case.case_id} is not paused")
    return _event(case, now, update, sla=resume(case.sla, now))


def reassign(case: CaseRecord, decision: RouteDecision, now: datetime) -> CaseRecord:
    return case.model_copy(update={
        "sla": case.sla and restart_accept(case.sla, now),
        "state": "dispatched", "lead": decision.lead, "assist": list(decision.assist),
        "updated_at": now,
        "history": [*case.history, CaseEvent(at=now, action="reassigned",
                                             department=decision.lead,
                                             detail=", ".join(m.rule for m in decision.matched))]})


def _event(case: CaseRecord, now: datetime, update: StatusUpdate, **changes: object) -> CaseRecord:
    event = CaseEvent(at=update.at, action=update.action, department=update.department,
                      detail=update.note, by=update.by)
    supervision = case.supervision
    if (supervision is not None and supervision.answered_at is None
            and update.department == case.lead
            and update.action in ("accepted", "progress", "resolved", "returned")):
        changes.setdefault("supervision", supervision.model_copy(
            update={"answered_at": update.at}))
    return case.model_copy(update={**changes, "updated_at": now,
                                   "history": [*case.history, event]})


def _unreachable(case: CaseRecord, update: StatusUpdate,
                 now: datetime) -> CaseRecord | Refused:
    """A call-back (回访) that reached nobody: counted; after the policy's attempts the case
    closes as unreachable (neither satisfied nor not: the assessment leaves it out of the
    satisfaction rate and counts it on its own)."""
    if case.state != "resolved":
        return Refused("illegal_transition", f"a call-back follows a resolution; the case is "
                                             f"{case.state}")
    if not update.department.endswith(f".{VERIFIER_ROLE}"):
        return Refused("not_assigned", f"call-backs (回访) are made by a command centre "
                                       f"(*.{VERIFIER_ROLE}), not {update.department}")
    tries = case.unreachable_callbacks + 1
    attempts = case.sla.terms.callback_attempts if case.sla is not None else 3
    if tries >= attempts:
        return _event(case, now, update, unreachable_callbacks=tries, state="closed",
                      closed_as="unreachable")
    return _event(case, now, update, unreachable_callbacks=tries)


def _request_extension(case: CaseRecord, update: StatusUpdate,
                       now: datetime) -> CaseRecord | Refused:
    """The lead asks for more time to resolve (延期): within the policy's allowance, on an
    open case with a resolution clock, one request at a time."""
    if update.department != case.lead:
        return Refused("not_assigned", f"only the lead ({case.lead}) may ask to extend "
                                       f"case {case.case_id}")
    if case.state not in OPEN_STATES or case.sla is None:
        return Refused("illegal_transition", f"cannot extend a case that is {case.state}"
                       if case.sla is not None else f"case {case.case_id} has no time limits")
    if case.extension is not None:
        return Refused("illegal_transition", "an extension request is already waiting for "
                                             "its supervisor")
    if not update.note.strip():
        return Refused("illegal_transition", "an extension request needs the reason")
    terms = case.sla.terms
    try:
        asked = limit_span(update.extend_by or "", terms.unit, WORKING_HOURS)
    except ValueError:
        return Refused("illegal_transition", f"extend_by {update.extend_by!r} is not a "
                                             "duration such as 3d or 8h")
    granted = case.sla.extensions
    if len(granted) >= terms.max_extensions:
        plural = "" if terms.max_extensions == 1 else "s"
        return Refused("illegal_transition", f"the policy grants at most "
                                             f"{terms.max_extensions} extension{plural}")
    total = sum((limit_span(e.extend_by, terms.unit, WORKING_HOURS) for e in granted), asked)
    if asked <= timedelta(0) or total > limit_span(terms.max_extension_total, terms.unit,
                                                   WORKING_HOURS):
        return Refused("illegal_transition", f"extensions may add up to "
                                             f"{terms.max_extension_total} in all")
    request = ExtensionRequest(extend_by=update.extend_by or "", reason=update.note.strip(),
                               at=update.at, by=update.department)
    return _event(case, now, update, extension=request)


def _decide_extension(case: CaseRecord, update: StatusUpdate, now: datetime,
                      supervisor: str | None) -> CaseRecord | Refused:
    """The lead's supervisor, or a command centre, grants or refuses the pending request;
    a grant moves the resolution deadline (the caller re-plans the timers)."""
    dept = update.department
    if dept != supervisor and not dept.endswith(f".{VERIFIER_ROLE}"):
        return Refused("not_assigned", f"an extension is decided by {case.lead}'s supervisor "
                                       f"({supervisor or 'none registered'}) or a command "
                                       f"centre, not {dept}")
    request = case.extension
    if request is None or case.sla is None:
        return Refused("illegal_transition", f"case {case.case_id} has no extension request "
                                             "to decide")
    if update.action == "extension_refused":
        return _event(case, now, update, extension=None)
    granted = Extension(extend_by=request.extend_by, reason=request.reason,
                        requested_at=request.at, approved_by=dept, approved_at=update.at)
    return _event(case, now, update, extension=None,
                  sla=case.sla.model_copy(update={"extensions": [*case.sla.extensions,
                                                                 granted]}))


def _command_centre(case: CaseRecord, update: StatusUpdate,
                    now: datetime) -> CaseRecord | Redispatch | Refused:
    """督办 and 改派 are the command centres' (*.zhzx), on open cases only."""
    if not update.department.endswith(f".{VERIFIER_ROLE}"):
        return Refused("not_assigned", f"{update.action} is a command centre's action "
                                       f"(*.{VERIFIER_ROLE}), not {update.department}'s")
    if case.state not in OPEN_STATES:
        return Refused("illegal_transition", f"cannot {update.action[:-1]} a case that is "
                                             f"{case.state}")
    if update.action == "supervised":
        if update.respond_by is None or update.respond_by <= update.at:
            return Refused("illegal_transition", "supervision needs a respond_by after its at")
        if not update.note.strip():
            return Refused("illegal_transition", "supervision needs a note saying what to do")
        supervision = Supervision(by=update.department, at=update.at, note=update.note,
                                  respond_by=update.respond_by)
        return _event(case, now, update, supervision=supervision)
    if not update.lead:
        return Refused("illegal_transition", "redispatch needs the new lead department")
    if update.lead == case.lead and update.assist is None:
        return Refused("illegal_transition", f"{update.lead} already leads case {case.case_id}")
    return Redispatch(_event(case, now, update), update.lead, update.assist)


def mask_phone(reporter: Reporter | None) -> Reporter | None:
    """Assisting departments get the reporter's name and a masked phone (138****5678)."""
    if reporter is None or not reporter.phone:
        return reporter
    phone = reporter.phone
    masked = phone[:3] + "*" * max(len(phone) - 7, 0) + phone[-4:] if len(phone) > 7 else "****"
    return Reporter(name=reporter.name, phone=masked)


def assignments(case: CaseRecord, record: Classified, decision: RouteDecision,
                kind: AssignmentKind, departments: DepartmentRegistry,
                now: datetime) -> list[Assignment]:
    """One assignment per recipient, lead first."""
    out = []
    for role, dept in [("lead", case.lead), *(("assist", a) for a in case.assist)]:
        report = record.report
        out.append(Assignment(
            case_id=case.case_id, partition_key=case.partition_key, kind=kind,
            role=role,
            department=dept, department_name=departments.by_code[dept].name,
            incident_id=record.incident_id, matter_code=record.matter_code,
            matter_name=record.matter_name, platform=record.platform, priority=case.priority,
            sla_policy=case.sla_policy, grid_code=record.grid_code,
            division_chain=record.division_chain, location=report.location,
            address=report.address, description=report.description,
            reporter=report.reporter if role == "lead" else mask_phone(report.reporter),
            attachments=report.attachments, reported_at=record.reported_at, assigned_at=now,
            merged_reports=len(case.incident_ids) - 1,
            rules_revision=decision.revision or record.rules_revision,
            classification_revision=record.rules_revision,
            matched_rules=[*record.matched_rules, *decision.matched]))
    return out
