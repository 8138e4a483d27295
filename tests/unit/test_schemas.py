"""``griddispatch schema export``: a JSON Schema for every record on Kafka and every file an
operator edits, each one that validates what the engine itself writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from engine.cli import main

REPO = Path(__file__).resolve().parents[2]
RECORDS = ("intake-report", "classified", "triage", "rejected", "assignment", "case",
           "status-update", "status-rejected", "escalation", "intake-deadletter",
           "webhook-parked")
FILES = ("rules-layer", "rules-matters", "rules-divisions", "rules-departments",
         "rules-channels", "rules-holidays", "rules-tests", "rules-devices",
         "rules-bridge-mapping", "topics",
         "intake-keys", "webhooks-config")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    out = tmp_path_factory.mktemp("schemas")
    assert main(["schema", "export", str(out)]) == 0
    return {p.name.removesuffix(".schema.json"): json.loads(p.read_text(encoding="utf-8"))
            for p in out.glob("*.schema.json")}


def test_every_record_and_every_operator_file_has_a_schema(
        exported: dict[str, dict[str, object]]) -> None:
    assert set(exported) == set(RECORDS) | set(FILES)
    for name, schema in exported.items():
        assert schema.get("type") == "object" and schema.get("properties"), name


def test_the_layer_schema_knows_the_sla_sections(
        exported: dict[str, dict[str, object]]) -> None:
    properties = exported["rules-layer"]["properties"]
    assert isinstance(properties, dict) and {"sla", "working_hours"} <= set(properties)
    layer = yaml.safe_load((REPO / "rules/layers/33-zhejiang.yaml").read_text(encoding="utf-8"))
    assert set(layer) <= set(properties)
