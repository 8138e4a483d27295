"""The timer worker's decisions, without Redis or Kafka: what to schedule, what to publish.

Reading a case for its timers skips full validation of the record (the route worker wrote
it, validated, in a transaction): a rebuild reads every open case, and a million full
``CaseRecord`` validations would take longer than the rebuild target allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import from_json

from engine.reference.departments import DepartmentRegistry
from engine.sla.model import Escalation, SlaTimer

_TIMERS = TypeAdapter(list[SlaTimer])
SUMMARY_FIELDS = ("partition_key", "matter_code", "platform", "priority", "grid_code", "lead",
                  "state")


@dataclass(frozen=True)
class CaseTimers:
    case_id: str
    version: int
    state: str
    timers: list[SlaTimer]
    summary: dict[str, Any]


def case_timers(value: bytes) -> CaseTimers | None:
    """The timer plan a ``cases`` record carries; None for a record that is not a case."""
    try:
        case = from_json(value)
    except ValueError:
        return None
    if not isinstance(case, dict) or case.get("schema") != "griddispatch.case/1":
        return None
    sla = case.get("sla") or {}
    summary = {key: case.get(key) for key in SUMMARY_FIELDS}
    summary["policy"] = (sla.get("terms") or {}).get("policy", "")
    return CaseTimers(case_id=case["case_id"], version=len(case.get("history") or ()),
                      state=case.get("state", ""),
                      timers=_TIMERS.validate_python(sla.get("timers") or []),
                      summary=summary)


def escalation_for(case_id: str, version: int, timer: SlaTimer, summary: dict[str, Any],
                   departments: DepartmentRegistry, now: datetime) -> Escalation:
    recipient = departments.by_code.get(timer.recipient)
    return Escalation(
        escalation_id=timer.escalation_id, case_id=case_id,
        partition_key=str(summary["partition_key"]), limit=timer.limit, step=timer.step,
        percent=timer.percent, recipient=timer.recipient,
        recipient_name=recipient.name if recipient else timer.recipient,
        assignee=str(summary["lead"]), deadline=timer.deadline, due=timer.due, fired_at=now,
        matter_code=str(summary["matter_code"]), platform=summary["platform"],
        priority=summary["priority"], grid_code=summary.get("grid_code"),
        policy=str(summary.get("policy", "")), case_version=version)


def fired_ids(value: bytes) -> tuple[str, str] | None:
    """(case_id, escalation_id) of an ``escalations`` record, for a rebuild."""
    try:
        record = from_json(value)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("schema") != "griddispatch.escalation/1":
        return None
    return str(record["case_id"]), str(record["escalation_id"])
