"""Hot reload keeps serving the old rules on a broken edit and swaps on a good one.

A fake loader stands in for ``load_rules``: what is tested here is the holder's decision
(when to load, what to keep, what to report), not the rule files themselves.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import cast

import pytest
from prometheus_client import REGISTRY

from engine.rules import RuleSet
from engine.runtime.workers.reload import RulesHolder, fingerprint
from engine.yamlfile import FileProblem, FileProblems


class FakeRules:
    def __init__(self, revision: str) -> None:
        self.revision = revision


class FakeLoader:
    """Loads 'revision' = the text of rules/rev.txt; 'broken' in it raises FileProblems."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, root: Path) -> RuleSet:
        self.calls += 1
        text = (root / "rev.txt").read_text().strip()
        if "broken" in text:
            raise FileProblems([FileProblem(str(root / "rev.txt"), 1, "cannot parse ': : :'")])
        return cast(RuleSet, FakeRules(text))


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _write(rules: Path, text: str) -> None:
    """Write and move the mtime on, so a fast test cannot hide the change from the poll."""
    path = rules / "rev.txt"
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10_000_000, before + 10_000_000))


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    root = tmp_path / "rules"
    root.mkdir()
    _write(root, "aaaaaaaaaaaa")
    return root


def test_start_loads_once_and_reports_the_serving_revision(rules: Path) -> None:
    loader = FakeLoader()
    holder = RulesHolder(rules, loader)
    assert loader.calls == 1
    assert holder.current.revision == "aaaaaaaaaaaa"
    assert _sample("griddispatch_rules_reload_success") == 1.0
    assert _sample("griddispatch_rules_revision_info", revision="aaaaaaaaaaaa") == 1.0


def test_unchanged_files_are_not_loaded_again(rules: Path) -> None:
    loader = FakeLoader()
    holder = RulesHolder(rules, loader)
    assert holder.maybe_reload() is False
    assert holder.maybe_reload() is False
    assert loader.calls == 1


def test_a_valid_edit_is_swapped_in(rules: Path, caplog: pytest.LogCaptureFixture) -> None:
    loader = FakeLoader()
    holder = RulesHolder(rules, loader)
    successes = _sample("griddispatch_rules_reload_total", outcome="success")
    _write(rules, "bbbbbbbbbbbb")
    with caplog.at_level(logging.INFO, logger="griddispatch.rules"):
        assert holder.maybe_reload() is True
    assert holder.current.revision == "bbbbbbbbbbbb"
    assert "aaaaaaaaaaaa → bbbbbbbbbbbb" in caplog.text
    assert _sample("griddispatch_rules_reload_total", outcome="success") == successes + 1
    assert _sample("griddispatch_rules_reload_success") == 1.0
    assert _sample("griddispatch_rules_revision_info", revision="bbbbbbbbbbbb") == 1.0
    assert REGISTRY.get_sample_value("griddispatch_rules_revision_info",
                                     {"revision": "aaaaaaaaaaaa"}) is None
    assert holder.maybe_reload() is False  # the new state is now the known one


def test_a_broken_edit_keeps_the_old_rules_and_says_so(
        rules: Path, caplog: pytest.LogCaptureFixture) -> None:
    loader = FakeLoader()
    holder = RulesHolder(rules, loader)
    old = holder.current
    failures = _sample("griddispatch_rules_reload_total", outcome="failure")
    _write(rules, "broken")
    with caplog.at_level(logging.ERROR, logger="griddispatch.rules"):
        assert holder.maybe_reload() is False
    assert holder.current is old
    assert _sample("griddispatch_rules_reload_success") == 0.0
    assert _sample("griddispatch_rules_reload_total", outcome="failure") == failures + 1
    assert f"{rules / 'rev.txt'}:1: cannot parse ': : :'" in caplog.text
    assert "still serving rules revision aaaaaaaaaaaa" in caplog.text
    # the same broken files are reported once, not on every poll
    assert holder.maybe_reload() is False
    assert loader.calls == 2
    # fixing the file recovers
    _write(rules, "cccccccccccc")
    assert holder.maybe_reload() is True
    assert holder.current.revision == "cccccccccccc"
    assert _sample("griddispatch_rules_reload_success") == 1.0


def test_an_unexpected_loader_error_is_a_failed_reload_not_a_crash(rules: Path) -> None:
    calls: list[int] = []

    def loader(root: Path) -> RuleSet:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("loader bug")
        return cast(RuleSet, FakeRules("aaaaaaaaaaaa"))

    holder = RulesHolder(rules, loader)
    assert holder.request_reload() is False
    assert holder.current.revision == "aaaaaaaaaaaa"
    assert _sample("griddispatch_rules_reload_success") == 0.0


def test_a_forced_reload_loads_without_a_visible_change(rules: Path) -> None:
    loader = FakeLoader()
    holder = RulesHolder(rules, loader)
    # an edit that keeps size and mtime is invisible to the fingerprint ...
    stat = (rules / "rev.txt").stat()
    (rules / "rev.txt").write_text("dddddddddddd")
    os.utime(rules / "rev.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert holder.maybe_reload() is False
    # ... but SIGHUP's request_reload loads anyway
    assert holder.request_reload() is True
    assert loader.calls == 2
    assert holder.current.revision == "dddddddddddd"


def test_a_broken_start_raises_the_file_problems(rules: Path) -> None:
    _write(rules, "broken")
    with pytest.raises(FileProblems) as info:
        RulesHolder(rules, FakeLoader())
    assert "cannot parse" in str(info.value.problems[0])


def test_fingerprint_sees_edits_new_files_and_ignores_tests(rules: Path) -> None:
    first = fingerprint(rules)
    assert fingerprint(rules) == first
    (rules / "tests").mkdir()
    (rules / "tests" / "case.yaml").write_text("cases: []")
    assert fingerprint(rules) == first
    (rules / "layers").mkdir()
    (rules / "layers" / "new.yaml").write_text("layer: county")
    second = fingerprint(rules)
    assert second != first
    _write(rules, "eeeeeeeeeeee")
    assert fingerprint(rules) != second

