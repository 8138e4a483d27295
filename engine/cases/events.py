"""What every case transition shares: the refusal, the event a status update leaves on the
case, and who counts as a command centre. Split from ``lifecycle`` (the main path) and
``exception_paths`` (extension, supervision, redispatch, call-backs) so both use one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from engine.cases.records import CaseEvent, CaseRecord, StatusUpdate

# The command centres call reporters back (回访) and record the verification: not the
# department whose own work is being verified.
VERIFIER_ROLE = "zhzx"


@dataclass(frozen=True)
class Refused:
    reason: Literal["not_assigned", "illegal_transition"]
    detail: str


@dataclass(frozen=True)
class Redispatch:
    """A command centre moves the case (改派) to ``lead`` (and ``assist``, when given):
    the caller checks the departments exist, then calls ``reassign``."""

    case: CaseRecord
    lead: str
    assist: list[str] | None


OPEN_STATES = ("dispatched", "accepted", "reopened")


def record_event(case: CaseRecord, now: datetime, update: StatusUpdate,
                 **changes: object) -> CaseRecord:
    """The case after ``update``: its event in the history (with who acted), ``changes``
    applied, and an open supervision marked answered when the lead acts on the case."""
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
