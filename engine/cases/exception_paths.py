"""The exception paths departments and command centres use every day, as pure transitions:
extension (延期: the lead asks, its supervisor or a centre decides), backlog (挂账: the lead
asks, a centre approves, the resolution clock stops until it is released), supervision (督办)
and redispatch (改派) by a command centre, and call-backs (回访) that reach nobody."""

from __future__ import annotations

from datetime import datetime, timedelta

from engine.calendar import WORKING_HOURS
from engine.cases.events import (
    OPEN_STATES,
    VERIFIER_ROLE,
    Redispatch,
    Refused,
    record_event,
)
from engine.cases.records import (
    Backlog,
    CaseRecord,
    ExtensionRequest,
    StatusUpdate,
    Supervision,
)
from engine.sla.model import Extension, StageDone
from engine.sla.plan import pause, resume
from engine.sla.policy import limit_span


def unreachable(case: CaseRecord, update: StatusUpdate,
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
        return record_event(case, now, update, unreachable_callbacks=tries, state="closed",
                      closed_as="unreachable")
    return record_event(case, now, update, unreachable_callbacks=tries)


def request_extension(case: CaseRecord, update: StatusUpdate,
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
    return record_event(case, now, update, extension=request)


def decide_extension(case: CaseRecord, update: StatusUpdate, now: datetime,
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
        return record_event(case, now, update, extension=None)
    granted = Extension(extend_by=request.extend_by, reason=request.reason,
                        requested_at=request.at, approved_by=dept, approved_at=update.at)
    return record_event(case, now, update, extension=None,
                  sla=case.sla.model_copy(update={"extensions": [*case.sla.extensions,
                                                                 granted]}))


def command_centre(case: CaseRecord, update: StatusUpdate,
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
        return record_event(case, now, update, supervision=supervision)
    if not update.lead:
        return Refused("illegal_transition", "redispatch needs the new lead department")
    if update.lead == case.lead and update.assist is None:
        return Refused("illegal_transition", f"{update.lead} already leads case {case.case_id}")
    return Redispatch(record_event(case, now, update), update.lead, update.assist)


def backlog(case: CaseRecord, update: StatusUpdate, now: datetime) -> CaseRecord | Refused:
    """挂账: the lead asks with the reason and a review date; a command centre approves
    (the resolution clock stops, the review timer runs) or refuses; the lead or a centre
    releases it (the clock runs again)."""
    action, dept = update.action, update.department
    centre = dept.endswith(f".{VERIFIER_ROLE}")
    if case.state not in OPEN_STATES or case.sla is None:
        return Refused("illegal_transition", f"cannot put a case that is {case.state} on the "
                                             "backlog" if case.sla is not None else
                       f"case {case.case_id} has no time limits")
    pending = case.backlog
    if action == "backlog_requested":
        if dept != case.lead:
            return Refused("not_assigned", f"only the lead ({case.lead}) may ask to put case "
                                           f"{case.case_id} on the backlog")
        if pending is not None:
            return Refused("illegal_transition", "the case is on the backlog or asked to be")
        if not update.note.strip() or update.review_at is None or update.review_at <= update.at:
            return Refused("illegal_transition", "a backlog request needs the reason and a "
                                                 "review date after it")
        if case.sla.paused_since is not None:
            return Refused("illegal_transition", "resume the paused case first")
        return record_event(case, now, update, backlog=Backlog(
            reason=update.note.strip(), review_at=update.review_at, requested_by=dept,
            requested_at=update.at))
    if not centre and not (action == "backlog_released" and dept == case.lead):
        return Refused("not_assigned", f"the backlog is decided by a command centre "
                                       f"(*.{VERIFIER_ROLE}), not {dept}")
    if action in ("backlog_approved", "backlog_refused"):
        if pending is None or pending.approved_by is not None:
            return Refused("illegal_transition", f"case {case.case_id} has no backlog "
                                                 "request to decide")
        if action == "backlog_refused":
            return record_event(case, now, update, backlog=None)
        return record_event(case, now, update, sla=pause(case.sla, update.at),
                            backlog=pending.model_copy(update={"approved_by": dept,
                                                               "approved_at": update.at}))
    if pending is None or pending.approved_by is None:  # released
        return Refused("illegal_transition", f"case {case.case_id} is not on the backlog")
    return record_event(case, now, update, sla=resume(case.sla, update.at), backlog=None)


def complete_stage(case: CaseRecord, update: StatusUpdate, now: datetime) -> CaseRecord | Refused:
    """The lead reports one stage of a staged limit done (e.g. the works stopped): its
    timers stop; the others, and the resolution limit, run on."""
    if update.department != case.lead:
        return Refused("not_assigned", f"only the lead ({case.lead}) reports stages of case "
                                       f"{case.case_id}")
    if case.state not in ("accepted", "reopened") or case.sla is None:
        return Refused("illegal_transition", f"stages are reported on an accepted case; it is "
                                             f"{case.state}")
    names = [s.name for s in case.sla.terms.stages]
    done = {s.name for s in case.sla.stages_done}
    if update.stage not in names:
        return Refused("illegal_transition", f"no stage {update.stage!r} in this case's "
                                             f"policy (stages: {', '.join(names) or 'none'})")
    if update.stage in done:
        return Refused("illegal_transition", f"stage {update.stage} is already done")
    finished = StageDone(name=update.stage, at=update.at, note=update.note)
    return record_event(case, now, update, sla=case.sla.model_copy(update={
        "stages_done": [*case.sla.stages_done, finished]}))
