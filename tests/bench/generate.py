"""A seeded, province-scale synthetic rule set and report stream for the benchmarks.

The real rules/ directory covers one county (a few hundred grids); the performance question
is how the rules stage behaves at province scale (tens of thousands of grids, hundreds of
matter items, thousands of rules) and whether the cost per event stays flat when all of it
grows tenfold. This module writes such a rule set with the same file shapes as rules/ and
produces reports that exercise it, so the figures come from the real loaders and pipeline.

Everything is derived from a seeded ``random.Random``: the same (scale, seed) gives the same
files and the same reports, so runs on different days compare.

Keywords are synthetic: a two-character governance word plus three index characters (e.g.
``垃圾甲乙丙``). All keywords have the same length and are distinct, so none is a substring
of another; filler text uses no character of the keyword alphabet, so no keyword can appear
by accident or across a boundary. That keeps every rule reachable (``load_rules`` refuses
shadowed rules) and makes the expected decision of each report well defined.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

PROVINCE = ("330000000000", "浙江省")
CITIES: list[tuple[str, str]] = [
    ("3301", "杭州市"), ("3302", "宁波市"), ("3303", "温州市"), ("3304", "嘉兴市"),
    ("3305", "湖州市"), ("3306", "绍兴市"), ("3307", "金华市"), ("3308", "衢州市"),
    ("3309", "舟山市"), ("3310", "台州市"), ("3311", "丽水市"),
]
COUNTIES_PER_CITY = 9
# (townships per county, communities per township, grids per community) for each scale.
# 1x: 99 * 10 * 8 * 4 = 31,680 grids; 10x: 99 * 20 * 20 * 8 = 316,800 grids.
LAYOUTS: dict[int, tuple[int, int, int]] = {1: (10, 8, 4), 10: (20, 20, 8)}
# Province bounding box (lon west, lat south, lon east, lat north), roughly Zhejiang's.
BBOX = (118.0, 27.0, 123.0, 31.2)

ITEMS_PER_K = 500
PROVINCE_CLASSIFY_PER_K = 300
PROVINCE_PRIORITY_PER_K = 20
CITY_CLASSIFY_PER_K = 60
CITY_PRIORITY_PER_K = 2
COUNTY_CLASSIFY_PER_K = 10
COUNTY_PRIORITY_PER_K = 1
CITY_OVERRIDES = 2  # of each city's classify rules, this many reuse a province rule's id

ROLES: dict[str, str] = {
    "zhzx": "governance", "gaj": "governance", "yjgl": "governance", "xf": "governance",
    "scjg": "market", "zhzf": "enforcement", "zjj": "enforcement", "mzj": "services",
    "rsj": "services", "sfj": "services",
}
PLATFORMS = ["governance", "market", "enforcement", "services"]
CHANNELS = ["hotline", "gridapp", "open311", "sensor"]
CHANNEL_WEIGHTS = [40, 30, 20, 10]

# Keyword alphabet: two-character governance words and index characters.
WORDS = [
    "垃圾", "噪音", "漏水", "井盖", "路灯", "积水", "油烟", "违建", "摊贩", "渣土",
    "扬尘", "污水", "异味", "裂缝", "塌陷", "倒伏", "堵塞", "乱停", "欠薪", "纠纷",
    "诈骗", "偷盗", "火情", "燃气", "电梯", "充电", "飞线", "广告", "招牌", "犬只",
    "施工", "养老", "低保", "医保", "社保", "供电", "停水", "断网", "假货", "霉变",
]
INDEX_CHARS = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥壹贰叁肆伍陆柒捌"
# Filler: what residents add around the point. No character here may occur in WORDS or
# INDEX_CHARS (checked at import), so filler never creates or extends a keyword.
FILLER = [
    "今天早上", "昨天晚上", "最近一段时间", "在我们小区附近", "东门那边", "靠近菜场的位置",
    "已经好几天了", "希望有关部门尽快处理", "居民反映很多次", "影响大家正常生活", "请派人来看看",
    "麻烦尽快安排", "附近的居民都很担心", "在公交站旁边", "具体位置在三号楼北侧",
    "早晚高峰的时候特别明显", "之前反映过一次", "一直没有人管", "楼下的商铺说不清楚",
    "物业说这个不归他们管", "拐角那里最严重", "周末的时候更多", "我家就在旁边", "拍了照片",
    "邻居们都有意见", "晚上睡不好觉", "不知道该找哪个部门", "谢谢", "请尽快回复",
    "这样持续很久了", "上周也反映过", "就在学校对面", "靠近河边的那条街", "到了夏天以后",
    "门口", "小区里面", "离地铁口不远", "大概有十几米长", "看起来很危险",
]
PATTERN_WORDS = "(小区|拐角|门口)"  # occasional regex condition; FILLER contains these words

_KEYWORD_CHARS = set("".join(WORDS)) | set(INDEX_CHARS)
_BAD_FILLER = [f for f in FILLER if set(f) & _KEYWORD_CHARS]
assert not _BAD_FILLER, f"filler phrases share characters with keywords: {_BAD_FILLER}"
assert len(set(INDEX_CHARS)) == len(INDEX_CHARS) == 30

SYLLABLES = "安宝城丰富港和华嘉江金锦康兰良林龙梅明南平青庆泉瑞山盛石顺松塘桃天通文祥新兴阳永云"


class Vocabulary:
    """Hands out distinct five-character keywords in a fixed order."""

    def __init__(self) -> None:
        self.issued = 0

    def take(self) -> str:
        n = self.issued
        self.issued += 1
        q, word = divmod(n, len(WORDS))
        base = len(INDEX_CHARS)
        if q >= base ** 3:
            raise ValueError("keyword vocabulary exhausted; add words to WORDS")
        return (WORDS[word] + INDEX_CHARS[q % base] + INDEX_CHARS[q // base % base]
                + INDEX_CHARS[q // base // base])

    def take_many(self, count: int) -> list[str]:
        return [self.take() for _ in range(count)]


@dataclass(frozen=True)
class GridBox:
    code: str
    west: float
    south: float
    east: float
    north: float


@dataclass
class Generated:
    """What was written, and the pools the report generator draws from."""

    root: Path
    scale: int
    seed: int
    grids: list[GridBox] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    catalogue_words: list[str] = field(default_factory=list)
    # Classify keywords by layer scope ("33", "3301", "330101"), priority keywords likewise.
    rule_words: dict[str, list[str]] = field(default_factory=dict)
    priority_words: dict[str, list[str]] = field(default_factory=dict)
    exclude_words: list[str] = field(default_factory=list)
    veto_of: dict[str, str] = field(default_factory=dict)  # keyword -> its rule's exclude word
    categories: dict[str, list[str]] = field(default_factory=dict)


def layout(scale: int) -> tuple[int, int, int]:
    """Townships per county, communities per township, grids per community for a scale."""
    if scale in LAYOUTS:
        return LAYOUTS[scale]
    t, c, g = LAYOUTS[1]
    root = scale ** (1 / 3)
    t2, c2 = max(1, round(t * root)), max(1, round(c * root))
    return t2, c2, max(1, math.ceil(t * c * g * scale / (t2 * c2)))


def _split(west: float, south: float, east: float, north: float,
           n: int) -> list[tuple[float, float, float, float]]:
    """Cut a box into ``n`` near-square cells (row-major; the last row may be short)."""
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    width, height = (east - west) / cols, (north - south) / rows
    out = []
    for i in range(n):
        r, c = divmod(i, cols)
        out.append((round(west + c * width, 6), round(north - (r + 1) * height, 6),
                    round(west + (c + 1) * width, 6), round(north - r * height, 6)))
    return out


def _name(rng: random.Random, suffix: str) -> str:
    return rng.choice(SYLLABLES) + rng.choice(SYLLABLES) + suffix


def _q(text: str) -> str:
    """A YAML double-quoted scalar (our strings need no escapes; codes must stay strings)."""
    return f'"{text}"'


def _flow_list(values: list[str]) -> str:
    return "[" + ", ".join(values) + "]"


def generate(root: Path, scale: int = 1, seed: int = 20250601) -> Generated:
    """Write reference/ and layers/ under ``root`` for scale ``scale``; return the pools."""
    rng = random.Random(f"{seed}:{scale}")
    vocab = Vocabulary()
    gen = Generated(root=root, scale=scale, seed=seed)
    (root / "reference").mkdir(parents=True, exist_ok=True)
    (root / "layers").mkdir(parents=True, exist_ok=True)
    counties = _write_divisions_and_grids(root, scale, rng, gen)
    items = _write_matters(root, scale, rng, vocab, gen)
    _write_departments(root, counties)
    _write_channels(root, rng, items, gen)
    _write_layers(root, scale, rng, vocab, items, counties, gen)
    return gen


def _write_divisions_and_grids(root: Path, scale: int, rng: random.Random,
                               gen: Generated) -> list[str]:
    n_town, n_comm, n_grid = layout(scale)
    west, south, east, north = BBOX
    city_width = (east - west) / len(CITIES)
    county_height = (north - south) / COUNTIES_PER_CITY
    lines = ["# Synthetic province-scale divisions for tests/bench (generated; not real data).",
             f"province: {{code: {_q(PROVINCE[0])}, name: {PROVINCE[1]}}}", "cities:"]
    features: list[str] = []
    counties: list[str] = []
    communities = 0
    for ci, (city, city_name) in enumerate(CITIES):
        lines += [f"  - code: {_q(city + '00000000')}", f"    name: {city_name}",
                  "    counties:"]
        for k in range(COUNTIES_PER_CITY):
            county = f"{city}{k + 1:02d}"
            counties.append(county)
            lines += [f"      - code: {_q(county + '000000')}",
                      f"        name: {_name(rng, '区' if k < 3 else '县')}", "        townships:"]
            cbox = (round(west + ci * city_width, 6), round(south + k * county_height, 6),
                    round(west + (ci + 1) * city_width, 6),
                    round(south + (k + 1) * county_height, 6))
            for t, tbox in enumerate(_split(*cbox, n_town)):
                township = f"{county}{t + 1:03d}"
                lines += [f"          - code: {_q(township + '000')}",
                          f"            name: {_name(rng, '街道' if t < 4 else '镇')}",
                          "            communities:"]
                for m, mbox in enumerate(_split(*tbox, n_comm)):
                    community = f"{township}{m + 1:03d}"
                    name = _name(rng, "社区" if m % 3 else "村")
                    lines.append(f"              - {{code: {_q(community)}, name: {name}, "
                                 f"short_name: {name}}}")
                    communities += 1
                    for g, (x0, y0, x1, y1) in enumerate(_split(*mbox, n_grid)):
                        code = f"{community}{g + 1:03d}"
                        gen.grids.append(GridBox(code, x0, y0, x1, y1))
                        ring = f"[[{x0}, {y0}], [{x1}, {y0}], [{x1}, {y1}], [{x0}, {y1}], " \
                               f"[{x0}, {y0}]]"
                        features.append(
                            '{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": '
                            f'[{ring}]}}, "properties": {{"grid_code": "{code}", '
                            f'"name": "{name}第{g + 1}网格", "valid_from": "2021-01-01"}}}}')
    (root / "reference" / "divisions.yaml").write_text("\n".join(lines) + "\n", "utf-8")
    (root / "reference" / "grids.geojson").write_text(
        '{"type": "FeatureCollection", "synthetic": true, "features": [\n'
        + ",\n".join(features) + "\n]}\n", "utf-8")
    gen.counts.update(cities=len(CITIES), counties=len(counties),
                      townships=len(counties) * n_town, communities=communities,
                      grids=len(gen.grids))
    return counties


def _write_matters(root: Path, scale: int, rng: random.Random, vocab: Vocabulary,
                   gen: Generated) -> list[str]:
    n_items = ITEMS_PER_K * scale
    if n_items > 99 * 100:
        raise ValueError("at most 9,900 items fit the 2+2+2-digit code scheme used here")
    lines = ["# Synthetic matter catalogue for tests/bench (generated).", "classes:"]
    roles = list(ROLES)
    items: list[str] = []
    for n in range(n_items):
        klass, sub, item = n // 100 + 1, n // 10 % 10 + 1, n % 10 + 1
        if n % 100 == 0:
            lines += [f"  - code: {_q(f'{klass:02d}')}", f"    name: 合成大类{klass}",
                      f"    platform: {PLATFORMS[(klass - 1) % len(PLATFORMS)]}",
                      "    subclasses:"]
        if n % 10 == 0:
            lines += [f"      - code: {_q(f'{klass:02d}{sub:02d}')}",
                      f"        name: 合成小类{klass}-{sub}", "        items:"]
        code = f"{klass:02d}{sub:02d}{item:02d}"
        items.append(code)
        words = vocab.take_many(rng.randint(2, 4))
        gen.catalogue_words += words
        exclude = ""
        if rng.random() < 0.1:
            veto = vocab.take()
            gen.exclude_words.append(veto)
            gen.veto_of.update(dict.fromkeys(words, veto))
            exclude = f", exclude: {_flow_list([veto])}"
        priority = rng.choices(["normal", "high", "low", "urgent"], [70, 15, 10, 5])[0]
        lines.append(f"          - {{code: {_q(code)}, name: 合成事项{code}, "
                     f"keywords: {_flow_list(words)}{exclude}, priority: {priority}, "
                     f"role: {rng.choice(roles)}, limits: {{accept: 1h, resolve: 5d}}}}")
    (root / "reference" / "matters.yaml").write_text("\n".join(lines) + "\n", "utf-8")
    gen.counts["items"] = len(items)
    return items


def _write_departments(root: Path, counties: list[str]) -> None:
    """Every role in every county, each answering to the county's command centre (zhzx)."""
    lines = ["# Synthetic department registry for tests/bench (generated).", "departments:"]
    for county in counties:
        for role, platform in ROLES.items():
            code = f"{county}.{role}"
            supervisor = "null" if role == "zhzx" else _q(f"{county}.zhzx")
            lines.append(f"  - {{code: {_q(code)}, name: {county}{role}部门, role: {role}, "
                         f"platform: {platform}, level: county, "
                         f"division: {_q(county + '000000')}, supervisor: {supervisor}, "
                         f"topic: {_q('assignments.' + code)}}}")
    (root / "reference" / "departments.yaml").write_text("\n".join(lines) + "\n", "utf-8")


