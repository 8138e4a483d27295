"""Make the cluster match ``topics/*.yaml``: compare desired topics with it, apply the difference.

``plan`` is pure over what ``describe`` read, so the rules of the game (what may be changed,
what is refused and why) are testable without a broker. ``apply`` refuses to touch anything
when any change is destructive: half-applied topic changes are worse than none.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from engine.reference.departments import DepartmentRegistry
from engine.runtime.kafka import broker_count
from engine.runtime.settings import Settings
from engine.topics.spec import DesiredTopic, expand, load_specs


@dataclass(frozen=True)
class ActualTopic:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


@dataclass(frozen=True)
class Change:
    kind: str  # create | partitions | config | refuse
    topic: str
    detail: str
    desired: DesiredTopic
    config_changes: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        mark = {"create": "+", "partitions": "~", "config": "~", "refuse": "!"}[self.kind]
        return f"{mark} {self.kind:<10} {self.topic}: {self.detail}"


def plan(desired: list[DesiredTopic], actual: dict[str, ActualTopic]) -> list[Change]:
    changes: list[Change] = []
    for want in desired:
        have = actual.get(want.name)
        if have is None:
            configs = ", ".join(f"{k}={v}" for k, v in sorted(want.configs.items()))
            changes.append(Change("create", want.name,
                                  f"partitions={want.partitions} "
                                  f"replication={want.replication_factor} {configs}", want))
            continue
        if want.partitions < have.partitions:
            changes.append(Change(
                "refuse", want.name,
                f"partitions {have.partitions} → {want.partitions} refused: Kafka cannot remove "
                "partitions (and keys would move); create a new topic and migrate instead",
                want))
        elif want.partitions > have.partitions:
            changes.append(Change("partitions", want.name,
                                  f"partitions {have.partitions} → {want.partitions} (existing "
                                  "keys may map to new partitions)", want))
        if want.replication_factor != have.replication_factor:
            changes.append(Change(
                "refuse", want.name,
                f"replication factor {have.replication_factor} → {want.replication_factor} "
                "refused: that needs a partition reassignment "
                "(kafka-reassign-partitions), not a topic update", want))
        drift = {k: v for k, v in want.configs.items() if have.configs.get(k) != v}
        if drift:
            detail = ", ".join(f"{k} {have.configs.get(k)!r} → {v!r}"
                               for k, v in sorted(drift.items()))
            changes.append(Change("config", want.name, detail, want, drift))
    return changes


def describe(admin: AdminClient, names: list[str], timeout: float = 30.0) -> dict[str, ActualTopic]:
    metadata = admin.list_topics(timeout=timeout)
    present = [n for n in names if n in metadata.topics and metadata.topics[n].error is None]
    if not present:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in present]
    futures = admin.describe_configs(resources, request_timeout=timeout)
    actual = {}
    for resource, future in futures.items():
        entries = future.result(timeout=timeout)
        topic = metadata.topics[resource.name]
        partitions = topic.partitions
        rf = len(next(iter(partitions.values())).replicas) if partitions else 0
        actual[resource.name] = ActualTopic(
            resource.name, len(partitions), rf,
            {k: e.value for k, e in entries.items() if e.value is not None})
    return actual


class ApplyRefused(RuntimeError):
    pass


def apply(admin: AdminClient, changes: list[Change], timeout: float = 60.0) -> None:
    refused = [c for c in changes if c.kind == "refuse"]
    if refused:
        raise ApplyRefused("nothing applied; refused:\n" + "\n".join(str(c) for c in refused))
    creates = [NewTopic(c.topic, num_partitions=c.desired.partitions,
                        replication_factor=c.desired.replication_factor,
                        config=dict(c.desired.configs))
               for c in changes if c.kind == "create"]
    if creates:
        _wait(admin.create_topics(creates, request_timeout=timeout), timeout, "create")
    grows = [NewPartitions(c.topic, c.desired.partitions) for c in changes
             if c.kind == "partitions"]
    if grows:
        _wait(admin.create_partitions(grows, request_timeout=timeout), timeout, "add partitions")
    alters = [
        ConfigResource(ConfigResource.Type.TOPIC, c.topic, incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            for k, v in c.config_changes.items()])
        for c in changes if c.kind == "config"
    ]
    if alters:
        _wait(admin.incremental_alter_configs(alters, request_timeout=timeout), timeout,
              "alter configs")


def _wait(futures: Mapping[Any, Future[Any]], timeout: float, what: str) -> None:
    errors = []
    for key, future in futures.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            name = getattr(key, "name", key)
            errors.append(f"{what} {name}: {exc.args[0]}")
    if errors:
        raise RuntimeError("\n".join(errors))


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
