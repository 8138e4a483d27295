"""Checks of the grid polygons that placing a point relies on (``rules check``).

Placing a point answers the first grid that contains it, so two grids in force on the same
day that overlap make the answer depend on file order, and a gap inside a community sends
reports made there to triage as "outside every grid". A self-crossing ring makes ray
casting answer nonsense. These are geometric questions, answered with shapely; they run in
``rules check`` (and CI), not each time a worker loads its rules.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date

import shapely
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from engine.reference.places import Grid

# Coordinates carry 6 decimals (about 0.1 m): a shape thinner than 2e-6 degrees (its area
# over half its perimeter) is rounding along a shared edge, not territory.
THINNEST = 2e-6
SQUARE_METRES = 1.07e10  # per square degree, near 30°N


def polygon(grid: Grid) -> Polygon:
    return Polygon(grid.ring, grid.holes)


def inner_point(grid: Grid) -> tuple[float, float]:
    """(lat, lon) of a point surely inside the grid: its centroid, or where the centroid of
    a concave grid falls outside, a point shapely finds inside (for demos and tests)."""
    shape = polygon(grid)
    point = shape.centroid if shape.contains(shape.centroid) else shape.representative_point()
    return round(point.y, 6), round(point.x, 6)


def grid_shape_problems(grids: Sequence[Grid]) -> list[str]:
    """What is wrong with the shapes, one sentence each, naming the grid codes."""
    problems: list[str] = []
    shapes = {g.code: polygon(g) for g in grids}
    for code, shape in shapes.items():
        if not shape.is_valid:
            problems.append(f"grid {code}: invalid polygon ({explain_validity(shape)})")
    valid = [g for g in grids if shapes[g.code].is_valid]
    problems += _overlaps(valid, shapes)
    by_community: dict[str, list[Polygon]] = defaultdict(list)
    for grid in valid:
        if grid.valid_to is None:
            by_community[grid.community].append(shapes[grid.code])
    for community, members in sorted(by_community.items()):
        problems += [f"community {community}: a gap of {hole.area * SQUARE_METRES:.0f} m² at "
                     f"{_where(hole)} is inside the community but in none of its grids"
                     for hole in _gaps(members)]
    return problems


def _overlaps(grids: Sequence[Grid], shapes: dict[str, Polygon]) -> list[str]:
    """Pairs of grids that overlap and are in force on a common day (a retired grid and
    its successor may cover the same ground: they are never valid together)."""
    ordered = [shapes[g.code] for g in grids]
    if not ordered:
        return []
    tree = shapely.STRtree(ordered)
    left, right = tree.query(ordered, predicate="intersects")
    problems = []
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        a, b = grids[i], grids[j]
        if i >= j or not _share_a_day(a, b):
            continue
        common = ordered[i].intersection(ordered[j])
        if not _rounding(common):
            problems.append(f"grids {a.code} and {b.code} overlap by "
                            f"{common.area * SQUARE_METRES:.0f} m² at {_where(common)}")
    return problems


def _share_a_day(a: Grid, b: Grid) -> bool:
    start = max(a.valid_from or date.min, b.valid_from or date.min)
    end = min(a.valid_to or date.max, b.valid_to or date.max)
    return start < end


def _gaps(members: list[Polygon]) -> list[Polygon]:
    """Holes of the community's union larger than rounding, as polygons. A grid's own hole
    filled by another grid of the community is no gap; one filled by nothing is."""
    union = shapely.union_all(members)
    holes = [Polygon(interior) for part in getattr(union, "geoms", [union])
             for interior in part.interiors]
    return [hole for hole in holes if not _rounding(hole)]


def _rounding(shape: BaseGeometry) -> bool:
    return bool(shape.area == 0 or shape.area / (shape.length / 2) < THINNEST)


def _where(shape: BaseGeometry) -> str:
    point = shape.representative_point()
    return f"lon {point.x:.6f}, lat {point.y:.6f}"
