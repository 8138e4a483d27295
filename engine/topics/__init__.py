"""Topics as code: ``topics/*.yaml`` is the truth; ``apply`` makes the cluster match it."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka.admin import AdminClient

from engine.kafka import broker_count
from engine.reference.departments import DepartmentRegistry
from engine.settings import Settings
from engine.topics.admin import Change, apply, describe, plan
from engine.topics.spec import DesiredTopic, expand, load_specs

__all__ = ["Change", "apply", "department_codes", "desired_topics", "pending_changes"]


def department_codes(rules_dir: Path) -> list[str]:
    registry = rules_dir / "reference" / "departments.yaml"
    return [d.code for d in DepartmentRegistry.load(registry)] if registry.exists() else []


def desired_topics(settings: Settings, admin: AdminClient) -> list[DesiredTopic]:
    files = load_specs(settings.topics_dir)  # parse everything before touching the cluster
    departments = department_codes(settings.rules_dir)
    return expand(files, departments, settings.topic_prefix, broker_count(admin, settings))


def pending_changes(settings: Settings, admin: AdminClient) -> tuple[list[DesiredTopic],
                                                                     list[Change]]:
    desired = desired_topics(settings, admin)
    actual = describe(admin, [t.name for t in desired])
    return desired, plan(desired, actual)
