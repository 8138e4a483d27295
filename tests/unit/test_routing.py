"""Pure routing decisions: precedence, continue, default, roles resolved per township, overlays.

Decisions come from ``engine.routing.decide.route`` over records classified with the shipped
rules; rule semantics are checked on small variations of the layer files in a copy of
``rules/``. Load-time errors name the file and line.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from engine.classify import classify_data
from engine.contracts import Classified
from engine.routing.decide import RouteDecision, resolve_target, route
from engine.rules import RuleSet
from engine.rules.load import load_rules
from engine.yamlfile import FileProblems

RULES = Path(__file__).resolve().parents[2] / "rules"
WORKING = "2026-11-24T10:00:00+08:00"      # a Tuesday morning
OFF_HOURS = "2026-11-24T23:00:00+08:00"    # the same Tuesday, late evening
HOLIDAY = "2026-10-01T10:00:00+08:00"      # National Day: office hours, but a holiday
COUNTY_HEADER = 'layer: county\nscope: "330110"\n'

TOWNSHIPS = {"五常街道": "330110005", "仁和街道": "330110009", "良渚街道": "330110010",
             "闲林街道": "330110011", "仓前街道": "330110012", "余杭街道": "330110013",
             "中泰街道": "330110014", "径山镇": "330110109", "瓶窑镇": "330110110",
             "鸬鸟镇": "330110111", "百丈镇": "330110112", "黄湖镇": "330110113"}


@cache
def shipped() -> RuleSet:
    return load_rules(RULES)


def classified(ruleset: RuleSet, description: str, address: str | None = "五常街道",
               at: str = WORKING, **extra: Any) -> Classified:
    report: dict[str, Any] = {"channel": "test", "channel_id": f"{description}@{address}@{at}",
                              "reported_at": at, "description": description, **extra}
    if address is not None:
        report["address"] = address
    record = classify_data(ruleset, report, datetime.fromisoformat(at))
    assert isinstance(record, Classified), record
    return record


def decide(description: str, address: str | None = "五常街道", at: str = WORKING,
           ruleset: RuleSet | None = None, exclude: frozenset[str] = frozenset(),
           returns: int = 0, **extra: Any) -> RouteDecision:
    rules = ruleset or shipped()
    return route(rules, classified(rules, description, address, at, **extra), exclude, returns)


def rule_ids(decision: RouteDecision) -> list[str]:
    return [m.rule for m in decision.matched]


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def write_county(rules: Path, body: str) -> Path:
    """Replace the county overlay with ``body`` (the header is added)."""
    path = rules / "layers" / "330110-yuhang.yaml"
    path.write_text(COUNTY_HEADER + body, encoding="utf-8")
    return path


def line_of(path: Path, text: str) -> int:
    """1-based line number of the first line of ``path`` containing ``text``."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def problems_of(rules: Path) -> str:
    with pytest.raises(FileProblems) as caught:
        load_rules(rules)
    return str(caught.value)


# --- precedence ------------------------------------------------------------------------------

ORDER_RULES = """
route:
  - id: {first}
    when: {first_when}
    lead: {first_lead}
  - id: {second}
    when: {second_when}
    lead: {second_lead}
"""
BY_CHANNEL = ("by-channel", "{channels: [hotline]}", "county.zhzf")
BY_MATTER = ("by-matter", '{matters: ["1001"]}', "county.yjgl")


@pytest.mark.parametrize(("first", "second"), [(BY_CHANNEL, BY_MATTER), (BY_MATTER, BY_CHANNEL)])
def test_first_matching_rule_in_file_order_wins(
        rules_copy: Path, first: tuple[str, str, str], second: tuple[str, str, str]) -> None:
    write_county(rules_copy, ORDER_RULES.format(
        first=first[0], first_when=first[1], first_lead=first[2],
        second=second[0], second_when=second[1], second_lead=second[2]))
    ruleset = load_rules(rules_copy)
    decision = decide("路边垃圾成堆没人清", ruleset=ruleset, channel="hotline")
    assert decision.lead == f"330110.{first[2].split('.')[1]}"
    assert rule_ids(decision) == [first[0]]


