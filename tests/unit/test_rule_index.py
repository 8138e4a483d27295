"""The per-report rule indexes (engine.rules.scope) against plain scans of the same rules.

The classify hot path looks rules up through indexes built for speed: one keyword automaton
shared by every scope, per-word rule lists sorted best first, and a memo of the priority
rules that hold for a matter and channel. Each test here decides the same question by
scanning every rule of the scope, as the rules' documentation states it, on reports drawn
from the shipped rules' own keywords, and asks for the same answer.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.contracts import IntakeReport
from engine.rules import CompiledScope, KeywordRule, RuleSet
from engine.rules.load import load_rules
from engine.rules.matching import best_keyword_rule
from engine.rules.scope import PriorityRule, keyword_automaton

REPO = Path(__file__).resolve().parents[2]
CHANNELS = ["hotline", "gridapp", "sensor", "open311", "dept:zfj"]
FILLER = ["，", "在小区门口", "已经好几天了", "希望尽快处理", "。"]


@cache
def ruleset() -> RuleSet:
    return load_rules(REPO / "rules")


@cache
def scopes() -> list[CompiledScope]:
    counties = [None] + [c for c, d in ruleset().jurisdiction.divisions.items()
                         if d.level == "county"]
    return [ruleset().scope_for(county) for county in counties]


@cache
def phrases() -> list[str]:
    """Every phrase any rule looks for, in any scope: keywords, exclusions, priority words."""
    words = {w for s in scopes() for r in s.classify for w in (*r.keywords, *r.exclude)}
    words |= {w for s in scopes() for r in s.priority for w in r.keywords}
    return sorted(words)


def report(channel: str, text: str) -> IntakeReport:
    return IntakeReport(channel=channel, channel_id="t-1", description=text,
                        reported_at=datetime(2025, 6, 2, 9, 0, tzinfo=UTC))


@st.composite
def reports(draw: st.DrawFn) -> tuple[int, IntakeReport]:
    parts = draw(st.lists(st.one_of(st.sampled_from(phrases()), st.sampled_from(FILLER)),
                          min_size=1, max_size=8))
    return (draw(st.integers(0, len(scopes()) - 1)),
            report(draw(st.sampled_from(CHANNELS)), "".join(parts)))


def scanned_keyword_rule(scope: CompiledScope, r: IntakeReport,
                         prefix: str) -> tuple[KeywordRule, str] | None:
    """Every rule, every keyword: the highest weight, then the longest keyword, then the
    most specific layer (lowest order), then the keyword itself, among rules that apply."""
    text = r.description
    applicable = [
        ((-rule.weight, -len(word), rule.order, word), rule, word)
        for rule in scope.classify for word in rule.keywords
        if word in text and rule.matter.startswith(prefix)
        and (not rule.channels or r.channel in rule.channels)
        and not any(e in text for e in rule.exclude)
        and all(p.search(text) for p in rule.patterns)]
    if not applicable:
        return None
    _, rule, word = min(applicable, key=lambda a: a[0])
    return rule, word


def scanned_priority_rule(scope: CompiledScope, text: str, matter: str,
                          channel: str) -> PriorityRule | None:
    """The first rule, in effective order, whose keyword, matter and channel conditions hold."""
    for rule in sorted(scope.priority, key=lambda r: r.order):
        if ((not rule.keywords or any(w in text for w in rule.keywords))
                and (not rule.matters or any(matter.startswith(p) for p in rule.matters))
                and (not rule.channels or channel in rule.channels)):
            return rule
    return None


def test_every_scope_shares_the_rule_sets_one_automaton() -> None:
    automata = {id(scope.automaton) for scope in scopes()}
    assert len(scopes()) > 1
    assert len(automata) == 1


@settings(max_examples=300, deadline=None)
@given(reports(), st.sampled_from(["", "01", "02", "03", "04"]))
def test_keyword_decision_on_the_shipped_rules_equals_a_scan(drawn: tuple[int, IntakeReport],
                                                             prefix: str) -> None:
    scope = scopes()[drawn[0]]
    r = drawn[1]
    found = scope.found(r.description)
    assert {w for w in found if w in phrases()} == {w for w in phrases() if w in r.description}
    expected = scanned_keyword_rule(scope, r, prefix)
    assert best_keyword_rule(scope, r, found, prefix, None) == expected
    # Explaining takes the same decision; it only says more about the others.
    lines: list[str] = []
    assert best_keyword_rule(scope, r, found, prefix, lines.append) == expected


@settings(max_examples=300, deadline=None)
@given(reports(), st.sampled_from(sorted(ruleset().matters.by_code)))
def test_priority_decision_on_the_shipped_rules_equals_a_scan(drawn: tuple[int, IntakeReport],
                                                              matter: str) -> None:
    scope = scopes()[drawn[0]]
    r = drawn[1]
    got = scope.priority_rule(scope.found(r.description), matter, r.channel)
    assert got == scanned_priority_rule(scope, r.description, matter, r.channel)


# Random scopes: the shipped rules are few and rarely compete, so rule sets are also drawn
# from a small vocabulary where keywords collide, contain each other and share rules.
WORDS = ["燃气", "燃气泄漏", "泄漏", "噪音", "噪音扰民", "扰民", "火灾", "起火", "渗水", "漏水"]
MATTERS = ["010101", "010102", "010201", "020101", "030101"]


@st.composite
def keyword_rules(draw: st.DrawFn) -> list[KeywordRule]:
    rules = []
    for order in range(draw(st.integers(1, 12))):
        rules.append(KeywordRule(
            id=f"k{order}", layer="test", line=order, file="test.yaml",
            keywords=tuple(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3,
                                         unique=True))),
            exclude=tuple(draw(st.lists(st.sampled_from(WORDS), max_size=1))),
            patterns=tuple(re.compile(p) for p in draw(st.lists(
                st.sampled_from(["小区", "(楼道|楼下)"]), max_size=1))),
            channels=frozenset(draw(st.lists(st.sampled_from(CHANNELS[:3]), max_size=2))),
            matter=draw(st.sampled_from(MATTERS)), weight=draw(st.integers(0, 2)),
            order=order))
    return rules


@st.composite
def priority_rules(draw: st.DrawFn) -> list[PriorityRule]:
    rules = []
    for order in range(draw(st.integers(1, 10))):
        keywords = draw(st.lists(st.sampled_from(WORDS), max_size=2, unique=True))
        matters = draw(st.lists(st.sampled_from(["01", "0101", "010102", "02"]), max_size=2))
        channels = draw(st.lists(st.sampled_from(CHANNELS[:3]),
                                 min_size=0 if keywords or matters else 1, max_size=2))
        rules.append(PriorityRule(
            id=f"p{order}", layer="test", line=order, file="test.yaml",
            keywords=tuple(keywords), matters=tuple(matters), channels=frozenset(channels),
            set=draw(st.sampled_from(["urgent", "high", "low"])), order=order))
    return rules


texts = st.lists(st.sampled_from([*WORDS, "小区", "楼道", "，"]), min_size=1,
                 max_size=6).map("".join)


@settings(max_examples=300, deadline=None)
@given(keyword_rules(), texts, st.sampled_from(CHANNELS[:3]), st.sampled_from(["", "01"]))
def test_keyword_decision_on_random_rules_equals_a_scan(rules: list[KeywordRule], text: str,
                                                        channel: str, prefix: str) -> None:
    scope = CompiledScope("test", ["test"], rules, [])
    r = report(channel, text)
    found = scope.found(text)
    expected = scanned_keyword_rule(scope, r, prefix)
    assert best_keyword_rule(scope, r, found, prefix, None) == expected
    lines: list[str] = []
    assert best_keyword_rule(scope, r, found, prefix, lines.append) == expected


@settings(max_examples=300, deadline=None)
@given(priority_rules(), texts, st.sampled_from(CHANNELS[:3]), st.sampled_from(MATTERS))
def test_priority_decision_on_random_rules_equals_a_scan(rules: list[PriorityRule], text: str,
                                                         channel: str, matter: str) -> None:
    scope = CompiledScope("test", ["test"], [], rules)
    # Twice: the second answer comes from the memo of standing rules.
    for _ in range(2):
        assert (scope.priority_rule(scope.found(text), matter, channel)
                == scanned_priority_rule(scope, text, matter, channel))


def test_a_rule_matched_by_two_keywords_of_one_length_names_the_same_one_every_time() -> None:
    """``found`` is a set, whose order changes with the hash seed; the trace must not."""
    scope = scopes()[0]
    rule = next(r for r in scope.classify
                if not r.conditional and len({len(w) for w in r.keywords}) < len(r.keywords))
    length = next(n for n in {len(w) for w in rule.keywords}
                  if sum(len(w) == n for w in rule.keywords) > 1)
    words = sorted(w for w in rule.keywords if len(w) == length)[:2]
    r = report("hotline", "".join(words))
    for order in (words, words[::-1]):
        # A list in a chosen order stands in for the set's seed-dependent order.
        chosen = best_keyword_rule(scope, r, order, "", None)  # type: ignore[arg-type]
        assert chosen is not None
        assert chosen[1] == words[0]


@settings(max_examples=300, deadline=None)
@given(keyword_rules(), keyword_rules(), st.lists(st.booleans(), min_size=12, max_size=12),
       texts, st.sampled_from(CHANNELS[:3]))
def test_a_county_scope_reading_the_provinces_keyword_lists_decides_as_a_full_one(
        province_rules: list[KeywordRule], county_rules: list[KeywordRule], kept: list[bool],
        text: str, channel: str) -> None:
    """A county keeps only the words its layers change; the rest come from the province."""
    automaton = keyword_automaton(WORDS)  # the rule set's one automaton
    province = CompiledScope("province", ["p"], province_rules, [], automaton)
    # The county disables some of the province's rules and adds its own, which come first.
    county_own = [replace(r, id=f"c{r.order}", order=r.order - 100) for r in county_rules]
    merged = county_own + [r for r, keep in zip(province_rules, kept, strict=False) if keep]
    county = CompiledScope("county", ["p", "c"], merged, [], automaton, province)
    full = CompiledScope("county", ["p", "c"], merged, [], automaton)
    r = report(channel, text)
    found = county.found(text)
    assert (best_keyword_rule(county, r, found, "", None)
            == best_keyword_rule(full, r, found, "", None)
            == scanned_keyword_rule(full, r, ""))
