"""A naive linear-scan classifier: the baseline the engine's indexes are measured against.

It makes the same decisions as ``engine.classify.classify_data`` for the reports the
benchmark sends (coordinates, description, sometimes a channel category) but without any
index: every grid polygon is tested until one contains the point, every layer's rules are
merged afresh for the report's county, and every merged rule's keywords are tested by
substring search. It shares only the parsed files (the RuleSet's grid, catalogue, channel
and layer objects) with the engine, never its spatial index, automaton or compiled scopes,
so agreement between the two is evidence that the indexes are right, and the speed ratio
says what they buy.

Known simplifications (the benchmark's reports never need them): no explicit grid,
division or matter codes, no address placement, no JSON/contract validation.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, NamedTuple

from engine.rules import RuleSet
from engine.rules.layers import CATALOGUE_WEIGHT, SCOPE_DIGITS


class Decision(NamedTuple):
    """What both classifiers must agree on for one report."""

    kind: str  # "classified", "triage:<reason>" or "rejected:<reason>"
    matter_code: str | None
    grid_code: str | None
    priority: str | None


class _Rule(NamedTuple):
    keywords: tuple[str, ...]
    exclude: tuple[str, ...]
    patterns: tuple[str, ...]
    channels: frozenset[str]
    matter: str
    weight: int
    depth: int
    seq: int  # when the rule was (last) inserted: ties break by depth, then this


class _Priority(NamedTuple):
    keywords: tuple[str, ...]
    matters: tuple[str, ...]
    channels: frozenset[str]
    set: str
    depth: int
    seq: int


def point_in_ring(lon: float, lat: float, ring: Any) -> bool:
    """Even-odd ray casting, written out here so the baseline does not reuse engine code."""
    inside = False
    x1, y1 = ring[-1]
    for x2, y2 in ring:
        if (y1 > lat) != (y2 > lat) and lon < (x2 - x1) * (lat - y1) / (y2 - y1) + x1:
            inside = not inside
        x1, y1 = x2, y2
    return inside


class NaiveClassifier:
    """Linear scans over the parsed rule files; see the module docstring for the scope."""

    def __init__(self, ruleset: RuleSet):
        where = ruleset.jurisdiction
        self.grids = [(g.code, g.ring, g.valid_from, g.valid_to) for g in where.grids.values()]
        self.province = next(c for c, d in where.divisions.items() if d.level == "province")
        self.matters = list(ruleset.matters.by_code.values())
        self.channel_entries = ruleset.channels.entries()
        self.layers = [(la.file.scope, SCOPE_DIGITS[la.file.layer], la.file)
                       for la in ruleset.layers]

    def place(self, lon: float, lat: float, day: date) -> str | None:
        for code, ring, valid_from, valid_to in self.grids:
            if (point_in_ring(lon, lat, ring) and (valid_from is None or valid_from <= day)
                    and (valid_to is None or day < valid_to)):
                return code
        return None

    def effective(self, county: str) -> tuple[list[_Rule], list[_Priority]]:
        """Merge the catalogue and every layer whose scope covers ``county``, by rescanning."""
        seq = 0
        classify: dict[str, _Rule] = {}
        for m in self.matters:
            if m.keywords:
                classify[f"catalogue:{m.code}"] = _Rule(m.keywords, m.exclude, (), frozenset(),
                                                        m.code, CATALOGUE_WEIGHT, 0, seq)
                seq += 1
        priority: dict[str, _Priority] = {}
        for scope, depth, layer in self.layers:
            if not county.startswith(scope):
                continue
            for rule_id in layer.disable:
                classify.pop(rule_id, None)
                priority.pop(rule_id, None)
            for r in layer.classify:
                classify.pop(r.id, None)
                classify[r.id] = _Rule(tuple(r.keywords), tuple(r.exclude), tuple(r.patterns),
                                       frozenset(r.channels), r.matter, r.weight, depth, seq)
                seq += 1
            for p in layer.priority:
                priority.pop(p.id, None)
                priority[p.id] = _Priority(tuple(p.keywords), tuple(p.matters),
                                           frozenset(p.channels), p.set, depth, seq)
                seq += 1
        return list(classify.values()), list(priority.values())

    def classify(self, event: dict[str, Any]) -> Decision:
        text = event["description"].strip()
        channel = event["channel"].strip()
        day = datetime.fromisoformat(event["reported_at"]).date()
        location = event.get("location")
        grid = self.place(location["lon"], location["lat"], day) if location else None
        county = grid[:6].ljust(12, "0") if grid else self.province
        rules, priorities = self.effective(county)

        matter: str | None = None
        category = (event.get("channel_category") or "").strip()
        if category:
            for name, _, mapping in self.channel_entries:
                if name == channel and mapping.category == category:
                    matter = mapping.matter
                    break
        if matter is None:
            best: tuple[tuple[int, int, int, int], str] | None = None
            for r in rules:
                hit = [w for w in r.keywords if w in text]
                if not hit:
                    continue
                if r.channels and channel not in r.channels:
                    continue
                if any(e in text for e in r.exclude):
                    continue
                if not all(re.search(p, text) for p in r.patterns):
                    continue
                rank = (-r.weight, -max(map(len, hit)), -r.depth, r.seq)
                if best is None or rank < best[0]:
                    best = (rank, r.matter)
            matter = best[1] if best else None
        if matter is None:
            return Decision("triage:unclassified", None, grid, None)
        if grid is None:
            return Decision("triage:unplaced", matter, None, None)
        level: str = next(m.priority for m in self.matters if m.code == matter)
        for p in sorted(priorities, key=lambda p: (-p.depth, p.seq)):
            if p.keywords and not any(w in text for w in p.keywords):
                continue
            if p.matters and not any(matter.startswith(x) for x in p.matters):
                continue
            if p.channels and channel not in p.channels:
                continue
            level = p.set
            break
        return Decision("classified", matter, grid, level)
