"""Where an incident is: the placing step of the rules stage, as a pure function.

Explicit grid code, else coordinates inside a grid (spatial index), else division code,
else address text naming a township or community unambiguously; ``None`` when nothing
places it (triage ``unplaced``), a ``Refusal`` when the report names a code that does not
exist (rejected: it cannot be an incident as it stands).

Every path honours the codes' validity on the day the incident was reported: a retired code
is placed by its declared successor (the note says so), and a code valid on no day near it
(not yet valid, or retired without a successor) is ``Retired``: triage ``code_retired``, for
a person, since guessing would dispatch to a place that no longer exists. A case keeps the
codes it was opened with.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import NamedTuple

from engine.calendar import SHANGHAI
from engine.contracts import IntakeReport, RejectReason, RuleMatch
from engine.reference.jurisdiction import Jurisdiction, Placement
from engine.reference.places import Division, Grid
from engine.rules import RuleSet

Note = Callable[[str], None] | None


# Named tuples, not frozen dataclasses: a frozen dataclass sets each field through
# object.__setattr__, and these are built for every report on the hot path.
class Retired(NamedTuple):
    """The report names a code that is not valid on its day and has no successor then."""

    detail: str


class Refusal(NamedTuple):
    """The report names a code we do not know: it cannot be an incident as it stands."""

    reason: RejectReason
    detail: str


# Records are immutable, so the trace entry for each way of placing is built once.
PLACED = {by: RuleMatch(field="place", rule=by, layer="jurisdiction", why=f"placed by {by}")
          for by in ("grid_code", "coordinates", "division_code", "address")}


def _day(report: IntakeReport) -> date:
    """The report's day where the codes are kept (computed only on the paths that check)."""
    return report.reported_at.astimezone(SHANGHAI).date()


def _in_force(where: Jurisdiction, entry: Division | Grid, day: date, what: str,
              note: Note) -> Division | Grid | Retired:
    if entry.valid_on(day):
        return entry
    current = where.in_force(entry.code, day)
    if current is None:
        return Retired(f"{what} {entry.code} ({entry.name}) is not valid on {day} and has no "
                       "successor in force then")
    if note:
        note(f"place: {what} {entry.code} is not valid on {day}: its successor "
             f"{current.code} ({current.name}) places it")
    return current


def place(ruleset: RuleSet, report: IntakeReport,
          note: Note) -> Placement | Refusal | Retired | None:
    """Where the incident is; None when nothing places it; (reason, detail) to reject;
    ``Retired`` when the code it names was not valid on its day."""
    where = ruleset.jurisdiction
    if report.grid_code:
        grid = where.grids.get(report.grid_code)
        if grid is None:
            return Refusal("unknown_grid_code",
                           f"grid code {report.grid_code} is not in the registry")
        current = _in_force(where, grid, _day(report), "grid code", note)
        if isinstance(current, Retired):
            return current
        if note:
            note(f"place: explicit grid code {current.code} ({current.name})")
        if isinstance(current, Grid):
            return Placement(where.chain_of_grid(current.code), "grid_code", current.code)
        return Placement(where.chain(current.code), "grid_code")
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
        current = _in_force(where, division, _day(report), "division code", note)
        if isinstance(current, Retired):
            return current
        if note:
            note(f"place: explicit division code {current.code} ({current.name})")
        return Placement(where.chain(_division_code(current)), "division_code")
    if report.address:
        division = where.addresses.parse(report.address)
        if division is not None:
            current = _in_force(where, division, _day(report),
                                "the division named by the address", note)
            if isinstance(current, Retired):
                return current
            if note:
                note(f"place: address names {division.name} ({current.code})")
            return Placement(where.chain(_division_code(current)), "address")
        if note:
            note("place: address names no township or community unambiguously")
    if note:
        note("place: nothing placed the incident")
    return None


def _division_code(entry: Division | Grid) -> str:
    """A division's successor is a division; a grid never succeeds one, but stay total."""
    return entry.code if isinstance(entry, Division) else entry.community
