"""Topic spec parsing and the apply plan, without a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.runtime.topic_admin import ActualTopic, plan
from engine.topics.spec import DesiredTopic, expand, load_specs
from engine.yamlfile import FileProblems

REPO = Path(__file__).resolve().parents[2]


def test_shipped_topic_specs_cover_the_design_flow() -> None:
    topics = expand(load_specs(REPO / "topics"), ["330110.zhzx"], "", brokers=3)
    names = {t.name for t in topics}
    assert {"incidents.reported", "incidents.classified", "incidents.triage",
            "incidents.rejected", "assignments.status", "cases", "escalations",
            "assignments.330110.zhzx", "escalations.330110.zhzx", "verdicts.330110.zhzx",
            "assignments.status.rejected", "intake.deadletter", "webhooks.deadletter",
            "triage.decisions"} == names
    cases = next(t for t in topics if t.name == "cases")
    assert cases.configs["cleanup.policy"] == "compact"
    assert cases.configs["retention.ms"] == "-1"


def test_replication_is_capped_at_the_broker_count_with_a_note() -> None:
    topics = expand(load_specs(REPO / "topics"), [], "p.", brokers=1)
    reported = next(t for t in topics if t.name == "p.incidents.reported")
    assert reported.replication_factor == 1
    assert reported.configs["min.insync.replicas"] == "1"
    assert "capped to 1" in reported.notes[0]


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("topics:\n  - name: a\n    partitions: [3\n")
    with pytest.raises(FileProblems) as caught:
        load_specs(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / 't.yaml'}:")
    assert "YAML syntax error" in str(caught.value)


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(
        "topics:\n  - name: a\n    partitions: 3\n    replication_factor: 1\n"
        "    retention: 7d\n    key: k\n    value: v\n    compaction: yes\n")
    with pytest.raises(FileProblems) as caught:
        load_specs(tmp_path)
    assert str(caught.value) == (f"{tmp_path / 't.yaml'}:8: unknown key 'compaction': "
                                 "remove it or check its spelling")


def test_bad_retention_is_reported_with_the_accepted_forms(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(
        "topics:\n  - name: a\n    partitions: 3\n    replication_factor: 1\n"
        "    retention: a week\n    key: k\n    value: v\n")
    with pytest.raises(FileProblems) as caught:
        load_specs(tmp_path)
    assert ":5:" in str(caught.value) and "e.g. 30s, 15m, 4h, 7d" in str(caught.value)


def test_duplicate_yaml_key_is_an_error_not_a_silent_overwrite(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("topics: []\ntopics: []\n")
    with pytest.raises(FileProblems, match=r"t.yaml:2: duplicate key 'topics'"):
        load_specs(tmp_path)


WANT = DesiredTopic("cases", 6, 1, {"cleanup.policy": "compact", "retention.ms": "-1"})


def test_plan_is_empty_when_the_cluster_matches() -> None:
    assert plan([WANT], {"cases": ActualTopic("cases", 6, 1, dict(WANT.configs))}) == []


def test_plan_refuses_fewer_partitions_and_replication_changes() -> None:
    changes = plan([WANT], {"cases": ActualTopic("cases", 8, 3, dict(WANT.configs))})
    assert [c.kind for c in changes] == ["refuse", "refuse"]
    assert "cannot remove partitions" in changes[0].detail
    assert "reassignment" in changes[1].detail


def test_plan_grows_partitions_and_fixes_drifted_config() -> None:
    changes = plan([WANT], {"cases": ActualTopic("cases", 3, 1, {"cleanup.policy": "delete",
                                                                  "retention.ms": "-1"})})
    assert [c.kind for c in changes] == ["partitions", "config"]
    assert changes[1].config_changes == {"cleanup.policy": "compact"}
