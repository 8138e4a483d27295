"""Classified and triage records are built without re-validation (engine.classify): they
must still be exactly what validation would accept and produce, for every report of the
sample history and every operator test case."""

from __future__ import annotations

from pathlib import Path

from engine.classify import classify_data
from engine.contracts import Classified, RuleMatch, Triage, to_json, trusted
from engine.rules.load import load_rules
from engine.rules.rule_tests import RECEIVED_AT, load_cases, report_of
from engine.simulate import classify_line
from engine.sla.model import SlaTimer

REPO = Path(__file__).resolve().parents[2]


def test_every_classified_and_triage_record_round_trips_through_validation() -> None:
    ruleset = load_rules(REPO / "rules")
    records = [classify_line(ruleset, line.rstrip())
               for line in (REPO / "tests/data/history.jsonl").read_bytes().splitlines()
               if line.strip()]
    records += [classify_data(ruleset, report_of(loaded.case),
                              loaded.case.received_at or RECEIVED_AT)
                for loaded in load_cases(REPO / "rules" / "tests")]
    classified = [r for r in records if isinstance(r, Classified)]
    triage = [r for r in records if isinstance(r, Triage)]
    assert len(classified) > 200
    assert {r.reason for r in triage} >= {"unplaced", "unclassified"}
    for record in [*classified, *triage]:
        model = type(record)
        again = model.model_validate_json(to_json(record))
        assert to_json(again) == to_json(record)
        assert again == model.model_validate(record.model_dump())


def test_trusted_builds_what_validation_builds_and_falls_back_when_fields_are_missing() -> None:
    fields = {"field": "matter_code", "rule": "r1", "layer": "base", "why": "keyword '噪音'"}
    fast = trusted(RuleMatch, **fields)
    assert fast == RuleMatch.model_validate(fields)
    assert fast.model_dump_json() == RuleMatch.model_validate(fields).model_dump_json()
    assert fast.model_fields_set == set(fields)
    # Out of declaration order: the general path, same record.
    shuffled = dict(reversed(fields.items()))
    assert trusted(RuleMatch, **shuffled) == fast
    assert list(trusted(RuleMatch, **shuffled).model_dump()) == list(fields)
    # A field left out gets its default instead of a record without it.
    timer = trusted(SlaTimer, escalation_id="e1", limit="accept", step="breach",
                    due=RECEIVED_AT, deadline=RECEIVED_AT, recipient="330110.zhzx")
    assert timer.percent is None
    assert SlaTimer.model_validate_json(timer.model_dump_json()) == timer
