"""Records after routing: assignments to departments, case state, departments' answers.

All JSON with a ``schema`` field, so plain Kafka tools (kcat, a department's own consumer)
can read them. Keys are ``case_id`` on ``cases`` and assignment topics; departments key
their status updates with the case's ``partition_key`` (the township code), which is also
the key of ``incidents.classified``: so one route worker owns every record of a place, and
duplicate merging and case state never need another worker's memory.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.contracts import Classified, Location, Platform, Priority, Reporter, RuleMatch
from engine.sla.model import CaseSla

CaseState = Literal["dispatched", "accepted", "resolved", "closed", "reopened"]
StatusAction = Literal["accepted", "returned", "progress", "paused", "resumed", "resolved",
                       "verified", "redispatched", "supervised", "extension_requested",
                       "extension_approved", "extension_refused", "callback_unreachable",
                       "backlog_requested", "backlog_approved", "backlog_refused",
                       "backlog_released", "stage_completed"]
AssignmentKind = Literal["new", "update", "reassigned"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Assignment(_Wire):
    """What a department receives on ``assignments.<dept>``: enough to act without lookups."""

    schema_: Literal["griddispatch.assignment/1"] = Field(
        default="griddispatch.assignment/1", alias="schema")
    case_id: str
    partition_key: str = Field(description="key to use for status updates on this case")
    kind: AssignmentKind = Field(description="new case, update (a merged report), reassigned")
    role: Literal["lead", "assist"]
    department: str
    department_name: str
    incident_id: str
    matter_code: str
    matter_name: str
    platform: Platform
    priority: Priority
    sla_policy: str
    grid_code: str | None
    division_chain: list[str]
    location: Location | None
    address: str | None
    description: str
    reporter: Reporter | None = Field(description="name and phone as given for command centres "
                                                  "and a lead that must contact the reporter; "
                                                  "masked for everyone else (engine/privacy.py)")
    attachments: list[str]
    reported_at: datetime
    assigned_at: datetime
    merged_reports: int = 0
    rules_revision: str = Field(description="revision of the rules that routed this assignment")
    classification_revision: str = Field(description="revision that classified the report")
    matched_rules: list[RuleMatch]


class CaseEvent(_Wire):
    at: datetime
    action: str
    department: str | None = None
    detail: str = ""
    by: str | None = Field(default=None, description="the person who acted, when known")


class Supervision(_Wire):
    """A command centre's 督办 on a case: a note and the time by which the lead must answer."""

    by: str = Field(description="the command centre's department code")
    at: datetime
    note: str
    respond_by: datetime
    answered_at: datetime | None = Field(default=None, description="the lead's first answer "
                                                                   "(progress, accept, resolve)")


class ExtensionRequest(_Wire):
    """The lead's pending request for more time (延期), until its supervisor decides."""

    extend_by: str = Field(description="a duration in the case's unit, e.g. 3d, 8h")
    reason: str
    at: datetime
    by: str = Field(description="the lead department")


class Backlog(_Wire):
    """挂账: a case that cannot be finished within its limit (a budget, a court ruling) is
    tracked instead: its resolution clock stops and it is reviewed by ``review_at``."""

    reason: str
    review_at: datetime
    requested_by: str
    requested_at: datetime
    approved_by: str | None = Field(default=None, description="the command centre; None "
                                                               "while the request waits")
    approved_at: datetime | None = None


