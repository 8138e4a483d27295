"""Township shapes from their seats, and communities and grids that tile them.

Why this way
------------
Without surveyed boundaries, the best estimate of "which township is this point in" that a
list of seats gives is "the township whose seat is nearest": a Voronoi diagram. Seats
outside the county take part too, so the county's outline is where its seats stop being
the nearest ones, and a point in 西湖区 or 德清县 is placed in no grid at all.

Communities and grids have no public shapes: each township is cut into as many compact
pieces as it has communities, and each community into its grids, again by Voronoi cells
of well-spread points (a few rounds of k-means over a lattice inside the shape). The
pieces tile their parent exactly: no overlaps, no gaps, each a single polygon, which
``rules check`` verifies on the output.

Deterministic: the same seats give byte-identical output (no randomness, fixed rounds).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry import MultiPoint, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

# Where the county is looked for: a box just around Yuhang (degrees), which its west and
# north reach where GeoNames has no seat beyond (安吉县).
CLIP = box(119.66, 30.15, 120.25, 30.58)
# Coordinates are written with 6 decimals (about 0.1 m).
GRID_SIZE = 1e-6


def township_shapes(seats: Sequence[dict[str, object]]) -> dict[str, Polygon]:
    """Township code -> its shape: the union of the Voronoi cells of its seats."""
    points = [Point(float(s["lon"]), float(s["lat"])) for s in seats]  # type: ignore[arg-type]
    cells = shapely.voronoi_polygons(MultiPoint(points), extend_to=CLIP, ordered=True)
    by_township: dict[str, list[BaseGeometry]] = {}
    for seat, cell in zip(seats, cells.geoms, strict=True):
        code = seat.get("township_code")
        if code:
            by_township.setdefault(str(code), []).append(
                cell.intersection(CLIP, grid_size=GRID_SIZE))
    shapes = {}
    for code, parts in sorted(by_township.items()):
        shape = _snapped(shapely.union_all(parts, grid_size=GRID_SIZE))
        if not isinstance(shape, Polygon):
            raise SystemExit(f"township {code}: its seats' cells do not touch: {shape.geom_type}")
        shapes[code] = shape
    return shapes


def tile(shape: Polygon, n: int) -> list[Polygon]:
    """n single polygons that cover ``shape`` exactly, ordered from the north-west."""
    if n == 1:
        return [shape]
    sites = _spread_points(shape, n)
    cells = shapely.voronoi_polygons(MultiPoint(sites), extend_to=shape.envelope.buffer(0.01),
                                     ordered=True)
    pieces: list[BaseGeometry] = [_snapped(cell.intersection(shape, grid_size=GRID_SIZE))
                                   for cell in cells.geoms]
    pieces = _merge_stray_parts(pieces)
    pieces.sort(key=lambda p: (-round(p.representative_point().y, 3),
                               round(p.representative_point().x, 3)))
    return [p for p in pieces if isinstance(p, Polygon)]


def coverage(pieces: Sequence[Polygon]) -> list[Polygon]:
    """The same pieces, made to share their edges exactly.

    Pieces cut and snapped one by one meet along edges computed twice, a few square metres
    apart. Noding every edge once and rebuilding each piece from the faces between them
    leaves no overlap and no gap: a face goes to the piece that covers most of it (a sliver
    in no piece, to the one it shares the longest edge with).
    """
    lines = shapely.union_all([p.boundary for p in pieces])
    faces = list(shapely.polygonize(getattr(lines, "geoms", [lines])).geoms)
    tree = shapely.STRtree(list(pieces))
    owned: list[list[Polygon]] = [[] for _ in pieces]
    for face in faces:
        candidates = tree.query(face, predicate="intersects").tolist()
        scores = [(pieces[i].intersection(face).area, i) for i in candidates]
        area, best = max(scores)
        if area < face.area / 2:  # a sliver between pieces, in none of them
            best = max(candidates,
                       key=lambda i: pieces[i].boundary.intersection(face.boundary).length)
        owned[best].append(face)
    rebuilt = []
    for number, faces_of in enumerate(owned):
        shape = shapely.union_all(faces_of)
        if not isinstance(shape, Polygon):
            raise SystemExit(f"piece {number} falls apart when noded: {shape.geom_type}")
        rebuilt.append(shape)
    return rebuilt


def _spread_points(shape: Polygon, n: int) -> list[Point]:
    """n points inside ``shape``, spread over it: k-means over a lattice of inside points,
    each centre then moved to the nearest lattice point (so it stays inside a concave shape)."""
    x0, y0, x1, y1 = shape.bounds
    side = max(x1 - x0, y1 - y0) / max(12.0, 6.0 * np.sqrt(n))
    xs, ys = np.meshgrid(np.arange(x0 + side / 2, x1, side), np.arange(y0 + side / 2, y1, side))
    lattice = np.column_stack([xs.ravel(), ys.ravel()])
    inside = lattice[shapely.contains_xy(shape, lattice[:, 0], lattice[:, 1])]
    if len(inside) < n:
        raise SystemExit(f"shape too small for {n} pieces at this lattice")
    # Start from points spread along the lattice order (row by row), then 25 Lloyd rounds.
    centres = inside[np.linspace(0, len(inside) - 1, n).astype(int)]
    for _ in range(25):
        nearest = np.argmin(((inside[:, None, :] - centres[None, :, :]) ** 2).sum(-1), axis=1)
        centres = np.array([inside[nearest == k].mean(axis=0) if (nearest == k).any()
                            else centres[k] for k in range(n)])
    snapped = [inside[np.argmin(((inside - c) ** 2).sum(-1))] for c in centres]
    return [Point(float(x), float(y)) for x, y in snapped]


def _merge_stray_parts(pieces: list[BaseGeometry]) -> list[BaseGeometry]:
    """A Voronoi cell cut by a concave shape can fall apart: keep each piece's largest part
    and give every other part to the neighbour it shares the longest edge with."""
    for _ in range(len(pieces) * 4):
        multi = next((i for i, p in enumerate(pieces) if not isinstance(p, Polygon)), None)
        if multi is None:
            return pieces
        parts = sorted(_polygons(pieces[multi]), key=lambda g: g.area, reverse=True)
        pieces[multi] = parts[0]
        for part in parts[1:]:
            shared = [(pieces[j].boundary.intersection(part.boundary).length, j)
                      for j in range(len(pieces)) if j != multi]
            length, j = max(shared)
            if length == 0:
                raise SystemExit("a stray part touches no other piece")
            pieces[j] = _snapped(shapely.union_all([pieces[j], part], grid_size=GRID_SIZE))
    raise SystemExit("pieces did not settle into single polygons")


def _polygons(geometry: BaseGeometry) -> list[Polygon]:
    if isinstance(geometry, Polygon):
        return [geometry]
    return [g for g in getattr(geometry, "geoms", []) if isinstance(g, Polygon) and g.area > 0]


def _snapped(geometry: BaseGeometry) -> BaseGeometry:
    """Snap to the 6-decimal grid the file is written in, so that neighbours written from
    the same computation share their vertices exactly."""
    snapped = shapely.set_precision(geometry, GRID_SIZE)
    polygons = _polygons(snapped)
    return polygons[0] if len(polygons) == 1 else shapely.union_all(polygons,
                                                                       grid_size=GRID_SIZE)


def ring(polygon: Polygon) -> list[list[float]]:
    """The exterior, counter-clockwise, closed, 6 decimals (GeoJSON's right-hand rule)."""
    # Rounding vertices one by one can cross two close edges; GEOS's precision reducer
    # snaps to the same grid and keeps the polygon valid.
    snapped = shapely.set_precision(polygon, GRID_SIZE)
    if not isinstance(snapped, Polygon):
        raise SystemExit(f"a piece falls apart at 6 decimals: {snapped.geom_type}")
    oriented = shapely.geometry.polygon.orient(snapped, sign=1.0)
    return [[round(x, 6), round(y, 6)] for x, y in oriented.exterior.coords]
