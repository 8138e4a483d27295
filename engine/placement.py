"""Where an incident is: the placing step of the rules stage, as a pure function.

Explicit grid code, else coordinates inside a grid (spatial index), else division code,
else address text naming a township or community unambiguously; ``None`` when nothing
places it (triage ``unplaced``), a ``Refusal`` when the report names a code that does not
exist (rejected: it cannot be an incident as it stands).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from engine.contracts import IntakeReport, RejectReason, RuleMatch
from engine.reference.jurisdiction import Placement
from engine.rules import RuleSet

Note = Callable[[str], None] | None


# Named tuples, not frozen dataclasses: a frozen dataclass sets each field through
# object.__setattr__, and these are built for every report on the hot path.
class Refusal(NamedTuple):
    """The report names a code we do not know: it cannot be an incident as it stands."""

    reason: RejectReason
    detail: str


# Records are immutable, so the trace entry for each way of placing is built once.
PLACED = {by: RuleMatch(field="place", rule=by, layer="jurisdiction", why=f"placed by {by}")
          for by in ("grid_code", "coordinates", "division_code", "address")}


def place(ruleset: RuleSet, report: IntakeReport,
          note: Note) -> Placement | Refusal | None:
    """Where the incident is; None when nothing places it; (reason, detail) to reject."""
    where = ruleset.jurisdiction
    if report.grid_code:
        grid = where.grids.get(report.grid_code)
        if grid is None:
            return Refusal("unknown_grid_code",
                           f"grid code {report.grid_code} is not in the registry")
        if note:
            note(f"place: explicit grid code {grid.code} ({grid.name})")
        return Placement(where.chain_of_grid(grid.code), "grid_code", grid.code)
    location = report.location
    if location is not None:
        placement = where.placement_at(location.lon, location.lat, report.reported_at)
        if placement is not None:
            if note:
                grid = where.grids[placement.grid_code or ""]
                note(f"place: coordinates {location.lat},{location.lon} lie in grid "
                     f"{grid.code} ({grid.name})")
            return placement
        if note:
            note("place: coordinates lie in no grid of this jurisdiction")
    if report.division_code:
        division = where.division_for(report.division_code)
        if division is None:
            return Refusal("unknown_division_code",
                           f"division code {report.division_code} is not in the registry")
        if note:
            note(f"place: explicit division code {division.code} ({division.name})")
        return Placement(where.chain(division.code), "division_code")
    if report.address:
        division = where.addresses.parse(report.address)
        if division is not None:
            if note:
                note(f"place: address names {division.name} ({division.code})")
            return Placement(where.chain(division.code), "address")
        if note:
            note("place: address names no township or community unambiguously")
    if note:
        note("place: nothing placed the incident")
    return None
