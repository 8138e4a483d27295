"""Which open case, if any, a new report duplicates (same matter class, near, recent).

Residents report a pile of refuse or a broken manhole many times; dispatching each report
would send a department the same job over and over. Open cases are indexed by partition key
(township), which is also how records are partitioned, so a worker only ever looks at its
own townships, and only at the few open cases there.

A busy township still has thousands of open cases of one class, and the duplicate search
runs for every report on the route worker's hot path; so each class's open cases are also
indexed by geo cell and by grid, and only the cases near the report are judged by
``is_duplicate`` (which stays the one judge: the index only narrows, it never decides).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from engine.cases.records import CaseRecord
from engine.contracts import Classified
from engine.routing.table import MergeRule

EARTH_RADIUS_M = 6_371_000.0
# How long a closed case's incident ids stay known. A channel re-sending a report later than
# this opens a new case; the intake's own memory of (channel, channel id) is 30 days.
DUPLICATE_MEMORY = timedelta(days=90)
OPEN_STATES = frozenset({"dispatched", "accepted", "reopened"})
# Side of a geo cell in degrees (~550 m north-south): a 100-200 m merge circle spans 1-4 cells.
CELL_DEG = 0.005
# Widening of the search box over the merge distance: covers rounding in ``distance_m``, so
# the index never misses a case that ``is_duplicate`` would take.
BOX_MARGIN, BOX_SLACK_M = 1.01, 1.0

Cell = tuple[int, int]
_K = TypeVar("_K")


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine); plenty for a few hundred metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def is_duplicate(case: CaseRecord, record: Classified, rule: MergeRule) -> bool:
    # Cheapest test first: most open cases of a class are outside the merge window.
    if abs(record.reported_at - case.last_report_at) > rule.window:
        return False
    if case.state not in OPEN_STATES:
        return False
    if not any(case.matter_code.startswith(p) and record.matter_code.startswith(p)
               for p in rule.matters):
        return False
    here, there = record.report.location, case.location
    if here is not None and there is not None:
        return distance_m(here.lat, here.lon, there.lat, there.lon) <= rule.distance_m
    # Without coordinates on both sides, only the same grid counts as "near".
    return record.grid_code is not None and record.grid_code == case.grid_code


def cell_of(lat: float, lon: float) -> Cell:
    return math.floor(lon / CELL_DEG), math.floor(lat / CELL_DEG)


def cell_span(lat: float, lon: float, distance: float) -> tuple[Cell, Cell] | None:
    """The corner cells of a box holding every point within ``distance`` metres of the point,
    or None when the box reaches a pole or the antimeridian (then every cell may hold one).

    Haversine: a point within angle δ = d/R is within δ of latitude, and its longitude
    difference Δλ has cos φ1 cos φ2 sin²(Δλ/2) <= sin²(δ/2); both latitudes lie in the box,
    so the cos of its most poleward latitude bounds Δλ. ``floor`` is monotonic, so a point
    inside the box is in a cell between the corners.
    """
    delta = (max(distance, 0.0) * BOX_MARGIN + BOX_SLACK_M) / EARTH_RADIUS_M
    dlat = math.degrees(delta)
    south, north = lat - dlat, lat + dlat
    if south <= -90 or north >= 90:
        return None
    reach = math.sin(delta / 2) / math.cos(math.radians(max(-south, north)))
    if reach >= 1:
        return None
    dlon = math.degrees(2 * math.asin(reach))
    west, east = lon - dlon, lon + dlon
    if west < -180 or east > 180:
        return None
    return cell_of(south, west), cell_of(north, east)


class OpenCases:
    """One township's open cases of one matter class, indexed by where they are.

    ``cases`` keeps the order cases joined (an update keeps its place), which breaks ties of
    ``opened_at`` as a plain scan of ``cases`` would. Located cases are in ``_cells``; every
    case with a grid code is in ``_grids`` (a report without coordinates matches by grid even
    a located case).
    """

    __slots__ = ("_cells", "_grids", "_next", "_order", "cases")

    def __init__(self) -> None:
        self.cases: dict[str, CaseRecord] = {}
        self._order: dict[str, int] = {}
        self._next = 0
        self._cells: dict[Cell, dict[str, CaseRecord]] = {}
        self._grids: dict[str, dict[str, CaseRecord]] = {}

    def add(self, case: CaseRecord) -> None:
        old = self.cases.get(case.case_id)
        if old is None:
            self._order[case.case_id] = self._next
            self._next += 1
        else:
            self._unindex(old)
        self.cases[case.case_id] = case
        if case.location is not None:
            self._cells.setdefault(cell_of(case.location.lat, case.location.lon),
                                   {})[case.case_id] = case
        if case.grid_code is not None:
            self._grids.setdefault(case.grid_code, {})[case.case_id] = case

    def discard(self, case_id: str) -> None:
        old = self.cases.pop(case_id, None)
        if old is not None:
            del self._order[case_id]
            self._unindex(old)

    def _unindex(self, case: CaseRecord) -> None:
        if case.location is not None:
            _drop(self._cells, cell_of(case.location.lat, case.location.lon), case.case_id)
        if case.grid_code is not None:
            _drop(self._grids, case.grid_code, case.case_id)

    def candidates(self, record: Classified, distance: float) -> list[CaseRecord]:
        """Every case that could be near the report; ``is_duplicate`` decides."""
        here, grid = record.report.location, record.grid_code
        found: list[CaseRecord] = []
        if here is not None:
            span = cell_span(here.lat, here.lon, distance)
            if span is None:
                found.extend(c for c in self.cases.values() if c.location is not None)
            else:
                (x0, y0), (x1, y1) = span
                if (x1 - x0 + 1) * (y1 - y0 + 1) <= len(self._cells):
                    for x in range(x0, x1 + 1):
                        for y in range(y0, y1 + 1):
                            cell = self._cells.get((x, y))
                            if cell:
                                found.extend(cell.values())
                else:  # a wide circle: fewer occupied cells than cells in the box
                    for (x, y), cell in self._cells.items():
                        if x0 <= x <= x1 and y0 <= y <= y1:
                            found.extend(cell.values())
        same_grid = self._grids.get(grid) if grid is not None else None
        if same_grid:
            found.extend(same_grid.values() if here is None
                         else (c for c in same_grid.values() if c.location is None))
        return found

    def earliest(self, matches: list[CaseRecord]) -> CaseRecord:
        """The earliest opened; of equals, the one that joined first."""
        return min(matches, key=lambda c: (c.opened_at, self._order[c.case_id]))


def _drop(index: dict[_K, dict[str, CaseRecord]], key: _K, case_id: str) -> None:
    members = index.get(key)
    if members is not None:
        members.pop(case_id, None)
        if not members:
            del index[key]


class CaseStore:
    """Live cases by partition key, and which case each known incident went to.

    The route worker keeps one for the partitions it owns and rebuilds it from the ``cases``
    topic at start; closed cases leave the live set, but their incident ids stay known so a
    replayed report is never dispatched twice, for ``DUPLICATE_MEMORY`` after the case
    closed: a worker that ran for years must not hold every incident id it ever saw.
    """

    def __init__(self) -> None:
        self._by_key: dict[str, dict[str, CaseRecord]] = defaultdict(dict)
        # Open cases by (partition key, matter class): duplicate search looks at one class.
        self._open: dict[tuple[str, str], OpenCases] = defaultdict(OpenCases)
        self.case_of_incident: dict[str, str] = {}
        # Live cases by state, kept as cases move: the gauge must not walk the store.
        self.states: Counter[str] = Counter()
        # Closed cases: when they closed and their incidents, to forget them in time.
        self._closed: dict[str, tuple[datetime, tuple[str, ...]]] = {}

    def remember_closed(self, case_id: str, incident_ids: Sequence[str],
                        closed_at: datetime) -> None:
        """A closed case known only by its incidents (a rebuild need not parse it whole)."""
        for incident in incident_ids:
            self.case_of_incident[incident] = case_id
        self._closed[case_id] = (closed_at, tuple(incident_ids))

    def forget_closed(self, before: datetime) -> int:
        """Drop what is kept of cases closed before ``before``; returns how many."""
        old = [case_id for case_id, (closed_at, _) in self._closed.items() if closed_at < before]
        for case_id in old:
            for incident in self._closed.pop(case_id)[1]:
                if self.case_of_incident.get(incident) == case_id:
                    del self.case_of_incident[incident]
        return len(old)

    def put(self, case: CaseRecord) -> None:
        bucket = self._by_key[case.partition_key]
        for incident in case.incident_ids:
            self.case_of_incident[incident] = case.case_id
        old = bucket.get(case.case_id)
        if old is not None:
            self.states[old.state] -= 1
        if case.state == "closed":
            bucket.pop(case.case_id, None)
            self._closed[case.case_id] = (case.updated_at, tuple(case.incident_ids))
        else:
            self._closed.pop(case.case_id, None)
            bucket[case.case_id] = case
            self.states[case.state] += 1
        open_bucket = self._open[(case.partition_key, case.matter_code[:2])]
        if case.state in OPEN_STATES:
            open_bucket.add(case)
        else:
            open_bucket.discard(case.case_id)

    def open_cases(self) -> list[CaseRecord]:
        """Cases a new report could still be merged into."""
        return [c for bucket in self._open.values() for c in bucket.cases.values()]

    def stop_merging(self, case: CaseRecord) -> None:
        """No later report may join ``case`` (``simulate``'s retirement); it stays live for
        status updates and timers."""
        self._open[(case.partition_key, case.matter_code[:2])].discard(case.case_id)

    def cases(self) -> list[CaseRecord]:
        return [c for bucket in self._by_key.values() for c in bucket.values()]

    def get(self, partition_key: str, case_id: str) -> CaseRecord | None:
        return self._by_key.get(partition_key, {}).get(case_id)

    def find_duplicate(self, partition_key: str, record: Classified,
                       rule: MergeRule) -> CaseRecord | None:
        """The earliest-opened open case this report duplicates."""
        classes = {p[:2] for p in rule.matters if record.matter_code.startswith(p)}
        best: list[CaseRecord] = []
        for cls in classes:
            bucket = self._open.get((partition_key, cls))
            if bucket is None:
                continue
            matches = [c for c in bucket.candidates(record, rule.distance_m)
                       if is_duplicate(c, record, rule)]
            if matches:
                best.append(bucket.earliest(matches))
        return min(best, key=lambda c: c.opened_at) if best else None

    def __len__(self) -> int:
        return sum(len(b) for b in self._by_key.values())
