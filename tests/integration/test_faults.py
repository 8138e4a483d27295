"""The chaos suite: steady load while the engine is hurt, then count every incident.

A private broker and Redis (so they can be restarted), every kind of engine process (the
intake, the MQTT and Kafka bridges, classify, route, timers and the webhooks worker), a
client posting Open311 requests at a steady rate, retrying what the intake answers 503 (or
cannot answer while it is down), as a real client does, sensors publishing gas alarms over
MQTT, and a department's system writing complaint records to its own Kafka topic.
Meanwhile, in turn: kill -9 of each process kind (restarted at once), a broker restart,
Redis stopped and started empty (its timers and dedup keys lost), and an invalid rules edit
(reverted after a while). At the end, once the engine has drained:

* lost: accepted incidents (201 answers, alarms Mosquitto acknowledged, records the broker
  acknowledged) in no case, triage or rejection record: must be 0;
* duplicated assignments: a department given the same case as ``new`` twice: must be 0;
* escalations doubled on the topic (at-least-once: readers dedupe by ``escalation_id``),
  reported; after deduplication by id, doubled is 0 by construction; missed: must be 0;
* webhooks: every assignment of the departments with a webhook delivered (at least once;
  receivers dedupe by delivery id): undelivered must be 0;
* every request the client retried ended accepted.

``GRIDDISPATCH_FAULTS_SECONDS`` sets the load's length (``make test`` 30; ``make
test-faults`` 300); the figures are printed and kept in the README. A 3-broker cluster
losing brokers is ``test_cluster_faults.py``; the parts are in ``chaos.py`` and
``chaos_run.py``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from tests.integration.chaos import Client, Engine, Servers
from tests.integration.chaos_run import KINDS, assert_sound, run_under_faults
from tests.integration.connector_helpers import Receiver

# Minutes of load and recovery: beyond the suite's 5-minute default per test.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SECONDS = float(os.environ.get("GRIDDISPATCH_FAULTS_SECONDS", "30"))
FAULT_EVERY = 6.0


def faults(engine: Engine, stack: dict[str, Callable[[], None]], until: float) -> None:
    """Every fault in turn, spread so that even the short run (30 s) has each one once."""
    kill = {kind: partial(engine.kill, kind) for kind in KINDS}
    kinds: list[Callable[[], None]] = [
        kill["classify"], kill["route"], stack["restart broker"], kill["timers"],
        kill["intake"], stack["restart redis"], kill["mqtt"], kill["kafka-bridge"],
        kill["webhooks"], stack["invalid rules edit"]]
    # (+2: a broker restart takes a few seconds of its own)
    every = max(2.5, min(FAULT_EVERY, (until - time.monotonic()) / (len(kinds) + 3)))
    turn = 0
    while time.monotonic() < until:
        time.sleep(every)
        kinds[turn % len(kinds)]()
        engine.revive()
        turn += 1


def test_nothing_is_lost_or_doubled_under_faults(
        chaos: tuple[Servers, Engine, Client, Receiver], tmp_path: Path) -> None:
    servers, engine, client, receiver = chaos
    layer = engine.rules / "layers" / "330110-yuhang.yaml"

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
    with receiver, client:
        figures = run_under_faults(engine, client, receiver, partial(faults, engine, stack),
                                   SECONDS, tmp_path / "figures.json")
    assert_sound(figures, client)
