"""The dispatch benchmark's reports: seeded, realistic Yuhang intake reports, and what
the engine will make of them (decided by the engine's own classify)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from engine.classify import classify_data
from engine.contracts import incident_id
from engine.rules import RuleSet

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules"
CHANNELS = ("hotline", "gridapp", "open311", "sensor")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林"
OPENINGS = ("", "您好，", "反映一下，", "麻烦处理：", "我要投诉，", "请相关部门看看，")
PLACES = ("小区门口", "菜场旁边", "路口", "公交站附近", "学校对面", "河边步道", "单元楼下")
ENDINGS = ("", "，已经好几天了", "，希望尽快处理", "，谢谢", "，影响很大")


@dataclass(frozen=True)
class ReportSet:
    """Seeded intake reports (dicts without ``reported_at``: it is stamped when sent)."""

    reports: list[dict[str, Any]]
    expected_assigned: int  # Classified by the engine: each ends assigned or merged
    outcomes: dict[str, int]


def _grid_boxes() -> list[tuple[float, float, float, float]]:
    """Bounding boxes of the county's current grids (lon/lat min, max)."""
    data = json.loads((RULES / "reference" / "grids.geojson").read_text("utf-8"))
    boxes = []
    for feature in data["features"]:
        if feature["properties"].get("valid_to"):
            continue
        geometry = feature["geometry"]
        rings = (geometry["coordinates"] if geometry["type"] == "Polygon"
                 else [poly[0] for poly in geometry["coordinates"]])
        points = [p for ring in rings for p in ring]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        boxes.append((min(xs), min(ys), max(xs), max(ys)))
    return boxes


def _keywords() -> list[str]:
    data = yaml.safe_load((RULES / "reference" / "matters.yaml").read_text("utf-8"))
    return [kw for cls in data["classes"] for sub in cls["subclasses"] for item in sub["items"]
            for kw in item.get("keywords") or []]


def make_reports(count: int, seed: int, tag: str) -> list[dict[str, Any]]:
    """``count`` realistic reports: a point inside a random grid of the county (the inner
    80 % of its box, so points spread and duplicate-merging stays rare), a Chinese
    description around one catalogue keyword, a channel and often a reporter."""
    rng = random.Random(seed)
    boxes, keywords = _grid_boxes(), _keywords()
    reports = []
    for n in range(count):
        x0, y0, x1, y1 = rng.choice(boxes)
        dx, dy = (x1 - x0) * 0.1, (y1 - y0) * 0.1
        channel = rng.choices(CHANNELS, weights=(40, 30, 20, 10))[0]
        description = (rng.choice(OPENINGS) + rng.choice(PLACES) + rng.choice(keywords)
                       + rng.choice(ENDINGS))
        report: dict[str, Any] = {
            "channel": channel, "channel_id": f"{tag}-{seed}-{n:06d}",
            "description": description,
            "location": {"lon": round(rng.uniform(x0 + dx, x1 - dx), 6),
                         "lat": round(rng.uniform(y0 + dy, y1 - dy), 6)},
        }
        if channel != "sensor" and rng.random() < 0.7:
            report["reporter"] = {"name": rng.choice(SURNAMES) + "先生",
                                  "phone": f"138{rng.randrange(10**8):08d}"}
        reports.append(report)
    return reports


def expected_outcomes(ruleset: RuleSet, reports: list[dict[str, Any]]) -> ReportSet:
    """What the engine will make of the reports, decided by the engine's own function."""
    now = datetime.now(UTC)
    outcomes: dict[str, int] = {}
    for report in reports:
        outcome = classify_data(ruleset, {**report, "reported_at": now.isoformat()}, now)
        name = type(outcome).__name__.lower()
        outcomes[name] = outcomes.get(name, 0) + 1
    return ReportSet(reports, outcomes.get("classified", 0), outcomes)


def encode(report: dict[str, Any], reported_at: datetime) -> tuple[bytes, bytes]:
    """(key, value) of the intake record: key = incident id, as the connectors write it."""
    key = incident_id(report["channel"], report["channel_id"]).encode()
    value = json.dumps({**report, "reported_at": reported_at.isoformat()},
                       ensure_ascii=False).encode()
    return key, value