def test_the_second_rule_applies_when_the_first_does_not_hold(rules_copy: Path) -> None:
    write_county(rules_copy, ORDER_RULES.format(
        first="by-channel", first_when="{channels: [hotline]}", first_lead="county.zhzf",
        second="by-matter", second_when='{matters: ["1001"]}', second_lead="county.yjgl"))
    decision = decide("路边垃圾成堆没人清", ruleset=load_rules(rules_copy), channel="gridapp")
    assert (decision.lead, rule_ids(decision)) == ("330110.yjgl", ["by-matter"])


def test_county_rule_beats_the_province_rule_for_the_same_matter() -> None:
    # yh-hill-hazards (county) and the default route (province) both fit a landslide
    decision = decide("村里后山塌了一块，石头滚到了路边", "径山镇径山村")
    assert decision.lead == "330110.yjgl"
    assert set(decision.assist) == {"330110109.yjgl", "330110109.zhzx"}
    assert rule_ids(decision) == ["yh-hill-hazards"]
    assert decision.matched[0].layer.startswith("county 330110")


def test_a_new_county_rule_is_tried_before_the_province_rules(rules_copy: Path) -> None:
    write_county(rules_copy, "route:\n  - id: yh-lift\n"
                             '    when: {matters: ["0702"], divisions: ["330110012"]}\n'
                             "    lead: township.zhzx\n    sla: lift\n"
                             "sla:\n  lift: {accept: 15m, resolve: 4h, unit: natural}\n")
    ruleset = load_rules(rules_copy)
    decision = decide("电梯困人了", "仓前街道太炎社区", ruleset=ruleset)
    assert (decision.lead, decision.sla, rule_ids(decision)) == (
        "330110012.zhzx", "lift", ["yh-lift"])
    elsewhere = decide("电梯困人了", "五常街道", ruleset=ruleset)
    assert (elsewhere.lead, rule_ids(elsewhere)) == ("330110.scjg", ["special-equipment-county"])


def test_a_county_rule_reusing_an_id_overrides_the_province_rule(rules_copy: Path) -> None:
    write_county(rules_copy, "route:\n  - id: special-equipment-county\n"
                             '    when: {matters: ["0702"]}\n    lead: township.yjgl\n')
    decision = decide("电梯困人了", "仓前街道太炎社区", ruleset=load_rules(rules_copy))
    assert decision.lead == "330110012.yjgl"
    assert decision.assist == ()  # the province version's assist is gone with it
    assert decision.matched[0].layer.startswith("county 330110")


def test_disabling_a_province_route_rule_falls_back_to_the_next(rules_copy: Path) -> None:
    write_county(rules_copy, "disable: [special-equipment-county]\n")
    decision = decide("电梯困人了", "仓前街道太炎社区", ruleset=load_rules(rules_copy))
    assert (decision.lead, rule_ids(decision)) == ("330110012.scjg", ["market-township-office"])


def test_a_rule_whose_lead_cannot_be_used_does_not_end_the_search(rules_copy: Path) -> None:
    # there is no township fire brigade: the county rule cannot give a lead in 仓前
    write_county(rules_copy, "route:\n  - id: yh-lift-fire\n"
                             '    when: {matters: ["0702"], divisions: ["330110012"]}\n'
                             "    lead: township.xf\n")
    decision = decide("电梯困人了", "仓前街道太炎社区", ruleset=load_rules(rules_copy))
    assert decision.lead == "330110.scjg"
    assert rule_ids(decision) == ["yh-lift-fire", "special-equipment-county"]


# --- continue --------------------------------------------------------------------------------

