"""The department client without Kafka: arguments, checks and what it prints.

Every check that can fail before Kafka is contacted (case id, department, note, verify's
answer) is tested here with a bootstrap address where nothing listens: reaching Kafka would
be a bug in the order of checks.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.cases.dispatch import STATUS_REJECTED_TOPIC, StepResult, on_classified, on_status
from engine.cases.duplicates import CaseStore
from engine.cases.records import Assignment, CaseRecord, StatusUpdate
from engine.classify import classify_raw
from engine.cli import build_parser, main
from engine.cli.dept_cmd import (
    Applied,
    Refused,
    describe_verdict,
    display_width,
    fit,
    header,
    partition_key_of,
    render,
    status_update,
    table_row,
    verdict_in,
)
from engine.contracts import Classified, to_json
from engine.rules import RuleSet
from engine.rules.load import load_rules

REPO = Path(__file__).resolve().parents[2]
RULES = str(REPO / "rules")
NOWHERE = ["--bootstrap", "127.0.0.1:1"]
CASE = "330110005-ab954bb01bbe"
DEPT = "330110005.zhzf"


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_rules(REPO / "rules")


@pytest.fixture(scope="module")
def classified(ruleset: RuleSet) -> Classified:
    """A hotline report of street vending in 五常街道, classified by the real rules."""
    raw = json.dumps({"channel": "hotline", "channel_id": "12345-1",
                      "reported_at": "2026-11-24T08:05:00+08:00",
                      "description": "西溪风情社区门口有流动摊贩占道经营，推车卖水果，"
                                     "堵住了小区出入口，早晚高峰特别严重",
                      "grid_code": "330110005011002"}, ensure_ascii=False).encode()
    record = classify_raw(ruleset, raw, datetime(2026, 11, 24, 0, 6, tzinfo=UTC))
    assert isinstance(record, Classified)
    return record


@pytest.fixture(scope="module")
def assignment(ruleset: RuleSet, classified: Classified) -> Assignment:
    """A real assignment, from the rules and the route step, to the 五常街道 squad."""
    record = classified
    step = on_classified(ruleset, CaseStore(), record, record.received_at)
    (out,) = [o for o in step.outputs if o.topic == f"assignments.{DEPT}"]
    assert isinstance(out.value, Assignment)
    return out.value


def test_display_width_counts_chinese_twice() -> None:
    assert display_width("abc") == 3
    assert display_width("占道经营") == 8
    assert display_width("A占") == 3


def test_fit_cuts_and_pads_to_display_columns() -> None:
    cut = fit("西溪风情社区门口有流动摊贩占道经营推车卖水果", 30)
    assert cut.rstrip().endswith("…") and display_width(cut) == 30
    assert cut.startswith("西溪风情社区")
    assert fit("ok", 5) == "ok   "
    assert fit("一\n二\t三", 10) == "一 二 三  "


def test_table_row_in_local_time(assignment: Assignment) -> None:
    row = table_row(assignment)
    assert row.startswith("08:06  ")  # assigned at 00:06 UTC, shown in +08:00
    assert assignment.case_id in row
    assert "new" in row and "lead" in row and assignment.priority in row
    assert assignment.matter_name in row and "330110005011002" in row
    assert "西溪风情社区" in row and "…" in row
    titles = header().split()
    assert titles == ["time", "case_id", "kind", "role", "priority", "matter", "grid",
                      "description"]
    # Columns line up: the case id starts where its title does.
    assert row.index(assignment.case_id) == header().index("case_id")


def test_render_json_passes_the_value_through(assignment: Assignment) -> None:
    value = to_json(assignment)
    assert render(value, as_json=True) == value.decode("utf-8")
    assert render(b'{"schema": "griddispatch.assignment/2"}', as_json=True) is not None
    assert render(b"garbage", as_json=True) is None
    assert render(b"[1]", as_json=True) is None
    assert render(None, as_json=True) is None
    assert render(b'{"schema": "griddispatch.assignment/2"}', as_json=False) is None
    assert render(value, as_json=False) == table_row(assignment)


def test_status_update_is_stamped_in_china_time() -> None:
    update = status_update("verified", CASE, DEPT, None, "no")
    assert update.at.utcoffset() == timedelta(hours=8)
    assert update.satisfied is False and update.note == ""
    assert abs(update.at - datetime.now(UTC)) < timedelta(minutes=1)
    wire = json.loads(to_json(update))
    assert wire["schema"] == "griddispatch.status/1"
    assert wire["at"].endswith("+08:00")
    assert status_update("accepted", CASE, DEPT, "马上到", None).satisfied is None


def test_partition_key_is_the_place_part_of_the_case_id() -> None:
    assert partition_key_of(CASE) == "330110005"
    assert partition_key_of("330110-0123456789ab") == "330110"


@pytest.mark.parametrize("verb, action", [("accept", "accepted"), ("ack", "accepted"),
                                          ("return", "returned"), ("progress", "progress"),
                                          ("resolve", "resolved"), ("verify", "verified")])
def test_verbs_map_to_actions(verb: str, action: str) -> None:
    args = build_parser().parse_args(["dept", verb, CASE, "--dept", DEPT, "--note", "原因",
                                      *(["--satisfied", "yes"] if verb == "verify" else [])])
    assert args.action == action


@pytest.mark.parametrize("case_id", ["330110005", "330110005-AB954BB01BBE", "33011-ab954bb01bbe",
                                     "330110005-ab954bb01bb", "330110005_ab954bb01bbe"])
def test_bad_case_ids_are_usage_errors(case_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*NOWHERE, "dept", "accept", case_id, "--dept", DEPT, "--rules-dir", RULES]) == 2
    err = capsys.readouterr().err
    assert f"'{case_id}' is not a case id" in err and "330110005-ab954bb01bbe" in err


@pytest.mark.parametrize("argv", [["watch"], ["accept", CASE]])
def test_unknown_department_is_refused_with_a_hint(argv: list[str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*NOWHERE, "dept", *argv, "--dept", "330110005.zhfz", "--rules-dir", RULES]) == 1
    err = capsys.readouterr().err
    assert "unknown department '330110005.zhfz'" in err
    assert "did you mean " in err and "330110005.zhzf" in err.split("did you mean ")[1]


@pytest.mark.parametrize("argv, missing", [
    (["return", CASE, "--dept", DEPT], "--note"),
    (["resolve", CASE, "--dept", DEPT], "--note"),
    (["verify", CASE, "--dept", DEPT], "--satisfied"),
    (["watch"], "--dept"),
])
def test_required_options(argv: list[str], missing: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*NOWHERE, "dept", *argv])
    assert exited.value.code == 2
    assert missing in capsys.readouterr().err


def test_max_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["dept", "watch", "--dept", DEPT, "--max", "0"])
    assert "positive whole number" in capsys.readouterr().err


def test_overlong_note_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*NOWHERE, "dept", "resolve", CASE, "--dept", DEPT, "--rules-dir", RULES,
                 "--note", "已处理" * 700]) == 2
    assert "--note" in capsys.readouterr().err


def test_wait_and_no_wait_options() -> None:
    parse = build_parser().parse_args
    args = parse(["dept", "accept", CASE, "--dept", DEPT])
    assert (args.wait, args.no_wait) == (30.0, False)
    assert parse(["dept", "accept", CASE, "--dept", DEPT, "--wait", "2.5"]).wait == 2.5
    assert parse(["dept", "progress", CASE, "--dept", DEPT, "--no-wait"]).no_wait is True


@pytest.mark.parametrize("extra, message", [
    (["--wait", "0"], "positive number of seconds"),
    (["--wait", "soon"], "positive number of seconds"),
    (["--wait", "5", "--no-wait"], "not allowed with"),
])
def test_bad_waits_are_usage_errors(extra: list[str], message: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*NOWHERE, "dept", "accept", CASE, "--dept", DEPT, *extra])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


# --- the route worker's verdict: the real route step's records, matched to the update -------

@pytest.fixture
def store(ruleset: RuleSet, classified: Classified) -> tuple[CaseStore, CaseRecord]:
    """A fresh store holding the dispatched case (lead: the 五常 squad)."""
    cases = CaseStore()
    step = on_classified(ruleset, cases, classified, classified.received_at)
    assert step.case is not None and step.case.lead == DEPT
    return cases, step.case


def answer(ruleset: RuleSet, cases: CaseStore, update: StatusUpdate) -> tuple[str, bytes]:
    """What the route worker tells the sender about ``update``: (topic, value) of the one
    record on its ``verdicts.<dept>``."""
    return answer_of(on_status(ruleset, cases, to_json(update), datetime.now(UTC)))


def answer_of(step: StepResult) -> tuple[str, bytes]:
    (out,) = [o for o in step.outputs if o.topic.startswith("verdicts.")]
    return out.topic, to_json(out.value)


def test_an_applied_update_is_answered_on_the_senders_own_topic(
        ruleset: RuleSet, store: tuple[CaseStore, CaseRecord]) -> None:
    cases, case = store
    accept = status_update("accepted", case.case_id, DEPT, "马上到", None)
    topic, value = answer(ruleset, cases, accept)
    assert topic == f"verdicts.{DEPT}"
    assert verdict_in(accept, value) == Applied("accepted", DEPT)
    # The same officer's accept a moment later, another department's, another case's: no.
    for other in (accept.model_copy(update={"at": accept.at + timedelta(microseconds=1)}),
                  accept.model_copy(update={"department": "330110005.zhzx"}),
                  accept.model_copy(update={"case_id": "330110005-000000000000"}),
                  accept.model_copy(update={"action": "resolved"})):
        assert verdict_in(other, value) is None
    resolve = status_update("resolved", case.case_id, DEPT, "已劝离", None)
    _, later = answer(ruleset, cases, resolve)
    assert verdict_in(resolve, later) == Applied("resolved", DEPT)
    assert verdict_in(accept, later) is None


def test_a_return_is_answered_with_the_new_lead(
        ruleset: RuleSet, store: tuple[CaseStore, CaseRecord]) -> None:
    cases, case = store
    back = status_update("returned", case.case_id, DEPT, "不属于本部门", None)
    step = on_status(ruleset, cases, to_json(back), datetime.now(UTC))
    assert step.outcome == "rerouted" and step.case is not None
    _, value = answer_of(step)
    assert verdict_in(back, value) == Applied("dispatched", step.case.lead)
    assert step.case.lead != DEPT


def test_a_refusal_is_answered_with_its_reason(
        ruleset: RuleSet, store: tuple[CaseStore, CaseRecord]) -> None:
    cases, case = store
    resolve = status_update("resolved", case.case_id, DEPT, "已处理", None)  # not accepted yet
    step = on_status(ruleset, cases, to_json(resolve), datetime.now(UTC))
    # the operators' record of every refusal stays where it was, first
    assert step.outputs[0].topic == STATUS_REJECTED_TOPIC
    topic, value = answer_of(step)
    assert topic == f"verdicts.{DEPT}"
    assert verdict_in(resolve, value) == Refused("illegal_transition",
                                                 "cannot resolve a case that is dispatched")
    assert verdict_in(resolve.model_copy(update={"at": resolve.at + timedelta(seconds=1)}),
                      value) is None
    # Values that are not verdicts at all.
    for junk in (b"\xff", b"[]", None, b'{"raw": 3}', b'{"at": "yesterday"}'):
        assert verdict_in(resolve, junk) is None


def test_an_unknown_sender_gets_no_verdict_topic(
        ruleset: RuleSet, store: tuple[CaseStore, CaseRecord]) -> None:
    """A department not in the registry has no topic to be answered on: the refusal is on
    ``assignments.status.rejected`` only."""
    cases, case = store
    stranger = status_update("accepted", case.case_id, "330110005.nobody", None, None)
    step = on_status(ruleset, cases, to_json(stranger), datetime.now(UTC))
    assert [o.topic for o in step.outputs] == [STATUS_REJECTED_TOPIC]


def test_the_verdict_reads_as_one_line() -> None:
    update = status_update("accepted", CASE, DEPT, None, None)
    assert describe_verdict(update, Applied("accepted", DEPT), 30) == (
        f"applied: accepted {CASE} by {DEPT}; the case is now accepted, lead {DEPT}")
    refused = describe_verdict(update, Refused("illegal_transition",
                                               "cannot accept a case that is resolved"), 30)
    assert refused == (f"refused: accepted {CASE} by {DEPT}: illegal_transition: cannot "
                       "accept a case that is resolved")
    late = describe_verdict(update, None, 2.5)
    assert late.startswith(f"no answer: accepted {CASE} by {DEPT} was sent")
    assert "within 2.5s" in late and "griddispatch worker route" in late
    assert "\n" not in late
