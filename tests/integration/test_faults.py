"""The chaos suite: steady load while the engine is hurt, then count every incident.

A private broker and Redis (so they can be restarted), every kind of engine process (the
intake, the MQTT bridge, classify, route, timers and the webhooks worker), a client posting
Open311 requests at a steady rate, retrying what the intake answers 503 (or cannot answer
while it is down), as a real client does, and sensors publishing gas alarms over MQTT.
Meanwhile, in turn: kill -9 of each process kind (restarted at once), a broker restart,
Redis stopped and started empty (its timers and dedup keys lost), and an invalid rules edit
(reverted after a while). At the end, once the engine has drained:

* lost: accepted incidents (201 answers, alarms Mosquitto acknowledged) in no case, triage or
  rejection record: must be 0;
* duplicated assignments: a department given the same case as ``new`` twice: must be 0;
* escalations doubled on the topic (at-least-once: readers dedupe by ``escalation_id``),
  reported; after deduplication by id, doubled is 0 by construction; missed: must be 0;
* webhooks: every assignment of the departments with a webhook delivered (at least once;
  receivers dedupe by delivery id): undelivered must be 0;
* every request the client retried ended accepted.

``GRIDDISPATCH_FAULTS_SECONDS`` sets the load's length (``make test`` 30; ``make
test-faults`` 300); the figures are printed and kept in the README. A 3-broker cluster
losing a broker is ``test_cluster_faults.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import yaml

from engine.cli.stack import process
from engine.reference.grid_shapes import inner_point
from engine.rules.load import load_rules
from engine.runtime.settings import Settings
from tests.integration.chaos import (
    WEBHOOK_SECRET,
    Client,
    Count,
    Engine,
    Servers,
    counted,
    read_all,
    webhooks_config,
)
from tests.integration.connector_helpers import Receiver
from tests.integration.workers import apply_topics, wait_for
from tests.unit.rules_copy import rules_with_county_sla

# Minutes of load and recovery: beyond the suite's 5-minute default per test.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SECONDS = float(os.environ.get("GRIDDISPATCH_FAULTS_SECONDS", "30"))
FAULT_EVERY = 6.0
POLICY = "sla:\n" + "".join(f"""  {name}:
    description: chaos test policy, limits in seconds so that timers fire during the load
    accept: 20s
    resolve: 1h
    unit: natural
    warn_at: [50]
    ladder:
      - {{after: 5s}}
