"""The rules stage as pure functions: raw bytes in, exactly one of three records out.

validate → place (grid code, else coordinates, else division code, else address text) →
classify (explicit matter code, else channel category, else keyword rules) → priority.
Nothing here raises on data: whatever arrives ends classified, in triage (a person must
decide; the reason says what is missing) or rejected (the input cannot be an incident).
Pass a list as ``trace`` to collect the human explanation that ``rules explain`` prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from pydantic import ValidationError

from engine.classifier.decide import decide_by_model
from engine.classifier.model import Scored, Suggestion
from engine.contracts import (
    MAX_REPORT_BYTES,
    SCHEMA_CLASSIFIED,
    SCHEMA_TRIAGE,
    Classified,
    IntakeReport,
    MatterSuggestion,
    Outcome,
    Priority,
    Rejected,
    RejectReason,
    RuleMatch,
    Triage,
    TriageReason,
    incident_id,
    trusted,
)
from engine.placement import PLACED as _PLACED
from engine.placement import Refusal, Retired, place
from engine.reference.jurisdiction import Placement
from engine.rules import CompiledScope, RuleSet
from engine.rules.matching import keyword_evidence, keyword_match

# pydantic-core's validator itself: ``model_validate`` is a Python wrapper around it that
# costs a call per report and adds nothing for a plain dict.
_validate_report = IntakeReport.__pydantic_validator__.validate_python

Trace = list[str] | None
# Where explanation lines go; None on the hot path, so no explanation text is built.
Note = Callable[[str], None] | None


@lru_cache(maxsize=65536)
def _trace_entry(field: str, rule: str, layer: str, why: str) -> RuleMatch:
    """RuleMatch records are immutable and few distinct ones exist: build each once."""
    return RuleMatch(field=field, rule=rule, layer=layer, why=why)


# Channels whose descriptions are written by machines ("设备告警"), not people: the model
# learned people's words, so it neither classifies nor judges urgency there; their channel
# categories and the sensor priority rules do.
MACHINE_CHANNELS = frozenset({"sensor"})


class MatterDecision(NamedTuple):
    code: str
    by: Literal["matter_code", "channel_category", "keywords", "model"]
    match: RuleMatch
    confidence: float | None = None  # the model's, when it decided
    suggestions: tuple[Suggestion, ...] = ()
    urgency: float | None = None  # the model's, when it was asked


class Undecided(NamedTuple):
    """Nothing decided the matter: a person must, with the model's suggestions."""

    reason: TriageReason
    detail: str
    suggestions: tuple[Suggestion, ...] = ()
    urgency: float | None = None


def classify_raw(ruleset: RuleSet, raw: bytes, received_at: datetime,
                 trace: Trace = None) -> Outcome:
    read = read_raw(ruleset, raw, received_at)
    if isinstance(read, Rejected):
        return read
    return classify_report(ruleset, read[0], received_at, trace, read[1])


def classify_many(ruleset: RuleSet, raws: Sequence[tuple[bytes, datetime]]) -> list[Outcome]:
    """``classify_raw`` for a batch (the classify worker's), with the same answers: the model
    scores every text of the batch at once (``MatterModel.score_many``), which costs a
    fraction of scoring them one by one."""
    read = [read_raw(ruleset, raw, at) for raw, at in raws]
    model = ruleset.model
    scored: dict[int, Scored] = {}
    if model is not None:
        texts = {i: r[0].description for i, r in enumerate(read)
                 if not isinstance(r, Rejected) and r[0].channel not in MACHINE_CHANNELS}
        scored = dict(zip(texts, model.score_many(list(texts.values())), strict=True))
    return [r if isinstance(r, Rejected) else
            classify_report(ruleset, r[0], at, None, r[1], scored.get(i))
            for i, (r, (_, at)) in enumerate(zip(read, raws, strict=True))]


