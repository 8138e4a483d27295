"""Whatever arrives ends classified, in triage or rejected; nothing raises."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.classify import classify_raw
from engine.contracts import Classified, Rejected, Triage
from engine.rules import RuleSet
from engine.rules.load import load_rules

RULES = Path(__file__).resolve().parents[2] / "rules"
NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


@cache
def ruleset() -> RuleSet:
    return load_rules(RULES)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8),
                                                                        children, max_size=3),
    max_leaves=8)

FIELDS = ["channel", "channel_id", "reported_at", "description", "matter_code", "grid_code",
          "division_code", "location", "address", "channel_category", "reporter", "attachments",
          "attributes"]
plausible = st.fixed_dictionaries(
    {"channel": st.sampled_from(["hotline", "open311", "sensor", "gridapp", "", "dept:x"]),
     "channel_id": st.text(min_size=0, max_size=12),
     "reported_at": st.sampled_from(["2026-11-24T09:30:00+08:00", "2026-11-24T09:30:00",
                                     "yesterday", "2026-02-30T00:00:00Z"]),
     "description": st.text(alphabet="燃气泄漏占道经营噪音垃圾井盖困电梯广场舞低保ab 。，",
                            max_size=60)},
    optional={"grid_code": st.sampled_from(["330110005001001", "330110005001999", "12"]),
              "location": st.fixed_dictionaries({"lat": st.floats(20, 40), "lon": st.floats(
                  110, 130)}) | json_values,
              "division_code": st.sampled_from(["330110005", "330110", "999999", "x"]),
              "address": st.text(alphabet="余杭区仓前街道太炎社区良渚", max_size=20),
              "matter_code": st.sampled_from(["030201", "03", "99", "999999", ""]),
              "channel_category": st.text(max_size=10),
              "attachments": st.lists(st.text(max_size=10), max_size=2),
              "extra": json_values})


def check(outcome: Any) -> None:
    assert isinstance(outcome, Classified | Triage | Rejected)
    if isinstance(outcome, Rejected):
        assert outcome.reason and outcome.detail


@settings(max_examples=300, deadline=None)
@given(plausible)
def test_plausible_reports_never_raise(report: dict[str, Any]) -> None:
    check(classify_raw(ruleset(), json.dumps(report, ensure_ascii=False).encode(), NOW))


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_value_never_raises(value: Any) -> None:
    check(classify_raw(ruleset(), json.dumps(value).encode(), NOW))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    outcome = classify_raw(ruleset(), raw, NOW)
    check(outcome)


def test_oversized_report_is_rejected_as_too_large() -> None:
    outcome = classify_raw(ruleset(), b"{" + b" " * 70_000 + b"}", NOW)
    assert isinstance(outcome, Rejected) and outcome.reason == "too_large"


def test_unknown_field_is_named_in_the_rejection() -> None:
    raw = json.dumps({"channel": "hotline", "channel_id": "1",
                      "reported_at": "2026-11-24T09:30:00+08:00", "description": "井盖缺失",
                      "priority": "urgent"}).encode()
    outcome = classify_raw(ruleset(), raw, NOW)
    assert isinstance(outcome, Rejected)
    assert (outcome.reason, outcome.field) == ("unknown_field", "priority")
    assert outcome.incident_id is not None and outcome.raw == raw.decode()