def test_off_hours_urgent_adds_the_county_duty_desk_and_keeps_searching() -> None:
    day = decide("楼道里一股煤气味", "五常街道", WORKING)
    night = decide("楼道里一股煤气味", "五常街道", OFF_HOURS)
    assert day.lead == night.lead == "330110.xf"
    assert set(day.assist) == {"330110005.zhzx", "330110005.yjgl"}
    assert set(night.assist) == {"330110.zhzx", "330110005.zhzx", "330110005.yjgl"}
    assert rule_ids(day) == ["fire-gas-urgent-joint"]
    assert rule_ids(night) == ["off-hours-urgent-duty-desk", "fire-gas-urgent-joint"]
    assert night.sla == "urgent" and night.priority == "urgent"


def test_off_hours_rule_needs_urgent_priority() -> None:
    decision = decide("路边垃圾成堆没人清", "五常街道", OFF_HOURS)
    assert rule_ids(decision) == ["enforcement-township-squad"]
    assert decision.assist == ()


def test_continue_rule_alone_leaves_the_lead_to_the_default_route() -> None:
    # 打架斗殴 is urgent; no matter rule fits class 02, so the default route gives the lead
    decision = decide("有人打架", "良渚街道", OFF_HOURS)
    assert decision.priority == "urgent"
    assert decision.lead == "330110010.pcs"
    assert decision.assist == ("330110.zhzx",)
    assert rule_ids(decision) == ["off-hours-urgent-duty-desk", "default_route"]
    assert decision.sla == "default"


def test_assisting_departments_are_never_the_lead(rules_copy: Path) -> None:
    write_county(rules_copy, "route:\n  - id: yh-both\n    when: {matters: [\"1001\"]}\n"
                             "    lead: township.zhzf\n    assist: [township.zhzf, township.zhzx,"
                             " township.zhzx]\n")
    decision = decide("路边垃圾成堆没人清", ruleset=load_rules(rules_copy))
    assert decision.lead == "330110005.zhzf"
    assert decision.assist == ("330110005.zhzx",)


# --- default route and role resolution -------------------------------------------------------

def test_default_route_when_no_rule_matches_leads_with_the_matter_role() -> None:
    decision = decide("有人形迹可疑", "仓前街道")  # 020101 可疑人员, role pcs
    assert (decision.lead, decision.sla, rule_ids(decision)) == (
        "330110012.pcs", "default", ["default_route"])
    assert decision.matched[0].layer.startswith("province 33")


def test_default_route_falls_back_to_the_county_body_of_the_matter_role() -> None:
    decision = decide("停水了", "余杭街道")  # 160201 停水, role zj: a county bureau only
    assert (decision.lead, rule_ids(decision)) == ("330110.zj", ["default_route"])
    assert decision.priority == "high"


@pytest.mark.parametrize("township", ["五常街道", "良渚街道", "径山镇", "黄湖镇"])
def test_the_same_rule_resolves_to_each_townships_own_office(township: str) -> None:
    decision = decide("路边垃圾成堆没人清", township)
    assert decision.lead == f"{TOWNSHIPS[township]}.zhzf"
    assert rule_ids(decision) == ["enforcement-township-squad"]


def test_two_townships_get_two_different_departments() -> None:
    here = decide("饭店后厨脏", "良渚街道玉鸟社区")
    there = decide("饭店后厨脏", "中泰街道")
    assert (here.lead, there.lead) == ("330110010.scjg", "330110014.scjg")
    assert here.sla == there.sla == "market"


def test_a_social_organisation_role_falls_back_to_the_county() -> None:
    # 独居老人关爱 leads with ylfw, the county's elderly-care centre; no township has one
    decision = decide("好几天没见到老人，独居老人", "闲林街道")
    assert decision.lead == "330110.ylfw"
    assert decision.assist == ("330110011.shsw",)
    assert (decision.sla, rule_ids(decision)) == ("services", ["elderly-care-social-org"])
    assert shipped().departments.by_code["330110.ylfw"].level == "social"


