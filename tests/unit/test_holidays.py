"""Holiday years entered in rules/reference/holidays.yaml (engine.reference.holidays).

The dates below are test data shaped like a State Council notice, not the real 2027 one:
2027-02-08..12 (Monday to Friday) off, Saturday 2027-02-06 worked.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from engine.calendar import (
    HOLIDAY_WARNING_DAYS,
    SHANGHAI,
    add_working_time,
    calendar_revision,
    holiday_data_until,
    is_working_day,
    working_day_length,
)
from engine.cli import main
from engine.rules.load import load_rules
from engine.yamlfile import FileProblems
from tests.unit.rules_copy import rules_copy_with

REPO = Path(__file__).resolve().parents[2]
ENTERED = """\
years:
  2027:
    notice: test notice, not the real one
    days_off: [2027-02-08, 2027-02-09, 2027-02-10, 2027-02-11, 2027-02-12]
    workdays: [2027-02-06]
"""


def rules_with(tmp_path: Path, holidays: str) -> Path:
    return rules_copy_with(tmp_path, {"reference/holidays.yaml": holidays})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def test_an_entered_year_decides_which_days_are_worked(tmp_path: Path) -> None:
    day = working_day_length()
    shipped = load_rules(REPO / "rules").sla_for(None).hours
    entered = load_rules(rules_with(tmp_path, ENTERED)).sla_for(None).hours
    # The shipped rules enter no 2027: its statutory days (provisional: 除夕 5 Feb to 初三
    # 8 Feb, the weekend's two made up on 9-10 Feb).
    assert add_working_time(at("2027-02-05T17:30"), day, shipped) == at("2027-02-11T17:30")
    assert holiday_data_until(shipped.holidays) == date(2026, 12, 31)
    assert is_working_day(date(2027, 2, 11), shipped.holidays)
    # The entered notice: the week off, and the make-up Saturday.
    holidays = entered.holidays
    assert not is_working_day(date(2027, 2, 8), holidays)
    assert is_working_day(date(2027, 2, 6), holidays)
    assert not is_working_day(date(2027, 2, 13), holidays)  # an ordinary Saturday
    assert is_working_day(date(2027, 2, 15), holidays)
    # Friday evening + one working day: the make-up Saturday; one more skips the week off.
    assert add_working_time(at("2027-02-05T17:30"), day, entered) == at("2027-02-06T17:30")
    assert add_working_time(at("2027-02-06T17:30"), day, entered) == at("2027-02-15T17:30")
    assert holiday_data_until(holidays) == date(2027, 12, 31)
    assert "+holidays-" in calendar_revision(entered)
    assert "+holidays-" not in calendar_revision(shipped)
    # Both rule sets stay loaded in one process, each with its own calendar: no global.
    assert add_working_time(at("2027-02-05T17:30"), day, shipped) == at("2027-02-11T17:30")


def test_a_case_carries_the_calendar_it_was_opened_under(tmp_path: Path) -> None:
    """The frozen hours round-trip with the entered days, so a worker whose rules enter no
    year still counts the case's days."""
    from engine.sla.model import HoursSpec

    entered = load_rules(rules_with(tmp_path, ENTERED)).sla_for(None).hours
    spec = HoursSpec.model_validate_json(HoursSpec.of(entered).model_dump_json())
    assert spec.hours() == entered
    assert spec.hours().holidays.digest == entered.holidays.digest


def test_rules_diff_counts_each_rule_sets_own_holidays(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 2027 report whose acceptance limit runs into the entered week off: the deadline
    differs between the two rule sets, so the escalation times do; ``rules diff`` reports
    outcomes, which stay the same, and must not mix the two calendars up (it did while the
    calendar was process-wide: whichever loaded last counted for both)."""
    from engine.simulate import simulate

    history = tmp_path / "history.jsonl"
    history.write_text(json.dumps({
        "channel": "gridapp", "channel_id": "H-1", "reported_at": "2027-02-05T17:00:00+08:00",
        "description": "路边占道经营，摊位堵住人行道", "grid_code": "330110005001001",
        "matter_code": "090101"}, ensure_ascii=False) + "\n", encoding="utf-8")
    shipped = load_rules(REPO / "rules")
    entered = load_rules(rules_with(tmp_path / "entered", ENTERED))

    def deadlines(ruleset: object) -> list[str]:
        with history.open("rb") as lines:
            return [line["deadline"] for line in simulate(
                        ruleset, lines, escalations=True,  # type: ignore[arg-type]
                        until=datetime(2027, 3, 31, tzinfo=SHANGHAI))
                    if line["outcome"] == "escalated" and line["step"] == "breach"]

    with_shipped, with_entered = deadlines(shipped), deadlines(entered)
    assert with_shipped and with_entered and with_shipped != with_entered
    assert deadlines(shipped) == with_shipped  # loading the other set changed nothing


@pytest.mark.parametrize(("edit", "message", "line"), [
    (("2027-02-12]", "2028-02-12]"), "2028-02-12 is listed under 2027: move it to its own year",
     4),
    (("2027-02-06]", "2027-02-15]"), "2027-02-15 is a weekday, a working day anyway", 5),
])
def test_a_wrong_entry_is_refused_with_its_file_and_line(
        tmp_path: Path, edit: tuple[str, str], message: str, line: int) -> None:
    rules = rules_with(tmp_path, ENTERED.replace(*edit))
    with pytest.raises(FileProblems) as refused:
        load_rules(rules)
    problems = [str(p) for p in refused.value.problems]
    assert any(p.startswith(f"{rules / 'reference' / 'holidays.yaml'}:{line}: {message}")
               for p in problems), problems


def test_a_day_both_off_and_worked_is_refused(tmp_path: Path) -> None:
    text = ENTERED.replace("workdays: [2027-02-06]", "workdays: [2027-02-06, 2027-02-13]") \
        .replace("2027-02-12]", "2027-02-12, 2027-02-13]")
    with pytest.raises(FileProblems) as refused:
        load_rules(rules_with(tmp_path, text))
    assert any("2027-02-13 is both a day off and a working day" in str(p)
               for p in refused.value.problems)


@pytest.mark.parametrize(("days_left", "warned"), [(30, True), (365, False)])
def test_rules_check_warns_while_the_holiday_data_ends_soon(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        days_left: int, warned: bool) -> None:
    today = datetime.now(SHANGHAI).date()
    monkeypatch.setattr("engine.cli.rules_cmd.holiday_data_until",
                        lambda _holidays: today + timedelta(days=days_left))
    assert main(["rules", "check", str(REPO / "rules")]) == 0  # a warning, not a failure
    err = capsys.readouterr().err
    assert ("warning: the holiday data ends on" in err) is warned
    if warned:
        assert f"({days_left} days from today)" in err and "holidays.yaml" in err


def test_the_alert_warns_as_early_as_rules_check() -> None:
    alerts = yaml.safe_load((REPO / "ops/prometheus/alerts.yml").read_text(encoding="utf-8"))
    rule = next(r for g in alerts["groups"] for r in g["rules"]
                if r.get("alert") == "GriddispatchHolidayDataEnding")
    assert rule["expr"].endswith(f"< {HOLIDAY_WARNING_DAYS} * 86400")
