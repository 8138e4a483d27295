"""Which open case, if any, a new report duplicates (same matter class, near, recent).

Residents report a pile of refuse or a broken manhole many times; dispatching each report
would send a department the same job over and over. Open cases are indexed by partition key
(township), which is also how records are partitioned, so a worker only ever looks at its
own townships, and only at the few open cases there.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from engine.cases.records import CaseRecord
from engine.contracts import Classified
from engine.routing.table import MergeRule

EARTH_RADIUS_M = 6_371_000.0
# How long a closed case's incident ids stay known. A channel re-sending a report later than
# this opens a new case; the intake's own memory of (channel, channel id) is 30 days.
DUPLICATE_MEMORY = timedelta(days=90)
OPEN_STATES = frozenset({"dispatched", "accepted", "reopened"})


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
        self._open: dict[tuple[str, str], dict[str, CaseRecord]] = defaultdict(dict)
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
            open_bucket[case.case_id] = case
        else:
            open_bucket.pop(case.case_id, None)

    def open_cases(self) -> list[CaseRecord]:
        """Cases a new report could still be merged into."""
        return [c for bucket in self._open.values() for c in bucket.values()]

    def stop_merging(self, case: CaseRecord) -> None:
        """No later report may join ``case`` (``simulate``'s retirement); it stays live for
        status updates and timers."""
        self._open[(case.partition_key, case.matter_code[:2])].pop(case.case_id, None)

    def cases(self) -> list[CaseRecord]:
        return [c for bucket in self._by_key.values() for c in bucket.values()]

    def get(self, partition_key: str, case_id: str) -> CaseRecord | None:
        return self._by_key.get(partition_key, {}).get(case_id)

    def find_duplicate(self, partition_key: str, record: Classified,
                       rule: MergeRule) -> CaseRecord | None:
        """The earliest-opened open case this report duplicates."""
        classes = {p[:2] for p in rule.matters if record.matter_code.startswith(p)}
        matches = [c for cls in classes
                   for c in self._open.get((partition_key, cls), {}).values()
                   if is_duplicate(c, record, rule)]
        return min(matches, key=lambda c: c.opened_at) if matches else None

    def __len__(self) -> int:
        return sum(len(b) for b in self._by_key.values())
