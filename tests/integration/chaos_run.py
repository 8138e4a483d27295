"""The chaos suite's run and count: load while something hurts the engine, drain, then read
every topic back as the admin and match by incident id, case id, escalation id and webhook
delivery id (``test_faults.py``, ``test_cluster_faults.py``)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from confluent_kafka import KafkaError, TopicPartition

from connectors.outgoing.webhooks.delivery import delivery_id
from engine.runtime import kafka
from engine.runtime.settings import Settings
from tests.integration.chaos import Client, Engine, webhooks_config
from tests.integration.connector_helpers import Receiver
from tests.integration.workers import wait_for

KINDS = ("intake", "mqtt", "kafka-bridge", "classify", "route", "timers", "webhooks")


@dataclass(frozen=True)
class Record:
    topic: str  # without the prefix
    partition: int
    offset: int
    value: dict[str, object]


def read_all(settings: Settings, topics: list[str]) -> Iterator[Record]:
    """Every record of the topics (as the admin would), to their current ends."""
    consumer = kafka.consumer(settings, f"chaos-count-{uuid.uuid4().hex[:6]}",
                              **{"enable.partition.eof": True})
    try:
        metadata = consumer.list_topics(timeout=20)
        parts = [TopicPartition(settings.topic(t), p) for t in topics
                 if settings.topic(t) in metadata.topics
                 for p in metadata.topics[settings.topic(t)].partitions]
        consumer.assign(parts)
        pending, deadline = len(parts), time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                error = message.error()
                if error is not None:
                    pending -= error.code() == KafkaError._PARTITION_EOF
                    continue
                value = json.loads(message.value() or b"null")
                if isinstance(value, dict):
                    yield Record(str(message.topic()).removeprefix(settings.topic_prefix),
                                 int(message.partition() or 0), int(message.offset() or 0),
                                 value)
    finally:
        consumer.close()


@dataclass
class Count:
    found: set[str] = field(default_factory=set)  # incident ids in a case, triage, rejection
    new_assignments: Counter[tuple[str, str]] = field(default_factory=Counter)
    escalations: Counter[str] = field(default_factory=Counter)  # by escalation id
    due: set[str] = field(default_factory=set)  # escalation ids due 30 s before the count
    missed: set[str] = field(default_factory=set)
    undelivered: set[str] = field(default_factory=set)  # webhook department assignments


def counted(settings: Settings, departments: list[str],
            webhooked: dict[str, bytes]) -> Count:
    """What the topics hold: incidents found, assignments given, escalations due and fired,
    and assignments of webhook departments whose delivery ``webhooked`` (by id) lacks."""
    found: set[str] = set()
    new_assignments: Counter[tuple[str, str]] = Counter()
    escalations: Counter[str] = Counter()
    planned: dict[str, list[tuple[str, float]]] = {}  # case → its latest plan's timers
    undelivered: set[str] = set()
    hooks = {f"assignments.{d}" for d in departments}
    topics = ["cases", "incidents.triage", "incidents.rejected", "escalations",
              *(f"assignments.{d}" for d in departments)]
    for record in read_all(settings, topics):
        value = record.value
        if record.topic == "cases":
            found.update(str(i) for i in value.get("incident_ids", []))  # type: ignore[attr-defined]
            sla = value.get("sla") or {}
            planned[str(value.get("case_id"))] = [
                (str(t["escalation_id"]), datetime.fromisoformat(t["due"]).timestamp())
                for t in sla.get("timers", [])]  # type: ignore[attr-defined]
        elif record.topic in ("incidents.triage", "incidents.rejected"):
            found.add(str(value.get("incident_id")))
        elif record.topic == "escalations":
            escalations[str(value.get("escalation_id"))] += 1
        else:
            if value.get("kind") == "new":
                new_assignments[(str(value.get("case_id")), str(value.get("department")))] += 1
            if record.topic in hooks and delivery_id(
                    settings.topic(record.topic), record.partition,
                    record.offset) not in webhooked:
                undelivered.add(f"{record.topic}@{record.offset}")
    cutoff = time.time() - 30  # due this long ago: the timer worker must have fired it
    due = {i for timers in planned.values() for i, at in timers if at <= cutoff}
    return Count(found, new_assignments, escalations, due, due - set(escalations), undelivered)


def webhook_departments(engine: Engine, client: Client) -> list[str]:
    """The departments that lead the first cases of the load: they get webhooks, so that
    the webhooks worker delivers throughout the faults."""
    client.run(time.monotonic() + 5)
    leads: set[str] = set()
    deadline = time.monotonic() + 90
    while len(leads) < 3 and time.monotonic() < deadline:  # the warm-up's cases, or most
        time.sleep(2)
        leads = {str(r.value["lead"]) for r in read_all(engine.settings, ["cases"])}
    assert leads, "no case from the warm-up load"
    return sorted(leads)


def run_under_faults(engine: Engine, client: Client, receiver: Receiver,
                     hurt: Callable[[float], None], seconds: float,
                     out: Path) -> dict[str, object]:
    """Every process started, ``seconds`` of load while ``hurt(until)`` runs beside it, the
    engine drained (up to 4 minutes), and the figures (also written to ``out``)."""
    for kind in KINDS[:-1]:
        engine.start(kind)
    wait_for(lambda: _ready(engine.intake_port), 120, "the intake")
    hooked = webhook_departments(engine, client)
    engine.webhooks = webhooks_config(engine.logs / "webhooks.yaml", receiver, hooked)
    engine.start("webhooks")
    started = time.monotonic()
    until = started + seconds
    hurting = threading.Thread(target=hurt, args=(until,), daemon=True)
    hurting.start()
    client.run(until)
    hurting.join(180)
    engine.revive()
    accepted = set(client.accepted)
    result = Count()

    def drained() -> bool:
        nonlocal result
        engine.revive()
        with receiver.lock:
            delivered = dict(receiver.effects)
        result = counted(engine.settings, hooked, delivered)
        return accepted <= result.found and not result.missed and not result.undelivered

    with contextlib.suppress(AssertionError):  # on timeout, the figures say what is missing
        wait_for(drained, 240, "every accepted incident in a case, triage or rejection, "
                               "every timer due 30 s ago fired, every webhook delivered")
    new, escalations = result.new_assignments, result.escalations
    with receiver.lock:
        posts = list(receiver.posts)
    deliveries = {p["delivery"] for p in posts}
    figures = {
        "seconds from the first request to the last answer": round(time.monotonic() - started),
        "incidents accepted (Open311 201s and acknowledged MQTT alarms)": len(accepted),
        "of which sensor alarms over MQTT": client.alarms_acknowledged,
        "of which department system records (Kafka bridge)": client.records_acknowledged,
        "lost": len(accepted - result.found),
        "duplicated assignments": sum(n - 1 for n in new.values() if n > 1),
        "escalations due (30 s before the count)": len(result.due),
        "escalations missed": len(result.missed),
        "escalations (distinct ids)": len(escalations),
        "escalations on the topic twice or more (deduplicated by id)": sum(
            1 for n in escalations.values() if n > 1),
        "webhook departments": len(hooked),
        "webhook deliveries (distinct ids)": len(deliveries),
        "webhook POSTs beyond one per delivery (deduplicated by id)": len(posts) - len(deliveries),
        "webhooks undelivered": len(result.undelivered),
        "webhook signatures that did not verify": sum(p["signed"] != "True" for p in posts),
        "requests retried by the client": client.retried,
        "retried, then accepted": client.retried_then_accepted,
        "gave up": client.gave_up, "other answers": dict(client.other),
        **{f"fault: {k}": v for k, v in sorted(engine.faults.items())},
    }
    print("\nchaos figures:\n" + "\n".join(f"| {k} | {v} |" for k, v in figures.items()))
    out.write_text(json.dumps(figures, ensure_ascii=False), encoding="utf-8")
    return figures


def assert_sound(figures: dict[str, object], client: Client) -> None:
    """Nothing lost, doubled, missed or undelivered; every retried request accepted."""
    for name in ("lost", "duplicated assignments", "escalations missed",
                 "webhooks undelivered", "webhook signatures that did not verify"):
        assert figures[name] == 0, (name, figures)
    assert client.alarms_acknowledged > 0 and client.records_acknowledged > 0
    assert client.gave_up == 0 and not client.other
    assert client.retried == 0 or client.retried_then_accepted > 0


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False
