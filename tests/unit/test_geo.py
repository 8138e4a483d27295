"""The spatial index's rectangle shortcut answers exactly as ray casting does, edges included."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.reference.geo import GridIndex, _is_rectangle, point_in_ring

coord = st.floats(min_value=119.0, max_value=121.0, allow_nan=False)
size = st.floats(min_value=0.0005, max_value=0.02, allow_nan=False)


@given(coord, coord, size, size, st.sampled_from(["west", "east", "south", "north", "inside",
                                                  "corner", "outside"]),
       st.floats(min_value=0, max_value=1), st.booleans())
def test_rectangles_agree_with_ray_casting(x0: float, y0: float, w: float, h: float,
                                           where: str, t: float, clockwise: bool) -> None:
    x1, y1 = x0 + w, y0 + h
    ring = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
    if clockwise:
        ring = ring[::-1]
    lon, lat = {"west": (x0, y0 + t * h), "east": (x1, y0 + t * h),
                "south": (x0 + t * w, y0), "north": (x0 + t * w, y1),
                "inside": (x0 + t * w, y0 + t * h), "corner": (x1, y1),
                "outside": (x1 + w * t + 1e-9, y0)}[where]
    index = GridIndex([("g", ring, ())])
    assert (index.containing(lon, lat) == ["g"]) == point_in_ring(lon, lat, ring)


def test_only_axis_aligned_four_corner_rings_are_rectangles() -> None:
    assert _is_rectangle([(0, 0), (1, 0), (1, 1), (0, 1)])
    assert not _is_rectangle([(0, 0), (1, 0), (1.5, 1), (0, 1), (0, 0)])
    assert not _is_rectangle([(0, 0), (1, 0), (0, 1), (0, 0)])
