"""The chaos suite on a 3-node KRaft cluster: brokers killed (kill -9) in turn under load.

Topics at replication factor 3 with ``min.insync.replicas`` 2 (the production specs, not
capped), on a local cluster of three broker-and-controller nodes (``kafka_cluster``). In turn,
one node is killed and started again a while later, so the leaders of some partitions, the
group coordinators and the transaction coordinators move while every engine process keeps
working: producers with ``acks=all`` still have two in-sync replicas. The same count as
``test_faults.py``: nothing lost, no assignment doubled, no escalation missed, every webhook
delivered. ``GRIDDISPATCH_FAULTS_SECONDS`` sets the load's length.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine.cli.stack.kafka_cluster import NODES
from engine.runtime import kafka
from engine.runtime.topic_admin import describe
from tests.integration.chaos import Client, Engine, Servers
from tests.integration.chaos_run import assert_sound, run_under_faults
from tests.integration.connector_helpers import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900), pytest.mark.cluster]

SECONDS = float(os.environ.get("GRIDDISPATCH_FAULTS_SECONDS", "30"))
DOWN = 8.0  # seconds a killed node stays down


def kill_brokers(servers: Servers, engine: Engine, until: float) -> None:
    """Each node in turn: kill -9, DOWN seconds down, started again; then the next."""
    assert servers.cluster is not None
    node = 0
    while time.monotonic() < until:
        node = node % NODES + 1
        servers.cluster.kill_node(node)
        engine.faults[f"kill -9 broker {node}"] += 1
        time.sleep(DOWN)
        servers.cluster.start_node(node)
        engine.revive()
        time.sleep(2.0)


def test_nothing_is_lost_or_doubled_when_brokers_die(
        chaos: tuple[Servers, Engine, Client, Receiver], tmp_path: Path) -> None:
    servers, engine, client, receiver = chaos
    assert servers.cluster is not None
    name = engine.settings.topic("cases")
    cases = describe(kafka.admin_client(engine.settings), [name])[name]
    assert (cases.replication_factor, cases.configs.get("min.insync.replicas")) == (
        NODES, "2"), cases
    with receiver, client:
        figures = run_under_faults(
            engine, client, receiver, lambda until: kill_brokers(servers, engine, until),
            SECONDS, tmp_path / "figures.json")
    assert_sound(figures, client)
    assert sum(v for k, v in engine.faults.items() if k.startswith("kill -9 broker")) >= 1
