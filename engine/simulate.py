"""Embedded mode: classify and route intake reports in one process, without Kafka or Redis.

Operators try new rules on history with it (``griddispatch simulate``, ``rules diff``), so it
calls exactly the pure functions the workers call (``classify_data``/``classify_raw`` and
``on_classified``) and adds nothing of its own but the clock and the bookkeeping.

The clock is simulated: each report's own ``reported_at`` stands for the time it was
received, classified and routed. So the same file and rules always give the same output,
whatever the wall time, and "off hours" rules and the duplicate-merge windows behave as they
would have when the reports came in. A line whose ``reported_at`` cannot be read is rejected
by the classify stage anyway; it gets a fixed epoch as its time, so it is deterministic too.

Outcomes, one dict per non-blank line, in input order:

- ``assigned``: a new case was opened and dispatched;
- ``merged``: a duplicate report of an open case (same matter class, near, recent) joined it;
- ``duplicate``: the same ``channel`` + ``channel_id`` was seen before (a re-sent report: the
  intake is idempotent on that pair, so nothing happens);
- ``triage``: no rule decided (``reason`` says what was missing): a person decides;
- ``rejected``: the line cannot be an incident (``reason``: malformed_json, unknown_field, ...);
- ``status``: a line that is a department's status update (``"schema":
  "griddispatch.status/1"``, as on ``assignments.status``), applied at its own ``at``;
  ``result`` says what it did (updated, rerouted, rejected), ``state`` and ``departments``
  (lead first) what the case became;
- ``escalated`` (with ``escalations=True``): an SLA timer of a case fell due on the simulated
  clock before the next line's time: ``case_id``, ``limit`` (accept, resolve), ``step``
  (warning, breach, level1, ...; ``autoclose`` with limit ``verify``: a resolved case nobody
  verified within its policy's ``verify_within`` is closed), ``recipient``, ``deadline`` and
  ``at`` (when it fired).
  After the last line the clock runs on to ``until`` (default: until no timer is left), so
  history without department answers shows every step each policy would take.

Without department answers no case would ever close and every report would be compared with
every case of its township: quadratic in the history's length (80,000 reports took minutes).
Cases that no later report can merge with any more are therefore retired from duplicate search
(they stay live for status updates and timers). A case retires once the newest
``reported_at`` seen is past its last report by its county's longest merge window plus
``RETIRE_SLACK``: exact for history in time order or out of order by less than that slack.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, TypeAdapter, ValidationError

from engine.calendar import SHANGHAI
from engine.cases.dispatch import on_classified, on_status
from engine.cases.duplicates import CaseStore
from engine.cases.records import SCHEMA_STATUS, CaseRecord, StatusRejected, StatusUpdate
from engine.classify import classify_data, classify_raw
from engine.contracts import MAX_REPORT_BYTES, Classified, Outcome, Rejected, Triage
from engine.rules import RuleSet
from engine.sla.timer_decisions import TimerBook, status_update_for, timers_of_case

# The time given to a line whose reported_at is unreadable (it is rejected regardless).
FALLBACK_TIME = datetime(1970, 1, 1, tzinfo=UTC)
REPORT_OUTCOMES = ("assigned", "merged", "duplicate", "triage", "rejected")
OUTCOMES = (*REPORT_OUTCOMES, "status", "escalated")
STATUS_SCHEMA = f'"{SCHEMA_STATUS}"'.encode()
# How far out of time order a history may be without missing a merge (see above), and how
# often (in reports) the live cases are swept for ones to retire.
RETIRE_SLACK = timedelta(days=1)
SWEEP_EVERY = 1000
FREEZE_EVERY = 1000  # lines between gc.freeze() calls

# The intake contract's own parser, so "parseable" means what IntakeReport accepts.
_AWARE = TypeAdapter(AwareDatetime)


def reported_time(data: Any) -> datetime:
    """The report's ``reported_at`` as the simulated "now", else ``FALLBACK_TIME``."""
    if isinstance(data, dict):
        try:
            return _AWARE.validate_python(data.get("reported_at"))
        except ValidationError:
            pass
    return FALLBACK_TIME


