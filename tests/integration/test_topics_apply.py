"""``topics apply`` and ``topics diff`` against the real broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from engine.cli import main
from engine.runtime import kafka
from engine.runtime.settings import Settings

pytestmark = pytest.mark.integration

SPEC = """
topics:
  - name: incidents.reported
    partitions: 3
    replication_factor: 3
    retention: 7d
    key: incident id
    value: intake report
  - name: cases
    partitions: 2
    replication_factor: 3
    cleanup_policy: compact
    retention: forever
    key: case id
    value: case record
templates:
  - name: assignments.{department}
    for_each: department
    partitions: 1
    replication_factor: 3
    retention: 30d
    key: case id
    value: assignment
"""

DEPARTMENTS = """
departments:
  - {code: "330110.zhzx", name: 余杭区社会治理综合指挥中心, role: zhzx, platform: governance,
     level: county, division: "330110000000", supervisor: null, topic: assignments.330110.zhzx}
"""


@pytest.fixture
def spec_dirs(tmp_path: Path) -> tuple[Path, Path]:
    topics_dir, rules_dir = tmp_path / "topics", tmp_path / "rules"
    (rules_dir / "reference").mkdir(parents=True)
    topics_dir.mkdir()
    (topics_dir / "topics.yaml").write_text(SPEC)
    (rules_dir / "reference" / "departments.yaml").write_text(DEPARTMENTS, encoding="utf-8")
    return topics_dir, rules_dir


def cli(settings: Settings, dirs: tuple[Path, Path], verb: str) -> int:
    return main(["--bootstrap", settings.kafka_bootstrap, "--topic-prefix",
                 settings.topic_prefix, "topics", verb, "--topics-dir", str(dirs[0]),
                 "--rules-dir", str(dirs[1])])


def test_apply_creates_every_topic_and_template_then_diff_is_clean(
        kafka_settings: Settings, spec_dirs: tuple[Path, Path]) -> None:
    assert cli(kafka_settings, spec_dirs, "diff") == 1
    assert cli(kafka_settings, spec_dirs, "apply") == 0
    names = kafka.admin_client(kafka_settings).list_topics(timeout=10).topics
    prefix = kafka_settings.topic_prefix
    assert {f"{prefix}incidents.reported", f"{prefix}cases",
            f"{prefix}assignments.330110.zhzx"} <= set(names)
    assert cli(kafka_settings, spec_dirs, "diff") == 0


def test_second_apply_changes_nothing(kafka_settings: Settings, spec_dirs: tuple[Path, Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(kafka_settings, spec_dirs, "apply") == 0
    capsys.readouterr()
    assert cli(kafka_settings, spec_dirs, "apply") == 0
    assert "no changes: 3 topics match" in capsys.readouterr().out


def test_diff_detects_config_changed_behind_its_back(
        kafka_settings: Settings, spec_dirs: tuple[Path, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(kafka_settings, spec_dirs, "apply") == 0
    admin = kafka.admin_client(kafka_settings)
    topic = kafka_settings.topic("cases")
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)
    capsys.readouterr()
    assert cli(kafka_settings, spec_dirs, "diff") == 1
    out = capsys.readouterr().out
    assert f"config     {topic}: cleanup.policy 'delete' → 'compact'" in out
    assert cli(kafka_settings, spec_dirs, "apply") == 0
    assert cli(kafka_settings, spec_dirs, "diff") == 0


def test_diff_detects_a_missing_topic(kafka_settings: Settings, spec_dirs: tuple[Path, Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(kafka_settings, spec_dirs, "apply") == 0
    admin = kafka.admin_client(kafka_settings)
    topic = kafka_settings.topic("incidents.reported")
    for future in admin.delete_topics([topic]).values():
        future.result(timeout=30)
    capsys.readouterr()
    for _ in range(50):  # deletion is asynchronous in the broker
        if cli(kafka_settings, spec_dirs, "diff") == 1:
            break
    assert f"+ create     {topic}" in capsys.readouterr().out


def test_fewer_partitions_is_refused_and_nothing_is_applied(
        kafka_settings: Settings, spec_dirs: tuple[Path, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(kafka_settings, spec_dirs, "apply") == 0
    spec = spec_dirs[0] / "topics.yaml"
    spec.write_text(spec.read_text().replace("partitions: 3", "partitions: 1")
                    .replace("retention: 30d", "retention: 40d"))
    capsys.readouterr()
    assert cli(kafka_settings, spec_dirs, "apply") == 1
    out = capsys.readouterr().out
    assert "Kafka cannot remove partitions" in out and "nothing applied" in out
    # The retention change that came with it was not applied either.
    spec.write_text(SPEC.replace("retention: 30d", "retention: 40d"))
    assert cli(kafka_settings, spec_dirs, "diff") == 1
    assert "retention.ms '2592000000' → '3456000000'" in capsys.readouterr().out


def test_bad_topics_yaml_names_file_and_line_and_applies_nothing(
        kafka_settings: Settings, spec_dirs: tuple[Path, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    (spec_dirs[0] / "extra.yaml").write_text(
        "topics:\n  - name: incidents.triage\n    partitions: 3\n    replication_factr: 1\n"
        "    retention: 7d\n    key: k\n    value: v\n")
    assert cli(kafka_settings, spec_dirs, "apply") == 1
    err = capsys.readouterr().err
    assert f"{spec_dirs[0] / 'extra.yaml'}:4: unknown key 'replication_factr'" in err
    names = kafka.admin_client(kafka_settings).list_topics(timeout=10).topics
    assert not [n for n in names if n.startswith(kafka_settings.topic_prefix)]