def _write_channels(root: Path, rng: random.Random, items: list[str], gen: Generated) -> None:
    entries = {
        "hotline": [f"城市管理/合成分类{i:02d}" for i in range(1, 9)],
        "open311": [f"synthetic-service-{i}" for i in range(1, 6)],
        "sensor": [f"synthetic-alarm-{i}" for i in range(1, 5)],
    }
    lines = ["# Synthetic channel category maps for tests/bench (generated)."]
    for channel, categories in entries.items():
        lines.append(f"{channel}:")
        for category in categories:
            lines.append(f"  - {{category: {_q(category)}, matter: {_q(rng.choice(items))}}}")
    (root / "reference" / "channels.yaml").write_text("\n".join(lines) + "\n", "utf-8")
    gen.categories = entries


def _classify_line(rng: random.Random, vocab: Vocabulary, rule_id: str, items: list[str],
                   gen: Generated, scope: str) -> str:
    words = vocab.take_many(rng.choices([1, 2, 3], [30, 50, 20])[0])
    gen.rule_words.setdefault(scope, []).extend(words)
    extra = ""
    if rng.random() < 0.15:
        veto = vocab.take()
        gen.exclude_words.append(veto)
        gen.veto_of.update(dict.fromkeys(words, veto))
        extra += f", exclude: {_flow_list([veto])}"
    if rng.random() < 0.05:
        extra += f', patterns: ["{PATTERN_WORDS}"]'
    if rng.random() < 0.1:
        extra += f", channels: [{rng.choice(CHANNELS)}]"
    weight = rng.choice([20, 30, 40, 50, 60, 70, 80, 90])
    return (f"  - {{id: {rule_id}, keywords: {_flow_list(words)}{extra}, "
            f"matter: {_q(rng.choice(items))}, weight: {weight}}}")


