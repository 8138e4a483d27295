"""JSON Schema for every contract and rule file, so editors and other teams can validate."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from engine.contracts import Classified, IntakeReport, Rejected, Triage
from engine.reference.channels import ChannelMapFile
from engine.reference.departments import DepartmentRegistryFile
from engine.reference.jurisdiction import DivisionsFile
from engine.reference.matters import CatalogueFile
from engine.rules.cases import CaseFile
from engine.rules.layers import LayerFile
from engine.topics.spec import TopicFile

SCHEMAS: dict[str, type[BaseModel]] = {
    "intake-report": IntakeReport,
    "classified": Classified,
    "triage": Triage,
    "rejected": Rejected,
    "rules-layer": LayerFile,
    "rules-matters": CatalogueFile,
    "rules-divisions": DivisionsFile,
    "rules-departments": DepartmentRegistryFile,
    "rules-channels": ChannelMapFile,
    "rules-tests": CaseFile,
    "topics": TopicFile,
}


def export_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in SCHEMAS.items():
        path = directory / f"{name}.schema.json"
        schema = model.model_json_schema(by_alias=True)
        path.write_text(json.dumps(schema, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written