class CaseRecord(_Wire):
    """The latest state of a case, on the compacted ``cases`` topic (the source of truth)."""

    schema_: Literal["griddispatch.case/1"] = Field(default="griddispatch.case/1",
                                                    alias="schema")
    case_id: str
    partition_key: str
    state: CaseState
    lead: str
    assist: list[str]
    incident_ids: list[str] = Field(description="every report merged into this case, first first")
    matter_code: str
    platform: Platform
    priority: Priority
    sla_policy: str
    grid_code: str | None
    division_chain: list[str]
    location: Location | None
    reported_at: datetime
    opened_at: datetime
    last_report_at: datetime
    updated_at: datetime
    returns: int = 0
    returned_by: list[str] = Field(default_factory=list)
    resolution: str | None = None
    satisfied: bool | None = None
    rules_revision: str
    history: list[CaseEvent]
    origin: Classified = Field(description="the first report's classification: re-routing "
                                           "after a return needs it, and the topic is the truth")
    sla: CaseSla | None = Field(default=None, description="time limits frozen at opening, "
                                                          "current deadlines, timer plan")
    supervision: Supervision | None = Field(default=None, description="the latest 督办, if any")
    unreachable_callbacks: int = Field(default=0, description="call-backs (回访) since the "
                                                             "resolution that reached nobody")
    closed_as: Literal["verified", "unreachable"] | None = Field(
        default=None, description="how a closed case was closed: verified with the reporter "
                                  "or on site, or after the policy's call-backs reached nobody")
    backlog: Backlog | None = Field(default=None, description="挂账: requested, or approved "
                                                             "(approved_by set)")
    extension: ExtensionRequest | None = Field(default=None, description="a request for more "
                                                                         "time awaiting its "
                                                                         "supervisor")


SCHEMA_STATUS = "griddispatch.status/1"  # the Literal below must spell it out for mypy


class StatusUpdate(_Wire):
    """A department's answer on ``assignments.status`` (key: the case's partition_key)."""

    schema_: Literal["griddispatch.status/1"] = Field(default="griddispatch.status/1",
                                                      alias="schema")
    case_id: str
    department: str
    action: StatusAction
    at: datetime
    note: str = Field(default="", max_length=2000)
    satisfied: bool | None = Field(default=None, description="with 'verified': the reporter's "
                                                             "answer")
    lead: str | None = Field(default=None, description="with 'redispatched': the new lead")
    assist: list[str] | None = Field(default=None, description="with 'redispatched': the new "
                                                               "assisting departments")
    respond_by: datetime | None = Field(default=None, description="with 'supervised': when the "
                                                                  "lead must answer by")
    stage: str | None = Field(default=None, max_length=40,
                              description="with 'stage_completed': the stage's name")
    review_at: datetime | None = Field(default=None, description="with 'backlog_requested': "
                                                                 "when to review the case")
    extend_by: str | None = Field(default=None, max_length=16,
                                  description="with 'extension_requested': the time asked "
                                              "for, in the case's unit, e.g. 3d, 8h")
    by: str | None = Field(default=None, max_length=100,
                           description="the person who acted (a console user), for the audit")


RejectReason = Literal["malformed", "unknown_case", "not_assigned", "illegal_transition"]


class StatusRejected(_Wire):
    """A status update that could not apply: kept with the reason, never a crash."""

    schema_: Literal["griddispatch.status-rejected/1"] = Field(
        default="griddispatch.status-rejected/1", alias="schema")
    reason: RejectReason
    detail: str
    case_id: str | None = None
    raw: str
    received_at: datetime


class StatusVerdict(_Wire):
    """The route worker's answer to one status update, on the sender's own ``verdicts.<dept>``.

    A department may read only its own topics (``engine/topics/acls.py``): not ``cases``, which
    carries every reporter's name and phone, nor ``assignments.status.rejected``, which holds
    every department's refusals. This record is how it learns what became of its update.
    ``action`` and ``at`` are the update's own, so a client finds the answer to the very update
    it sent.
    """

    schema_: Literal["griddispatch.status-verdict/1"] = Field(
        default="griddispatch.status-verdict/1", alias="schema")
    case_id: str
    department: str
    action: StatusAction
    at: datetime = Field(description="the update's own time: which update this answers")
    outcome: Literal["applied", "refused"]
    state: CaseState | None = Field(default=None, description="the case's state, once applied")
    lead: str | None = Field(default=None, description="the case's lead, once applied")
    reason: RejectReason | None = Field(default=None, description="why it was refused")
    detail: str = ""
    decided_at: datetime