def test_resolve_target_forms() -> None:
    rules = shipped()
    chain = ["330000000000", "330100000000", "330110000000", "330110005000", "330110005001"]
    assert resolve_target(rules, "scjg", "040102", chain) == "330110005.scjg"
    assert resolve_target(rules, "township.scjg", "040102", chain) == "330110005.scjg"
    assert resolve_target(rules, "county.scjg", "040102", chain) == "330110.scjg"
    assert resolve_target(rules, "ylfw", "140102", chain) == "330110.ylfw"
    assert resolve_target(rules, "township.ylfw", "140102", chain) is None
    assert resolve_target(rules, "matter", "140102", chain) == "330110.ylfw"
    assert resolve_target(rules, "330110.zhzx", "040102", chain) == "330110.zhzx"
    assert resolve_target(rules, "330110999.zhzx", "040102", chain) is None
    county_only = chain[:3]
    assert resolve_target(rules, "scjg", "040102", county_only) == "330110.scjg"
    assert resolve_target(rules, "township.scjg", "040102", county_only) is None


# --- returns (回退) ---------------------------------------------------------------------------

def test_exclude_skips_the_returned_department_and_falls_back_to_the_locality() -> None:
    decision = decide("路边垃圾成堆没人清", exclude=frozenset({"330110005.zhzf"}), returns=1)
    assert decision.lead == "330110005.zhzx"
    assert rule_ids(decision) == ["enforcement-township-squad", "locality-fallback"]


def test_exclude_of_a_default_route_lead_falls_back_to_the_locality() -> None:
    decision = decide("饭店后厨脏", "良渚街道玉鸟社区", exclude=frozenset({"330110010.scjg"}),
                      returns=1)
    assert decision.lead == "330110010.zhzx"
    assert rule_ids(decision)[-1] == "locality-fallback"


def test_exclude_of_the_township_command_room_too_goes_to_the_county_centre() -> None:
    decision = decide("路边垃圾成堆没人清", exclude=frozenset({"330110005.zhzf",
                                                           "330110005.zhzx"}), returns=1)
    assert decision.lead == "330110.zhzx"


def test_exclude_removes_a_returned_department_from_the_assistants() -> None:
    decision = decide("楼道里一股煤气味", exclude=frozenset({"330110005.yjgl"}), returns=1)
    assert decision.lead == "330110.xf"
    assert decision.assist == ("330110005.zhzx",)


@pytest.mark.parametrize("returns", [2, 3])
def test_after_max_returns_the_county_command_centre_decides(returns: int) -> None:
    decision = decide("路边垃圾成堆没人清", exclude=frozenset({"330110005.zhzf",
                                                           "330110005.zhzx"}), returns=returns)
    assert decision.lead == "330110.zhzx"
    assert rule_ids(decision) == ["max-returns"]
    assert decision.assist == ()


def test_below_max_returns_the_rules_still_route() -> None:
    decision = decide("路边垃圾成堆没人清", returns=1)
    assert decision.lead == "330110005.zhzf"


def test_max_returns_comes_from_the_layers(rules_copy: Path) -> None:
    write_county(rules_copy, "max_returns: 1\n")
    ruleset = load_rules(rules_copy)
    assert ruleset.routing_for("330110000000").max_returns == 1
    decision = decide("路边垃圾成堆没人清", ruleset=ruleset, returns=1)
    assert rule_ids(decision) == ["max-returns"]


# --- conditions ------------------------------------------------------------------------------

@pytest.mark.parametrize(("address", "applies"), [
    ("径山镇径山村", True), ("鸬鸟镇", True), ("百丈镇", True), ("黄湖镇", True),
    ("五常街道", False), ("瓶窑镇", False)])
def test_division_prefix_condition(address: str, applies: bool) -> None:
    decision = decide("村里后山塌了一块，石头滚到了路边", address)
    township = next(code for name, code in TOWNSHIPS.items() if address.startswith(name))
    if applies:
        assert rule_ids(decision) == ["yh-hill-hazards"]
        assert decision.lead == "330110.yjgl"
    else:
        assert rule_ids(decision) == ["default_route"]
        assert decision.lead == f"{township}.yjgl"


