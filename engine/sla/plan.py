"""Deadlines and the timer plan of a case, as pure functions of the case record.

Two clocks run per case: acceptance (签收) from each dispatch, re-dispatch or reopening, and
resolution (办结) from opening or reopening. Pauses (waiting on the reporter) stop both.
Every step (warnings, breach, the ladder) of a running clock is planned at once, each with a
stable ``escalation_id``: the timer store fires each id once, so re-planning after any change
to the case (a merged report, a pause) never repeats a step that already fired.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache

from engine.calendar import (
    WORKING_HOURS,
    WorkingHours,
    add_working_time,
    add_working_times,
    working_time_between,
)
from engine.cases.records import CaseRecord
from engine.contracts import trusted
from engine.reference.departments import DepartmentRegistry
from engine.sla.model import CaseSla, LimitName, SlaTerms, SlaTimer
from engine.sla.policy import limit_span

Pause = tuple[datetime, datetime]
ACCEPT_STATES = frozenset({"dispatched", "reopened"})
RESOLVE_STATES = frozenset({"dispatched", "accepted", "reopened"})
# A policy's few limit texts are parsed again for every case: remember their spans.
_span = lru_cache(maxsize=1024)(limit_span)


def deadline_after(start: datetime, span: timedelta, terms: SlaTerms,
                   pauses: Sequence[Pause] = (), hours: WorkingHours | None = None) -> datetime:
    """When ``span`` of counted time has run since ``start``, not counting the pauses."""
    hours = hours or terms.hours.hours()

    def add(at: datetime, amount: timedelta) -> datetime:
        return add_working_time(at, amount, hours) if terms.unit == "working" else at + amount

    def measure(a: datetime, b: datetime) -> timedelta:
        if terms.unit == "working":
            return working_time_between(a, b, hours)
        return max(b - a, timedelta(0))

    remaining, cursor = span, start
    for pause_start, pause_end in sorted(pauses):
        if pause_end <= cursor:
            continue
        before = measure(cursor, pause_start) if pause_start > cursor else timedelta(0)
        if before >= remaining:
            break
        remaining -= before
        cursor = max(cursor, pause_end)
    return add(cursor, remaining)


def deadlines_after(start: datetime, spans: Sequence[timedelta], terms: SlaTerms,
                    pauses: Sequence[Pause], hours: WorkingHours) -> list[datetime]:
    """``deadline_after`` for several spans from one start: one calendar walk when nothing
    paused the clock (the common case; a clock's warnings share its start)."""
    if not pauses:
        if terms.unit == "working":
            return add_working_times(start, spans, hours)
        return [start + span for span in spans]
    return [deadline_after(start, span, terms, pauses, hours) for span in spans]


def open_sla(terms: SlaTerms, now: datetime) -> CaseSla:
    return CaseSla(terms=terms, accept_from=now if terms.accept else None, resolve_from=now)


def restart_accept(sla: CaseSla, at: datetime) -> CaseSla:
    """A new lead (re-dispatch after a return) gets the whole acceptance limit again."""
    return sla.model_copy(update={"accept_from": at if sla.terms.accept else None})


def restart_all(sla: CaseSla, at: datetime) -> CaseSla:
    """A reopened case must be accepted and resolved again, within fresh limits."""
    return sla.model_copy(update={"accept_from": at if sla.terms.accept else None,
                                  "resolve_from": at, "pauses": [], "paused_since": None,
                                  "extensions": []})


def pause(sla: CaseSla, at: datetime) -> CaseSla:
    return sla.model_copy(update={"paused_since": at})


def resume(sla: CaseSla, at: datetime) -> CaseSla:
    if sla.paused_since is None:
        return sla
    return sla.model_copy(update={"paused_since": None,
                                  "pauses": [*sla.pauses, (sla.paused_since, at)]})


def escalation_id(case_id: str, limit: str, clock_start: datetime, step: str) -> str:
    return _step_id(_clock_key(case_id, limit, clock_start), step)


def _clock_key(case_id: str, limit: str, clock_start: datetime) -> str:
    """What the ids of one clock's steps share: formatted once per clock, not once a step."""
    return f"{case_id}|{limit}|{clock_start.isoformat()}|"


def _step_id(clock_key: str, step: str) -> str:
    return hashlib.sha1((clock_key + step).encode(), usedforsecurity=False).hexdigest()[:20]


def case_version(case: CaseRecord) -> int:
    """Grows with every change of the case: the fencing token of its timers."""
    return len(case.history)


def _ladder(case: CaseRecord, terms: SlaTerms, departments: DepartmentRegistry,
            hours: WorkingHours) -> list[tuple[str, timedelta, str]]:
    """(step, delay after breach, recipient) for each ladder step that has a recipient."""
    out, previous = [], case.lead
    for level, step in enumerate(terms.ladder, 1):
        if step.to == "supervisor":
            dept = departments.by_code.get(previous)
            recipient = dept.supervisor if dept else None
        else:
            recipient = departments.resolve(step.to, case.division_chain)
        if recipient is None:  # above the top of the chain, or no such body here
            continue
        out.append((f"level{level}", _span(step.after, terms.unit, hours), recipient))
        previous = recipient
    return out


def _clock_timers(case: CaseRecord, limit: LimitName, start: datetime, span: timedelta,
                  ladder: list[tuple[str, timedelta, str]],
                  hours: WorkingHours, stage: str | None = None
                  ) -> tuple[datetime, list[SlaTimer]]:
    """The clock's deadline and its timers. The deadline and the warnings share their start
    and pauses, so they take one calendar walk; the ladder runs on from the deadline."""
    sla = case.sla
    assert sla is not None
    terms = sla.terms
    deadline, *warnings = deadlines_after(
        start, [span, *(span * p / 100 for p in terms.warn_at)], terms, sla.pauses, hours)
    key = _clock_key(case.case_id, f"stage-{stage}" if stage else limit, start)

    def timer(step: str, due: datetime, recipient: str, percent: int | None = None) -> SlaTimer:
        # Not re-validated: every value is computed here (about ten timers a case, on the
        # route worker's hot path); the timer worker validates what it reads back.
        return trusted(SlaTimer, escalation_id=_step_id(
                           key, f"{step}{percent}" if percent is not None else step),
                       limit=limit, step=step, percent=percent, due=due, deadline=deadline,
                       recipient=recipient, stage=stage)

    timers = [timer("warning", due, case.lead, p)
              for p, due in zip(terms.warn_at, warnings, strict=True)]
    timers.append(timer("breach", deadline, case.lead))
    # After a breach, pauses no longer stop the ladder.
    steps = deadlines_after(deadline, [delay for _, delay, _ in ladder], terms, (), hours)
    for (step, _, recipient), due in zip(ladder, steps, strict=True):
        timers.append(timer(step, due, recipient))
    return deadline, timers


def _centre(case: CaseRecord, departments: DepartmentRegistry) -> str:
    return (departments.resolve("township.zhzx", case.division_chain)
            or departments.resolve("county.zhzx", case.division_chain) or case.lead)


def _supervision_timers(case: CaseRecord, resolve_by: datetime | None,
                        departments: DepartmentRegistry, hours: WorkingHours) -> list[SlaTimer]:
    """督办 by policy and its own escalation.

    * ``supervise`` at the resolution breach, when the policy supervises on breach and no
      supervision is open: the timers worker records the command centre's ``supervised``
      (its ``deadline`` is the answer's: breach + ``supervise_on_breach``).
    * ``overdue`` (limit ``supervision``) at an open supervision's ``respond_by``: the lead
      did not answer in time, so the supervising centre's supervisor hears of it.
    """
    sla = case.sla
    assert sla is not None
    terms = sla.terms
    supervision = case.supervision
    out = []
    if supervision is not None and supervision.answered_at is None:
        above = departments.by_code.get(supervision.by)
        recipient = above.supervisor if above and above.supervisor else supervision.by
        key = _clock_key(case.case_id, "supervision", supervision.at)
        out.append(trusted(SlaTimer, escalation_id=_step_id(key, "overdue"),
                           limit="supervision", step="overdue", percent=None,
                           due=supervision.respond_by, deadline=supervision.respond_by,
                           recipient=recipient, stage=None))
    elif terms.supervise_on_breach and resolve_by is not None and supervision is None:
        answer_by = deadline_after(resolve_by, _span(terms.supervise_on_breach, terms.unit,
                                                     hours), terms, (), hours)
        key = _clock_key(case.case_id, "resolve", sla.resolve_from)
        out.append(trusted(SlaTimer, escalation_id=_step_id(key, "supervise"),
                           limit="resolve", step="supervise", percent=None, due=resolve_by,
                           deadline=answer_by, recipient=_centre(case, departments),
                           stage=None))
    return out


def resolve_span(sla: CaseSla, hours: WorkingHours) -> timedelta:
    """The resolution limit with every granted extension (延期) added, in counted time."""
    terms = sla.terms
    return _span(terms.resolve, terms.unit, hours) + sum(
        (_span(e.extend_by, terms.unit, hours) for e in sla.extensions), timedelta())


def clock_state(case: CaseRecord) -> tuple[object, ...]:
    """What the deadlines and the plan depend on: unchanged means no need to re-plan."""
    sla = case.sla
    if sla is None:
        return ()
    supervision = case.supervision
    return (case.state, case.lead, sla.accept_from, sla.resolve_from, sla.paused_since,
            len(sla.pauses), len(sla.extensions),
            supervision and (supervision.at, supervision.answered_at), len(sla.stages_done),
            case.backlog and (case.backlog.requested_at, case.backlog.approved_by))


def _autoclose(case: CaseRecord, within: str, departments: DepartmentRegistry) -> SlaTimer:
    """Nobody verified (回访) the resolution in time: the command centre's verification is
    recorded for it, closing the case, so it does not stay open for ever."""
    due = case.updated_at + limit_span(within, "natural", WORKING_HOURS)
    verifier = _centre(case, departments)
    return SlaTimer(escalation_id=escalation_id(case.case_id, "verify", case.updated_at,
                                                "autoclose"),
                    limit="verify", step="autoclose", due=due, deadline=due,
                    recipient=verifier)


def replan(case: CaseRecord, departments: DepartmentRegistry,
           before: CaseRecord | None = None) -> CaseRecord:
    """The case with its deadlines and timer plan brought up to date with its state.

    With ``before`` (the case as it was), a change that touches no clock (a merged report,
    progress) keeps the plan as it is: re-planning is the route worker's main SLA cost.
    """
    sla = case.sla
    if sla is None:
        return case
    if before is not None and before.sla is not None and sla.timers is before.sla.timers \
            and clock_state(before) == clock_state(case):
        return case
    terms = sla.terms
    hours = terms.hours.hours()
    accept_by, resolve_by = sla.accept_by, sla.resolve_by
    stage_deadlines = {name: by for name, by in sla.stage_deadlines.items()
                       if name not in {s.name for s in sla.stages_done}}
    timers: list[SlaTimer] = []
    if sla.paused_since is None and case.state in RESOLVE_STATES:
        ladder = _ladder(case, terms, departments, hours)
        if case.state in ACCEPT_STATES and terms.accept and sla.accept_from is not None:
            accept_by, planned = _clock_timers(case, "accept", sla.accept_from,
                                               _span(terms.accept, terms.unit, hours), ladder,
                                               hours)
            timers += planned
        resolve_by, planned = _clock_timers(case, "resolve", sla.resolve_from,
                                            resolve_span(sla, hours), ladder, hours)
        timers += planned
        done = {s.name for s in sla.stages_done}
        for stage in terms.stages:
            if stage.name in done:
                continue
            stage_by, planned = _clock_timers(case, "stage", sla.resolve_from,
                                              _span(stage.within, terms.unit, hours), ladder,
                                              hours, stage.name)
            stage_deadlines[stage.name] = stage_by
            timers += planned
        timers += _supervision_timers(case, resolve_by, departments, hours)
    elif case.state == "resolved" and terms.verify_within:
        timers.append(_autoclose(case, terms.verify_within, departments))
    backlog = case.backlog
    if backlog is not None and backlog.approved_by is not None and case.state in RESOLVE_STATES:
        # 挂账: the resolution clock is stopped; the centre that approved it reviews it
        key = _clock_key(case.case_id, "backlog", backlog.requested_at)
        timers.append(trusted(SlaTimer, escalation_id=_step_id(key, "review"), limit="backlog",
                              step="review", percent=None, due=backlog.review_at,
                              deadline=backlog.review_at, recipient=backlog.approved_by,
                              stage=None))
    timers.sort(key=lambda t: t.due)
    new = sla.model_copy(update={"accept_by": accept_by, "resolve_by": resolve_by,
                                 "stage_deadlines": stage_deadlines,
                                 "timers": timers})
    return case.model_copy(update={"sla": new})