def _priority_line(rng: random.Random, vocab: Vocabulary, rule_id: str, items: list[str],
                   gen: Generated, scope: str) -> str:
    """Keyword-led priority rules: distinct keywords mean none can hide another."""
    words = vocab.take_many(rng.randint(1, 3))
    gen.priority_words.setdefault(scope, []).extend(words)
    extra = ""
    if rng.random() < 0.3:
        extra += f", matters: [{_q(rng.choice(items)[:2])}]"
    if rng.random() < 0.1:
        extra += f", channels: [{rng.choice(CHANNELS)}]"
    level = rng.choice(["urgent", "high", "low"])
    return f"  - {{id: {rule_id}, keywords: {_flow_list(words)}{extra}, set: {level}}}"


def _write_layers(root: Path, scale: int, rng: random.Random, vocab: Vocabulary,
                  items: list[str], counties: list[str], gen: Generated) -> None:
    n_classify = n_priority = 0

    def write(name: str, level: str, scope: str, classify: list[str], priority: list[str],
              disable: list[str]) -> None:
        nonlocal n_classify, n_priority
        n_classify += len(classify)
        n_priority += len(priority)
        lines = [f"layer: {level}", f"scope: {_q(scope)}",
                 f"description: 合成{level}规则 (tests/bench)"]
        if disable:
            lines.append(f"disable: {_flow_list(disable)}")
        lines += ["classify:", *classify] if classify else []
        lines += ["priority:", *priority] if priority else []
        if level == "province":  # rules check requires a default route and its SLA policy
            lines.append("default_route: {lead: matter, sla: default}")
            lines.append("sla: {default: {accept: matter, resolve: matter, unit: matter}}")
        (root / "layers" / name).write_text("\n".join(lines) + "\n", "utf-8")

    province_ids = [f"p-{i:05d}" for i in range(PROVINCE_CLASSIFY_PER_K * scale)]
    write("33-province.yaml", "province", "33",
          [_classify_line(rng, vocab, rid, items, gen, "33") for rid in province_ids],
          [_priority_line(rng, vocab, f"pp-{i:04d}", items, gen, "33")
           for i in range(PROVINCE_PRIORITY_PER_K * scale)], [])
    for city, _ in CITIES:
        ids = [*rng.sample(province_ids, CITY_OVERRIDES),
               *(f"c{city}-{i:04d}" for i in range(CITY_CLASSIFY_PER_K * scale
                                                   - CITY_OVERRIDES))]
        write(f"{city}-city.yaml", "city", city,
              [_classify_line(rng, vocab, rid, items, gen, city) for rid in ids],
              [_priority_line(rng, vocab, f"cp{city}-{i:03d}", items, gen, city)
               for i in range(CITY_PRIORITY_PER_K * scale)], [])
    for n, county in enumerate(counties):
        ids = [rng.choice(province_ids),
               *(f"k{county}-{i:03d}" for i in range(COUNTY_CLASSIFY_PER_K * scale - 1))]
        disable = [f"catalogue:{rng.choice(items)}"] if n % 3 == 0 else []
        write(f"{county}-county.yaml", "county", county,
              [_classify_line(rng, vocab, rid, items, gen, county) for rid in ids],
              [_priority_line(rng, vocab, f"kp{county}-{i:03d}", items, gen, county)
               for i in range(COUNTY_PRIORITY_PER_K * scale)], disable)
    gen.counts.update(layers=1 + len(CITIES) + len(counties), classify_rules=n_classify,
                      priority_rules=n_priority, rules=n_classify + n_priority,
                      keywords=vocab.issued)