def test_division_prefix_condition_matches_a_grid_code() -> None:
    decision = decide("进村的公路山边塌方，车子过不去", None, grid_code="330110113219001")
    assert rule_ids(decision) == ["yh-hill-hazards"]
    assert set(decision.assist) == {"330110113.yjgl", "330110113.zhzx"}


def test_priority_override_and_sla(rules_copy: Path) -> None:
    write_county(rules_copy, "route:\n  - id: yh-sewage-urgent\n"
                             '    when: {matters: ["110303"]}\n    lead: township.zhzf\n'
                             "    sla: sewage\n    priority: urgent\n"
                             "sla:\n  sewage: {accept: 30m, resolve: 1d, unit: natural}\n")
    ruleset = load_rules(rules_copy)
    record = classified(ruleset, "化粪池满溢，污水冒出来")
    assert (record.matter_code, record.priority) == ("110303", "normal")
    decision = route(ruleset, record)
    assert (decision.lead, decision.sla, decision.priority) == (
        "330110005.zhzf", "sewage", "urgent")
    # without an override the record's priority stands
    assert decide("化粪池满溢，污水冒出来").priority == "normal"


TIME_RULES = """
route:
  - id: yh-refuse-office
    when: {matters: ["1001"], time: working}
    lead: township.zhzf
  - id: yh-refuse-duty
    when: {matters: ["1001"], time: off_hours}
    lead: township.zhzx
"""


@pytest.mark.parametrize(("at", "rule", "lead"), [
    (WORKING, "yh-refuse-office", "330110005.zhzf"),
    (OFF_HOURS, "yh-refuse-duty", "330110005.zhzx"),
    (HOLIDAY, "yh-refuse-duty", "330110005.zhzx"),
    ("2026-11-28T10:00:00+08:00", "yh-refuse-duty", "330110005.zhzx"),  # a Saturday
    ("2026-11-24T12:30:00+08:00", "yh-refuse-duty", "330110005.zhzx"),  # lunch break
])
def test_time_window_working_or_off_hours(rules_copy: Path, at: str, rule: str,
                                          lead: str) -> None:
    write_county(rules_copy, TIME_RULES)
    decision = decide("路边垃圾成堆没人清", at=at, ruleset=load_rules(rules_copy))
    assert (rule_ids(decision), decision.lead) == ([rule], lead)


def test_national_day_is_off_hours_for_the_duty_desk() -> None:
    decision = decide("楼道里一股煤气味", "五常街道", HOLIDAY)
    assert rule_ids(decision) == ["off-hours-urgent-duty-desk", "fire-gas-urgent-joint"]
    assert "330110.zhzx" in decision.assist


def test_channel_and_priority_conditions(rules_copy: Path) -> None:
    write_county(rules_copy, "route:\n  - id: yh-hotline-high\n"
                             "    when: {channels: [hotline], priorities: [high]}\n"
                             "    lead: county.zhzx\n")
    ruleset = load_rules(rules_copy)
    assert decide("路面坑洼", ruleset=ruleset, channel="hotline").lead == "330110.zhzx"
    assert decide("路面坑洼", ruleset=ruleset, channel="gridapp").lead == "330110005.zhzf"
    assert decide("路边垃圾成堆没人清", ruleset=ruleset,
                  channel="hotline").lead == "330110005.zhzf"  # normal priority


def test_every_report_gets_exactly_one_lead_that_exists() -> None:
    rules = shipped()
    for description in ["楼道里一股煤气味", "电梯困人了", "饭店后厨脏", "路边垃圾成堆没人清",
                        "好几天没见到老人，独居老人", "楼上吵闹", "停水了", "想要心理疏导",
                        "有人形迹可疑", "家政保姆不靠谱"]:
        for township in ["五常街道", "径山镇"]:
            decision = decide(description, township)
            assert decision.lead in rules.departments, (description, township)
            assert all(a in rules.departments for a in decision.assist)
            assert decision.lead not in decision.assist


# --- load-time errors ------------------------------------------------------------------------

