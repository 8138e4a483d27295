"""The places rules are written against: administrative divisions and the grids inside them.

Kept apart from ``jurisdiction`` (which loads and indexes them) so that the address parser,
which only reads them, does not depend on the loader that builds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

Level = Literal["province", "city", "county", "township", "community"]
LEVEL_DIGITS: dict[Level, int] = {"province": 2, "city": 4, "county": 6, "township": 9,
                                  "community": 12}


@dataclass(frozen=True)
class Validity:
    """Codes are retired and renumbered: an entry holds from ``valid_from`` until ``valid_to``."""

    valid_from: date | None
    valid_to: date | None
    # The code that replaced this one when it was retired: a report still naming the old
    # code is placed by it (``Jurisdiction.in_force``).
    successor: str | None = field(default=None, kw_only=True)

    def valid_on(self, day: date) -> bool:
        return valid_on(self.valid_from, self.valid_to, day)


def valid_on(valid_from: date | None, valid_to: date | None, day: date) -> bool:
    return (valid_from is None or valid_from <= day) and (valid_to is None or day < valid_to)


@dataclass(frozen=True)
class Division(Validity):
    code: str
    name: str
    level: Level
    parent: str | None
    short_name: str | None = None


@dataclass(frozen=True)
class Grid(Validity):
    code: str
    community: str
    name: str
    ring: tuple[tuple[float, float], ...]
    # Rings cut out of it (an enclave belonging to another grid): a point there is not in it.
    holes: tuple[tuple[tuple[float, float], ...], ...] = ()
