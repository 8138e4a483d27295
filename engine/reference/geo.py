"""A spatial index of grid polygons: which grid contains this point?

A uniform bucket grid over the territory, each bucket listing the polygons whose bounding
box touches it, then an exact ray-casting test. Grids are small and tile the territory, so a
bucket holds a handful of candidates and a lookup costs the same for a county or a province
(measured in ``tests/bench``). A general R-tree (shapely's STRtree) costs more per single
point query from Python than this whole lookup, and would add a native dependency.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Generic, TypeVar

Ring = Sequence[tuple[float, float]]
P = TypeVar("P")


def point_in_ring(lon: float, lat: float, ring: Ring) -> bool:
    """Even-odd ray casting; a point on a shared west or south edge belongs to one side only."""
    inside = False
    x1, y1 = ring[-1]
    for x2, y2 in ring:
        if (y1 > lat) != (y2 > lat) and lon < (x2 - x1) * (lat - y1) / (y2 - y1) + x1:
            inside = not inside
        x1, y1 = x2, y2
    return inside


class GridIndex(Generic[P]):
    """Polygons (outer ring, holes), each with what a lookup should answer for it (a code,
    or the grid itself)."""

    def __init__(self, polygons: Sequence[tuple[P, Ring, Sequence[Ring]]]):
        self._payloads = [payload for payload, _, _ in polygons]
        self._rings = [ring for _, ring, _ in polygons]
        self._holes = [tuple(holes) for _, _, holes in polygons]
        self._boxes = [(min(x for x, _ in r), min(y for _, y in r),
                        max(x for x, _ in r), max(y for _, y in r)) for r in self._rings]
        self._buckets: dict[int, list[int]] = defaultdict(list)
        self._entries: dict[int, tuple[_Entry[P], ...]] = {}
        if not polygons:
            self._cell = 1.0
            return
        # Bucket side: the median polygon's side; a point's bucket then holds few candidates
        # (measured: half the lookup time of a bucket twice as wide, at 300k grids).
        sides = sorted(max(b[2] - b[0], b[3] - b[1]) for b in self._boxes)
        self._cell = max(sides[len(sides) // 2], 1e-6)
        for i, (x0, y0, x1, y1) in enumerate(self._boxes):
            for bx in range(self._key(x0), self._key(x1) + 1):
                for by in range(self._key(y0), self._key(y1) + 1):
                    self._buckets[_bucket(bx, by)].append(i)
        # What a lookup reads, packed per bucket: one tuple per candidate, and whether its
        # ring is an axis-aligned rectangle (the box test is then the whole answer).
        self._entries = {key: tuple((*self._boxes[i], self._payloads[i], self._rings[i],
                                     self._holes[i],
                                     _is_rectangle(self._rings[i]) and not self._holes[i])
                                    for i in members)
                         for key, members in self._buckets.items()}

    def _key(self, value: float) -> int:
        return math.floor(value / self._cell)

    def containing(self, lon: float, lat: float) -> list[P]:
        """What was given for each polygon that contains the point (normally one: grids tile)."""
        cell = self._cell
        found: list[P] = []
        floor = math.floor
        for x0, y0, x1, y1, payload, ring, holes, rectangle in self._entries.get(
                (floor(lon / cell) << 32) ^ floor(lat / cell), ()):  # _bucket, inlined
            # A rectangle needs no ray casting: its west and south edges are inside, as
            # point_in_ring decides for them.
            if rectangle:
                if x0 <= lon < x1 and y0 <= lat < y1:
                    found.append(payload)
            elif x0 <= lon <= x1 and y0 <= lat <= y1 and point_in_ring(lon, lat, ring) \
                    and not (holes and any(point_in_ring(lon, lat, h) for h in holes)):
                found.append(payload)
        return found


def _bucket(bx: int, by: int) -> int:
    """One int per bucket: cheaper to hash than a pair, and distinct for every pair here.

    Bucket numbers stay within ±2**31 (180° over a cell of at least 1e-6°), so ``by``'s
    low 32 bits and bit 31 give it back, and the rest gives ``bx``.
    """
    return (bx << 32) ^ by


_Entry = tuple[float, float, float, float, P, Ring, tuple[Ring, ...], bool]


def _is_rectangle(ring: Ring) -> bool:
    """An axis-aligned rectangle: four corners (the closing point repeated or not)."""
    points = list(ring[:-1]) if len(ring) > 1 and ring[0] == ring[-1] else list(ring)
    if len(points) != 4:
        return False
    xs, ys = {x for x, _ in points}, {y for _, y in points}
    return len(xs) == 2 and len(ys) == 2 and len(set(points)) == 4
