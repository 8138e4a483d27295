"""Duplicate detection, the case store, and bad status updates recorded and skipped.

Merging: same matter class (the merge rule's prefixes), within the distance and the window of
the case's last report, and the case still open. Without coordinates on both sides only the
same grid counts as near. Status updates that cannot apply come back as ``rejected`` with a
``StatusRejected`` record for ``assignments.status.rejected``, and change nothing.
"""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from engine.cases.dispatch import STATUS_REJECTED_TOPIC, on_classified, on_status
from engine.cases.duplicates import (
    CELL_DEG,
    CaseStore,
    cell_of,
    cell_span,
    distance_m,
    is_duplicate,
)
from engine.cases.lifecycle import open_case
from engine.cases.records import CaseRecord, StatusRejected
from engine.classify import classify_data
from engine.contracts import Classified, Location
from engine.routing.decide import route
from engine.routing.table import MergeRule
from engine.rules import RuleSet
from engine.rules.load import load_rules

RULES = Path(__file__).resolve().parents[2] / "rules"
T0 = datetime.fromisoformat("2026-11-24T10:00:00+08:00")
LAT, LON = 30.3353, 120.016            # 五常街道, grid 330110005001001
METRE_LAT = 1 / 111_195                # degrees of latitude per metre (haversine radius)
REFUSE = "路边垃圾成堆没人清"            # 100101: merge within 100 m and 2 h
REFUSE_RULE = MergeRule(("09", "10", "12"), 100, timedelta(hours=2))


@cache
def ruleset() -> RuleSet:
    return load_rules(RULES)


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
    out, *answers = result.outputs
    assert out.topic == STATUS_REJECTED_TOPIC
    # the sender's verdict, when it is a department of the registry (with a topic of its own)
    sender = json.loads(raw).get("department") if raw.startswith(b"{") else None
    known = sender in ruleset().departments
    assert [a.topic for a in answers] == ([f"verdicts.{sender}"] if known else [])
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
    assert [o.topic for o in result.outputs] == ["assignments.330110005.zhzx", "cases",
                                                 f"verdicts.{case.lead}"]
    assert store.get(case.partition_key, case.case_id) == result.case


# --- the near-case index finds exactly what a full scan finds --------------------------------

MATTERS = ("100101", "100103", "101201", "090101", "090302")
PREFIXES = (("10",), ("100101",), ("09", "10"), ("1",), ("0901", "1012"), ("09",))
GRIDS = ("330110005001001", "330110005001002", "330110005001003", None)
CENTRES = ((LAT, LON), (0.001, 0.0), (-33.9, 151.2),
           (89.995, 12.0), (-89.99, -60.0),       # near a pole
           (10.0, 179.999), (-45.0, -179.9995))   # at the antimeridian


def _moved(lat: float, lon: float, metres: float, bearing: float) -> Location:
    """A point ``metres`` away in direction ``bearing`` (flat-earth step, wrapped)."""
    lat2 = lat + metres * math.cos(bearing) * METRE_LAT
    lat2 = max(-90.0, min(90.0, lat2))
    stretch = max(math.cos(math.radians(lat2)), 1e-6)
    lon2 = lon + metres * math.sin(bearing) * METRE_LAT / stretch
    lon2 = (lon2 + 180) % 360 - 180
    return Location(lat=lat2, lon=lon2)


def _near_cell_border(rng: random.Random, point: Location) -> Location:
    """``point`` snapped to within a hair of a cell edge, on either side."""
    def snap(value: float, low: float, high: float) -> float:
        edge = round(value / CELL_DEG) * CELL_DEG + rng.choice((-1, 1)) * rng.choice(
            (0.0, 1e-12, 1e-9, 1e-7))
        return max(low, min(high, edge))
    return Location(lat=snap(point.lat, -90, 90), lon=snap(point.lon, -180, 180))


def _place(rng: random.Random, centre: tuple[float, float], reach_m: float) -> Location | None:
    if rng.random() < 0.15:
        return None
    point = _moved(*centre, rng.uniform(0, reach_m), rng.uniform(0, 2 * math.pi))
    return _near_cell_border(rng, point) if rng.random() < 0.3 else point


class _ScanStore:
    """The reference: the open cases as a plain dict (same order rules as a dict of the
    store), searched by a full scan with ``is_duplicate``."""

    def __init__(self) -> None:
        self.mergeable: dict[str, CaseRecord] = {}

    def put(self, case: CaseRecord) -> None:
        if case.state in {"dispatched", "accepted", "reopened"}:
            self.mergeable[case.case_id] = case
        else:
            self.mergeable.pop(case.case_id, None)

    def find_duplicate(self, key: str, record: Classified, rule: MergeRule) -> CaseRecord | None:
        classes = {p[:2] for p in rule.matters if record.matter_code.startswith(p)}
        matches = [c for c in self.mergeable.values()
                   if c.partition_key == key and c.matter_code[:2] in classes
                   and is_duplicate(c, record, rule)]
        return min(matches, key=lambda c: c.opened_at) if matches else None


