"""Duplicate detection, the case store, and bad status updates recorded and skipped.

Merging: same matter class (the merge rule's prefixes), within the distance and the window of
the case's last report, and the case still open. Without coordinates on both sides only the
same grid counts as near. Status updates that cannot apply come back as ``rejected`` with a
``StatusRejected`` record for ``assignments.status.rejected``, and change nothing.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from engine.cases.dispatch import STATUS_REJECTED_TOPIC, on_classified, on_status
from engine.cases.lifecycle import open_case
from engine.cases.merge import CaseStore, distance_m, is_duplicate
from engine.cases.records import CaseRecord, StatusRejected
from engine.classify import classify_data
from engine.contracts import Classified
from engine.routing.decide import route
from engine.routing.table import MergeRule
from engine.rules import RuleSet

RULES = Path(__file__).resolve().parents[2] / "rules"
T0 = datetime.fromisoformat("2026-11-24T10:00:00+08:00")
LAT, LON = 30.56, 119.735              # 五常街道, grid 330110005001001
METRE_LAT = 1 / 111_195                # degrees of latitude per metre (haversine radius)
REFUSE = "路边垃圾成堆没人清"            # 100101: merge within 100 m and 2 h
REFUSE_RULE = MergeRule(("09", "10", "12"), 100, timedelta(hours=2))


@cache
def ruleset() -> RuleSet:
    return RuleSet.load(RULES)


def report(channel_id: str, description: str = REFUSE, minutes: float = 0,
           north_m: float = 0, **place: Any) -> Classified:
    data: dict[str, Any] = {"channel": "gridapp", "channel_id": channel_id,
                            "reported_at": (T0 + timedelta(minutes=minutes)).isoformat(),
                            "description": description}
    data.update(place or {"location": {"lat": LAT + north_m * METRE_LAT, "lon": LON}})
    record = classify_data(ruleset(), data, T0 + timedelta(minutes=minutes, seconds=5))
    assert isinstance(record, Classified), record
    return record


def case_of(record: Classified) -> CaseRecord:
    return open_case(record, route(ruleset(), record), T0)


# --- distance, window, class -----------------------------------------------------------------

def test_distance_is_great_circle_metres() -> None:
    assert distance_m(LAT, LON, LAT, LON) == 0
    assert distance_m(LAT, LON, LAT + 100 * METRE_LAT, LON) == pytest.approx(100, abs=0.01)
    assert distance_m(LAT, LON, LAT, LON + 0.001) == pytest.approx(95.8, abs=0.5)


@pytest.mark.parametrize(("north_m", "duplicate"), [
    (0, True), (55, True), (99, True), (101, False), (130, False), (-99, True), (-101, False)])
def test_distance_within_or_over_the_limit(north_m: float, duplicate: bool) -> None:
    case = case_of(report("M-1"))
    assert is_duplicate(case, report("M-2", north_m=north_m), REFUSE_RULE) is duplicate


@pytest.mark.parametrize(("minutes", "duplicate"), [
    (0, True), (119, True), (120, True), (121, False), (-119, True), (-121, False)])
def test_window_from_the_cases_last_report(minutes: float, duplicate: bool) -> None:
    case = case_of(report("M-1"))
    assert is_duplicate(case, report("M-2", minutes=minutes, north_m=10), REFUSE_RULE) is duplicate


def test_the_window_runs_from_the_last_merged_report() -> None:
    case = case_of(report("M-1")).model_copy(
        update={"last_report_at": T0 + timedelta(minutes=100)})
    assert is_duplicate(case, report("M-2", minutes=200, north_m=10), REFUSE_RULE)


def test_matter_class_mismatch_is_no_duplicate() -> None:
    case = case_of(report("M-1"))                               # 100101 refuse
    vendor = report("M-2", description="有人路边摆摊卖水果")     # 090101 street vendor
    assert vendor.matter_code.startswith("09")
    assert not is_duplicate(case, vendor, REFUSE_RULE)
    bin_full = report("M-3", description="垃圾桶满了没人倒")     # 100103: same class 10
    assert bin_full.matter_code == "100103"
    assert is_duplicate(case, bin_full, REFUSE_RULE)


def test_a_narrower_merge_prefix_needs_both_matters_under_it() -> None:
    rule = MergeRule(("100101",), 100, timedelta(hours=2))
    case = case_of(report("M-1"))
    assert is_duplicate(case, report("M-2", north_m=10), rule)
    assert not is_duplicate(case, report("M-3", description="垃圾桶满了没人倒"), rule)


def test_merge_rule_is_the_most_specific_for_the_matter() -> None:
    table = ruleset().routing_for("330110000000")
    gas = table.merge_rule("030201")
    assert gas is not None and (gas.distance_m, gas.window) == (200, timedelta(minutes=30))
    noise = table.merge_rule("110101")
    assert noise is not None and (noise.distance_m, noise.window) == (200, timedelta(hours=4))
    assert table.merge_rule("100101") == REFUSE_RULE
    assert table.merge_rule("130101") is None
    assert table.merge_rule("030401") is None


# --- without coordinates ---------------------------------------------------------------------

def test_without_coordinates_only_the_same_grid_is_near() -> None:
    case = case_of(report("M-1", grid_code="330110113219001"))
    assert case.location is None
    assert is_duplicate(case, report("M-2", grid_code="330110113219001"), REFUSE_RULE)
    assert not is_duplicate(case, report("M-3", grid_code="330110113219002"), REFUSE_RULE)


def test_coordinates_on_one_side_only_fall_back_to_the_grid() -> None:
    located = case_of(report("M-1"))                          # grid 330110005001001
    assert located.grid_code == "330110005001001"
    assert is_duplicate(located, report("M-2", grid_code="330110005001001"), REFUSE_RULE)
    assert not is_duplicate(located, report("M-3", grid_code="330110005001002"), REFUSE_RULE)


def test_without_coordinates_or_grid_nothing_is_near() -> None:
    case = case_of(report("M-1", address="五常街道"))
    assert case.grid_code is None and case.location is None
    assert not is_duplicate(case, report("M-2", address="五常街道"), REFUSE_RULE)


# --- open cases only -------------------------------------------------------------------------

@pytest.mark.parametrize(("state", "duplicate"), [
    ("dispatched", True), ("accepted", True), ("reopened", True),
    ("resolved", False), ("closed", False)])
def test_only_open_cases_take_duplicates(state: str, duplicate: bool) -> None:
    case = case_of(report("M-1")).model_copy(update={"state": state})
    assert is_duplicate(case, report("M-2", north_m=10), REFUSE_RULE) is duplicate


def test_on_classified_merges_a_nearby_report_into_the_open_case() -> None:
    store = CaseStore()
    first = on_classified(ruleset(), store, report("S-1"), T0)
    assert first.outcome == "assigned" and first.case is not None
    near = report("S-2", minutes=30, north_m=40)
    second = on_classified(ruleset(), store, near, T0)
    assert second.outcome == "merged" and second.case is not None
    assert second.case.case_id == first.case.case_id
    assert second.case.incident_ids == [*first.case.incident_ids, near.incident_id]
    assert second.case.last_report_at == T0 + timedelta(minutes=30)
    assert len(store) == 1
    far = on_classified(ruleset(), store, report("S-3", minutes=31, north_m=400), T0)
    assert far.outcome == "assigned" and len(store) == 2


def test_a_closed_case_is_never_merged_and_keeps_its_incident_ids() -> None:
    store = CaseStore()
    opened = on_classified(ruleset(), store, report("C-1"), T0).case
    assert opened is not None
    store.put(opened.model_copy(update={"state": "closed"}))
    assert len(store) == 0
    assert store.get(opened.partition_key, opened.case_id) is None
    assert store.case_of_incident[report("C-1").incident_id] == opened.case_id
    # a replay of the first report is a duplicate, not a new case
    replay = on_classified(ruleset(), store, report("C-1"), T0)
    assert (replay.outcome, replay.outputs) == ("duplicate", [])
    # a new report next to it opens a new case
    again = on_classified(ruleset(), store, report("C-2", minutes=5, north_m=5), T0)
    assert again.outcome == "assigned" and again.case is not None
    assert again.case.case_id != opened.case_id


def test_a_replay_of_an_open_case_report_is_a_duplicate() -> None:
    store = CaseStore()
    opened = on_classified(ruleset(), store, report("R-1"), T0).case
    replay = on_classified(ruleset(), store, report("R-1"), T0)
    assert replay.outcome == "duplicate" and replay.outputs == []
    assert replay.case == opened


def test_the_store_indexes_by_partition_key() -> None:
    store = CaseStore()
    here = on_classified(ruleset(), store, report("P-1"), T0).case
    there = on_classified(ruleset(), store, report("P-2", grid_code="330110113219001"), T0).case
    assert here is not None and there is not None
    assert (here.partition_key, there.partition_key) == ("330110005", "330110113")
    assert store.get("330110113", here.case_id) is None
    assert {c.case_id for c in store.cases()} == {here.case_id, there.case_id}


# --- bad status updates are recorded and skipped ---------------------------------------------

def status(case_id: str, department: str, action: str, **extra: Any) -> bytes:
    return json.dumps({"case_id": case_id, "department": department, "action": action,
                       "at": (T0 + timedelta(minutes=1)).isoformat(), **extra}).encode()


def rejected(store: CaseStore, raw: bytes) -> StatusRejected:
    before = [c.model_dump() for c in store.cases()]
    result = on_status(ruleset(), store, raw, T0)
    assert result.outcome == "rejected" and result.case is None
    assert [c.model_dump() for c in store.cases()] == before  # skipped: nothing changed
    [out] = result.outputs
    assert out.topic == STATUS_REJECTED_TOPIC
    assert isinstance(out.value, StatusRejected)
    assert out.key == (out.value.case_id or "unknown")
    assert out.value.received_at == T0
    return out.value


def opened_store() -> tuple[CaseStore, CaseRecord]:
    store = CaseStore()
    case = on_classified(ruleset(), store, report("B-1"), T0).case
    assert case is not None and case.lead == "330110005.zhzf"
    return store, case


@pytest.mark.parametrize("raw", [
    b"\xff\xfe\x00garbage", b"", b"not json", b"[1, 2]", b'{"case_id": 1}',
    b'{"case_id": "x", "department": "d", "action": "exploded", "at": "2026-11-24T10:00:00Z"}',
    b'{"case_id": "x", "department": "d", "action": "accepted", "at": "yesterday"}',
    b'{"case_id": "x", "department": "d", "action": "accepted", '
    b'"at": "2026-11-24T10:00:00Z", "extra": 1}'])
def test_garbage_is_rejected_as_malformed(raw: bytes) -> None:
    store, _ = opened_store()
    value = rejected(store, raw)
    assert value.reason == "malformed" and value.case_id is None
    assert value.raw == raw.decode("utf-8", errors="replace")


def test_an_unknown_case_id_is_rejected() -> None:
    store, case = opened_store()
    for case_id in ["330110005-000000000000", "nonsense", f"330110009-{case.case_id[10:]}"]:
        value = rejected(store, status(case_id, "330110005.zhzf", "accepted"))
        assert (value.reason, value.case_id) == ("unknown_case", case_id)


def test_a_closed_case_is_unknown_to_status_updates() -> None:
    store, case = opened_store()
    store.put(case.model_copy(update={"state": "closed"}))
    assert rejected(store, status(case.case_id, case.lead, "accepted")).reason == "unknown_case"


@pytest.mark.parametrize(("department", "action", "reason"), [
    ("330110005.zhzf", "resolved", "illegal_transition"),
    ("330110005.zhzf", "verified", "illegal_transition"),
    ("330110005.zhzf", "progress", "illegal_transition"),
    ("330110009.zhzf", "accepted", "not_assigned"),
    ("330110.zhzf", "returned", "not_assigned")])
def test_an_illegal_update_is_rejected_with_its_reason(department: str, action: str,
                                                       reason: str) -> None:
    store, case = opened_store()
    value = rejected(store, status(case.case_id, department, action))
    assert (value.reason, value.case_id) == (reason, case.case_id)
    assert value.detail
    assert store.get(case.partition_key, case.case_id) == case


def test_return_after_accept_is_rejected_and_the_case_stays_accepted() -> None:
    store, case = opened_store()
    accepted = on_status(ruleset(), store, status(case.case_id, case.lead, "accepted"), T0)
    assert accepted.outcome == "updated" and accepted.case is not None
    assert rejected(store, status(case.case_id, case.lead, "returned")).reason == \
        "illegal_transition"
    current = store.get(case.partition_key, case.case_id)
    assert current is not None and current.state == "accepted"


def test_good_updates_apply_and_a_return_reroutes() -> None:
    store, case = opened_store()
    result = on_status(ruleset(), store, status(case.case_id, case.lead, "returned"), T0)
    assert result.outcome == "rerouted" and result.case is not None
    assert result.case.lead == "330110005.zhzx" and result.case.returned_by == [case.lead]
    assert [o.topic for o in result.outputs] == ["assignments.330110005.zhzx", "cases"]
    assert store.get(case.partition_key, case.case_id) == result.case
