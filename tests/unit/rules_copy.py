"""A private copy of the shipped rules with some files replaced, for tests that edit rules."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def rules_copy_with(tmp_path: Path, files: dict[str, str]) -> Path:
    """``tmp_path/rules``: rules/ copied, then each ``relative path: text`` written."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    for relative, text in files.items():
        (rules / relative).write_text(text, encoding="utf-8")
    return rules


def rules_with_county_sla(tmp_path: Path, sla: str) -> Path:
    """``tmp_path/rules`` without rule tests, with Yuhang's ``sla:`` section replaced by
    ``sla`` (a YAML text starting with ``sla:``): test policies with limits in seconds."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules, ignore=shutil.ignore_patterns("tests"))
    county = rules / "layers" / "330110-yuhang.yaml"
    text = county.read_text(encoding="utf-8")
    county.write_text(text[:text.index("\nsla:\n")] + sla, encoding="utf-8")
    return rules