def test_unknown_role_in_a_route_target_names_file_and_line(rules_copy: Path) -> None:
    path = write_county(rules_copy, "route:\n  - id: x\n    when: {matters: [\"1001\"]}\n"
                                    "    lead: township.nosuch\n")
    found = problems_of(rules_copy)
    assert f"{path}:{line_of(path, 'township.nosuch')}: role 'nosuch' belongs to no " \
           "department" in found


def test_unknown_role_in_an_assist_target_is_an_error(rules_copy: Path) -> None:
    path = write_county(rules_copy, "route:\n  - id: x\n    when: {matters: [\"1001\"]}\n"
                                    "    assist: [county.nosuch]\n    continue: true\n")
    assert f"{path}:{line_of(path, 'county.nosuch')}: role 'nosuch'" in problems_of(rules_copy)


def test_unknown_department_code_is_an_error(rules_copy: Path) -> None:
    path = write_county(rules_copy, "route:\n  - id: x\n    when: {matters: [\"1001\"]}\n"
                                    "    lead: \"330110999.zhzf\"\n")
    assert (f"{path}:{line_of(path, '330110999.zhzf')}: department '330110999.zhzf' is not in "
            "departments.yaml") in problems_of(rules_copy)


def test_unknown_matter_prefix_is_an_error(rules_copy: Path) -> None:
    path = write_county(rules_copy, "route:\n  - id: x\n    when: {matters: [\"99\"]}\n"
                                    "    lead: township.zhzf\n")
    found = problems_of(rules_copy)
    assert f"{path}:" in found
    assert "route rule 'x' names matter prefix '99', which matches no catalogue item" in found


def test_unknown_division_prefix_is_an_error(rules_copy: Path) -> None:
    write_county(rules_copy, "route:\n  - id: x\n"
                             "    when: {matters: [\"1001\"], divisions: [\"330110999\"]}\n"
                             "    lead: township.zhzf\n")
    assert "names division prefix '330110999'" in problems_of(rules_copy)


BROAD_THEN_NARROW = """
route:
  - id: yh-broad
    when: {{matters: ["10"]}}
    lead: township.zhzf{cont}
  - id: yh-narrow
    when: {{matters: ["1001"]}}
    lead: county.zhzf
"""


def test_a_broad_rule_before_a_narrower_one_makes_it_unreachable(rules_copy: Path) -> None:
    path = write_county(rules_copy, BROAD_THEN_NARROW.format(cont=""))
    found = problems_of(rules_copy)
    assert f"{path}:{line_of(path, 'id: yh-narrow')}: route rule 'yh-narrow'" in found
    assert "unreachable" in found and "'yh-broad'" in found


def test_a_broad_rule_with_continue_keeps_the_narrower_one_reachable(rules_copy: Path) -> None:
    write_county(rules_copy, BROAD_THEN_NARROW.format(cont="\n    continue: true"))
    decision = decide("路边垃圾成堆没人清", ruleset=load_rules(rules_copy))
    assert decision.lead == "330110005.zhzf"  # the first lead wins
    assert rule_ids(decision) == ["yh-broad", "yh-narrow"]


def test_a_broad_county_rule_makes_province_rules_unreachable(rules_copy: Path) -> None:
    write_county(rules_copy, 'route:\n  - id: yh-all-safety\n    when: {matters: ["03"]}\n'
                             "    lead: county.yjgl\n")
    found = problems_of(rules_copy)
    assert "route rule 'fire-gas-urgent-joint'" in found and "unreachable" in found


def test_missing_default_route_is_an_error(rules_copy: Path) -> None:
    province = rules_copy / "layers" / "33-zhejiang.yaml"
    text = province.read_text(encoding="utf-8")
    assert "default_route: {lead: matter, sla: default}\n" in text
    province.write_text(text.replace("default_route: {lead: matter, sla: default}\n", ""),
                        encoding="utf-8")
    assert "no default_route applies to county 330110000000" in problems_of(rules_copy)