def _random_store(rng: random.Random, centre: tuple[float, float],
                  size: int) -> tuple[CaseStore, _ScanStore, list[CaseRecord]]:
    base = case_of(report("IDX-0"))
    store, scan, made = CaseStore(), _ScanStore(), []
    for n in range(size):
        case = base.model_copy(update={
            "case_id": f"K-{n:04d}", "partition_key": rng.choice(("330110005", "330110113")),
            "matter_code": rng.choice(MATTERS), "grid_code": rng.choice(GRIDS),
            "location": _place(rng, centre, 6_000),
            # few distinct opening times: ties must resolve as a scan of the store resolves them
            "opened_at": T0 + timedelta(minutes=rng.randrange(40)),
            "last_report_at": T0 + timedelta(minutes=rng.uniform(-300, 300)),
            "state": rng.choice(("dispatched", "dispatched", "accepted", "reopened", "resolved"))})
        made.append(case)
        store.put(case)
        scan.put(case)
    for _ in range(size):  # cases move on: state changes, merged reports, closing
        current = rng.choice(made)
        change: dict[str, Any] = rng.choice((
            {"state": rng.choice(("accepted", "resolved", "reopened", "closed", "dispatched"))},
            {"last_report_at": current.last_report_at + timedelta(minutes=rng.uniform(0, 90))},
            {"location": _place(rng, centre, 6_000)}, {"grid_code": rng.choice(GRIDS)}))
        updated = current.model_copy(update=change)
        made[made.index(current)] = updated
        store.put(updated)
        scan.put(updated)
        if rng.random() < 0.1:
            stopped = rng.choice(made)
            store.stop_merging(stopped)
            scan.mergeable.pop(stopped.case_id, None)
    return store, scan, made


def _random_query(rng: random.Random, made: list[CaseRecord], centre: tuple[float, float],
                  template: Classified) -> tuple[str, Classified, MergeRule]:
    rule = MergeRule(rng.choice(PREFIXES), rng.choice((10, 50, 100, 200, 800, 2_000, 5_000)),
                     timedelta(minutes=rng.choice((10, 30, 120, 240))))
    near = rng.choice(made)
    if near.location is not None and rng.random() < 0.7:  # right around the limit of a case
        where: Location | None = _moved(near.location.lat, near.location.lon,
                                        rule.distance_m * rng.uniform(0.9, 1.1),
                                        rng.uniform(0, 2 * math.pi))
        if rng.random() < 0.3:
            where = _near_cell_border(rng, where)
    else:
        where = _place(rng, centre, 6_000)
    record = template.model_copy(update={
        "matter_code": rng.choice(MATTERS), "grid_code": rng.choice(GRIDS),
        "reported_at": near.last_report_at + timedelta(minutes=rng.uniform(-200, 200)),
        "report": template.report.model_copy(update={"location": where})})
    return rng.choice((near.partition_key, "330110005")), record, rule


@pytest.mark.parametrize("seed", range(len(CENTRES) * 3))
def test_the_index_finds_what_a_full_scan_finds(seed: int) -> None:
    rng = random.Random(seed)
    centre = CENTRES[seed % len(CENTRES)]
    store, scan, made = _random_store(rng, centre, 300)
    assert {c.case_id for c in store.open_cases()} == set(scan.mergeable)
    template = report("IDX-Q")
    found = 0
    for _ in range(400):
        key, record, rule = _random_query(rng, made, centre, template)
        expected = scan.find_duplicate(key, record, rule)
        assert store.find_duplicate(key, record, rule) == expected, (key, record, rule)
        found += expected is not None
    assert 20 < found < 380  # both answers are exercised


def test_of_equally_old_cases_the_one_stored_first_is_the_duplicate() -> None:
    first = case_of(report("T-1")).model_copy(update={"case_id": "T-1"})
    second = first.model_copy(update={"case_id": "T-2"})
    store = CaseStore()
    store.put(first)
    store.put(second)
    store.put(first.model_copy(update={"state": "accepted"}))  # an update keeps its place
    found = store.find_duplicate("330110005", report("T-3", north_m=10), REFUSE_RULE)
    assert found is not None and found.case_id == "T-1"
    store.stop_merging(first)
    store.put(first)                                           # back, but after T-2
    found = store.find_duplicate("330110005", report("T-3", north_m=10), REFUSE_RULE)
    assert found is not None and found.case_id == "T-2"


def test_a_merged_or_stopped_case_is_found_where_it_now_is() -> None:
    store = CaseStore()
    case = case_of(report("W-1"))
    store.put(case)
    later = report("W-2", minutes=200, north_m=20)
    assert store.find_duplicate("330110005", later, REFUSE_RULE) is None
    store.put(case.model_copy(update={"last_report_at": T0 + timedelta(minutes=150)}))
    assert store.find_duplicate("330110005", later, REFUSE_RULE) is not None
    store.stop_merging(case)
    assert store.find_duplicate("330110005", later, REFUSE_RULE) is None
    assert store.open_cases() == []


@pytest.mark.parametrize(("lat", "lon", "metres"), [
    (LAT, LON, 100), (0.0, 0.0, 5_000), (60.0, 25.0, 1_000), (-70.0, -10.0, 5_000)])
def test_the_search_box_holds_the_whole_circle(lat: float, lon: float, metres: float) -> None:
    span = cell_span(lat, lon, metres)
    assert span is not None
    (x0, y0), (x1, y1) = span
    for step in range(72):
        edge = _moved(lat, lon, metres, step * math.pi / 36)
        # flat steps land close to the circle; push them out to exactly the distance limit
        scale = metres / distance_m(lat, lon, edge.lat, edge.lon)
        point = Location(lat=lat + (edge.lat - lat) * scale, lon=lon + (edge.lon - lon) * scale)
        assert distance_m(lat, lon, point.lat, point.lon) == pytest.approx(metres, rel=1e-3)
        x, y = cell_of(point.lat, point.lon)
        assert x0 <= x <= x1 and y0 <= y <= y1


def test_no_box_at_a_pole_or_across_the_antimeridian() -> None:
    assert cell_span(89.99, 0.0, 5_000) is None
    assert cell_span(10.0, 179.999, 1_000) is None
    assert cell_span(10.0, 179.9, 1_000) is not None
