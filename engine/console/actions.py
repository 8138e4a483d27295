"""The records a console action publishes, built and checked here, published by the server.

Each action is a record the engine already understands, so the console never writes case
state itself: a manual dispatch is a ``Classified`` (``classified_by: operator``) that the
route worker dispatches like any other, plus a ``TriageDecision`` for the audit trail and the
classifier's next examples; a rejection is a ``TriageDecision`` alone; answers, verification,
supervision and redispatch are ``StatusUpdate``s on ``assignments.status``. A form that
cannot become a valid record raises ``FormError`` naming the field, before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from engine.cases.records import CaseRecord, StatusAction, StatusUpdate
from engine.console.access import Operator
from engine.contracts import (
    PRIORITY_ORDER,
    Classified,
    ManualDispatch,
    Priority,
    RuleMatch,
    Triage,
    TriageDecision,
)
from engine.routing.decide import RouteDecision, route
from engine.rules import RuleSet

MAX_NOTE = 2000


class FormError(ValueError):
    """A form field the action cannot use: the field's name and what is wrong, for the page."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class DispatchForm:
    matter_code: str
    grid_code: str | None = None
    division_code: str | None = None
    lead: str | None = None
    assist: list[str] | None = None
    override_reason: str = ""
    priority: str | None = None


@dataclass(frozen=True)
class ManualDispatchRecords:
    classified: Classified
    decision: TriageDecision


def _chain(ruleset: RuleSet, triage: Triage, form: DispatchForm) -> tuple[list[str], str | None]:
    """The place chosen on the form, else the one the rules found."""
    places = ruleset.jurisdiction
    if form.grid_code:
        if form.grid_code not in places.grids:
            raise FormError("grid_code", f"no grid {form.grid_code} in the rules")
        return list(places.chain_of_grid(form.grid_code)), form.grid_code
    if form.division_code:
        division = places.division_for(form.division_code)
        if division is None:
            raise FormError("division_code", f"no division {form.division_code}")
        return list(places.chain(division.code)), None
    if triage.division_chain:
        return list(triage.division_chain), triage.grid_code
    raise FormError("grid_code", "the report has no place yet: choose a grid or a division")


def manual_dispatch(ruleset: RuleSet, triage: Triage, form: DispatchForm, operator: Operator,
                    now: datetime) -> ManualDispatchRecords:
    if not operator.sorts_triage(triage):
        raise FormError("operator", f"{operator.username} may not sort this report")
    matter = ruleset.matters.get(form.matter_code.strip())
    if matter is None:
        raise FormError("matter_code", f"no matter {form.matter_code} in the catalogue")
    chain, grid = _chain(ruleset, triage, form)
    if operator.scope and not any(code.startswith(operator.scope) for code in chain):
        raise FormError("grid_code", "that place is outside your area")
    priority: Priority = ("urgent" if triage.urgent else matter.priority)
    if form.priority:
        if form.priority not in PRIORITY_ORDER:
            raise FormError("priority", f"unknown priority {form.priority}")
        priority = form.priority  # type: ignore[assignment]  # checked just above
    lead, assist = form.lead or None, form.assist
    for code in [lead, *(assist or [])]:
        if code is not None and code not in ruleset.departments:
            raise FormError("lead" if code == lead else "assist", f"no department {code}")
    overridden = lead is not None or assist is not None
    if overridden and not form.override_reason.strip():
        raise FormError("override_reason", "say why the rules' departments are overridden")
    manual = ManualDispatch(operator=operator.username, decided_at=now,
                            triage_reason=triage.reason, lead=lead, assist=assist,
                            override_reason=form.override_reason.strip() or None)
    record = Classified(
        incident_id=triage.incident_id, channel=triage.channel, channel_id=triage.channel_id,
        reported_at=triage.reported_at, received_at=triage.received_at,
        rules_revision=ruleset.revision, classified_at=now, matter_code=matter.code,
        matter_name=matter.name, platform=matter.platform, priority=priority,
        division_chain=chain, grid_code=grid,
        placed_by="operator" if (form.grid_code or form.division_code) else "rules",
        classified_by="operator",
        matched_rules=[RuleMatch(field="matter_code", rule=f"operator:{operator.username}",
                                 layer="console", why=f"sorted by hand ({triage.reason})")],
        report=triage.report, dispatched_by=manual)
    decision = TriageDecision(
        incident_id=triage.incident_id, decision="dispatched", operator=operator.username,
        decided_at=now, triage_reason=triage.reason, description=triage.report.description,
        channel=triage.channel, matter_code=matter.code, grid_code=grid,
        division_code=chain[-1], lead=lead, assist=assist or [], priority=priority,
        suggested=[s.matter_code for s in triage.suggestions],
        reason=form.override_reason.strip())
    return ManualDispatchRecords(record, decision)