def read_raw(ruleset: RuleSet, raw: bytes,
             received_at: datetime) -> tuple[IntakeReport, str] | Rejected:
    """The report in the bytes (with their text, kept on rejections), or why it is none."""
    text = raw[:MAX_REPORT_BYTES].decode("utf-8", errors="replace")
    if len(raw) > MAX_REPORT_BYTES:
        return _reject(ruleset, "too_large", f"report is {len(raw)} bytes; the limit is "
                       f"{MAX_REPORT_BYTES}", None, text, received_at)
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return _reject(ruleset, "malformed_json", f"not UTF-8 at byte {exc.start}", None, text,
                       received_at)
    except ValueError as exc:
        return _reject(ruleset, "malformed_json", f"not JSON: {exc}", None, text, received_at)
    read = validate_data(ruleset, data, received_at, text)
    return read if isinstance(read, Rejected) else (read, text)


def classify_data(ruleset: RuleSet, data: Any, received_at: datetime, raw: str | None = None,
                  trace: Trace = None) -> Outcome:
    report = validate_data(ruleset, data, received_at, raw)
    if isinstance(report, Rejected):
        return report
    return classify_report(ruleset, report, received_at, trace, raw)


def validate_data(ruleset: RuleSet, data: Any, received_at: datetime,
                  raw: str | None) -> IntakeReport | Rejected:
    if not isinstance(data, dict):
        return _reject(ruleset, "malformed_json", "a report is one JSON object", None,
                       raw if raw is not None else json.dumps(data, default=str), received_at)
    try:
        return _validate_report(data)  # type: ignore[no-any-return]
    except ValidationError as exc:
        reason, field, detail = _first_error(exc)
        raw = raw if raw is not None else json.dumps(data, ensure_ascii=False, default=str)
        return _reject(ruleset, reason, detail, field, raw, received_at, data)


def _first_error(exc: ValidationError) -> tuple[RejectReason, str, str]:
    error = exc.errors()[0]
    field = ".".join(str(p) for p in error["loc"]) or "(report)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown_field", field, (f"unknown field '{field}': the intake contract has no "
                                        "such field (channel extras belong in 'attributes')")
    if kind == "missing":
        return "missing_field", field, f"required field '{field}' is missing"
    if field.startswith("attachments.") and kind == "string_pattern_mismatch":
        return "invalid_field", field, f"field '{field}': attachments must be http(s) URLs"
    if field == "description" and kind == "string_too_long":
        return "text_too_long", field, f"field 'description': {error['msg']}"
    return "invalid_field", field, f"field '{field}': {error['msg']}"


def _reject(ruleset: RuleSet, reason: RejectReason, detail: str, field: str | None, raw: str,
            received_at: datetime, data: dict[str, Any] | None = None) -> Rejected:
    channel = data.get("channel") if data else None
    channel_id = data.get("channel_id") if data else None
    ids_ok = isinstance(channel, str) and isinstance(channel_id, str)
    return Rejected(
        reason=reason, detail=detail, field=field,
        incident_id=incident_id(channel, channel_id) if ids_ok else None,  # type: ignore[arg-type]
        channel=channel if isinstance(channel, str) else None,
        channel_id=channel_id if isinstance(channel_id, str) else None,
        received_at=received_at, rules_revision=ruleset.revision, raw=raw[:MAX_REPORT_BYTES])


