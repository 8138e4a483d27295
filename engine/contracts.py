"""Event contracts: what travels on the incident topics, as pydantic models.

Field names follow docs/design.md "Intake contract" exactly: connectors, ``simulate``,
``rules explain`` and other people's programs depend on them. Every record on Kafka is JSON
with a ``schema`` field naming its contract and version, so consumers can refuse what they
do not understand instead of guessing.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Platform = Literal["governance", "market", "enforcement", "services"]
Priority = Literal["urgent", "high", "normal", "low"]
PRIORITY_ORDER: dict[str, int] = {"urgent": 0, "high": 1, "normal": 2, "low": 3}

# Limits that protect workers and downstream systems from oversized reports.
MAX_DESCRIPTION_CHARS = 4000
MAX_REPORT_BYTES = 64 * 1024
# A stable namespace so that incident ids are the same in every process and every year.
INCIDENT_NAMESPACE = uuid.UUID("6f1c3a52-52b4-4c8e-9a51-7d2e0f3b9c11")
_NAMESPACE_BYTES = INCIDENT_NAMESPACE.bytes

SCHEMA_INCIDENT = "griddispatch.incident/1"
SCHEMA_CLASSIFIED = "griddispatch.classified/1"
SCHEMA_TRIAGE = "griddispatch.triage/1"
SCHEMA_REJECTED = "griddispatch.rejected/1"
SCHEMA_TRIAGE_DECISION = "griddispatch.triage-decision/1"


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: float = Field(ge=-90, le=90, description="WGS-84 latitude")
    lon: float = Field(ge=-180, le=180, description="WGS-84 longitude")


class Reporter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=40)


class IntakeReport(BaseModel):
    """One report from any channel: the single entry of "one entry, one exit"
    (docs/design.md "Flow")."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    channel: str = Field(pattern=r"^(open311|hotline|gridapp|sensor|replay|test|dept:[a-z0-9._-]+"
                                 r"|[a-z][a-z0-9_-]{1,31})$",
                         description="open311, hotline, gridapp, sensor, dept:<code>, replay, ...")
    channel_id: str = Field(min_length=1, max_length=200,
                            description="the channel's own id; with channel, the idempotency key")
    reported_at: AwareDatetime = Field(description="ISO 8601 with offset")
    description: str = Field(min_length=1, max_length=MAX_DESCRIPTION_CHARS)
    matter_code: str | None = Field(default=None, pattern=r"^\d{2,6}$")
    grid_code: str | None = Field(default=None, pattern=r"^\d{15}$")
    division_code: str | None = Field(default=None, pattern=r"^\d{6}(\d{3}){0,2}$")
    location: Location | None = None
    address: str | None = Field(default=None, max_length=500)
    channel_category: str | None = Field(default=None, max_length=200)
    reporter: Reporter | None = None
    attachments: list[Annotated[str, Field(pattern=r"^https?://", max_length=2000)]] = Field(
        default_factory=list, max_length=20, description="http(s) URLs of photos or files")
    attributes: dict[str, Any] = Field(default_factory=dict)

    @property
    def incident_id(self) -> str:
        return incident_id(self.channel, self.channel_id)


def incident_id(channel: str, channel_id: str) -> str:
    """The same (channel, channel id) always gives the same incident id, in any process.

    A UUID version 5 (RFC 4122: SHA-1 of namespace + name), computed directly because
    building a ``uuid.UUID`` object costs more than the hash on the classify hot path.
    """
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{channel}\x00{channel_id}".encode(),
                                    usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return "inc-" + digest.hex()


class RuleMatch(BaseModel):
    """One rule that decided (or helped decide) a field, and why: the decision's trace."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    rule: str
    layer: str
    why: str


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    incident_id: str
    channel: str
    channel_id: str
    reported_at: datetime
    received_at: datetime
    rules_revision: str


# unclassified: nothing pointed at an item (or the model says it fits none); uncertain: the
# model's best guess is below the dispatch threshold, or its item is switched off here.
TriageReason = Literal["unplaced", "unclassified", "uncertain", "outside_jurisdiction",
                       "code_retired"]
ClassifiedBy = Literal["matter_code", "channel_category", "keywords", "model", "operator"]


class ManualDispatch(BaseModel):
    """Who sorted a triaged report by hand (分拨), and what they chose over the rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    operator: str = Field(description="the console user who decided")
    decided_at: datetime
    triage_reason: TriageReason = Field(description="why the rules sent it to triage")
    lead: str | None = Field(default=None, description="the lead department chosen over the "
                                                      "routing rules; None: the rules decide")
    assist: list[str] | None = Field(default=None, description="assisting departments chosen "
                                                               "over the rules; None: rules")
    override_reason: str | None = Field(default=None, max_length=500,
                                        description="why the rules' departments were overridden")