def reject_triage(triage: Triage, reason: str, operator: Operator,
                  now: datetime) -> TriageDecision:
    if not operator.sorts_triage(triage):
        raise FormError("operator", f"{operator.username} may not sort this report")
    if not reason.strip():
        raise FormError("reason", "say why this is not an incident")
    return TriageDecision(
        incident_id=triage.incident_id, decision="rejected", operator=operator.username,
        decided_at=now, triage_reason=triage.reason, description=triage.report.description,
        channel=triage.channel, suggested=[s.matter_code for s in triage.suggestions],
        reason=reason.strip()[:500])


DEPARTMENT_ACTIONS: tuple[StatusAction, ...] = ("accepted", "returned", "progress", "paused",
                                                "resumed", "resolved", "extension_requested",
                                                "backlog_requested", "stage_completed")
NOTE_REQUIRED: frozenset[str] = frozenset({"returned", "resolved", "supervised",
                                           "extension_requested", "extension_refused",
                                           "backlog_requested", "backlog_refused"})


def status_update(case: CaseRecord, operator: Operator, action: StatusAction, now: datetime, *,
                  note: str = "", satisfied: bool | None = None, lead: str | None = None,
                  assist: list[str] | None = None, respond_by: datetime | None = None,
                  extend_by: str | None = None, review_at: datetime | None = None,
                  stage: str | None = None) -> StatusUpdate:
    """A department's answer, or a command centre's verify / supervise / redispatch, as the
    department code the operator acts for. The route worker has the last word (it refuses
    an illegal transition on ``assignments.status.rejected``); what is checked here is only
    what the page can tell the user at once."""
    if action in DEPARTMENT_ACTIONS or (action == "backlog_released"
                                        and operator.role == "department"):
        department = operator.answers_for(case)
        if department is None:
            raise FormError("action", "only the departments on this case answer it")
    else:
        department = operator.centre_code(case.division_chain)
        if department is None or not operator.sees_case(case):
            raise FormError("action", "only a command centre verifies, supervises, "
                                      "redispatches or decides extensions")
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise FormError("note", f"at most {MAX_NOTE} characters")
    if action in NOTE_REQUIRED and not note:
        raise FormError("note", "a note is required")
    if action == "supervised" and (respond_by is None or respond_by <= now):
        raise FormError("respond_by", "give a time in the future")
    if action == "redispatched" and not lead:
        raise FormError("lead", "choose the new lead department")
    if action == "extension_requested" and not extend_by:
        raise FormError("extend_by", "say how much time, e.g. 3d or 8h")
    if action == "backlog_requested" and (review_at is None or review_at <= now):
        raise FormError("review_at", "give a review date in the future")
    return StatusUpdate(case_id=case.case_id, department=department, action=action, at=now,
                        note=note, satisfied=satisfied, lead=lead or None, assist=assist,
                        respond_by=respond_by, by=operator.username,
                        extend_by=extend_by or None, review_at=review_at,
                        stage=stage or None)


def default_route(ruleset: RuleSet, triage: Triage, matter_code: str, operator: Operator,
                  now: datetime) -> RouteDecision | None:
    """The departments the routing rules would choose for this matter here: the form's
    default, which a person may override with a reason. None while the place is unknown."""
    try:
        records = manual_dispatch(ruleset, triage, DispatchForm(matter_code=matter_code),
                                  operator, now)
    except FormError:
        return None
    return route(ruleset, records.classified)