def classify_report(ruleset: RuleSet, report: IntakeReport, received_at: datetime,
                    trace: Trace = None, raw: str | None = None,
                    scored: Scored | None = None) -> Outcome:
    """One report's record; ``scored``: the model's scores of its text, when a batch has
    computed them already (``classify_many``)."""
    note = trace.append if trace is not None else None
    placed = place(ruleset, report, note)
    if isinstance(placed, Refusal):
        return _reject(ruleset, placed.reason, placed.detail,
                       placed.reason.removeprefix("unknown_"), raw or report.model_dump_json(),
                       received_at, _ids(report))
    retired = placed if isinstance(placed, Retired) else None
    placed = placed if isinstance(placed, Placement) else None  # a retired code: no place
    chain = placed.division_chain if placed is not None else ()
    scope = ruleset.scope_for(chain[2] if len(chain) > 2 else None)
    if note:
        note(f"rules in effect: {scope.name} ← " + (" + ".join(["catalogue", *scope.layers])))
    found = scope.found(report.description)
    matched: list[RuleMatch] = [_PLACED[placed.placed_by]] if placed is not None else []

    decided = decide_matter(ruleset, scope, report, found, note, scored)
    if isinstance(decided, Refusal):
        return _reject(ruleset, decided.reason, decided.detail, "matter_code",
                       raw or report.model_dump_json(), received_at, _ids(report))
    urgency = decided.urgency
    if urgency is None and scored is not None:
        urgency = scored.urgency
    elif urgency is None and ruleset.model is not None \
            and report.channel not in MACHINE_CHANNELS:
        urgency = ruleset.model.urgency(report.description)
    if isinstance(decided, Undecided):
        urgent = _urgent(ruleset, scope, report, found, urgency, note)
        return _triage(ruleset, report, received_at, decided.reason, decided.detail, None,
                       chain, placed.grid_code if placed else None, matched, urgent,
                       decided.suggestions)
    matter_code = decided.code
    matched.append(decided.match)
    if placed is None:
        urgent = _urgent(ruleset, scope, report, found, urgency, note)
        if retired is not None:
            return _triage(ruleset, report, received_at, "code_retired", retired.detail,
                           matter_code, (), None, matched, urgent, decided.suggestions)
        return _triage(ruleset, report, received_at, "unplaced",
                       "no grid code, coordinates inside a grid, known division code or "
                       "recognisable address", matter_code, (), None, matched, urgent,
                       decided.suggestions)
    matter = ruleset.matters.by_code[matter_code]
    priority, prio_match = decide_priority(scope, report, matter_code, matter.priority, found,
                                           note)
    if prio_match:
        matched.append(prio_match)
    if priority != "urgent" and ruleset.model is not None and urgency is not None \
            and urgency >= ruleset.model.calibration.urgent_threshold:
        priority = "urgent"
        matched.append(_trace_entry("priority", "model:urgency", "examples",
                                    "danger to life judged from the text"))
        if note:
            note(f"priority: the classifier judges danger to life ({urgency:.3f}): urgent")
    # Built without re-validation: every value comes from the validated report or the loaded
    # rules, and validating the nested report again was a third of a classification's time.
    # The route worker validates the record it reads, so a bug here cannot pass unnoticed.
    channel = report.channel
    channel_id = report.channel_id
    return trusted(
        Classified, incident_id=incident_id(channel, channel_id), channel=channel,
        channel_id=channel_id, reported_at=report.reported_at, received_at=received_at,
        rules_revision=ruleset.revision, schema_=SCHEMA_CLASSIFIED, classified_at=received_at,
        matter_code=matter_code, matter_name=matter.name, platform=matter.platform,
        priority=priority, division_chain=list(chain), grid_code=placed.grid_code,
        placed_by=placed.placed_by, classified_by=decided.by, matched_rules=matched,
        report=report, confidence=decided.confidence, dispatched_by=None)


def _urgent(ruleset: RuleSet, scope: CompiledScope, report: IntakeReport, found: set[str],
            urgency: float | None, note: Note) -> bool:
    """Danger to life on a report no one has classified yet: a priority rule that needs no
    matter, or the classifier's urgency head."""
    rule = scope.priority_rule(found, "", report.channel)
    if rule is not None and rule.set == "urgent":
        if note:
            note(f"urgency: '{rule.id}' ({rule.layer}) marks it urgent")
        return True
    model = ruleset.model
    urgent = (model is not None and urgency is not None
              and urgency >= model.calibration.urgent_threshold)
    if note and urgent:
        note(f"urgency: the classifier judges danger to life ({urgency:.3f}): urgent")
    return urgent


def _ids(report: IntakeReport) -> dict[str, Any]:
    return {"channel": report.channel, "channel_id": report.channel_id}


