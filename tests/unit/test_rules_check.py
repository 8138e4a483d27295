"""Everything wrong with rules is found at load time, with file, line and the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.cli import main
from engine.rules.load import load_rules
from engine.yamlfile import FileProblems

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(REPO / "rules", target)
    return target


def write_county(rules: Path, body: str) -> Path:
    path = rules / "layers" / "330110-yuhang.yaml"
    path.write_text('layer: county\nscope: "330110"\n' + body, encoding="utf-8")
    return path


def problems_of(rules: Path) -> str:
    with pytest.raises(FileProblems) as caught:
        load_rules(rules)
    return str(caught.value)


def test_shipped_rules_load_and_check_clean() -> None:
    assert main(["rules", "check", str(REPO / "rules")]) == 0


def test_shipped_rule_cases_all_pass() -> None:
    assert main(["rules", "test", str(REPO / "rules")]) == 0


def test_unknown_matter_code_in_a_rule_names_file_and_line(rules_copy: Path) -> None:
    path = write_county(rules_copy, "classify:\n  - id: x\n    keywords: [占道卖菜]\n"
                                    "    matter: \"999999\"\n")
    assert f"{path}:6: rule 'x' classifies as unknown matter 999999" in problems_of(rules_copy)


def test_bad_regular_expression_is_refused(rules_copy: Path) -> None:
    path = write_county(rules_copy, "classify:\n  - id: x\n    keywords: [占道卖菜]\n"
                                    "    patterns: [\"(unclosed\"]\n    matter: \"090101\"\n")
    found = problems_of(rules_copy)
    assert f"{path}:6:" in found and "not a valid regular expression" in found


def test_one_character_keyword_is_refused(rules_copy: Path) -> None:
    write_county(rules_copy, "classify:\n  - id: x\n    keywords: [菜]\n    matter: \"090101\"\n")
    assert "too short" in problems_of(rules_copy)


def test_disabling_an_unknown_rule_is_an_error(rules_copy: Path) -> None:
    path = write_county(rules_copy, "disable: [no-such-rule]\n")
    assert f"{path}:3: disable names 'no-such-rule'" in problems_of(rules_copy)


def test_rule_shadowed_by_a_heavier_broader_rule_is_reported(rules_copy: Path) -> None:
    path = write_county(rules_copy,
                        "classify:\n"
                        "  - id: broad\n    keywords: [占道]\n    matter: \"090101\"\n"
                        "    weight: 60\n"
                        "  - id: narrow\n    keywords: [占道卖菜]\n    matter: \"090103\"\n"
                        "    weight: 50\n")
    found = problems_of(rules_copy)
    assert f"{path}:8: rule 'narrow'" in found and "can never win" in found
    assert "'broad'" in found


def test_unreachable_priority_rule_is_reported(rules_copy: Path) -> None:
    path = write_county(rules_copy,
                        "priority:\n"
                        "  - id: all-sensors\n    channels: [sensor]\n    set: urgent\n"
                        "  - id: smoke-sensors\n    channels: [sensor]\n    matters: [\"0301\"]\n"
                        "    set: high\n")
    found = problems_of(rules_copy)
    assert f"{path}:7: priority rule 'smoke-sensors'" in found and "unreachable" in found


def test_scope_outside_the_registry_is_an_error(rules_copy: Path) -> None:
    path = rules_copy / "layers" / "330110-yuhang.yaml"
    path.write_text('layer: county\nscope: "330999"\n', encoding="utf-8")
    assert f"{path}:2: scope 330999 matches no division" in problems_of(rules_copy)


def test_catalogue_role_without_department_is_an_error(rules_copy: Path) -> None:
    matters = rules_copy / "reference" / "matters.yaml"
    matters.write_text(matters.read_text(encoding="utf-8").replace("role: flyz", "role: nobody",
                                                                   1), encoding="utf-8")
    assert "names role 'nobody', which no department" in problems_of(rules_copy)


def test_channel_map_to_unknown_matter_is_an_error(rules_copy: Path) -> None:
    channels = rules_copy / "reference" / "channels.yaml"
    text = channels.read_text(encoding="utf-8")
    first = text.index("matter: \"") + len("matter: \"")
    channels.write_text(text[:first] + "999999" + text[first + 6:], encoding="utf-8")
    assert "maps to unknown matter 999999" in problems_of(rules_copy)


def test_every_broken_file_is_reported_in_one_run(rules_copy: Path) -> None:
    (rules_copy / "reference" / "departments.yaml").write_text("departments: [\n")
    write_county(rules_copy, "classfy: []\n")
    found = problems_of(rules_copy)
    assert "departments.yaml:" in found and "unknown key 'classfy'" in found


def test_revision_changes_with_content_and_only_with_content(rules_copy: Path) -> None:
    before = load_rules(rules_copy).revision
    assert load_rules(rules_copy).revision == before
    write_county(rules_copy, "disable: [catalogue:110103]\n")
    assert load_rules(rules_copy).revision != before


def test_rules_check_reads_every_file_bridge_mappings_included(rules_copy: Path,
                                                               capsys: pytest.CaptureFixture[str]
                                                               ) -> None:
    bridge = next((rules_copy / "bridges").glob("*.yaml"))
    bridge.write_text(bridge.read_text(encoding="utf-8") + "\n  : [unclosed\n",
                      encoding="utf-8")
    assert main(["rules", "check", str(rules_copy)]) == 1
    assert f"{bridge}:" in capsys.readouterr().err


def test_rules_check_names_a_bad_evaluation_line_and_a_file_nothing_reads(
        rules_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (rules_copy / "notes.txt").write_text("a stray file", encoding="utf-8")
    assert main(["rules", "check", str(rules_copy)]) == 0
    assert "notes.txt: no part of griddispatch reads this file" in capsys.readouterr().err
    path = next((rules_copy / "eval").glob("*.jsonl"))
    path.write_text(path.read_text(encoding="utf-8") + '{"text": "x", "matter_code": "99"}\n',
                    encoding="utf-8")
    assert main(["rules", "check", str(rules_copy)]) == 1
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert f"{path}:{lines}:" in capsys.readouterr().err


def test_yaml_merge_keys_are_merged_not_kept_as_literal_keys(rules_copy: Path) -> None:
    write_county(rules_copy, """classify:
  - &stall
    id: yh-stall-a
    keywords: [卖笋摊]
    matter: "090101"
    weight: 45
  - <<: *stall
    id: yh-stall-b
    keywords: [笋摊子]
""")
    rules = load_rules(rules_copy)
    layer = next(la for la in rules.layers if la.file.scope == "330110")
    second = layer.file.classify[1]
    assert (second.id, second.matter, second.weight, second.keywords) == (
        "yh-stall-b", "090101", 45, ["笋摊子"])


def test_a_merge_key_that_names_no_mapping_is_a_problem_with_its_line(rules_copy: Path) -> None:
    write_county(rules_copy, "classify:\n  - <<: [1, 2]\n    id: x\n")
    assert "330110-yuhang.yaml:4: '<<' merges mappings only" in problems_of(rules_copy)
