"""File replay, the pure part: lines -> reports or named problems; the token bucket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.bridges.replay import LineProblem, TokenBucket, parse_line, parse_rate
from engine.cli import main
from engine.contracts import IntakeReport

REPORT = {"channel": "hotline", "channel_id": "12345-20261124-0001",
          "reported_at": "2026-11-24T10:00:00+08:00", "description": "楼道里一股煤气味",
          "address": "余杭区仓前街道太炎社区"}


def line(**changes: object) -> str:
    data = {**REPORT, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not None}, ensure_ascii=False)


def test_a_good_line_is_the_report_with_its_own_channel() -> None:
    parsed = parse_line(line(), 1)
    assert isinstance(parsed, IntakeReport)
    assert (parsed.channel, parsed.channel_id) == ("hotline", "12345-20261124-0001")


def test_blank_lines_are_nothing() -> None:
    assert parse_line("   \n", 4) is None


@pytest.mark.parametrize(("text", "field", "words"), [
    ("{oops", "(line)", "not JSON"),
    ("[1]", "(line)", "JSON object"),
    (line(reported_at="2026-11-24 10:00"), "reported_at", "timezone"),
    (line(description=None), "description", "required field is missing"),
    (line(colour="red"), "colour", "unknown field"),
    (line(location={"lat": 95, "lon": 120}), "location.lat", "less than or equal to 90"),
])
def test_bad_lines_name_line_and_field(text: str, field: str, words: str) -> None:
    problem = parse_line(text, 7)
    assert isinstance(problem, LineProblem)
    assert (problem.line, problem.field) == (7, field)
    assert words in problem.message
    assert str(problem).startswith(f"line 7: {field}: ")


@pytest.mark.parametrize(("text", "per_second"), [
    ("50", 50.0), ("50/s", 50.0), ("600/m", 10.0), ("3600/h", 1.0), ("0.5", 0.5)])
def test_rates(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["0", "fast", "5/d", "-3"])
def test_bad_rates_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"write e\.g\. 50, 50/s"):
        parse_rate(text)


def test_token_bucket_spaces_takes_at_the_rate() -> None:
    bucket = TokenBucket(rate=10)
    now, waits = 100.0, []
    for _ in range(5):
        wait = bucket.take(now)
        waits.append(wait)
        now += wait  # the caller sleeps exactly this long
    assert waits == pytest.approx([0.0, 0.1, 0.1, 0.1, 0.1])
    assert now == pytest.approx(100.4)  # 5 takes in 0.4 s at 10/s


def test_token_bucket_allows_a_burst_after_a_pause_but_not_more() -> None:
    bucket = TokenBucket(rate=2, burst=3)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    # a long pause refills only up to the burst
    assert [bucket.take(100.0) for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 0.5])


def test_token_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0)


def test_dry_run_names_bad_lines_counts_them_and_exits_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join([line(), line(channel_id="2", reported_at="soon"), "",
                               line(channel_id="3")]) + "\n", encoding="utf-8")
    assert main(["replay", str(path), "--dry-run"]) == 1
    out, err = capsys.readouterr()
    assert f"error: {path}:line 2: reported_at: " in err
    assert "dry run, nothing sent: valid 2, invalid 1" in out


def test_bad_rate_option_is_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(line() + "\n", encoding="utf-8")
    assert main(["replay", str(path), "--dry-run", "--rate", "fast"]) == 2
