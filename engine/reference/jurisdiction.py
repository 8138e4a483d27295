"""Jurisdiction: administrative divisions and grids (一格一码), and how to place a point in them.

Division codes are China's 12-digit statistical codes (province 2, city 2, county 2,
township 3, community 3); a grid code is its community's code plus a 3-digit serial. Codes
are retired and renumbered over time, so every entry carries ``valid_from`` / ``valid_to``
and lookups take the instant the incident was reported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from engine.reference.address import AddressParser
from engine.reference.geo import GridIndex
from engine.reference.places import LEVEL_DIGITS, Division, Grid, Level, valid_on
from engine.yamlfile import FileProblem, FileProblems, load_yaml, validate


class _Dated(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^\d{12}$")
    name: str = Field(min_length=1)
    valid_from: date | None = None
    valid_to: date | None = None
    successor: str | None = Field(default=None, pattern=r"^\d{12}$",
                                  description="the code that replaced this one at valid_to")


class CommunityFile(_Dated):
    short_name: str | None = None


class TownshipFile(_Dated):
    communities: list[CommunityFile] = Field(default_factory=list)


class CountyFile(_Dated):
    townships: list[TownshipFile] = Field(default_factory=list)


class CityFile(_Dated):
    counties: list[CountyFile] = Field(default_factory=list)


class DivisionsFile(BaseModel):
    """Either one county (``city`` + ``county`` + ``townships``) or a tree (``cities``)."""

    model_config = ConfigDict(extra="forbid")

    source: dict[str, Any] | None = None
    province: _Dated
    city: _Dated | None = None
    county: _Dated | None = None
    townships: list[TownshipFile] = Field(default_factory=list)
    cities: list[CityFile] = Field(default_factory=list)


PlacedBy = Literal["grid_code", "coordinates", "division_code", "address"]


class Placement(NamedTuple):
    """Where an incident is: the jurisdiction chain (province → community) and the grid."""

    division_chain: tuple[str, ...]
    placed_by: PlacedBy
    grid_code: str | None = None


class Jurisdiction:
    """Divisions and grids of the territory the rules cover, with a spatial index of grids."""

    def __init__(self, divisions: list[Division], grids: list[Grid]):
        self.divisions = {d.code: d for d in divisions}
        self.grids = {g.code: g for g in grids}
        self.addresses = AddressParser(divisions)
        self._chains: dict[str, tuple[str, ...]] = {}
        # The index answers with what placing a point needs and nothing more (the validity
        # dates and the placement itself, built once per grid), so a lookup never touches
        # the Grid record: at 30,000 grids and more it would be cold in the caches.
        self.index = GridIndex([((g.valid_from, g.valid_to,
                                  Placement(self.chain(g.community), "coordinates", g.code)),
                                 g.ring, g.holes) for g in grids])

    def chain(self, code: str) -> tuple[str, ...]:
        """Codes from the province down to ``code`` (a 12-digit division code).

        Chains never change while a rule set serves, so each is walked once.
        """
        cached = self._chains.get(code)
        if cached is None:
            out: list[str] = []
            current: str | None = code
            while current is not None:
                out.append(current)
                current = self.divisions[current].parent
            cached = self._chains[code] = tuple(out[::-1])
        return cached

    def chain_of_grid(self, grid_code: str) -> tuple[str, ...]:
        return self.chain(self.grids[grid_code].community)

    def in_force(self, code: str, day: date) -> Division | Grid | None:
        """The division or grid ``code`` stands for on ``day``: itself while valid, else
        the successor it was retired into (followed as far as it goes); None when neither
        is valid that day (a code not yet valid, or retired without a successor)."""
        entry: Division | Grid | None = self.grids.get(code) or self.division_for(code)
        for _ in range(8):
            if entry is None or entry.valid_on(day) or entry.successor is None:
                break
            entry = self.grids.get(entry.successor) or self.divisions.get(entry.successor)
        return entry if entry is not None and entry.valid_on(day) else None

    def division_for(self, code: str) -> Division | None:
        """A division by any of its code forms: 6, 9 or 12 digits (padded with zeros)."""
        return self.divisions.get(code.ljust(12, "0"))

    def grid_at(self, lon: float, lat: float, when: datetime) -> Grid | None:
        placement = self.placement_at(lon, lat, when)
        return self.grids[placement.grid_code or ""] if placement is not None else None

    def placement_at(self, lon: float, lat: float, when: datetime) -> Placement | None:
        """The placement of a point inside a grid valid at ``when``, if any."""
        day = when.date()
        for valid_from, valid_to, placement in self.index.containing(lon, lat):
            if valid_on(valid_from, valid_to, day):
                return placement
        return None

    @classmethod
    def load(cls, divisions_path: Path, grids_path: Path) -> Jurisdiction:
        doc = load_yaml(divisions_path)
        parsed = validate(doc, DivisionsFile)
        divisions: list[Division] = []

        def add(entry: _Dated, level: Level, parent: str | None) -> None:
            short = entry.short_name if isinstance(entry, CommunityFile) else None
            divisions.append(Division(valid_from=entry.valid_from, valid_to=entry.valid_to,
                                      code=entry.code, name=entry.name, level=level,
                                      parent=parent, short_name=short,
                                      successor=entry.successor))

        def add_townships(townships: list[TownshipFile], county: str) -> None:
            for township in townships:
                add(township, "township", county)
                for community in township.communities:
                    add(community, "community", township.code)

        add(parsed.province, "province", None)
        if parsed.city and parsed.county:
            add(parsed.city, "city", parsed.province.code)
            add(parsed.county, "county", parsed.city.code)
            add_townships(parsed.townships, parsed.county.code)
        for city in parsed.cities:
            add(city, "city", parsed.province.code)
            for county in city.counties:
                add(county, "county", city.code)
                add_townships(county.townships, county.code)
        problems = _code_problems(divisions, str(divisions_path))
        grids = _load_grids(grids_path, {d.code for d in divisions if d.level == "community"},
                            problems)
        problems += _succession_problems(divisions, str(divisions_path))
        problems += _succession_problems(grids, str(grids_path))
        if problems:
            raise FileProblems(problems)
        return cls(divisions, grids)


def _code_problems(divisions: list[Division], file: str) -> list[FileProblem]:
    problems: list[FileProblem] = []
    levels: dict[str, Level] = {}
    for division in divisions:
        digits = LEVEL_DIGITS[division.level]
        if division.code[digits:] != "0" * (12 - digits):
            problems.append(FileProblem(file, 0, f"{division.level} {division.code} "
                                                 f"({division.name}) must end in "
                                                 f"{12 - digits} zeros"))
        if division.parent is not None:
            parent_digits = LEVEL_DIGITS[levels.get(division.parent, "province")]
            if not division.code.startswith(division.parent[:parent_digits]):
                problems.append(FileProblem(file, 0, f"{division.code} ({division.name}) does "
                                                     "not start with its parent's code "
                                                     f"{division.parent}"))
        if division.code in levels:
            problems.append(FileProblem(file, 0, f"division code {division.code} appears twice"))
        levels[division.code] = division.level
    return problems


def _succession_problems(entries: Sequence[Division | Grid], file: str) -> list[FileProblem]:
    """Validity must make sense on its own (begin before it ends) and within the parent's
    (a community cannot be valid while its township is not); a retired code's successor must
    exist and be valid on the day it takes over; no chain of successors may loop."""
    by_code = {e.code: e for e in entries}
    problems = []
    for entry in entries:
        if entry.valid_from and entry.valid_to and entry.valid_to <= entry.valid_from:
            problems.append(FileProblem(file, 0, f"{entry.code} ({entry.name}) ends "
                                                 f"({entry.valid_to}) before it begins "
                                                 f"({entry.valid_from})"))
        parent = by_code.get(entry.parent) \
            if isinstance(entry, Division) and entry.parent else None
        if parent is not None and _outlives(entry, parent):
            problems.append(FileProblem(file, 0, f"{entry.code} ({entry.name}) is valid on days "
                                                 f"its parent {parent.code} is not"))
        if entry.successor is None:
            continue
        successor = by_code.get(entry.successor)
        if successor is None:
            problems.append(FileProblem(file, 0, f"{entry.code} ({entry.name}): successor "
                                                 f"{entry.successor} does not exist"))
            continue
        if entry.valid_to is None:
            problems.append(FileProblem(file, 0, f"{entry.code} ({entry.name}) names a "
                                                 "successor but no valid_to: when was it "
                                                 "retired?"))
        elif not successor.valid_on(entry.valid_to):
            problems.append(FileProblem(
                file, 0, f"{entry.code} ({entry.name}) retires on {entry.valid_to} into "
                         f"{successor.code}, which is not valid on that day"))
        seen = {entry.code}
        following: Division | Grid | None = successor
        while following is not None and following.successor is not None:
            if following.successor in seen:
                problems.append(FileProblem(file, 0, f"successors of {entry.code} loop"))
                break
            seen.add(following.successor)
            following = by_code.get(following.successor)
    return problems


def _outlives(child: Division | Grid, parent: Division | Grid) -> bool:
    early = parent.valid_from is not None and (child.valid_from is None
                                               or child.valid_from < parent.valid_from)
    late = parent.valid_to is not None and (child.valid_to is None
                                            or child.valid_to > parent.valid_to)
    return early or late


def _load_grids(path: Path, communities: set[str], problems: list[FileProblem]) -> list[Grid]:
    try:
        collection = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(FileProblem(str(path), 0, f"cannot read GeoJSON: {exc}"))
        return []
    grids = []
    for number, feature in enumerate(collection.get("features", []), start=1):
        props = feature.get("properties", {})
        code = str(props.get("grid_code", ""))
        where = f"feature {number} ({code or 'no grid_code'})"
        geometry = feature.get("geometry") or {}
        if len(code) != 15 or not code.isdigit():
            problems.append(FileProblem(str(path), 0, f"{where}: grid_code must be 15 digits"))
            continue
        if code[:12] not in communities:
            problems.append(FileProblem(str(path), 0, f"{where}: community {code[:12]} is not "
                                                      "in divisions.yaml"))
            continue
        if geometry.get("type") != "Polygon" or not geometry.get("coordinates"):
            problems.append(FileProblem(str(path), 0, f"{where}: geometry must be a Polygon"))
            continue
        ring, *holes = (tuple((float(x), float(y)) for x, y in r)
                        for r in geometry["coordinates"])
        successor = str(props["successor"]) if props.get("successor") else None
        grids.append(Grid(valid_from=_date(props.get("valid_from")),
                          valid_to=_date(props.get("valid_to")), code=code, community=code[:12],
                          name=str(props.get("name", code)), ring=ring, holes=tuple(holes),
                          successor=successor))
    return grids


def _date(value: object) -> date | None:
    return _parsed_date(str(value)) if value else None


@lru_cache(maxsize=1024)
def _parsed_date(text: str) -> date:
    """One object per distinct date: most grids share their valid_from, and placing a point
    compares it, so one object stays warm in the caches instead of one per grid."""
    return date.fromisoformat(text)
