"""督办 by policy: at a resolution breach the command centre supervises the case, and an
unanswered supervision escalates on its own, to the supervising centre's supervisor."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from engine.calendar import SHANGHAI
from engine.rules.load import load_rules
from engine.simulate import simulate
from tests.unit.rules_copy import rules_with_county_sla

REPO = Path(__file__).resolve().parents[2]
POLICY = """
sla:
  urgent:
    description: test policy, natural time
    accept: null
    resolve: 1h
    unit: natural
    warn_at: [50]
    supervise_on_breach: 30m
"""
REPORT = {"channel": "hotline", "channel_id": "S-1", "reported_at": "2026-12-07T10:00:00+08:00",
          "description": "楼道里一股煤气味", "location": {"lat": 30.2905, "lon": 120.0302}}


def supervising_rules(tmp_path: Path) -> Path:
    return rules_with_county_sla(tmp_path, POLICY)


def run(tmp_path: Path, *updates: dict[str, object]) -> list[dict[str, object]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    history = tmp_path / "history.jsonl"
    lines = [REPORT, *updates]
    history.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
                       encoding="utf-8")
    with history.open("rb") as source:
        return list(simulate(load_rules(supervising_rules(tmp_path)), source, escalations=True,
                             until=datetime(2026, 12, 7, 14, 0, tzinfo=SHANGHAI)))


def steps(out: list[dict[str, object]]) -> list[tuple[object, object, object]]:
    return [(o["limit"], o["step"], o["at"]) for o in out if o["outcome"] == "escalated"]


def test_a_breach_is_supervised_and_the_unanswered_supervision_escalates(
        tmp_path: Path) -> None:
    out = run(tmp_path)
    assert out[0]["outcome"] == "assigned"
    got = steps(out)
    assert ("resolve", "breach", "2026-12-07T11:00:00+08:00") in got
    assert ("resolve", "supervise", "2026-12-07T11:00:00+08:00") in got
    assert ("supervision", "overdue", "2026-12-07T11:30:00+08:00") in got
    overdue = next(o for o in out if o.get("step") == "overdue")
    assert overdue["recipient"] == "330110.zhzx"  # the township room's supervisor


def test_an_answer_in_time_stops_the_supervisions_escalation(tmp_path: Path) -> None:
    first = run(tmp_path / "first")
    case_id, lead = first[0]["case_id"], first[0]["departments"][0]  # type: ignore[index]
    answer = {"schema": "griddispatch.status/1", "case_id": case_id, "department": lead,
              "action": "progress", "at": "2026-12-07T11:10:00+08:00", "note": "已到场处置"}
    accept = {**answer, "action": "accepted", "at": "2026-12-07T10:05:00+08:00", "note": ""}
    out = run(tmp_path / "second", accept, answer)
    got = steps(out)
    assert ("resolve", "supervise", "2026-12-07T11:00:00+08:00") in got
    assert not any(limit == "supervision" for limit, _, _ in got)
    assert datetime.fromisoformat("2026-12-07T11:10:00+08:00") - datetime.fromisoformat(
        "2026-12-07T11:00:00+08:00") < timedelta(minutes=30)