def test_a_county_default_route_overrides_the_province_one(rules_copy: Path) -> None:
    write_county(rules_copy, "default_route: {lead: township.zhzx, sla: county-default}\n"
                             "sla:\n  county-default: {resolve: 5d}\n")
    decision = decide("停水了", "余杭街道", ruleset=load_rules(rules_copy))
    assert (decision.lead, decision.sla) == ("330110013.zhzx", "county-default")
    assert decision.matched[0].layer.startswith("county 330110")


def test_a_route_rule_id_used_twice_in_one_layer_is_an_error(rules_copy: Path) -> None:
    write_county(rules_copy, "route:\n"
                             "  - id: yh-twice\n"
                             '    when: {matters: ["1001"], divisions: ["330110005"]}\n'
                             "    lead: county.zhzf\n"
                             "  - id: yh-twice\n"
                             '    when: {matters: ["1001"], divisions: ["330110009"]}\n'
                             "    lead: county.yjgl\n")
    assert "rule id 'yh-twice' is used twice in one layer" in problems_of(rules_copy)


# --- operator cases with routing keys (engine.rules.rule_tests) -----------------------------------

def test_rule_cases_check_the_routing_decision() -> None:
    from engine.rules.rule_tests import compare

    record = classified(shipped(), "楼道里一股煤气味")
    good = {"lead": "330110.xf", "assist": ["330110005.yjgl", "330110005.zhzx"],
            "sla": "urgent", "route_priority": "urgent",
            "route_rules": ["fire-gas-urgent-joint"], "matter_code": "030201"}
    assert compare(good, record, shipped()) == []
    wrong = compare({"lead": "330110005.zhzf", "assist": ["330110005.zhzx"],
                     "route_rules": ["default_route"]}, record, shipped())
    assert len(wrong) == 3
    assert wrong[0].startswith("lead: expected '330110005.zhzf', got '330110.xf'")
    assert "fire-gas-urgent-joint" in wrong[0]
    assert compare({"assist": "330110005.zhzx"}, record, shipped()) == [
        "assist: expected a list of strings, the case gives '330110005.zhzx'"]
    assert compare({"lead": "330110.xf"}, record) == [
        "routing keys need the rule set to route with"]


def test_a_routing_key_on_an_unrouted_expectation_is_a_mismatch() -> None:
    from engine.rules.rule_tests import compare

    triage = classify_data(shipped(), {"channel": "test", "channel_id": "t",
                                       "reported_at": WORKING, "description": "井盖缺失"},
                           datetime.fromisoformat(WORKING))
    found = compare({"triage": "unplaced", "lead": "330110.zhzx"}, triage, shipped())
    assert len(found) == 1 and found[0].startswith("'lead' is a routing key")
    assert compare({"triage": "unplaced"}, triage, shipped()) == []


def test_rule_cases_may_set_received_at_for_time_windows(tmp_path: Path) -> None:
    from engine.rules.rule_tests import load_cases, run_case

    (tmp_path / "night.yaml").write_text(
        "cases:\n  - name: night\n    report: {description: 楼道里一股煤气味, address: 五常街道}\n"
        "    received_at: \"2026-11-24T23:00:05+08:00\"\n"
        "    expect: {route_rules: [off-hours-urgent-duty-desk, fire-gas-urgent-joint]}\n"
        "  - name: day\n    report: {description: 楼道里一股煤气味, address: 五常街道}\n"
        "    expect: {route_rules: [fire-gas-urgent-joint]}\n", encoding="utf-8")
    results = [run_case(shipped(), c) for c in load_cases(tmp_path)]
    assert [r.mismatches for r in results] == [[], []]


def test_shipped_routing_cases_cover_every_route_rule() -> None:
    from engine.rules.rule_tests import load_cases

    cases = [c for c in load_cases(RULES / "tests") if c.file.endswith("routing.yaml")]
    assert len(cases) >= 25
    covered = {rule for c in cases for rule in c.case.expect.get("route_rules", [])}
    defined = {r.id for layer in shipped().layers for r in layer.file.route}
    assert defined | {"default_route"} <= covered
