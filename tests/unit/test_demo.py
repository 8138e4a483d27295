"""The demo of ``make run``: its feed is realistic and its departments behave as documented."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from connectors.channels.gridapp import from_gridapp
from connectors.channels.hotline import from_hotline
from engine.classify import classify_data
from engine.cli.demo.behaviour import demo_rules, lead_answers, verification
from engine.cli.demo.scenario import CHANNELS, DemoFeed
from engine.cli.demo.summary import parse, render
from engine.rules import RuleSet
from engine.rules.load import load_rules

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def feed(run: str = "090000") -> DemoFeed:
    ruleset = load_rules(REPO / "rules")
    devices = yaml.safe_load((REPO / "rules/reference/devices.yaml").read_text())["devices"]
    return DemoFeed(ruleset, devices, run=run)


def test_the_feed_uses_every_channel_and_becomes_every_kind_of_outcome() -> None:
    demo = feed()
    reports = [demo.next(NOW) for _ in range(300)]
    assert {r.channel for r in reports} == set(CHANNELS)
    outcomes: Counter[str] = Counter()
    for report in reports:
        data: dict[str, Any]
        if report.channel == "hotline":
            data = from_hotline(report.payload).model_dump(mode="json", exclude_none=True)
        elif report.channel == "gridapp":
            data = from_gridapp(report.payload).model_dump(mode="json", exclude_none=True)
        elif report.channel == "api":
            data = report.payload
        else:
            continue
        outcome = classify_data(demo.ruleset, data, NOW)
        outcomes[type(outcome).__name__] += 1
        if report.expect == "new":
            assert type(outcome).__name__ in ("Classified", "Triage")
    assert outcomes["Classified"] > 0.8 * sum(outcomes.values())
    assert outcomes["Triage"] and outcomes["Rejected"]
    assert {r.expect for r in reports} >= {"new", "merge", "resend", "triage", "reject"}


def test_the_same_seed_gives_the_same_feed() -> None:
    first, second = feed(), feed()
    assert [first.next(NOW) for _ in range(20)] == [second.next(NOW) for _ in range(20)]


def test_departments_answer_in_every_way_and_always_the_same_way() -> None:
    kinds = Counter()
    for n in range(400):
        answers = lead_answers(f"330110005-{n:012x}", "new")
        assert answers == lead_answers(f"330110005-{n:012x}", "new")
        kinds[tuple(a.action for a in answers)] += 1
    assert set(kinds) == {("accepted", "resolved"), ("returned",), ()}
    late = [answers[0].delay_s for n in range(400)
            if (answers := lead_answers(f"330110005-{n:012x}", "new"))]
    assert max(late) > 60 > min(late), "some accept after the demo's 60 s limit, some before"
    satisfied = Counter(verification(f"c{n}").satisfied for n in range(400))
    assert satisfied[True] > satisfied[False] > 0


def test_demo_rules_keep_routing_and_shorten_every_policy(tmp_path: Path) -> None:
    rules = demo_rules(REPO / "rules", tmp_path / "rules")
    ruleset = load_rules(rules)
    table = ruleset.sla_for("330110000000")
    assert set(table.policies) >= {"default", "urgent", "market"}
    terms = table.terms("urgent", ruleset.matters.by_code["030201"], "urgent", "r")
    assert (terms.accept, terms.resolve, terms.unit) == ("60s", "4m", "natural")
    def what(rs: RuleSet) -> list[tuple[object, ...]]:
        return [(r.id, r.matters, r.lead, r.assist, r.sla, r.order)
                for r in rs.routing_for("330110000000").rules]

    assert what(ruleset) == what(load_rules(REPO / "rules"))


def test_the_summary_reads_the_workers_expositions() -> None:
    text = ("# TYPE griddispatch_route_records_total counter\n"
            'griddispatch_route_records_total{outcome="assigned"} 7.0\n'
            "# TYPE griddispatch_escalations_total counter\n"
            'griddispatch_escalations_total{department="x",limit="accept",step="breach"} 2.0\n')
    screen = render(parse({"route": text, "timers": text}), {"route": True, "timers": False},
                    {"hotline": 3}, {"accepted": 1}, 42)
    assert "assigned 14" in screen and "breach 4" in screen
    assert "timers DOWN" in screen and "hotline 3" in screen


def test_two_runs_on_one_day_send_different_channel_ids() -> None:
    first, second = feed("090000"), feed("093000")
    def sent(feed: DemoFeed) -> set[str]:
        return {json.dumps([r.payload, r.key], ensure_ascii=False)
                for r in (feed.next(NOW) for _ in range(30))}

    assert not sent(first) & sent(second)  # same seed, same texts, other ids
    assert DemoFeed(first.ruleset, first.devices).run != ""  # a run id by default
