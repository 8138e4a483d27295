"""Consistency checks for the matter catalogue (一事一码) and the channel category maps.

rules/reference/matters.yaml holds class / subclass / item matters with their keywords,
priority, lead role and time limits; rules/reference/channels.yaml maps hotline, Open311 and
sensor categories onto item codes. These tests guard the invariants the dispatcher relies on.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REFERENCE = Path(__file__).parents[2] / "rules" / "reference"

PLATFORMS = {"governance", "market", "enforcement", "services"}
PRIORITIES = {"urgent", "high", "normal", "low"}
UNITS = {"working", "natural"}
ROLES = {
    "zhzx", "scjg", "zhzf", "yjgl", "pcs", "xf", "mz", "shsw", "rs", "sfs", "wj", "zj",
    "sthj", "jy", "jzxh", "ylfw", "zyz", "xlfw", "flyz",
}
CHANNELS = ("hotline", "open311", "sensor")
MIN_ITEMS = 160
MIN_ITEMS_PER_PLATFORM = 30
DURATION_RE = re.compile(r"^(\d+)([mhd])$")
SERVICE_CODE_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
REQUIRED_SENSORS = {
    "smoke", "gas", "water-level", "manhole-cover", "electrical-fire", "elevator-trapped",
    "fire-hydrant-pressure", "noise-level",
}


@cache
def catalogue() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REFERENCE / "matters.yaml").read_text("utf-8"))
    return data


@cache
def channels() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REFERENCE / "channels.yaml").read_text("utf-8"))
    return data


def classes() -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = catalogue()["classes"]
    return result


def items() -> list[dict[str, Any]]:
    return [item for cls in classes() for sub in cls["subclasses"] for item in sub["items"]]


def item_platforms() -> dict[str, str]:
    """Item code -> effective platform (the item's own, else its class's)."""
    return {
        item["code"]: item.get("platform", cls["platform"])
        for cls in classes()
        for sub in cls["subclasses"]
        for item in sub["items"]
    }


def parse_duration(text: str) -> tuple[int, str]:
    match = DURATION_RE.match(str(text))
    assert match, f"{text!r} is not <int>m, <int>h or <int>d"
    return int(match.group(1)), match.group(2)


def test_catalogue_has_at_least_160_items() -> None:
    assert len(items()) >= MIN_ITEMS


def test_every_platform_has_at_least_30_items() -> None:
    counts = Counter(item_platforms().values())
    assert set(counts) == PLATFORMS
    short = {p: n for p, n in counts.items() if n < MIN_ITEMS_PER_PLATFORM}
    assert not short, f"platforms with too few items: {short}"


def test_class_and_item_platforms_are_known() -> None:
    for cls in classes():
        assert cls["platform"] in PLATFORMS, cls["code"]
    for item in items():
        assert item.get("platform", "governance") in PLATFORMS, item["code"]


def test_codes_are_unique_across_all_levels() -> None:
    codes = [cls["code"] for cls in classes()]
    codes += [sub["code"] for cls in classes() for sub in cls["subclasses"]]
    codes += [item["code"] for item in items()]
    duplicates = [code for code, n in Counter(codes).items() if n > 1]
    assert not duplicates


def test_codes_are_hierarchical_with_two_digits_per_level() -> None:
    for cls in classes():
        assert isinstance(cls["code"], str) and re.fullmatch(r"\d{2}", cls["code"])
        for sub in cls["subclasses"]:
            assert re.fullmatch(r"\d{4}", sub["code"]), sub["code"]
            assert sub["code"].startswith(cls["code"]), sub["code"]
            for item in sub["items"]:
                assert re.fullmatch(r"\d{6}", item["code"]), item["code"]
                assert item["code"].startswith(sub["code"]), item["code"]


def test_every_level_has_a_chinese_name() -> None:
    nodes = [*classes(), *(s for c in classes() for s in c["subclasses"]), *items()]
    for node in nodes:
        assert re.search(r"[\u4e00-\u9fff]", node["name"]), node["code"]


def test_priorities_are_in_the_allowed_set() -> None:
    bad = {item["code"]: item["priority"] for item in items()
           if item["priority"] not in PRIORITIES}
    assert not bad


def test_limit_units_are_working_or_natural() -> None:
    bad = {item["code"]: item["limits"].get("unit") for item in items()
           if item["limits"].get("unit") not in UNITS}
    assert not bad


def test_limit_durations_parse_as_int_and_m_h_or_d() -> None:
    for item in items():
        limits = item["limits"]
        assert "resolve" in limits, item["code"]
        assert set(limits) <= {"accept", "resolve", "unit"}, item["code"]
        for key in ("accept", "resolve"):
            if key in limits:
                amount, _ = parse_duration(limits[key])
                assert amount > 0, f"{item['code']} {key}"


def test_accept_is_shorter_than_resolve_when_in_the_same_unit() -> None:
    for item in items():
        limits = item["limits"]
        if "accept" not in limits:
            continue
        accept, accept_unit = parse_duration(limits["accept"])
        resolve, resolve_unit = parse_duration(limits["resolve"])
        if accept_unit == resolve_unit:
            assert accept < resolve, item["code"]


def test_every_item_has_two_to_six_keywords_of_at_least_two_characters() -> None:
    for item in items():
        keywords = item["keywords"]
        assert isinstance(keywords, list), item["code"]
        assert 2 <= len(keywords) <= 6, item["code"]
        for keyword in keywords:
            assert isinstance(keyword, str) and len(keyword.strip()) >= 2, item["code"]


def test_exclude_phrases_are_lists_of_phrases() -> None:
    for item in items():
        excluded = item.get("exclude", [])
        assert isinstance(excluded, list), item["code"]
        for phrase in excluded:
            assert isinstance(phrase, str) and len(phrase) >= 2, item["code"]
        assert not set(excluded) & set(item["keywords"]), item["code"]


def test_no_keyword_is_shared_by_two_items() -> None:
    owners: dict[str, list[str]] = defaultdict(list)
    for item in items():
        for keyword in set(item["keywords"]):
            owners[keyword].append(item["code"])
    shared = {kw: codes for kw, codes in owners.items() if len(codes) > 1}
    assert not shared, f"keywords used by more than one item: {shared}"


def test_roles_are_in_the_allowed_list() -> None:
    bad = {item["code"]: item["role"] for item in items() if item["role"] not in ROLES}
    assert not bad


def test_catalogue_is_stored_as_utf8_without_unicode_escapes() -> None:
    text = (REFERENCE / "matters.yaml").read_text("utf-8")
    assert "\\u" not in text
    text = (REFERENCE / "channels.yaml").read_text("utf-8")
    assert "\\u" not in text


def test_every_channel_map_target_is_an_item_code() -> None:
    known = {item["code"] for item in items()}
    for channel in CHANNELS:
        for entry in channels()[channel]:
            assert isinstance(entry["matter"], str), entry
            assert entry["matter"] in known, f"{channel} {entry['category']} -> {entry['matter']}"


def test_channel_categories_are_unique_within_each_channel() -> None:
    for channel in CHANNELS:
        counts = Counter(entry["category"] for entry in channels()[channel])
        assert not [c for c, n in counts.items() if n > 1], channel


def test_channels_have_enough_categories() -> None:
    assert len(channels()["hotline"]) >= 30
    assert len(channels()["open311"]) >= 20
    assert {entry["category"] for entry in channels()["sensor"]} >= REQUIRED_SENSORS


def test_open311_service_codes_are_unique_lowercase_ascii() -> None:
    codes = [entry["category"] for entry in channels()["open311"]]
    assert len(codes) == len(set(codes))
    for code in codes:
        assert code.isascii() and SERVICE_CODE_RE.fullmatch(code), code


def test_open311_services_have_name_group_and_description() -> None:
    groups = {"综治工作", "市场监管", "综合执法", "便民服务"}
    for entry in channels()["open311"]:
        assert entry["name"] and entry["description"], entry["category"]
        assert entry["group"] in groups, entry["category"]