def make_events(gen: Generated, count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Reports as connectors would send them: coordinates inside a grid, Chinese text.

    Each description carries one keyword the report's own county can see (catalogue 40%,
    province 35%, its city 13%, its county 10%) or none (2%, which ends in triage). Some
    carry more, so that the decisions the baseline must reproduce are not all trivial: a
    second competing keyword (10%: weights and layer order decide), the matched rule's own
    exclude word (a quarter of the rules that have one: the veto must win), one or two
    priority keywords (15%: the most specific layer's rule must win), or a channel category.
    """
    rng = random.Random(f"events:{seed}:{gen.scale}")
    start = datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=8)))
    events = []

    def keyword(source: str) -> str:
        pool = gen.catalogue_words if source == "catalogue" else gen.rule_words[source]
        return rng.choice(pool)

    for i in range(count):
        grid = rng.choice(gen.grids)
        county, city = grid.code[:6], grid.code[:4]
        channel = rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0]
        sources = ["catalogue", "33", city, county]
        source = rng.choices([*sources, "none"], [40, 35, 13, 10, 2])[0]
        words = []
        if source != "none":
            words.append(keyword(source))
            if rng.random() < 0.1:
                words.append(keyword(rng.choice(sources)))
            if words[0] in gen.veto_of and rng.random() < 0.25:
                words.append(gen.veto_of[words[0]])
        if rng.random() < 0.15:
            scopes = [s for s in ("33", city, county) if s in gen.priority_words]
            for scope in rng.sample(scopes, 2 if rng.random() < 0.3 else 1):
                words.append(rng.choice(gen.priority_words[scope]))
        if rng.random() < 0.01:
            words.append(rng.choice(gen.exclude_words))
        target = rng.randint(30, 80)
        phrases: list[str] = []
        while sum(map(len, phrases)) + len(phrases) < target:
            phrases.append(rng.choice(FILLER))
        for word in words:
            phrases.insert(rng.randint(0, len(phrases)), word)
        lon = grid.west + (0.05 + 0.9 * rng.random()) * (grid.east - grid.west)
        lat = grid.south + (0.05 + 0.9 * rng.random()) * (grid.north - grid.south)
        reported = start + timedelta(seconds=rng.randrange(365 * 86400))
        event: dict[str, Any] = {
            "channel": channel, "channel_id": f"{channel[:2].upper()}-{i:07d}",
            "reported_at": reported.isoformat(), "description": "，".join(phrases) + "。",
            "location": {"lat": round(lat, 7), "lon": round(lon, 7)},
        }
        if channel in gen.categories and rng.random() < 0.1:
            event["channel_category"] = rng.choice([*gen.categories[channel], "其他/其他"])
        if rng.random() < 0.3:
            event["reporter"] = {"name": "市民", "phone": f"138{rng.randrange(10**8):08d}"}
        events.append(event)
    return events