class Classified(_Record):
    """The rules stage's answer for an incident that can be dispatched automatically."""

    schema_: Literal["griddispatch.classified/1"] = Field(
        default="griddispatch.classified/1", alias="schema")
    classified_at: datetime
    matter_code: str
    matter_name: str
    platform: Platform
    priority: Priority
    division_chain: list[str]
    grid_code: str | None
    placed_by: str
    classified_by: ClassifiedBy
    matched_rules: list[RuleMatch]
    report: IntakeReport
    confidence: float | None = Field(
        default=None, description="the model's calibrated confidence in the platform when "
                                  "it decided (classified_by: model); None otherwise")
    dispatched_by: ManualDispatch | None = Field(
        default=None, description="with classified_by: operator, the person who sorted the "
                                  "triaged report and what they chose")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class MatterSuggestion(BaseModel):
    """One of the classifier's best guesses, for a person to accept with one click."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    matter_code: str
    matter_name: str
    platform: Platform
    confidence: float




class Triage(_Record):
    """No rule decided: a person in the command centre must (reason says what is missing)."""

    schema_: Literal["griddispatch.triage/1"] = Field(default="griddispatch.triage/1",
                                                        alias="schema")
    reason: TriageReason
    detail: str
    matter_code: str | None = None
    division_chain: list[str] = Field(default_factory=list)
    grid_code: str | None = None
    matched_rules: list[RuleMatch] = Field(default_factory=list)
    report: IntakeReport
    urgent: bool = Field(default=False, description="danger to life, judged from the text "
                                                    "whatever the matter: see it first")
    suggestions: list[MatterSuggestion] = Field(
        default_factory=list, description="the classifier's best items, best first (at "
                                          "most three)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


RejectReason = Literal["malformed_json", "too_large", "invalid_field", "unknown_field",
                       "missing_field", "unknown_matter_code", "unknown_grid_code",
                       "unknown_division_code", "text_too_long"]


class Rejected(BaseModel):
    """Input that cannot be an incident: the reason, the field, and the raw input kept."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["griddispatch.rejected/1"] = Field(default="griddispatch.rejected/1",
                                                          alias="schema")
    reason: RejectReason
    detail: str
    field: str | None = None
    incident_id: str | None = None
    channel: str | None = None
    channel_id: str | None = None
    received_at: datetime
    rules_revision: str
    raw: str = Field(description="the input as received (UTF-8, cut at 64 KiB)")


Outcome = Classified | Triage | Rejected


class TriageDecision(BaseModel):
    """What a command centre decided for a triaged report, on ``triage.decisions`` (key: the
    incident id): the audit trail of manual sorting, and the source of new examples
    (``griddispatch rules examples harvest``). A dispatch also goes to
    ``incidents.classified`` as a ``Classified`` with ``classified_by: operator``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["griddispatch.triage-decision/1"] = Field(
        default="griddispatch.triage-decision/1", alias="schema")
    incident_id: str
    decision: Literal["dispatched", "rejected"]
    operator: str
    decided_at: datetime
    triage_reason: TriageReason
    description: str = Field(description="the report's text, as the classifier read it")
    channel: str
    matter_code: str | None = None
    grid_code: str | None = None
    division_code: str | None = None
    lead: str | None = None
    assist: list[str] = Field(default_factory=list)
    priority: Priority | None = None
    suggested: list[str] = Field(default_factory=list,
                                 description="the matter codes the classifier suggested")
    reason: str = Field(default="", max_length=500,
                        description="rejected: why it is not an incident; dispatched: why the "
                                    "departments were overridden, if they were")

Model = TypeVar("Model", bound=BaseModel)
# Per model: its field names in declaration order and as a set.
_FIELD_ORDER: dict[type[BaseModel], tuple[tuple[str, ...], set[str]]] = {}


def trusted(cls: type[Model], **values: Any) -> Model:
    """A record built from values this process computed and already validated.

    ``model_construct`` skips validation but still walks every field, its aliases and
    defaults in Python (about 9 µs for ``Classified``, 40 % of a classification). Hot-path
    callers pass every field, in declaration order, by field name; then the dict is the
    model's ``__dict__`` as it is (the order matters: pydantic serialises in ``__dict__``
    order). Any other call takes ``model_construct``'s general path, so a caller that
    forgets a field gets its default, never a broken record.
    """
    fields = _FIELD_ORDER.get(cls)
    if fields is None:
        plain = not (cls.__pydantic_post_init__ or cls.__pydantic_root_model__
                     or cls.__private_attributes__)
        # A model with private state or a post-init hook always takes the general path:
        # no call's field names equal ("",).
        names = tuple(cls.model_fields) if plain else ("",)
        fields = _FIELD_ORDER[cls] = (names, set(names))
    if tuple(values) != fields[0]:
        return cls.model_construct(**values)
    record = cls.__new__(cls)
    setattr_ = object.__setattr__
    setattr_(record, "__dict__", values)
    setattr_(record, "__pydantic_fields_set__", fields[1].copy())
    setattr_(record, "__pydantic_extra__", None)
    setattr_(record, "__pydantic_private__", None)
    return record


def to_json(record: BaseModel) -> bytes:
    """The wire form: compact UTF-8 JSON with Chinese kept as characters, schema included."""
    return record.model_dump_json(by_alias=True, exclude_none=False).encode("utf-8")
