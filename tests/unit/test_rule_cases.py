"""The operators' YAML cases (rules/tests/*.yaml), one pytest test each."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from engine.rules import RuleSet
from engine.rules.load import load_rules
from engine.rules.rule_tests import LoadedCase, load_cases, run_case

RULES = Path(__file__).resolve().parents[2] / "rules"


@cache
def ruleset() -> RuleSet:
    return load_rules(RULES)


CASES = load_cases(RULES / "tests")


def test_enough_cases_ship_with_the_rules() -> None:
    assert len(CASES) >= 100


@pytest.mark.parametrize("loaded", CASES, ids=[c.case.name for c in CASES])
def test_rule_case(loaded: LoadedCase) -> None:
    result = run_case(ruleset(), loaded)
    assert result.passed, f"{loaded.where}: " + "; ".join(result.mismatches)
