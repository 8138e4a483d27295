"""Codes are valid from one day to another: every placing path honours it on the report's day.

The shipped data retires one grid (330110005001900 → 330110005001001 on 2025-01-01); the
division cases use a copy of the rules with a retired community (330110005099 → 330110005001,
老街社区) and one retired without a successor (330110005098, 旧村社区).
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path

import pytest

from engine.classify import classify_data
from engine.contracts import Classified, Triage
from engine.reference.grid_shapes import inner_point
from engine.rules import RuleSet
from engine.rules.load import load_rules
from engine.yamlfile import FileProblems
from tests.unit.rules_copy import rules_copy_with

REPO = Path(__file__).resolve().parents[2]
OLD_GRID, NEW_GRID = "330110005001900", "330110005001001"
NOW = datetime.fromisoformat("2026-12-07T10:00:00+08:00")
RETIRED_COMMUNITIES = '''      - code: "330110005099"
        name: 老街社区
        short_name: 老街社区
        valid_from: "2021-04-09"
        valid_to: "2025-01-01"
        successor: "330110005001"
      - code: "330110005098"
        name: 旧村社区
        short_name: 旧村社区
        valid_from: "2021-04-09"
        valid_to: "2025-01-01"
'''


@cache
def shipped() -> RuleSet:
    return load_rules(REPO / "rules")


def with_communities(tmp_path: Path, extra: str) -> Path:
    text = (REPO / "rules" / "reference" / "divisions.yaml").read_text(encoding="utf-8")
    anchor = '    communities:\n      - code: "330110005001"\n'
    assert anchor in text
    return rules_copy_with(tmp_path, {"reference/divisions.yaml": text.replace(
        anchor, "    communities:\n" + extra + anchor[len("    communities:\n"):], 1)})


def report(day: str, **place: object) -> dict[str, object]:
    return {"channel": "gridapp", "channel_id": f"E-{day}-{sorted(place.items())}",
            "reported_at": f"{day}T09:00:00+08:00", "description": "路边占道经营，摊位堵住人行道",
            "matter_code": "090101", **place}


def classified(ruleset: RuleSet, data: dict[str, object]) -> Classified | Triage:
    out = classify_data(ruleset, data, NOW)
    assert isinstance(out, Classified | Triage), out
    return out


def test_a_retired_grid_code_is_placed_by_its_successor() -> None:
    out = classified(shipped(), report("2026-06-01", grid_code=OLD_GRID))
    assert isinstance(out, Classified) and out.grid_code == NEW_GRID


def test_before_its_retirement_the_old_grid_code_is_itself() -> None:
    out = classified(shipped(), report("2024-06-01", grid_code=OLD_GRID))
    assert isinstance(out, Classified) and out.grid_code == OLD_GRID


def test_a_grid_code_not_yet_valid_goes_to_triage_with_the_reason() -> None:
    out = classified(shipped(), report("2024-06-01", grid_code=NEW_GRID))
    assert isinstance(out, Triage) and out.reason == "code_retired"
    assert NEW_GRID in out.detail and "2024-06-01" in out.detail


@pytest.mark.parametrize(("day", "grid"), [("2024-06-01", OLD_GRID), ("2026-06-01", NEW_GRID)])
def test_coordinates_find_the_grid_valid_that_day(day: str, grid: str) -> None:
    lat, lon = inner_point(shipped().jurisdiction.grids[NEW_GRID])
    out = classified(shipped(), report(day, location={"lat": lat, "lon": lon}))
    assert isinstance(out, Classified) and out.grid_code == grid


def test_division_codes_and_addresses_follow_successors_or_go_to_triage(
        tmp_path: Path) -> None:
    rules = load_rules(with_communities(tmp_path, RETIRED_COMMUNITIES), with_model=False)
    moved = classified(rules, report("2026-06-01", division_code="330110005099"))
    assert isinstance(moved, Classified) and moved.division_chain[-1] == "330110005001"
    before = classified(rules, report("2024-06-01", division_code="330110005099"))
    assert isinstance(before, Classified) and before.division_chain[-1] == "330110005099"
    gone = classified(rules, report("2026-06-01", division_code="330110005098"))
    assert isinstance(gone, Triage) and gone.reason == "code_retired"
    by_address = classified(rules, report("2026-06-01", address="余杭区五常街道老街社区12号"))
    assert isinstance(by_address, Classified)
    assert by_address.division_chain[-1] == "330110005001"
    gone_address = classified(rules, report("2026-06-01", address="余杭区五常街道旧村社区3组"))
    assert isinstance(gone_address, Triage) and gone_address.reason == "code_retired"


@pytest.mark.parametrize(("edit", "message"), [
    (RETIRED_COMMUNITIES.replace('successor: "330110005001"', 'successor: "330110005097"'),
     "successor 330110005097 does not exist"),
    (RETIRED_COMMUNITIES.replace('        valid_to: "2025-01-01"\n        successor',
                                 '        successor'),
     "names a successor but no valid_to"),
    (RETIRED_COMMUNITIES.replace('valid_from: "2021-04-09"\n        valid_to: "2025-01-01"\n'
                                 '        successor', 'valid_from: "2021-04-09"\n'
                                 '        valid_to: "2021-04-09"\n        successor'),
     "before it begins"),
    (RETIRED_COMMUNITIES.replace('valid_from: "2021-04-09"\n        valid_to: "2025-01-01"\n'
                                 '        successor', 'valid_from: "2020-01-01"\n'
                                 '        valid_to: "2025-01-01"\n        successor'),
     "is valid on days its parent"),
    (RETIRED_COMMUNITIES.replace('valid_to: "2025-01-01"\n        successor: "330110005001"',
                                 'valid_to: "2026-01-01"\n        successor: "330110005098"'),
     "which is not valid on that day"),
])
def test_rules_check_refuses_broken_successions(tmp_path: Path, edit: str,
                                                message: str) -> None:
    with pytest.raises(FileProblems) as refused:
        load_rules(with_communities(tmp_path, edit), with_model=False)
    assert any(message in str(p) for p in refused.value.problems), refused.value.problems