def _triage(ruleset: RuleSet, report: IntakeReport, received_at: datetime,
            reason: TriageReason, detail: str, matter_code: str | None,
            chain: tuple[str, ...], grid_code: str | None, matched: list[RuleMatch],
            urgent: bool, suggestions: tuple[Suggestion, ...]) -> Triage:
    """A triage record, built without re-validation like the classified one (one in ten)."""
    by_code = ruleset.matters.by_code
    return trusted(
        Triage, incident_id=report.incident_id, channel=report.channel,
        channel_id=report.channel_id, reported_at=report.reported_at, received_at=received_at,
        rules_revision=ruleset.revision, schema_=SCHEMA_TRIAGE, reason=reason, detail=detail,
        matter_code=matter_code, division_chain=list(chain), grid_code=grid_code,
        matched_rules=matched, report=report, urgent=urgent,
        suggestions=[trusted(MatterSuggestion, matter_code=s.matter,
                             matter_name=by_code[s.matter].name,
                             platform=by_code[s.matter].platform,
                             confidence=round(s.confidence, 4)) for s in suggestions])


def decide_matter(ruleset: RuleSet, scope: CompiledScope, report: IntakeReport, found: set[str],
                  note: Note, scored: Scored | None = None
                  ) -> MatterDecision | Refusal | Undecided:
    """Explicit code, channel category, operators' keyword rules, then the model (which
    weighs the catalogue's keywords as evidence); without examples, catalogue keywords
    decide as operators' rules do."""
    prefix = ""
    if report.matter_code:
        code = report.matter_code
        if code in ruleset.matters:
            if note:
                note(f"matter: explicit matter code {code}")
            return MatterDecision(code, "matter_code", RuleMatch(
                field="matter_code", rule="explicit", layer="report", why=f"report named {code}"))
        if len(code) == 6 or not ruleset.matters.is_prefix(code):
            return Refusal("unknown_matter_code", f"matter code {code} is not in the catalogue")
        prefix = code
        if note:
            note(f"matter: explicit class/subclass {code}; the text chooses the item within it")
    elif report.channel_category:
        mapping = ruleset.channels.lookup(report.channel, report.channel_category)
        if mapping is not None:
            if note:
                note(f"matter: {report.channel} category '{report.channel_category}' maps to "
                     f"{mapping.matter}")
            return MatterDecision(mapping.matter, "channel_category", _trace_entry(
                "matter_code", f"channel:{report.channel}", "channels",
                f"category '{report.channel_category}'"))
        if note:
            note(f"matter: {report.channel} category '{report.channel_category}' is not mapped")
    model = ruleset.model if report.channel not in MACHINE_CHANNELS else None
    operator, named = keyword_evidence(scope, report, found, prefix, model is None, note)
    if operator is not None:
        rule, word = operator
        return MatterDecision(rule.matter, "keywords", keyword_match(rule, word))
    if model is None:
        if note:
            note("matter: no keyword rule matched")
        return Undecided("unclassified", "no matter code, channel category or keyword rule "
                         "decided the matter")
    decision = decide_by_model(model, ruleset.classifier.keyword_boost, scope, ruleset.matters,
                               report.description, set(named), prefix, note, scored)
    if decision.matter is None or decision.match is None:
        return Undecided(decision.reason, decision.detail, decision.suggestions,
                         decision.urgency)
    return MatterDecision(decision.matter, "model", decision.match, decision.confidence,
                          decision.suggestions, decision.urgency)


def decide_priority(scope: CompiledScope, report: IntakeReport, matter_code: str,
                    default: Priority, found: set[str],
                    note: Note) -> tuple[Priority, RuleMatch | None]:
    """The first priority rule (most specific layer first) whose conditions all hold."""
    rule = scope.priority_rule(found, matter_code, report.channel)
    if rule is None:
        if note:
            note(f"priority: no rule matched; the matter's default is {default}")
        return default, None
    if note:
        note(f"priority: '{rule.id}' ({rule.layer}) sets {rule.set}")
    return rule.set, rule.match