def classify_line(ruleset: RuleSet, raw: bytes) -> Outcome:
    """What the classify worker would make of this line, received at its own reported_at.

    A line that parses is decoded once and handed to ``classify_data``; anything else goes
    through ``classify_raw``, whose rejection (too large, not UTF-8, not JSON) is the worker's.
    """
    if len(raw) <= MAX_REPORT_BYTES:
        try:
            text = raw.decode("utf-8")
            data = json.loads(text)
        except ValueError:  # UnicodeDecodeError is a ValueError too
            pass
        else:
            return classify_data(ruleset, data, reported_time(data), text)
    return classify_raw(ruleset, raw, FALLBACK_TIME)


class _Retirement:
    """Retires live cases that no later report can be merged with (see the module notes)."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self.newest = FALLBACK_TIME
        self.seen = 0
        self._horizon: dict[str, timedelta] = {}

    def horizon(self, case: CaseRecord) -> timedelta:
        county = case.division_chain[2] if len(case.division_chain) > 2 else ""
        if county not in self._horizon:
            merges = self.ruleset.routing_for(county or None).merges
            self._horizon[county] = max((m.window for m in merges), default=timedelta(0))
        return self._horizon[county] + RETIRE_SLACK

    def after(self, store: CaseStore, reported_at: datetime) -> None:
        self.newest = max(self.newest, reported_at)
        self.seen += 1
        if self.seen % SWEEP_EVERY:
            return
        for case in store.open_cases():
            if self.newest - case.last_report_at > self.horizon(case):
                store.stop_merging(case)


def _escalated(ruleset: RuleSet, store: CaseStore, book: TimerBook,
               until: datetime | None) -> Iterator[dict[str, Any]]:
    """The SLA steps due by ``until``; an unverified resolution is closed, and a breach
    supervised when the policy says so, as the timer worker does (an update on the route
    worker's input)."""
    while (due := book.next_due(until)) is not None:
        case_id, _version, timer, _summary = due
        update = status_update_for(case_id, timer, timer.due)
        if update is not None:
            step = on_status(ruleset, store, update.model_dump_json(by_alias=True).encode(),
                             timer.due)
            if step.case is not None:
                book.schedule(timers_of_case(step.case))
        out: dict[str, Any] = {"outcome": "escalated", "case_id": case_id, "limit": timer.limit,
                               "step": timer.step, "recipient": timer.recipient,
                               "deadline": timer.deadline.astimezone(SHANGHAI).isoformat(),
                               "at": timer.due.astimezone(SHANGHAI).isoformat()}
        if timer.percent is not None:
            out["percent"] = timer.percent
        yield out


def _status(ruleset: RuleSet, store: CaseStore, number: int, raw: bytes,
            book: TimerBook | None) -> Iterator[dict[str, Any]]:
    """A department's answer, applied at its own ``at`` (after the timers due by then)."""
    try:
        update = StatusUpdate.model_validate_json(raw)
    except ValidationError:
        at = None
    else:
        at = update.at
        if book is not None:
            yield from _escalated(ruleset, store, book, at)
    step = on_status(ruleset, store, raw, at or FALLBACK_TIME)
    if book is not None and step.case is not None:
        book.schedule(timers_of_case(step.case))
    rejected = step.outputs[0].value if step.outcome == "rejected" else None
    out: dict[str, Any] = {"line": number, "outcome": "status", "result": step.outcome,
                           "case_id": step.case.case_id if step.case else None}
    if step.case is not None:
        # What the answer did to the case: a return names the new lead (改派), every answer
        # the state it left the case in.
        out.update(state=step.case.state, departments=[step.case.lead, *step.case.assist])
        sla = step.case.sla
        if sla is not None and sla.resolve_by is not None and step.case.state != "closed":
            # an extension (延期) granted or a pause moves it: the answer's effect on the clock
            out["resolve_by"] = sla.resolve_by.astimezone(SHANGHAI).isoformat()
        if step.case.extension is not None:
            out["extension_requested"] = step.case.extension.extend_by
        if sla is not None and sla.terms.stages:
            done = [s.name for s in sla.stages_done]
            out["stages_done"] = done
    if isinstance(rejected, StatusRejected):
        out.update(case_id=rejected.case_id, reason=rejected.reason, detail=rejected.detail)
    yield out


def simulate(ruleset: RuleSet, lines: Iterable[bytes], escalations: bool = False,
             until: datetime | None = None) -> Iterator[dict[str, Any]]:
    """One outcome dict per non-blank line, in order, and with ``escalations`` the SLA steps
    that fall due between lines; the case store lives for the call."""
    store = CaseStore()
    retirement = _Retirement(ruleset)
    book = TimerBook() if escalations else None
    for number, line in enumerate(lines, 1):
        if number % FREEZE_EVERY == 0:
            # The case store and the timer book are long-lived and form no cycles: out of
            # the cyclic collector's reach, as in the route worker (full collections over
            # them grew with the history: 20.1 s -> 13.2 s for 40,000 lines, same output).
            gc.freeze()
        raw = line.rstrip(b"\r\n")
        if not raw.strip():
            continue
        if STATUS_SCHEMA in raw:
            yield from _status(ruleset, store, number, raw, book)
            continue
        outcome = classify_line(ruleset, raw)
        if book is not None and isinstance(outcome, Classified):
            yield from _escalated(ruleset, store, book, outcome.received_at)
        out: dict[str, Any] = {"line": number, "incident_id": outcome.incident_id,
                               "channel": outcome.channel, "channel_id": outcome.channel_id}
        if isinstance(outcome, Classified):
            step = on_classified(ruleset, store, outcome, outcome.received_at)
            out["outcome"] = step.outcome
            case = step.case
            if book is not None and case is not None:
                book.schedule(timers_of_case(case))
            if step.outcome == "duplicate":  # the case may be retired: ask the incident map
                out["case_id"] = store.case_of_incident[outcome.incident_id]
            elif case is not None:
                out["case_id"] = case.case_id
                if step.outcome in ("assigned", "merged"):
                    out.update(matter_code=outcome.matter_code, grid_code=outcome.grid_code,
                               departments=[case.lead, *case.assist],
                               rules_revision=outcome.rules_revision)
            retirement.after(store, outcome.reported_at)
        elif isinstance(outcome, Triage):
            out.update(outcome="triage", reason=outcome.reason, detail=outcome.detail,
                       urgent=outcome.urgent,
                       suggestions=[s.model_dump() for s in outcome.suggestions])
            if outcome.matter_code:
                out["matter_code"] = outcome.matter_code
        elif isinstance(outcome, Rejected):
            out.update(outcome="rejected", reason=outcome.reason, detail=outcome.detail)
        yield out
    if book is not None:
        yield from _escalated(ruleset, store, book, until)


def destination(out: dict[str, Any]) -> tuple[object, ...]:
    """What ``rules diff`` compares: outcome, matter, lead and the set of assisting departments.

    Case ids and rule revisions are left out on purpose: they differ between any two rule
    sets (or with the order of history) without the incident going anywhere else.
    """
    departments = out.get("departments") or [None]
    return (out["outcome"], out.get("matter_code"), departments[0],
            frozenset(departments[1:]))


def describe(out: dict[str, Any]) -> str:
    """A short human form of one outcome: ``assigned 090101 330110012.zhzf +330110.zhzx``."""
    outcome = out["outcome"]
    if outcome in ("triage", "rejected"):
        matter = f" {out['matter_code']}" if out.get("matter_code") else ""
        return f"{outcome} {out['reason']}{matter}"
    if outcome == "duplicate":
        return f"duplicate of {out.get('case_id', '?')}"
    lead, *assist = out["departments"]
    text = f"{outcome} {out['matter_code']} {lead}"
    return text + (" +" + ",".join(sorted(assist)) if assist else "")


def label(out: dict[str, Any]) -> str:
    """The incident id, or the line number for input too broken to have one."""
    return str(out["incident_id"]) if out.get("incident_id") else f"line {out['line']}"


__all__ = ["FALLBACK_TIME", "OUTCOMES", "REPORT_OUTCOMES", "classify_line", "describe",
           "destination", "label", "reported_time", "simulate"]
