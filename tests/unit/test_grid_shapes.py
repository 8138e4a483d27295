"""Grid polygon checks (``rules check``) and holes in placing, on hand-made grids."""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime
from pathlib import Path

from engine.cli.rules_files import check_every_file
from engine.reference.geo import GridIndex
from engine.reference.grid_shapes import grid_shape_problems, inner_point
from engine.reference.places import Grid
from engine.rules.load import load_rules

RULES = Path(__file__).resolve().parents[2] / "rules"
COMMUNITY = "330110005001"


def square(x0: float, y0: float, side: float = 0.01) -> tuple[tuple[float, float], ...]:
    return ((x0, y0), (x0 + side, y0), (x0 + side, y0 + side), (x0, y0 + side), (x0, y0))


def grid(serial: int, ring: tuple[tuple[float, float], ...], *,
         holes: tuple[tuple[tuple[float, float], ...], ...] = (),
         valid_from: date | None = None, valid_to: date | None = None) -> Grid:
    return Grid(valid_from=valid_from, valid_to=valid_to, code=f"{COMMUNITY}{serial:03d}",
                community=COMMUNITY, name=f"第{serial}网格", ring=ring, holes=holes)


def test_neighbours_sharing_an_edge_are_fine() -> None:
    assert grid_shape_problems([grid(1, square(120.0, 30.0)), grid(2, square(120.01, 30.0))]) == []


def test_grids_in_force_together_must_not_overlap() -> None:
    problems = grid_shape_problems([grid(1, square(120.0, 30.0)),
                                    grid(2, square(120.005, 30.0))])
    assert len(problems) == 1
    assert "330110005001001 and 330110005001002 overlap" in problems[0]


def test_a_retired_grid_may_lie_under_its_successor() -> None:
    old = grid(9, square(120.0, 30.0), valid_to=date(2025, 1, 1))
    new = grid(1, square(120.0, 30.0), valid_from=date(2025, 1, 1))
    assert grid_shape_problems([old, new]) == []


def test_a_grid_inside_another_is_an_overlap_too() -> None:
    problems = grid_shape_problems([grid(1, square(120.0, 30.0, 0.03)),
                                    grid(2, square(120.01, 30.01))])
    assert any("overlap" in p for p in problems)


def test_a_self_crossing_ring_is_refused_with_where() -> None:
    bow_tie = ((120.0, 30.0), (120.01, 30.01), (120.01, 30.0), (120.0, 30.01), (120.0, 30.0))
    problems = grid_shape_problems([grid(1, bow_tie)])
    assert problems and "invalid polygon (Self-intersection" in problems[0]


def ring_around(x0: float, y0: float) -> list[Grid]:
    """Eight squares around a missing ninth in the middle."""
    return [grid(n, square(x0 + 0.01 * i, y0 + 0.01 * j))
            for n, (i, j) in enumerate(((i, j) for j in range(3) for i in range(3)
                                        if (i, j) != (1, 1)), start=1)]


def test_a_gap_inside_a_community_is_named() -> None:
    problems = grid_shape_problems(ring_around(120.0, 30.0))
    assert len(problems) == 1 and f"community {COMMUNITY}: a gap of" in problems[0]
    filled = [*ring_around(120.0, 30.0), grid(9, square(120.01, 30.01))]
    assert grid_shape_problems(filled) == []


def test_a_hole_filled_by_an_enclave_grid_is_respected_in_checks_and_placing() -> None:
    outer = grid(1, square(120.0, 30.0, 0.03), holes=(square(120.01, 30.01),))
    enclave = grid(2, square(120.01, 30.01))
    assert grid_shape_problems([outer, enclave]) == []
    index = GridIndex([(g.code, g.ring, g.holes) for g in (outer, enclave)])
    assert index.containing(120.015, 30.015) == [enclave.code]
    assert index.containing(120.005, 30.005) == [outer.code]
    # An unfilled hole is a gap: a report there belongs to no grid.
    assert any("gap" in p for p in grid_shape_problems([outer]))


def test_inner_point_is_inside_a_concave_grid() -> None:
    ell = ((120.0, 30.0), (120.03, 30.0), (120.03, 30.01), (120.01, 30.01), (120.01, 30.03),
           (120.0, 30.03), (120.0, 30.0))
    lat, lon = inner_point(grid(1, ell))
    assert GridIndex([("g", ell, ())]).containing(lon, lat) == ["g"]


def test_rules_check_reports_an_overlap_in_the_grids_file(tmp_path: Path) -> None:
    shutil.copytree(RULES, tmp_path / "rules")
    path = tmp_path / "rules" / "reference" / "grids.geojson"
    collection = json.loads(path.read_text("utf-8"))
    first, second = collection["features"][1], collection["features"][2]
    second["geometry"] = first["geometry"]  # two grids in force on the same ground
    path.write_text(json.dumps(collection, ensure_ascii=False), "utf-8")
    problems, _ = check_every_file(load_rules(tmp_path / "rules", with_model=False))
    named = [p for p in problems if p.file == str(path)]
    assert len(named) == 1 and first["properties"]["grid_code"] in named[0].message
    assert second["properties"]["grid_code"] in named[0].message


def test_the_shipped_grids_place_every_township_seat_in_its_township() -> None:
    seats = json.loads((RULES.parent / "ops" / "refdata" / "township-seats.json")
                       .read_text("utf-8"))["seats"]
    where = load_rules(RULES, with_model=False).jurisdiction
    when = datetime(2026, 6, 1)
    for seat in seats:
        placement = where.placement_at(seat["lon"], seat["lat"], when)
        township = placement.division_chain[3] if placement else None
        assert township == seat["township_code"], seat["name"]
    assert sum(1 for s in seats if s["township_code"]) == 13  # 径山 has two places
