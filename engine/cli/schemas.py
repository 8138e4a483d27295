"""JSON Schema for every contract and rule file, so editors and other teams can validate.

The connectors' own files and records (device registry, bridge mappings, webhook config,
intake keys, dead letters) are listed by ``all_schemas``, imported there: the core does not
depend on the connectors package at import time.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from engine.cases.records import Assignment, CaseRecord, StatusRejected, StatusUpdate
from engine.contracts import Classified, IntakeReport, Rejected, Triage
from engine.reference.channels import ChannelMapFile
from engine.reference.departments import DepartmentRegistryFile
from engine.reference.holidays import HolidaysFile
from engine.reference.jurisdiction import DivisionsFile
from engine.reference.matters import CatalogueFile
from engine.rules.layers import LayerFile
from engine.rules.rule_tests import CaseFile
from engine.sla.model import Escalation
from engine.topics.spec import TopicFile

SCHEMAS: dict[str, type[BaseModel]] = {
    "intake-report": IntakeReport,
    "classified": Classified,
    "triage": Triage,
    "rejected": Rejected,
    "assignment": Assignment,
    "case": CaseRecord,
    "status-update": StatusUpdate,
    "status-rejected": StatusRejected,
    "escalation": Escalation,
    "rules-layer": LayerFile,
    "rules-matters": CatalogueFile,
    "rules-divisions": DivisionsFile,
    "rules-departments": DepartmentRegistryFile,
    "rules-channels": ChannelMapFile,
    "rules-holidays": HolidaysFile,
    "rules-tests": CaseFile,
    "topics": TopicFile,
}


def all_schemas() -> dict[str, type[BaseModel]]:
    from connectors.bridges.mapping import MappingFile
    from connectors.channels.sensors import DeviceFile
    from connectors.deadletter import IntakeDeadLetter
    from connectors.intake.keys import KeyFile
    from connectors.outgoing.webhooks.config import WebhooksFile
    from connectors.outgoing.webhooks.delivery import ParkedDelivery

    return {**SCHEMAS, "intake-deadletter": IntakeDeadLetter, "webhook-parked": ParkedDelivery,
            "rules-devices": DeviceFile, "rules-bridge-mapping": MappingFile,
            "intake-keys": KeyFile, "webhooks-config": WebhooksFile}


def export_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in all_schemas().items():
        path = directory / f"{name}.schema.json"
        schema = model.model_json_schema(by_alias=True)
        path.write_text(json.dumps(schema, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written
