"""The console's view of the work, folded from the topics: nothing here is state of its own.

Every console process reads ``incidents.triage``, ``triage.decisions``, ``cases``,
``escalations``, ``incidents.classified`` and ``incidents.rejected`` from the beginning and
applies each record here, so a restart, a second console or a lost process loses nothing:
the topics are the truth, as they are for the Open311 read model. A triaged report leaves
the queue when a decision about it is on ``triage.decisions`` or a case took its incident
(a decision made on another console, or before this one started).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Literal

from pydantic import ValidationError

from engine.cases.records import CaseRecord
from engine.console.access import Operator
from engine.contracts import Triage, TriageDecision
from engine.sla.model import Escalation

CST = timezone(timedelta(hours=8))  # the day of "the day's numbers" is China's
SlaState = Literal["breached", "warned", "on_time", "paused", "backlog", "done"]
SLA_ORDER: dict[str, int] = {"breached": 0, "warned": 1, "on_time": 2, "paused": 3,
                             "backlog": 4, "done": 5}
OPEN_STATES = ("dispatched", "accepted", "reopened")
ChangeKind = Literal["triage", "decision", "case", "escalation", "count"]


@dataclass
class TriageItem:
    triage: Triage
    decision: TriageDecision | None = None
    case_id: str | None = None  # the case that took this incident

    @property
    def waiting(self) -> bool:
        return self.decision is None and self.case_id is None


@dataclass(frozen=True)
class Change:
    """What one record changed, for live updates: the page decides whether it cares."""

    kind: ChangeKind
    key: str
    urgent: bool = False
    breach: bool = False


@dataclass(frozen=True)
class CaseRow:
    case: CaseRecord
    sla: SlaState
    deadline: datetime | None


@dataclass(frozen=True)
class CaseFilter:
    township: str | None = None
    department: str | None = None
    platform: str | None = None
    state: str | None = None
    sla: str | None = None

    def keeps(self, row: CaseRow) -> bool:
        case = row.case
        return ((self.township is None or case.partition_key.startswith(self.township))
                and (self.department is None or self.department in (case.lead, *case.assist))
                and (self.platform is None or case.platform == self.platform)
                and (self.state is None or case.state == self.state)
                and (self.sla is None or row.sla == self.sla))


@dataclass(frozen=True)
class DayNumbers:
    day: date
    intake_by_channel: dict[str, int]
    automatic: int
    triaged: int
    backlog: int
    oldest_waiting: timedelta | None
    accepted_on_time: tuple[int, int]  # (on time, all) among acceptances of the day
    resolved_on_time: tuple[int, int]

    @property
    def automatic_rate(self) -> float | None:
        decided = self.automatic + self.triaged
        return self.automatic / decided if decided else None


def deadline_of(case: CaseRecord) -> datetime | None:
    """The limit that runs now: acceptance until accepted, then resolution."""
    sla = case.sla
    if sla is None or case.state not in OPEN_STATES:
        return None
    limits = [sla.resolve_by]
    if case.state != "accepted":
        limits.append(sla.accept_by)
    running = [limit for limit in limits if limit is not None]
    return min(running) if running else None


def sla_state(case: CaseRecord, now: datetime) -> SlaState:
    if case.state not in OPEN_STATES:
        return "done"
    sla = case.sla
    if sla is None:
        return "on_time"
    if case.backlog is not None and case.backlog.approved_by is not None:
        return "backlog"  # 挂账: tracked apart, its clock stopped until released
    if sla.paused_since is not None:
        return "paused"
    deadline = deadline_of(case)
    if deadline is not None and now >= deadline:
        return "breached"
    warned = any(t.step == "warning" and t.due <= now and t.deadline == deadline
                 for t in sla.timers)
    return "warned" if warned else "on_time"


def _day(moment: datetime) -> date:
    return moment.astimezone(CST).date()


@dataclass
class ConsoleView:
    triage: dict[str, TriageItem] = field(default_factory=dict)
    cases: dict[str, CaseRecord] = field(default_factory=dict)
    case_of_incident: dict[str, str] = field(default_factory=dict)
    escalations: dict[str, list[Escalation]] = field(default_factory=lambda: defaultdict(list))
    intake: Counter[tuple[date, str]] = field(default_factory=Counter)
    automatic: Counter[date] = field(default_factory=Counter)
    triaged: Counter[date] = field(default_factory=Counter)
    unreadable: Counter[str] = field(default_factory=Counter)
    version: int = 0

    def apply(self, topic: str, value: bytes | None) -> Change | None:
        """One record of ``topic`` (its name without the environment's prefix)."""
        if value is None:
            return None
        try:
            change = self._apply(topic, value)
        except (ValidationError, ValueError, KeyError, TypeError):
            self.unreadable[topic] += 1
            return None
        if change is not None:
            self.version += 1
        return change

    def _apply(self, topic: str, value: bytes) -> Change | None:
        if topic == "incidents.triage":
            triage = Triage.model_validate_json(value)
            item = self.triage.get(triage.incident_id)
            if item is None:
                self.intake[(_day(triage.received_at), triage.channel)] += 1
                self.triaged[_day(triage.received_at)] += 1
                item = self.triage[triage.incident_id] = TriageItem(triage)
            item.triage = triage
            item.case_id = self.case_of_incident.get(triage.incident_id)
            return Change("triage", triage.incident_id, urgent=triage.urgent)
        if topic == "triage.decisions":
            decision = TriageDecision.model_validate_json(value)
            if decision.incident_id in self.triage:
                self.triage[decision.incident_id].decision = decision
            return Change("decision", decision.incident_id)
        if topic == "cases":
            case = CaseRecord.model_validate_json(value)
            self.cases[case.case_id] = case
            for incident in case.incident_ids:
                self.case_of_incident[incident] = case.case_id
                if incident in self.triage:
                    self.triage[incident].case_id = case.case_id
            return Change("case", case.case_id)
        if topic == "escalations":
            escalation = Escalation.model_validate_json(value)
            fired = self.escalations[escalation.case_id]
            if all(e.escalation_id != escalation.escalation_id for e in fired):
                fired.append(escalation)
            return Change("escalation", escalation.case_id,
                          breach=escalation.step != "warning")
        if topic == "incidents.classified":
            record = json.loads(value)
            if record.get("classified_by") == "operator":
                return None  # a triaged report sorted by hand: counted when it was triaged
            day = _day(datetime.fromisoformat(record["received_at"]))
            self.intake[(day, record["channel"])] += 1
            self.automatic[day] += 1
            return Change("count", record["incident_id"])
        if topic == "incidents.rejected":
            record = json.loads(value)
            self.intake[(_day(datetime.fromisoformat(record["received_at"])),
                         record.get("channel") or "unknown")] += 1
            return Change("count", record.get("incident_id") or "")
        return None

    # --- queries, each for one operator ------------------------------------------------------

    def triage_queue(self, operator: Operator) -> list[TriageItem]:
        """Waiting reports the operator may see: urgent first, then oldest first."""
        waiting = [item for item in self.triage.values()
                   if item.waiting and operator.sees_triage(item.triage)]
        return sorted(waiting, key=lambda i: (not i.triage.urgent, i.triage.received_at))

    def case_rows(self, operator: Operator, now: datetime,
                  where: CaseFilter | None = None, open_only: bool = True) -> list[CaseRow]:
        """Cases the operator may see, overdue first (breached, warned, then by deadline)."""
        rows = [CaseRow(case, sla_state(case, now), deadline_of(case))
                for case in self.cases.values()
                if operator.sees_case(case) and (not open_only or case.state in OPEN_STATES
                                                 or case.state == "resolved")]
        if where is not None:
            rows = [row for row in rows if where.keeps(row)]
        far = datetime.max.replace(tzinfo=CST)
        return sorted(rows, key=lambda r: (SLA_ORDER[r.sla], r.deadline or far,
                                           r.case.case_id))

    def supervised(self, operator: Operator) -> list[CaseRecord]:
        """Cases under 督办: unanswered first, the earliest answer due first."""
        cases = [c for c in self.cases.values()
                 if c.supervision is not None and operator.sees_case(c)]
        return sorted(cases, key=lambda c: (c.supervision is None
                                            or c.supervision.answered_at is not None,
                                            c.supervision.respond_by if c.supervision else 0))

    def visibility(self, operator: Operator, case_id: str) -> Literal["ok", "forbidden",
                                                                      "missing"]:
        case = self.cases.get(case_id)
        if case is None:
            return "missing"
        return "ok" if operator.sees_case(case) else "forbidden"

    def numbers(self, operator: Operator, now: datetime) -> DayNumbers:
        """The day's numbers. Intake and the automatic rate are the whole territory's (the
        topics carry no place for rejected input); backlog and on-time rates are the
        operator's own."""
        today = _day(now)
        queue = self.triage_queue(operator)
        oldest = min((i.triage.received_at for i in queue), default=None)
        accepted = [0, 0]
        resolved = [0, 0]
        for case in self.cases.values():
            if not operator.sees_case(case) or case.sla is None:
                continue
            for event in case.history:
                if _day(event.at) != today:
                    continue
                if event.action == "accepted":
                    accepted[1] += 1
                    accepted[0] += case.sla.accept_by is None or event.at <= case.sla.accept_by
                elif event.action == "resolved":
                    resolved[1] += 1
                    resolved[0] += case.sla.resolve_by is None or event.at <= case.sla.resolve_by
        return DayNumbers(
            day=today,
            intake_by_channel=dict(sorted((channel, n) for (day, channel), n in
                                          self.intake.items() if day == today)),
            automatic=self.automatic[today], triaged=self.triaged[today], backlog=len(queue),
            oldest_waiting=now - oldest if oldest is not None else None,
            accepted_on_time=(accepted[0], accepted[1]),
            resolved_on_time=(resolved[0], resolved[1]))

