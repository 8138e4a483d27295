"""A classified record is built without re-validation (engine.classify): it must still be
exactly what validation would accept and produce, for every report of the sample history
and every operator test case."""

from __future__ import annotations

from pathlib import Path

from engine.classify import classify_data
from engine.contracts import Classified, to_json
from engine.rules import RuleSet
from engine.rules.cases import RECEIVED_AT, load_cases, report_of
from engine.simulate import classify_line

REPO = Path(__file__).resolve().parents[2]


def test_every_classified_record_round_trips_through_validation() -> None:
    ruleset = RuleSet.load(REPO / "rules")
    records = [classify_line(ruleset, line.rstrip())
               for line in (REPO / "tests/data/history.jsonl").read_bytes().splitlines()
               if line.strip()]
    records += [classify_data(ruleset, report_of(loaded.case),
                              loaded.case.received_at or RECEIVED_AT)
                for loaded in load_cases(REPO / "rules" / "tests")]
    classified = [r for r in records if isinstance(r, Classified)]
    assert len(classified) > 200
    for record in classified:
        again = Classified.model_validate_json(to_json(record))
        assert to_json(again) == to_json(record)
        assert again == Classified.model_validate(record.model_dump())
