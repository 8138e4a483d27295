"""``griddispatch report``: the assessment's definitions, its score, and both renderings.

Cases are made the way the route worker makes them (classify, route, open, then department
answers through the lifecycle), with time limits set explicitly so each test reads its own
deadlines.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from engine.cases.lifecycle import NeedsReroute, apply_status, open_case
from engine.cases.records import CaseRecord, StatusAction, StatusUpdate
from engine.classify import classify_data
from engine.cli import main
from engine.contracts import Classified
from engine.report.assess import Tally, assess, case_tally
from engine.report.page import assessment_html, simulated_html
from engine.report.simulated import SimulateLineError, parse_lines, summarize
from engine.report.table import assessment_text, width
from engine.routing.decide import route
from engine.rules import RuleSet
from engine.rules.load import load_rules
from engine.runtime.report_source import parse_latest
from engine.simulate import simulate
from engine.sla.model import CaseSla, HoursSpec, SlaTerms

REPO = Path(__file__).resolve().parents[2]
T0 = datetime.fromisoformat("2026-11-24T09:00:00+08:00")
NAMES = {"330110012.zhzf": "仓前街道综合行政执法队", "330110012.zhzx": "仓前街道社会治理中心",
         "330110.zhzx": "余杭区社会治理综合指挥中心"}
ZHZF, ZHZX, VERIFIER = "330110012.zhzf", "330110012.zhzx", "330110.zhzx"


@cache
def ruleset() -> RuleSet:
    return load_rules(REPO / "rules")


def record(channel_id: str, worker: str | None) -> Classified:
    attributes = {"grid_worker_id": worker} if worker else {}
    out = classify_data(ruleset(), {
        "channel": "gridapp", "channel_id": channel_id, "reported_at": T0.isoformat(),
        "description": "太炎社区菜场门口有流动摊贩占道经营，推车卖水果",
        "location": {"lat": 30.339051, "lon": 119.984531}, "attributes": attributes}, T0)
    assert isinstance(out, Classified), out
    return out


def limits(accept_minutes: int | None = 30, resolve_hours: int = 24) -> CaseSla:
    terms = SlaTerms(policy="test", rules_revision="r", calendar="test", unit="natural",
                     accept="30m" if accept_minutes else None, resolve=f"{resolve_hours}h",
                     warn_at=[], ladder=[], hours=HoursSpec(sessions=(("08:30", "17:00"),)))
    return CaseSla(terms=terms, accept_from=T0, resolve_from=T0,
                   accept_by=T0 + timedelta(minutes=accept_minutes) if accept_minutes else None,
                   resolve_by=T0 + timedelta(hours=resolve_hours))


def case(channel_id: str = "R-1", worker: str | None = "GW-7",
         sla: CaseSla | None = None) -> CaseRecord:
    first = record(channel_id, worker)
    opened = open_case(first, route(ruleset(), first), T0)
    assert opened.lead == ZHZF
    return opened.model_copy(update={"sla": sla if sla is not None else limits()})


def answer(current: CaseRecord, department: str, action: StatusAction, minutes: float,
           **extra: Any) -> CaseRecord:
    at = T0 + timedelta(minutes=minutes)
    out = apply_status(current, StatusUpdate(case_id=current.case_id, department=department,
                                             action=action, at=at, **extra), at)
    assert isinstance(out, CaseRecord), out
    return out


def served(channel_id: str, accept_after: float = 10, resolve_after: float = 120,
           satisfied: bool = True, worker: str | None = "GW-7") -> CaseRecord:
    """Accepted, resolved and verified: the whole happy path."""
    c = answer(case(channel_id, worker), ZHZF, "accepted", accept_after)
    c = answer(c, ZHZF, "resolved", resolve_after, note="已劝离")
    return answer(c, VERIFIER, "verified", resolve_after + 60, satisfied=satisfied)


AS_OF = T0 + timedelta(days=3)


# --- definitions ------------------------------------------------------------------------------

def test_acceptance_and_resolution_within_their_limits_are_on_time() -> None:
    tally = case_tally(served("R-1", accept_after=10, resolve_after=120), AS_OF)
    assert (tally.acceptance_known, tally.accepted_on_time) == (1, 1)
    assert (tally.resolution_known, tally.resolved_on_time) == (1, 1)


def test_late_answers_are_late() -> None:
    tally = case_tally(served("R-1", accept_after=45, resolve_after=25 * 60), AS_OF)
    assert (tally.acceptance_known, tally.accepted_on_time) == (1, 0)
    assert (tally.resolution_known, tally.resolved_on_time) == (1, 0)


def test_an_open_case_counts_late_only_once_its_deadline_passed() -> None:
    waiting = case("R-1")
    before = case_tally(waiting, T0 + timedelta(minutes=20))
    assert (before.acceptance_known, before.resolution_known) == (0, 0)
    after = case_tally(waiting, T0 + timedelta(hours=2))
    assert (after.acceptance_known, after.accepted_on_time) == (1, 0)
    assert after.resolution_known == 0  # 24 h to resolve: not late yet


def test_a_paused_clock_is_not_late() -> None:
    paused = case("R-1").model_copy(update={"sla": limits().model_copy(
        update={"paused_since": T0 + timedelta(minutes=5)})})
    assert case_tally(paused, AS_OF).acceptance_known == 0


def test_a_case_without_time_limits_is_unknown_not_on_time() -> None:
    bare = case("R-1").model_copy(update={"sla": None})
    tally = case_tally(answer(answer(bare, ZHZF, "accepted", 5), ZHZF, "resolved", 30), AS_OF)
    assert tally.without_sla == 1
    assert (tally.acceptance_known, tally.resolution_known) == (0, 0)
    assert tally.acceptance_rate is None and tally.resolution_rate is None


def test_no_acceptance_limit_leaves_acceptance_unknown() -> None:
    c = case("R-1", sla=limits(accept_minutes=None))
    tally = case_tally(answer(answer(c, ZHZF, "accepted", 600), ZHZF, "resolved", 700), AS_OF)
    assert tally.acceptance_known == 0 and tally.resolved_on_time == 1


def test_an_unsatisfied_verification_reopens_and_counts_against_the_reopen_rate() -> None:
    c = served("R-1", satisfied=False)
    assert c.state == "reopened"
    reopened = case_tally(c, AS_OF)
    assert (reopened.verified, reopened.reopened) == (1, 1)
    assert (reopened.answered, reopened.satisfied) == (1, 0)
    c = answer(answer(c, ZHZF, "accepted", 400), ZHZF, "resolved", 500)
    closed = answer(c, VERIFIER, "verified", 600, satisfied=True)
    later = case_tally(closed, AS_OF)
    assert (later.verified, later.reopened) == (1, 1)  # reopened once, even if closed now
    assert (later.answered, later.satisfied) == (1, 1)
    assert case_tally(served("R-2"), AS_OF).reopened == 0


def test_returns_count_for_the_department_that_returned() -> None:
    at = T0 + timedelta(minutes=5)
    returned = apply_status(case("R-1"), StatusUpdate(
        case_id=case("R-1").case_id, department=ZHZF, action="returned", at=at,
        note="不属于本部门"), at)
    assert isinstance(returned, NeedsReroute)
    c = returned.case.model_copy(update={"lead": ZHZX})  # what the re-route decided
    report = assess([c, served("R-2")], AS_OF, names=NAMES)
    rows = {r.key: r for r in report.departments}
    assert (rows[ZHZF].tally.returns, rows[ZHZF].tally.cases) == (1, 1)
    assert (rows[ZHZX].tally.returns, rows[ZHZX].tally.cases) == (0, 1)
    assert rows[ZHZF].name == "仓前街道综合行政执法队"
    assert report.grid_workers[0].tally.returns == 1  # its reports needed a return


def test_grid_workers_come_from_the_first_reports_attributes() -> None:
    report = assess([served("R-1", worker="GW-1"), served("R-2", worker="GW-1"),
                     served("R-3", worker="GW-2", satisfied=False), served("R-4", worker=None)],
                    AS_OF)
    assert [(r.key, r.tally.cases) for r in report.grid_workers] == [("GW-1", 2), ("GW-2", 1)]
    assert report.total.cases == 4


def test_since_keeps_cases_opened_from_then_on() -> None:
    old = served("R-1")
    new = served("R-2").model_copy(update={"opened_at": T0 + timedelta(days=2)})
    report = assess([old, new], AS_OF, since=T0 + timedelta(days=1))
    assert report.total.cases == 1 and report.since == T0 + timedelta(days=1)


# --- the score ----------------------------------------------------------------------------------

def test_score_is_the_weighted_mean_of_smoothed_rates() -> None:
    tally = Tally(cases=5, acceptance_known=4, accepted_on_time=3, resolution_known=2,
                  resolved_on_time=2, verified=2, reopened=1, answered=2, satisfied=1)
    expected = 100 * (0.4 * 2 / 4 + 0.3 * 3 / 4 + 0.2 * 4 / 6 + 0.1 * 2 / 4)
    assert tally.score == pytest.approx(expected)


def test_score_uses_only_the_components_with_data() -> None:
    assert Tally(cases=3, answered=1, satisfied=1).score == pytest.approx(100 * 2 / 3)
    assert Tally(cases=40).score is None  # forty cases and nothing known: no score


def test_volume_does_not_buy_a_better_score() -> None:
    busy = [served(f"B-{i}", accept_after=45, resolve_after=30 * 60, satisfied=False)
            for i in range(12)]
    careful = [served(f"C-{i}").model_copy(update={"lead": ZHZX}) for i in range(3)]
    report = assess(busy + careful, AS_OF, names=NAMES)
    assert [r.key for r in report.departments] == [ZHZX, ZHZF]
    best, worst = report.departments
    assert best.tally.cases < worst.tally.cases
    assert (best.tally.score or 0) > 70 > (worst.tally.score or 0)


# --- renderings ---------------------------------------------------------------------------------

def sample_report() -> Any:
    return assess([served("R-1"), served("R-2", worker="GW-2", satisfied=False),
                   served("R-3").model_copy(update={"lead": ZHZX}),
                   case("R-4").model_copy(update={"lead": "330110.scjg"})], AS_OF, names=NAMES)


def test_display_width_counts_chinese_characters_twice() -> None:
    assert width("仓前abc") == 7
    assert width("ｅ") == 2  # full-width Latin
    assert width("e\u0301") == 1  # a combining accent takes no column


def test_terminal_table_aligns_chinese_and_latin_names() -> None:
    text = assessment_text(sample_report())
    rows = [line for line in text.splitlines() if re.search(r"\b330110[\d.]*\.[a-z]+\b", line)]
    assert len(rows) == 3
    columns = {width(line[:line.rindex("330110")]) for line in rows}
    assert len(columns) == 1, rows  # every code starts in the same terminal column
    assert "仓前街道综合行政执法队" in text and "330110.scjg" in text  # no name: the code


def well_formed(page: str) -> ET.Element:
    assert page.startswith("<!DOCTYPE html>")
    return ET.fromstring(page.removeprefix("<!DOCTYPE html>"))


def test_html_page_is_well_formed_self_contained_and_names_everyone() -> None:
    page = assessment_html(sample_report())
    root = well_formed(page)
    assert root.tag == "html"
    svgs = root.findall(".//{http://www.w3.org/2000/svg}svg")
    assert len(svgs) == 6  # score, service, volume: departments and grid workers
    for name in ("仓前街道综合行政执法队", "仓前街道社会治理中心", "GW-7", "GW-2"):
        assert name in page
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)


def test_html_escapes_names() -> None:
    report = assess([served("R-1", worker='<b>&"')], AS_OF)
    page = assessment_html(report)
    well_formed(page)
    assert "&lt;b&gt;&amp;&quot;" in page


# --- simulate output ----------------------------------------------------------------------------

def simulated_lines() -> list[bytes]:
    lines = (REPO / "tests" / "data" / "history.jsonl").read_bytes().splitlines()
    return [json.dumps(out, ensure_ascii=False).encode() for out in simulate(ruleset(), lines)]


def test_simulate_output_gives_volume_per_lead_and_outcomes() -> None:
    outs = [json.loads(line) for line in simulated_lines()]
    summary = summarize(parse_lines(simulated_lines()), NAMES)
    assigned = [o for o in outs if o["outcome"] == "assigned"]
    assert summary.outcomes["assigned"] == len(assigned) > 0
    assert sum(d.cases for d in summary.departments) == len(assigned)
    assert sum(d.merged for d in summary.departments) == summary.outcomes["merged"]
    zhzf = next(d for d in summary.departments if d.key == ZHZF)
    assert zhzf.name == NAMES[ZHZF]
    assert zhzf.cases == sum(1 for o in assigned if o["departments"][0] == ZHZF)
    assert sum(summary.reasons.values()) == summary.outcomes["triage"] + summary.outcomes[
        "rejected"]
    page = simulated_html(summary)
    well_formed(page)
    assert NAMES[ZHZF] in page and "satisfaction" in page  # says what needs the cases topic


def test_simulate_breaches_count_for_the_lead_they_were_dispatched_to() -> None:
    outs = [{"outcome": "assigned", "case_id": "c1", "departments": [ZHZF, ZHZX]},
            {"outcome": "escalated", "case_id": "c1", "step": "warning"},
            {"outcome": "escalated", "case_id": "c1", "step": "breach"},
            {"outcome": "escalated", "case_id": "c1", "step": "breach"},
            {"outcome": "triage", "reason": "unplaced"}]
    summary = summarize(outs)
    rows = {d.key: d for d in summary.departments}
    assert (rows[ZHZF].cases, rows[ZHZF].breached) == (1, 1)
    assert (rows[ZHZX].assisting, rows[ZHZX].breached) == (1, 0)
    assert summary.reasons == {"triage unplaced": 1}


def test_a_file_that_is_not_simulate_output_is_refused_by_line() -> None:
    with pytest.raises(SimulateLineError, match="line 2: no 'outcome' field"):
        list(parse_lines([b'{"outcome": "assigned"}', b'{"channel": "hotline"}']))


def test_report_command_on_simulate_output_writes_the_page(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "sim.jsonl"
    source.write_bytes(b"\n".join(simulated_lines()) + b"\n")
    page = tmp_path / "report.html"
    assert main(["report", "--from-simulate", str(source), "--html", str(page),
                 "--rules-dir", str(REPO / "rules")]) == 0
    out = capsys.readouterr().out
    assert "仓前街道综合行政执法队" in out and "cases topic" in out
    well_formed(page.read_text(encoding="utf-8"))
    assert main(["report", "--from-simulate", str(source), "--since", "2026-11-01"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["report", "--since", "yesterday"])
    assert exc.value.code == 2


# --- reading the topic's values -----------------------------------------------------------------

def test_latest_values_skip_tombstones_and_count_garbage() -> None:
    good = served("R-1")
    read = parse_latest({b"a": good.model_dump_json(by_alias=True).encode(), b"b": None,
                         b"c": b"{not a case"})
    assert [c.case_id for c in read.cases] == [good.case_id]
    assert read.unreadable == 1