""" for name in ("default", "urgent", "market", "enforcement", "services", "mediation"))
KINDS = ("intake", "mqtt", "classify", "route", "timers", "webhooks")


def faults(engine: Engine, stack: dict[str, Callable[[], None]], until: float) -> None:
    """Every fault in turn, spread so that even the short run (30 s) has each one once."""
    kill = {kind: partial(engine.kill, kind) for kind in KINDS}
    kinds: list[Callable[[], None]] = [
        kill["classify"], kill["route"], stack["restart broker"], kill["timers"],
        kill["intake"], stack["restart redis"], kill["mqtt"], kill["webhooks"],
        stack["invalid rules edit"]]
    # (+2: a broker restart takes a few seconds of its own)
    every = max(2.5, min(FAULT_EVERY, (until - time.monotonic()) / (len(kinds) + 2)))
    turn = 0
    while time.monotonic() < until:
        time.sleep(every)
        kinds[turn % len(kinds)]()
        engine.revive()
        turn += 1


def webhook_departments(engine: Engine, client: Client) -> list[str]:
    """The departments that lead the first cases of the load: they get webhooks, so that
    the webhooks worker delivers throughout the faults."""
    warm = time.monotonic() + 5
    client.run(warm)
    leads: set[str] = set()
    deadline = time.monotonic() + 90
    while not leads and time.monotonic() < deadline:
        leads = {str(r.value["lead"]) for r in read_all(engine.settings, ["cases"])}
        time.sleep(1)
    assert leads, "no case from the warm-up load"
    return sorted(leads)


def test_nothing_is_lost_or_doubled_under_faults(tmp_path: Path, mqtt_url: str) -> None:
    servers = Servers(tmp_path / "servers")
    rules = rules_with_county_sla(tmp_path, POLICY)
    settings = servers.settings(rules)
    apply_topics(settings)
    ruleset = load_rules(rules)
    places = [inner_point(g) for g in list(ruleset.jurisdiction.grids.values())[::7]
              if g.valid_to is None]
    devices = yaml.safe_load((rules / "reference" / "devices.yaml").read_text("utf-8"))
    gas = [d for d, spec in devices["devices"].items() if spec["type"] == "gas"]
    logs = tmp_path / "logs"
    logs.mkdir()
    intake_port = process.free_port()
    engine = Engine(settings, rules, logs, intake_port, mqtt_url)
    layer = rules / "layers" / "330110-yuhang.yaml"

    def restart_broker() -> None:
        servers.stop_broker()
        servers.start_broker()
        engine.faults["broker restart"] += 1

    def restart_redis() -> None:
        servers.stop_redis()
        servers.start_redis()
        engine.faults["redis stopped, started empty"] += 1

    def invalid_rules_edit() -> None:
        good = layer.read_text(encoding="utf-8")
        layer.write_text(good + "\nroute: [this is: not a rule\n", encoding="utf-8")
        time.sleep(FAULT_EVERY / 2)
        layer.write_text(good, encoding="utf-8")
        engine.faults["invalid rules edit, reverted"] += 1

    stack = {"restart broker": restart_broker, "restart redis": restart_redis,
             "invalid rules edit": invalid_rules_edit}
    client = Client(f"http://127.0.0.1:{intake_port}", places, mqtt_url, gas)
    with Receiver(WEBHOOK_SECRET.encode()) as receiver, client:
        hurt_and_count(servers, engine, client, receiver, stack, settings, intake_port,
                       tmp_path)


def hurt_and_count(servers: Servers, engine: Engine, client: Client, receiver: Receiver,
                   stack: dict[str, Callable[[], None]], settings: Settings, intake_port: int,
                   tmp_path: Path) -> None:
    try:
        for kind in KINDS[:-1]:
            engine.start(kind)
        wait_for(lambda: _ready(intake_port), 120, "the intake")
        hooked = webhook_departments(engine, client)
        engine.webhooks = webhooks_config(engine.logs / "webhooks.yaml", receiver, hooked)
        engine.start("webhooks")
        started = time.monotonic()
        until = started + SECONDS
        hurt = threading.Thread(target=faults, args=(engine, stack, until), daemon=True)
        hurt.start()
        client.run(until)
        hurt.join(120)
        engine.revive()
        accepted = set(client.accepted)
        result = Count()

        def drained() -> bool:
            nonlocal result
            engine.revive()
            with receiver.lock:
                delivered = dict(receiver.effects)
            result = counted(settings, hooked, delivered)
            return accepted <= result.found and not result.missed and not result.undelivered

        with contextlib.suppress(AssertionError):  # on timeout, the figures say what is missing
            wait_for(drained, 240, "every accepted incident in a case, triage or rejection, "
                                   "every timer due 30 s ago fired, every webhook delivered")
        new, escalations = result.new_assignments, result.escalations
        with receiver.lock:
            posts = list(receiver.posts)
        figures = {
            "seconds from the first request to the last answer": round(time.monotonic() - started),
            "incidents accepted (Open311 201s and acknowledged MQTT alarms)": len(accepted),
            "of which sensor alarms over MQTT": client.alarms_acknowledged,
            "lost": len(accepted - result.found),
            "duplicated assignments": sum(n - 1 for n in new.values() if n > 1),
            "escalations due (30 s before the count)": len(result.due),
            "escalations missed": len(result.missed),
            "escalations (distinct ids)": len(escalations),
            "escalations on the topic twice or more (deduplicated by id)": sum(
                1 for n in escalations.values() if n > 1),
            "webhook departments": len(hooked),
            "webhook deliveries (distinct ids)": len({p["delivery"] for p in posts}),
            "webhook POSTs beyond one per delivery (deduplicated by id)": len(posts) - len(
                {p["delivery"] for p in posts}),
            "webhooks undelivered": len(result.undelivered),
            "webhook signatures that did not verify": sum(p["signed"] != "True" for p in posts),
            "requests retried by the client": client.retried,
            "retried, then accepted": client.retried_then_accepted,
            "gave up": client.gave_up, "other answers": dict(client.other),
            **{f"fault: {k}": v for k, v in sorted(engine.faults.items())},
        }
        print("\nchaos figures:\n" + "\n".join(f"| {k} | {v} |" for k, v in figures.items()))
        (tmp_path / "figures.json").write_text(json.dumps(figures, ensure_ascii=False))
        assert figures["lost"] == 0
        assert figures["duplicated assignments"] == 0
        assert figures["escalations missed"] == 0
        assert figures["webhooks undelivered"] == 0
        assert figures["webhook signatures that did not verify"] == 0
        assert client.alarms_acknowledged > 0
        assert client.gave_up == 0 and not client.other
        assert client.retried == 0 or client.retried_then_accepted > 0
    finally:
        engine.stop_all()
        servers.stop()


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False
